#!/usr/bin/env bash
# spd train: a tiny TMS run writes final_config.yaml (which checks cleanly) and
# one metrics.jsonl line per logged step with SPD's keys, lowers the total loss,
# is reproducible from its seed; tied TMS and ResidMLP targets from safetensors
# files, random ResidMLP targets and the faithfulness warm-up run; a diverged
# run stops with one line (exit 1); lm tasks and bad configs are refused with
# one stderr line (exit 2).
set -u
SPD=${SPD_BIN:-build/spd}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ok() { echo "ok - $1"; }
notok() { echo "not ok - $1${2:+: $2}"; }

write_config() {  # $1 = file, $2 = extra loss entry (YAML lines) or empty, $3 = task name, $4 = extra top-level lines
    local task="task_config:
  task_name: $3
  feature_probability: 0.2"
    [ "$3" = lm ] && task="task_config:
  task_name: lm"
    local pattern="linear*"
    [ "$3" = resid_mlp ] && pattern="layers.*.mlp_*"
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
${4:-}
$task
YAML
}

run_dir() { find "$1/spd" -mindepth 1 -maxdepth 1 -type d | head -1; }
total_of() { sed 's/.*"train\/loss\/total": \([^,}]*\).*/\1/'; }

write_config "$tmp/good.yaml" "" tms
if SPD_OUT_DIR="$tmp/a" "$SPD" train "$tmp/good.yaml" >"$tmp/out" 2>"$tmp/err"; then
    d=$(run_dir "$tmp/a")
    n=$(grep -c '"train/loss/total"' "$d/metrics.jsonl")  # (+ the eval line at step 0)
    if [ "$n" -eq 5 ] && "$SPD" config check "$d/final_config.yaml" >/dev/null 2>&1; then
        ok "spd train writes final_config.yaml (valid) and 5 metrics lines (steps 0, 10, ..., 40)"
    else
        notok "spd train outputs" "metrics lines $n"
    fi
    case "$(basename "$d")" in
    s-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]) ok "run id is s- + 8 hex chars ($(basename "$d"))" ;;
    *) notok "run id is s- + 8 hex chars" "$(basename "$d")" ;;
    esac
    missing=""
    for k in '"step": 40' train/loss/ImportanceMinimalityLoss train/loss/StochasticReconLoss \
        train/loss/FaithfulnessLoss train/loss/total train/l0/linear1 train/l0/linear2 \
        train/grad_norms/components/linear1.V train/grad_norms/components/linear2.U \
        train/grad_norms/ci_fns/linear1.layers.0.W train/grad_norms/ci_fns/linear2.layers.2.b \
        train/grad_norms/summary/components train/grad_norms/summary/ci_fns train/grad_norms/summary/total \
        train/schedules/lr; do
        tail -1 "$d/metrics.jsonl" | grep -qF "$k" || missing="$missing $k"
    done
    if [ -z "$missing" ] && python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$d/metrics.jsonl"; then
        ok "metrics.jsonl lines are JSON with SPD's keys (losses, total, l0, grad norms, lr, step)"
    else
        notok "metrics.jsonl keys" "missing:$missing"
    fi
    if grep -q "^memory" "$tmp/out" && grep -q "lr_schedule" "$tmp/out" && grep -q "modules .*linear1 C 6" "$tmp/out" &&
        [ "$(grep -c '^step .*ms/step .*steps/s .*ETA' "$tmp/out")" -eq 5 ] &&
        grep '^step *40/40' "$tmp/out" | grep -q 'FaithfulnessLoss .*total .*lr '; then
        ok "stdout: start-up table with the memory account, one line per logged step (terms, total, lr, ms/step, steps/s, ETA)"
    else
        notok "stdout table and step lines" "$(head -3 "$tmp/out")"
    fi
    first=$(head -1 "$d/metrics.jsonl" | total_of)
    last=$(tail -1 "$d/metrics.jsonl" | total_of)
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

