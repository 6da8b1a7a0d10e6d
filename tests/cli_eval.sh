#!/usr/bin/env bash
# spd train's evaluation (src/spd/eval.h): at eval_freq one metrics.jsonl line with SPD's
# unprefixed keys (loss/<Class> for the eval list + the loss list, l0/<thr>_<module|group>,
# target_solution_error/* at slow steps, mmcs/ml2r at the final TMS eval); CIHistograms,
# density and CI-mean PNGs under figures/ at slow steps only, the L0 bar chart as JSON at each
# eval; the training lines are those of a run without evaluation; eval_batch_size differs
# from batch_size; resume across an eval step is bit for bit; a ResidMLP run with identity and
# dense IdentityCIError patterns; an IdentityCIError that cannot fit is refused at start.
set -u
SPD=${SPD_BIN:-build/spd}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ok() { echo "ok - $1"; }
notok() { echo "not ok - $1${2:+: $2}"; }
run_dir() { find "$1/spd" -mindepth 1 -maxdepth 1 -type d | head -1; }

write_config() {  # $1 = file, $2 = task, $3 = eval_freq, $4 = slow_eval_freq, $5 = IdentityCIError lines
    local pattern="linear*" task="tms" cls="spd.experiments.tms.models.TMSModel"
    [ "$2" = resid_mlp ] && pattern="layers.*.mlp_*" task="resid_mlp" cls="spd.experiments.resid_mlp.models.ResidMLP"
    cat >"$1" <<YAML
seed: 3
n_mask_samples: 1
ci_fn_type: mlp
ci_fn_hidden_dims: [4]
module_info:
  - module_pattern: "$pattern"
    C: 6
loss_metric_configs:
  - classname: ImportanceMinimalityLoss
    coeff: 3e-3
    pnorm: 1.0
    beta: 0.0
  - classname: StochasticReconLoss
    coeff: 1.0
output_loss_type: mse
batch_size: 32
eval_batch_size: 16
steps: 40
lr_schedule:
  start_val: 1e-2
train_log_freq: 10
eval_freq: $3
slow_eval_freq: $4
n_eval_steps: 3
ci_alive_threshold: 0.1
eval_metric_configs:
  - classname: CIHistograms
    n_batches_accum: 2
  - classname: ComponentActivationDensity
  - classname: CI_L0
    groups: {total: ["*"]}
  - classname: CIMeanPerComponent
  - classname: StochasticHiddenActsReconLoss
  - classname: CIMaskedReconLoss
  - classname: PermutedCIPlots
    identity_patterns: ["linear1", "layers.*.mlp_in"]
    dense_patterns: ["layers.*.mlp_out"]
  - classname: UVPlots
    identity_patterns: null
    dense_patterns: ["linear2"]
$5
pretrained_model_class: $cls
task_config:
  task_name: $task
  feature_probability: 0.2
YAML
}

tms_ident='  - classname: IdentityCIError
    identity_ci: [{layer_pattern: "linear1", n_features: 5}]
    dense_ci: null'
write_config "$tmp/tms.yaml" tms 20 40 "$tms_ident"
if SPD_OUT_DIR="$tmp/a" "$SPD" train "$tmp/tms.yaml" >"$tmp/out" 2>"$tmp/err"; then
    d=$(run_dir "$tmp/a")
    if python3 - "$d/metrics.jsonl" >"$tmp/py" 2>&1 <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
ev = [l for l in lines if not any(k.startswith("train/") for k in l)]
assert [l["step"] for l in ev] == [0, 20, 40], [l["step"] for l in ev]
every = ["loss/StochasticHiddenActsReconLoss", "loss/CIMaskedReconLoss", "loss/StochasticReconLoss",
         "loss/ImportanceMinimalityLoss", "l0/0.1_linear1", "l0/0.1_linear2", "l0/0.1_total"]
slow = ["target_solution_error/total", "target_solution_error/total_0p2", "target_solution_error/linear1"]
final = ["mmcs/linear1", "ml2r/linear1", "mmcs/linear2", "ml2r/linear2"]
for l in ev:
    for k in every + slow * (l["step"] != 20) + final * (l["step"] == 40):
        assert k in l, (l["step"], k)
    for k in slow * (l["step"] == 20) + final * (l["step"] != 40):
        assert k not in l, (l["step"], k)
    assert "loss/FaithfulnessLoss" not in l and not any(k.startswith("eval/") for k in l)
    assert all(isinstance(v, (int, float)) for v in l.values())
    assert isinstance(l.get("target_solution_error/total", 0), int)
    assert abs(l["l0/0.1_total"] - l["l0/0.1_linear1"] - l["l0/0.1_linear2"]) < 1e-12
