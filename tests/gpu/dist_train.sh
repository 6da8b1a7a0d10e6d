#!/usr/bin/env bash
# spd train --gpus N on the GPU machine (run by tests/run_gpu.sh; prints ok / not ok lines):
#  1. --gpus 1 goes through the launcher, NCCL init, the all-reduces and the
#     broadcasts of a real communicator, and must equal the plain single-GPU run bit
#     for bit (metrics.jsonl: every loss, gradient norm and lr at %.17g), once with
#     stochastic terms (the seed of rank 0 of 1 is the config's) and once without;
#  2. --gpus 2: on a machine with one GPU, NCCL refuses two ranks on one device
#     ("Duplicate GPU detected"): then the launch must end with that message and a
#     non-zero exit within the time limit (no hang). With two GPUs it must train and
#     match --gpus 1 to float32 rounding on the draw-free config (2e-5 relative on
#     every logged number);
#  3. a rank whose peers never come (--rank 0 --world 2 by hand, a dead id) stops
#     with a message naming the rank within SPD_DIST_TIMEOUT_S, no hang.
set -u
cd "$(dirname "$0")/../.."
SPD=${SPD_BIN:-$PWD/${BUILD:-build}/spd}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ok() { echo "ok - $1"; }
notok() { echo "not ok - $1${2:+: $2}"; }

config() {  # $1 file, $2 extra loss entries
    cat >"$1" <<YAML
seed: 5
n_mask_samples: 2
ci_fn_type: vector_mlp
ci_fn_hidden_dims: [8]
module_info:
  - module_pattern: "linear*"
    C: 20
loss_metric_configs:
  - classname: ImportanceMinimalityLoss
    coeff: 3e-3
    pnorm: 1.0
    beta: 0.0
  - classname: FaithfulnessLoss
    coeff: 1.0
  - classname: CIMaskedReconLoss
    coeff: 1.0
$2
output_loss_type: mse
batch_size: 256
steps: 20
lr_schedule:
  start_val: 1e-2
  fn_type: cosine
  final_val_frac: 0.1
grad_clip_norm_components: 1.0
train_log_freq: 1
eval_freq: 1000
n_eval_steps: 1
pretrained_model_class: spd.experiments.tms.models.TMSModel
task_config:
  task_name: tms
  feature_probability: 0.05
YAML
}
config "$tmp/plain.yaml" ""
config "$tmp/stoch.yaml" "  - classname: StochasticReconLoss
    coeff: 1.0
  - classname: PGDReconLoss
    coeff: 0.5
    init: random
    step_size: 0.1
    n_steps: 2
    mask_scope: shared_across_batch"

run() {  # $1 out dir, $2 config, rest: flags; stdout+stderr in $1.log
    local out=$1 cfg=$2
    shift 2
    SPD_OUT_DIR="$out" SPD_DIST_TIMEOUT_S=30 timeout 90 "$SPD" train "$cfg" --device cuda --n-features 40 \
        --n-hidden 10 "$@" >"$out.log" 2>&1
}
metrics() { find "$1/spd" -name metrics.jsonl | head -1; }

for c in plain stoch; do
    run "$tmp/$c-1" "$tmp/$c.yaml" && run "$tmp/$c-n1" "$tmp/$c.yaml" --gpus 1
    rc=$?
    a=$(metrics "$tmp/$c-1" 2>/dev/null) b=$(metrics "$tmp/$c-n1" 2>/dev/null)
    if [ "$rc" -eq 0 ] && [ -s "$a" ] && cmp -s "$a" "$b"; then
        ok "train --gpus 1 (NCCL, $c config) equals the single-GPU run bit for bit ($(wc -l <"$a") logged steps)"
    else
        notok "train --gpus 1 (NCCL, $c config) equals the single-GPU run" "exit $rc"
        tail -5 "$tmp/$c-n1.log" | sed 's/^/#   /'
        [ -s "$a" ] && [ -s "$b" ] && diff <(head -2 "$a") <(head -2 "$b") | head -6 | sed 's/^/#   /'
    fi
done
grep -h "data parallel" "$tmp/plain-n1.log" | sed 's/^/# /'

run "$tmp/n2" "$tmp/plain.yaml" --gpus 2
rc=$?
if [ "$rc" -eq 0 ]; then
    if python3 - "$(metrics "$tmp/plain-n1")" "$(metrics "$tmp/n2")" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert len(a) == len(b) and len(a) > 0, (len(a), len(b))
worst = 0.0
for x, y in zip(a, b):
    for k, v in x.items():
        worst = max(worst, abs(v - y[k]) / max(abs(v), 1e-30) if k != "step" else 0)
print("# --gpus 2 vs --gpus 1: worst relative difference %.3g" % worst)
sys.exit(0 if worst < 2e-5 else 1)
PY
    then ok "train --gpus 2 matches --gpus 1 to float32 rounding (draw-free config, 20 steps)"
    else notok "train --gpus 2 matches --gpus 1 to float32 rounding"; fi
elif [ "$rc" -ne 124 ] && grep -q "rank [01] of 2" "$tmp/n2.log"; then
    ok "train --gpus 2 on $(nvidia-smi -L 2>/dev/null | wc -l) GPU(s): refused cleanly, exit $rc, no hang"
    grep -m2 "rank" "$tmp/n2.log" | sed 's/^/#   /'
else
    notok "train --gpus 2: ends cleanly" "exit $rc"
    tail -5 "$tmp/n2.log" | sed 's/^/#   /'
fi

zeros=$(printf '0%.0s' $(seq 256))
start=$(date +%s)
SPD_OUT_DIR="$tmp/dead" SPD_NCCL_ID=$zeros SPD_DIST_TIMEOUT_S=10 timeout 45 "$SPD" train "$tmp/plain.yaml" \
    --device cuda --rank 0 --world 2 >"$tmp/dead.log" 2>&1
rc=$?
took=$(($(date +%s) - start))
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q "rank 0 of 2: NCCL" "$tmp/dead.log"; then
    ok "a rank without peers stops with its message in ${took} s (deadline 10 s), exit $rc"
    grep -m1 "rank 0 of 2" "$tmp/dead.log" | sed 's/^/#   /'
else
    notok "a rank without peers stops with its message" "exit $rc after ${took} s"
    tail -3 "$tmp/dead.log" | sed 's/^/#   /'
fi