# steps = 45, train_log_freq 10: SPD logs only at step % 10 == 0 (0..40), and runs 46 iterations.
sed 's/^steps: 40/steps: 45/' "$tmp/good.yaml" >"$tmp/s45.yaml"
if SPD_OUT_DIR="$tmp/s45" "$SPD" train "$tmp/s45.yaml" >"$tmp/out" 2>"$tmp/err" &&
    [ "$(grep -c '"train/' "$(run_dir "$tmp/s45")/metrics.jsonl")" -eq 5 ] && grep -q "^done: 45 steps (+1 log-only)" "$tmp/out"; then
    ok "steps 45, train_log_freq 10: logs at steps 0..40 only (SPD's cadence), 45 + 1 iterations"
else
    notok "steps 45 cadence" "$(tail -2 "$tmp/out") $(head -2 "$tmp/err")"
fi

# Clipping per group: the logged gradient norms are before clipping (step 0 equal to the
# unclipped run's), and the clipped run then differs.
write_config "$tmp/clip.yaml" "" tms "grad_clip_norm_components: 0.01
grad_clip_norm_ci_fns: 0.001"
if [ -n "${d:-}" ] && SPD_OUT_DIR="$tmp/clip" "$SPD" train "$tmp/clip.yaml" >/dev/null 2>"$tmp/err"; then
    dc=$(run_dir "$tmp/clip")
    if [ "$(grep '"train/' "$dc/metrics.jsonl" | head -1)" = "$(grep '"train/' "$d/metrics.jsonl" | head -1)" ] &&
        [ "$(grep '"train/' "$dc/metrics.jsonl" | sed -n 2p)" != "$(grep '"train/' "$d/metrics.jsonl" | sed -n 2p)" ]; then
        ok "grad_clip_norm_*: norms logged before clipping (step 0 as unclipped), later steps differ"
    else
        notok "grad_clip_norm_*" "step 0 lines differ or step 10 lines equal"
    fi
else
    notok "grad_clip_norm_* run" "$(head -2 "$tmp/err")"
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

# Faithfulness warm-up before the main loop (logged at warm-up steps 0, 100 and the last, 119).
write_config "$tmp/warm.yaml" "" tms "faithfulness_warmup_steps: 120
faithfulness_warmup_lr: 0.01"
if SPD_OUT_DIR="$tmp/w" "$SPD" train "$tmp/warm.yaml" >"$tmp/out" 2>"$tmp/err" &&
    [ "$(grep -c '^warm-up  *[0-9]' "$tmp/out")" -eq 3 ] && grep -q '^warm-up done' "$tmp/out"; then
    f0=$(grep '^warm-up  *0/' "$tmp/out" | awk '{print $4}')
    f1=$(grep '^warm-up done' "$tmp/out" | awk '{print $4}')
    if awk -v a="$f0" -v b="$f1" 'BEGIN { exit !(b < a / 2) }'; then
        ok "faithfulness warm-up runs first and lowers the faithfulness loss ($f0 -> $f1)"
    else
        notok "faithfulness warm-up lowers the faithfulness loss" "$f0 -> $f1"
    fi
else
    notok "faithfulness warm-up" "$(head -2 "$tmp/err")"
fi

# Random ResidMLP target.
write_config "$tmp/rm.yaml" "" resid_mlp
if SPD_OUT_DIR="$tmp/r" "$SPD" train "$tmp/rm.yaml" >"$tmp/out" 2>"$tmp/err" &&
    tail -1 "$(run_dir "$tmp/r")/metrics.jsonl" | grep -q '"train/l0/layers.0.mlp_out"' &&
    grep -q "target .*ResidMLP .*random" "$tmp/out"; then
    ok "spd train runs a resid_mlp task (random target, layers.*.mlp_* decomposed)"
else
    notok "spd train on resid_mlp" "$(head -2 "$tmp/err")"
fi

# Targets from safetensors files: a tied TMS (bare names) and a ResidMLP (target_model. prefix).
python3 - "$tmp" <<'PY'
import json, random, struct, sys
def save(path, tensors, meta=None):
    header, data = {"__metadata__": meta or {"format": "pt"}}, b""
    for name, shape, vals in tensors:
        raw = struct.pack("<%dd" % len(vals), *vals)
        header[name] = {"dtype": "F64", "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode(); h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + data)
r = random.Random(1)
F, H = 5, 2
w1 = [r.uniform(-1, 1) for _ in range(H * F)]                       # [H, F]
w2 = [w1[i * F + f] for f in range(F) for i in range(H)]            # [F, H] = w1^T
save(sys.argv[1] + "/tms_tied.safetensors",
     [("linear1.weight", [H, F], w1), ("linear2.weight", [F, H], w2), ("linear2.bias", [F], [0.0] * F)])
w2u = [v + 0.25 for v in w2]
save(sys.argv[1] + "/tms_untied.safetensors",
     [("target_model.linear1.weight", [H, F], w1), ("target_model.linear2.weight", [F, H], w2u),
      ("target_model.linear2.bias", [F], [0.1] * F)])
F, D, M = 4, 3, 5
t = [("target_model.W_E", [F, D], [r.gauss(0, 0.5) for _ in range(F * D)]),
     ("target_model.W_U", [D, F], [r.gauss(0, 0.5) for _ in range(D * F)]),
     ("target_model.layers.0.mlp_in.weight", [M, D], [r.uniform(-0.5, 0.5) for _ in range(M * D)]),
     ("target_model.layers.0.mlp_in.bias", [M], [r.uniform(-0.5, 0.5) for _ in range(M)]),
     ("target_model.layers.0.mlp_out.weight", [D, M], [r.uniform(-0.5, 0.5) for _ in range(D * M)]),
     ("target_model.layers.0.mlp_out.bias", [D], [r.uniform(-0.5, 0.5) for _ in range(D)])]
save(sys.argv[1] + "/resid.safetensors", t, {"format": "pt", "act_fn_name": "gelu"})
PY
write_config "$tmp/tied.yaml" "" tms "pretrained_model_path: $tmp/tms_tied.safetensors"
if SPD_OUT_DIR="$tmp/t" "$SPD" train "$tmp/tied.yaml" >"$tmp/out" 2>"$tmp/err" &&
    grep -q "target .*TMS n_features 5, n_hidden 2, n_hidden_layers 0, tied" "$tmp/out" &&
    grep -q "linear2 C 6 (tied)" "$tmp/out" && ! grep -q "target is random" "$tmp/err"; then
    first=$(head -1 "$(run_dir "$tmp/t")/metrics.jsonl" | total_of)
    last=$(tail -1 "$(run_dir "$tmp/t")/metrics.jsonl" | total_of)
    if awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }'; then
        ok "tied TMS target from a safetensors file: tied components, loss falls ($first -> $last)"
    else
        notok "tied TMS target trains" "$first -> $last"
    fi
else
    notok "tied TMS target from a safetensors file" "$(head -2 "$tmp/err") $(grep target "$tmp/out")"
fi
write_config "$tmp/untied.yaml" "" tms "pretrained_model_path: $tmp/tms_untied.safetensors"
if SPD_OUT_DIR="$tmp/u" "$SPD" train "$tmp/untied.yaml" >"$tmp/out" 2>"$tmp/err" &&
    grep -q "target .*TMS .*untied" "$tmp/out" && ! grep -q "(tied)" "$tmp/out"; then
    ok "untied TMS target from a safetensors file (target_model. prefix)"
else
    notok "untied TMS target from a file" "$(head -2 "$tmp/err")"
fi
write_config "$tmp/rmf.yaml" "" resid_mlp "pretrained_model_path: $tmp/resid.safetensors"
if SPD_OUT_DIR="$tmp/rf" "$SPD" train "$tmp/rmf.yaml" >"$tmp/out" 2>"$tmp/err" &&
    grep -q "target .*ResidMLP n_features 4, d_embed 3, d_mlp 5, n_layers 1, gelu" "$tmp/out"; then
    ok "ResidMLP target from a safetensors file (sizes from the shapes, act from the metadata)"
else
    notok "ResidMLP target from a file" "$(head -2 "$tmp/err") $(grep target "$tmp/out")"
fi

python3 - "$tmp/tms_bad.safetensors" <<'PY'
import json, struct, sys
h = {"linear1.weight": {"dtype": "F64", "shape": [2, 5], "data_offsets": [0, 80]},
     "linear2.weight": {"dtype": "F64", "shape": [5, 2], "data_offsets": [80, 160]},
     "linear2.bias": {"dtype": "F64", "shape": [4], "data_offsets": [160, 192]}}
b = json.dumps(h).encode(); b += b" " * (-len(b) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(b)) + b + struct.pack("<24d", *range(24)))
PY
write_config "$tmp/badfile.yaml" "" tms "pretrained_model_path: $tmp/tms_bad.safetensors"
SPD_OUT_DIR="$tmp/x" "$SPD" train "$tmp/badfile.yaml" >/dev/null 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "linear2.bias" "$tmp/err"; then
    ok "a target file with a wrong shape is refused (exit 2, one line: $(cat "$tmp/err"))"