assert 0 <= ev[-1]["mmcs/linear1"] <= 1 + 1e-12 and ev[-1]["ml2r/linear1"] >= 0
PY
    then
        ok "eval lines at steps 0, 20, 40 with SPD's keys (losses, l0 + group; slow and final keys where due)"
    else
        notok "eval lines" "$(tail -3 "$tmp/py")"
    fi
    figs_ok=1
    for s in 0 40; do
        for k in causal_importance_values causal_importance_values_pre_sigmoid component_activation_density \
            ci_mean_per_component ci_mean_per_component_log causal_importances causal_importances_upper_leaky \
            uv_matrices; do
            f="$d/figures/figures_${k}_$s.png"
            [ "$(head -c 8 "$f" 2>/dev/null | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || figs_ok=0
        done
    done
    ls "$d/figures" | grep -q '_20\.png' && figs_ok=0
    for s in 0 20 40; do
        python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); assert c["columns"]==["layer","l0"] and len(c["data"])==3 and c["step"]==int(sys.argv[2])' \
            "$d/figures/l0_bar_chart_$s.json" "$s" 2>/dev/null || figs_ok=0
    done
    [ $figs_ok -eq 1 ] && ok "figures/: the eight PNGs at slow steps 0 and 40 only, the L0 bar chart JSON at every eval" ||
        notok "figures" "$(ls "$d/figures" | tr '\n' ' ')"
    grep -q "^eval  *40: loss/StochasticHiddenActsReconLoss .* mmcs/linear1 .*(+ figures)$" "$tmp/out" &&
        ok "one console line per eval" || notok "console eval line" "$(grep '^eval' "$tmp/out" | tail -1)"
    write_config "$tmp/noeval.yaml" tms 1000 1000 "$tms_ident"
    if SPD_OUT_DIR="$tmp/n" "$SPD" train "$tmp/noeval.yaml" >/dev/null 2>&1 &&
        cmp -s <(grep '"train/' "$d/metrics.jsonl") <(grep '"train/' "$(run_dir "$tmp/n")/metrics.jsonl"); then
        ok "training lines equal a run that evaluates only at step 0 (eval leaves training alone)"
    else
        notok "eval changes training"
    fi
else
    notok "spd train with eval metrics" "$(head -3 "$tmp/err")"
fi

# Resume across evaluations: --stop-at 20 (an eval step) then --resume equals the full run.
if SPD_OUT_DIR="$tmp/h" "$SPD" train "$tmp/tms.yaml" --stop-at 20 >/dev/null 2>&1 &&
    h=$(run_dir "$tmp/h") && "$SPD" train --resume "$h" >/dev/null 2>"$tmp/err" &&
    [ -n "${d:-}" ] && cmp -s "$d/metrics.jsonl" "$h/metrics.jsonl"; then
    ok "--stop-at 20 + --resume: metrics.jsonl (eval lines included) equals the uninterrupted run"
else
    notok "resume with eval" "$(head -2 "$tmp/err")"
fi

# ResidMLP: identity on mlp_in, dense (k 1) on mlp_out; no mmcs (TMS only).
rm_ident='  - classname: IdentityCIError
    identity_ci: [{layer_pattern: "layers.*.mlp_in", n_features: 5}]
    dense_ci: [{layer_pattern: "layers.*.mlp_out", k: 1}]'
write_config "$tmp/rm.yaml" resid_mlp 20 20 "$rm_ident"
if SPD_OUT_DIR="$tmp/r" "$SPD" train "$tmp/rm.yaml" >"$tmp/out" 2>"$tmp/err" &&
    tail -1 "$(run_dir "$tmp/r")/metrics.jsonl" | python3 -c '
import json, sys
l = json.loads(sys.stdin.read())
for k in ["target_solution_error/layers.0.mlp_in", "target_solution_error/layers.0.mlp_out", "l0/0.1_layers.0.mlp_in"]:
    assert k in l, k
assert l["target_solution_error/total"] == l["target_solution_error/layers.0.mlp_in"] + l["target_solution_error/layers.0.mlp_out"]
assert not any(k.startswith("mmcs/") for k in l)'; then
    ok "resid_mlp: IdentityCIError per module (identity + dense), total = their sum"
else
    notok "resid_mlp eval" "$(head -3 "$tmp/err")"
fi

# An identity pattern that cannot fit (n_features 7 != 5) is refused before training.
bad_ident='  - classname: IdentityCIError
    identity_ci: [{layer_pattern: "linear1", n_features: 7}]
    dense_ci: null'
write_config "$tmp/bad.yaml" tms 20 40 "$bad_ident"
SPD_OUT_DIR="$tmp/b" "$SPD" train "$tmp/bad.yaml" >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ $rc -eq 2 ] && [ "$(grep -c '^spd' "$tmp/err")" -eq 1 ] && grep -q "IdentityCIError.*n_features 7" "$tmp/err" &&
    ! grep -q '^step' "$tmp/out"; then
    ok "IdentityCIError n_features that cannot fit: exit 2 at start, one line"
else
    notok "bad IdentityCIError" "rc $rc $(cat "$tmp/err")"
fi
