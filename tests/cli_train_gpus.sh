#!/usr/bin/env bash
# spd train --gpus N (data parallel over NCCL, spd/dist.h) where no GPU is needed
# to judge: bad requests are refused with one stderr line (exit 2), and a launch
# whose ranks cannot start (no GPU here, or no NCCL / CUDA in this build) ends
# with the failing rank's message and a non-zero exit, never a hang. On a host
# with GPUs the launch may succeed (then exit 0). tests/run_gpu.sh checks the
# NCCL path against the single-GPU run.
set -u
SPD=${SPD_BIN:-build/spd}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ok() { echo "ok - $1"; }
notok() { echo "not ok - $1${2:+: $2}"; }

cat >"$tmp/c.yaml" <<YAML
seed: 3
n_mask_samples: 1
ci_fn_type: mlp
ci_fn_hidden_dims: [4]
module_info:
  - module_pattern: "linear*"
    C: 6
loss_metric_configs:
  - classname: ImportanceMinimalityLoss
    coeff: 3e-3
    pnorm: 1.0
    beta: 0.0
  - classname: FaithfulnessLoss
    coeff: 1.0
output_loss_type: mse
batch_size: 32
steps: 4
lr_schedule:
  start_val: 1e-2
train_log_freq: 2
eval_freq: 1000
n_eval_steps: 1
pretrained_model_class: spd.experiments.tms.models.TMSModel
task_config:
  task_name: tms
  feature_probability: 0.2
YAML

# $1 name, $2 expected exit, $3 regex the single stderr line must match, then the spd train arguments.
refused() {
    local name=$1 want=$2 re=$3
    shift 3
    SPD_OUT_DIR="$tmp/o" timeout 60 "$SPD" train "$tmp/c.yaml" "$@" >/dev/null 2>"$tmp/err"
    local rc=$?
    if [ "$rc" -eq "$want" ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -Eq -- "$re" "$tmp/err"; then ok "$name"
    else notok "$name" "exit $rc: $(head -3 "$tmp/err" | tr '\n' '|')"; fi
}
nocuda='built without (CUDA|NCCL)'
refused "train --gpus: needs --device cuda" 2 'gpus: data parallel training needs --device cuda' --gpus 2
refused "train --gpus: the batch must divide" 2 "batch_size: expected a multiple of the 3 ranks|$nocuda" \
    --device cuda --gpus 3
refused "train --gpus: out of range" 2 'gpus' --gpus 0 --device cuda
refused "train --rank without --world" 2 "--rank and --world go together|$nocuda" --device cuda --rank 0
refused "train --gpus and --world differ" 2 "differ|$nocuda" --device cuda --gpus 2 --rank 0 --world 4
SPD_NCCL_ID=zz refused "train --rank: malformed SPD_NCCL_ID" 2 "SPD_NCCL_ID: expected 256 hex digits|$nocuda" \
    --device cuda --rank 0 --world 1

# The launcher: its ranks fail here (no GPU) or succeed (GPUs); either way no hang and an honest status.
SPD_OUT_DIR="$tmp/l" SPD_DIST_TIMEOUT_S=30 timeout 120 "$SPD" train "$tmp/c.yaml" --device cuda --gpus 2 \
    >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 124 ]; then notok "train --gpus 2: the launch ends" "timed out (hang)"
elif [ "$rc" -eq 0 ] && grep -q '^done:' "$tmp/out" && [ "$(grep -c '^done:' "$tmp/out")" -eq 1 ]; then
    ok "train --gpus 2: the launch ends (trained: rank 0 alone printed)"
elif [ "$rc" -ne 0 ] && grep -Eq "rank [01]|$nocuda" "$tmp/err"; then
    ok "train --gpus 2: a rank that cannot start stops the launch with its message (exit $rc)"
else notok "train --gpus 2: the launch ends" "exit $rc: $(head -3 "$tmp/err" | tr '\n' '|')"; fi