else
    notok "a target file with a wrong shape is refused" "rc $rc: $(head -3 "$tmp/err")"
fi

# A diverged run: one line naming the term and the step, exit 1.
sed 's/start_val: 1e-2/start_val: 1e200/' "$tmp/good.yaml" >"$tmp/nan.yaml"
SPD_OUT_DIR="$tmp/n" "$SPD" train "$tmp/nan.yaml" >/dev/null 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 1 ] && [ "$(grep -c 'error' "$tmp/err")" -eq 1 ] &&
    grep -qE 'diverged: train/loss/[A-Za-z]+ is (nan|inf) at step [0-9]+$' "$tmp/err"; then
    ok "a diverged run (lr 1e200) stops with one line: $(grep error "$tmp/err")"
else
    notok "a diverged run stops" "rc $rc: $(head -3 "$tmp/err")"
fi

# Refusals: one stderr line, exit 2.
refuse() {  # $1 = name, $2 = config file, $3 = expected text (grep -E)
    SPD_OUT_DIR="$tmp/x" "$SPD" train "$2" >/dev/null 2>"$tmp/err"
    local rc=$?
    if [ "$rc" -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -qE "$3" "$tmp/err"; then
        ok "refuses $1 (exit 2, one line: $(cat "$tmp/err"))"
    else
        notok "refuses $1" "rc $rc: $(head -3 "$tmp/err")"
    fi
}
write_config "$tmp/lm.yaml" "" lm
refuse "an lm task" "$tmp/lm.yaml" "LM data loading is not built yet"
write_config "$tmp/unknown.yaml" "" tms "no_such_key: 1"
refuse "an unknown key" "$tmp/unknown.yaml" "no_such_key"
sed 's/^batch_size: 32/batch_size: many/' "$tmp/good.yaml" >"$tmp/type.yaml"
refuse "a value of the wrong type" "$tmp/type.yaml" "batch_size"
grep -v '^n_mask_samples' "$tmp/good.yaml" >"$tmp/missing.yaml"
refuse "a missing field" "$tmp/missing.yaml" "n_mask_samples"
sed 's/^output_loss_type: mse/output_loss_type: l1/' "$tmp/good.yaml" >"$tmp/enum.yaml"
refuse "a bad enum value" "$tmp/enum.yaml" "output_loss_type"
sed 's/^steps: 40/steps: -3/' "$tmp/good.yaml" >"$tmp/neg.yaml"
refuse "negative steps" "$tmp/neg.yaml" "steps"
sed 's/module_pattern: "linear\*"/module_pattern: "lin_nope*"/' "$tmp/good.yaml" >"$tmp/pat.yaml"
refuse "a module pattern that matches nothing" "$tmp/pat.yaml" "lin_nope\*"
SPD_OUT_DIR="$tmp/x" "$SPD" train "$tmp/good.yaml" --precision float32 >/dev/null 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "float32" "$tmp/err"; then
    ok "--precision float32 is refused for now (exit 2, one line)"
else
    notok "--precision float32 is refused for now" "rc $rc: $(head -3 "$tmp/err")"
fi
if ! [ -e "$tmp/x" ] || [ -z "$(find "$tmp/x" -name metrics.jsonl)" ]; then
    ok "refused runs write no metrics.jsonl"
else
    notok "refused runs write no metrics.jsonl"
fi
