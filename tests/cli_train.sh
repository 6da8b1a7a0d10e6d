#!/usr/bin/env bash
# spd train: a tiny TMS run writes final_config.yaml (which checks cleanly) and
# one metrics.jsonl line per logged step, lowers the total loss, is
# reproducible from its seed; unsupported losses and tasks are refused (exit 2).
set -u
SPD=${SPD_BIN:-build/spd}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ok() { echo "ok - $1"; }
notok() { echo "not ok - $1${2:+: $2}"; }

write_config() {  # $1 = file, $2 = extra loss entry (YAML lines) or empty, $3 = task name
    cat >"$1" <<YAML
seed: 3
n_mask_samples: 1
ci_fn_type: mlp
ci_fn_hidden_dims: [4]
module_info:
  - module_pattern: linear*
    C: 6
loss_metric_configs:
  - classname: ImportanceMinimalityLoss
    coeff: 3e-3
    pnorm: 1.0
  - classname: StochasticReconLoss
    coeff: 1.0
  - classname: FaithfulnessLoss
    coeff: 1.0
$2
output_loss_type: mse
batch_size: 32
steps: 40
lr_schedule:
  start_val: 1e-2
  fn_type: cosine
  final_val_frac: 0.1
train_log_freq: 10
eval_freq: 1000
n_eval_steps: 1
pretrained_model_class: spd.experiments.tms.models.TMSModel
task_config:
  task_name: $3
  feature_probability: 0.2
YAML
}

write_config "$tmp/good.yaml" "" tms
run_dir() { find "$1/spd" -mindepth 1 -maxdepth 1 -type d | head -1; }
if SPD_OUT_DIR="$tmp/a" "$SPD" train "$tmp/good.yaml" >"$tmp/out" 2>"$tmp/err"; then
    d=$(run_dir "$tmp/a")
    n=$(wc -l <"$d/metrics.jsonl")
    if [ "$n" -eq 5 ] && "$SPD" config check "$d/final_config.yaml" >/dev/null 2>&1; then
        ok "spd train writes final_config.yaml (valid) and 5 metrics lines (steps 0, 10, ..., 40)"
    else
        notok "spd train outputs" "metrics lines $n"
    fi
    first=$(head -1 "$d/metrics.jsonl" | sed 's/.*"train\/loss\/total": \([^,}]*\).*/\1/')
    last=$(tail -1 "$d/metrics.jsonl" | sed 's/.*"train\/loss\/total": \([^,}]*\).*/\1/')
    if awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }'; then
        ok "spd train lowers the total loss ($first -> $last)"
    else
        notok "spd train lowers the total loss" "$first -> $last"
    fi
    SPD_OUT_DIR="$tmp/b" "$SPD" train "$tmp/good.yaml" >/dev/null 2>&1
    if cmp -s "$d/metrics.jsonl" "$(run_dir "$tmp/b")/metrics.jsonl"; then
        ok "spd train is reproducible from its seed (identical metrics.jsonl)"
    else
        notok "spd train is reproducible from its seed"
    fi
else
    notok "spd train on a tiny TMS config" "$(head -3 "$tmp/err")"
fi

write_config "$tmp/pgd.yaml" "  - classname: PGDReconLoss
    coeff: 1.0
    init: random
    step_size: 0.1
    n_steps: 1
    mask_scope: unique_per_datapoint" tms
SPD_OUT_DIR="$tmp/c" "$SPD" train "$tmp/pgd.yaml" >/dev/null 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 0 ] && [ -s "$(run_dir "$tmp/c")/metrics.jsonl" ]; then
    ok "spd train runs a PGDReconLoss config (every loss-capable class is implemented)"
else
    notok "spd train runs a PGDReconLoss config" "rc $rc: $(head -2 "$tmp/err")"
fi

write_config "$tmp/rm.yaml" "" resid_mlp
SPD_OUT_DIR="$tmp/c" "$SPD" train "$tmp/rm.yaml" >/dev/null 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 2 ] && grep -q "supports tms only" "$tmp/err"; then
    ok "spd train refuses a task other than tms (exit 2)"
else
    notok "spd train refuses a task other than tms" "rc $rc: $(head -2 "$tmp/err")"
fi
