#!/usr/bin/env bash
# spd eval CHECKPOINT (src/cli/eval_cmd.c): a short run's final checkpoint evaluated again
# gives exactly the metrics.jsonl line that run logged at its final (slow) eval step (same
# keys, same values at %.17g: the eval batches are keyed by (seed, step, eval index)) and
# the same end-of-run summary; for a tied TMS run, a ResidMLP run with an inserted identity,
# and a run exported to .pth and imported back; the config from the metadata, from
# final_config.yaml beside the file, or --config; the default output directory; bad input
# (missing or unexpected tensor, shape mismatch, unknown config key, no config, a .pth,
# an existing metrics.jsonl): one line, exit 2.
set -u
SPD=${SPD_BIN:-build/spd}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ok() { echo "ok - $1"; }
notok() { echo "not ok - $1${2:+: $2}"; }
check() { if eval "$2"; then ok "$1"; else notok "$1" "${3:-}"; fi; }
run_dir() { find "$1/spd" -mindepth 1 -maxdepth 1 -type d | head -1; }

write_config() {  # $1 = file, $2 = tms | resid_mlp, $3 = extra top-level lines
    local modules='  - module_pattern: "linear*"
    C: 6' task="tms" cls="spd.experiments.tms.models.TMSModel" ident='  - classname: IdentityCIError
    identity_ci: [{layer_pattern: "linear1", n_features: 5}]
    dense_ci: null'
    if [ "$2" = resid_mlp ]; then
        modules='  - module_pattern: "layers.*.mlp_in"
    C: 6
  - module_pattern: "layers.*.mlp_out"
    C: 6' task="resid_mlp" cls="spd.experiments.resid_mlp.models.ResidMLP"
        ident='  - classname: IdentityCIError
    identity_ci: [{layer_pattern: "layers.*.mlp_in", n_features: 5}]
    dense_ci: [{layer_pattern: "layers.*.mlp_out", k: 1}]'
    fi
    cat >"$1" <<YAML
seed: 3
n_mask_samples: 1
ci_fn_type: mlp
ci_fn_hidden_dims: [4]
module_info:
$modules
$3
loss_metric_configs:
  - classname: ImportanceMinimalityLoss
    coeff: 3e-4
    pnorm: 1.0
    beta: 0.0
  - classname: StochasticReconLoss
    coeff: 1.0
output_loss_type: mse
batch_size: 32
eval_batch_size: 16
steps: 40
lr_schedule:
  start_val: 1e-3
train_log_freq: 10
eval_freq: 20
slow_eval_freq: 40
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
$ident
pretrained_model_class: $cls
task_config:
  task_name: $task
  feature_probability: 0.2
YAML
}

# The summary after its first line (train's names the final training losses, eval's does not),
# without the figures line (it names the output directory).
summary() { sed -n '/^summary (step/,$p' "$1" | tail -n +2 | grep -v '^  figures: '; }

# $1 = name, $2 = run dir, $3 = eval stdout, $4 = eval output dir
same_as_run() {
    local name=$1 run=$2 out=$3 edir=$4 final
    final=$(grep -v '"train/' "$run/metrics.jsonl" | tail -1)
    if [ -n "$final" ] && [ "$(cat "$edir/metrics.jsonl" 2>/dev/null)" = "$final" ]; then
        ok "$name: eval's metrics.jsonl line = the run's final eval line (every key and value, %.17g)"
    else
        notok "$name: eval's metrics.jsonl line = the run's final eval line" \
            "$(diff <(echo "$final" | tr ',' '\n') <(tr ',' '\n' <"$edir/metrics.jsonl" 2>/dev/null) | head -6 | tr '\n' ' ')"
    fi
    check "$name: the same end-of-run summary (alive, significant, per-feature matches, MMCS / ML2R)" \
        '[ -n "$(summary "$out")" ] && [ "$(summary "$out")" = "$(summary "$run/train.out")" ]' \
        "$(diff <(summary "$run/train.out") <(summary "$out") | head -4 | tr '\n' ' ')"
}

# 1. Tied TMS: train 40 steps (final eval at 40 is slow), eval model_40.
write_config "$tmp/tms.yaml" tms ""
if SPD_OUT_DIR="$tmp/a" "$SPD" train "$tmp/tms.yaml" --tied >"$tmp/train.out" 2>"$tmp/train.err"; then
    d=$(run_dir "$tmp/a")
    cp "$tmp/train.out" "$d/train.out"
    "$SPD" eval "$d/model_40.safetensors" --out "$tmp/e1" >"$tmp/e1.out" 2>"$tmp/e1.err"
    check "tms: spd eval exits 0" '[ $? -eq 0 ]' "$(head -2 "$tmp/e1.err")"
    same_as_run tms "$d" "$tmp/e1.out" "$tmp/e1"
    check "tms: the final keys (mmcs, ml2r, n_significant) and IdentityCIError are in it" \
        'grep -q "\"n_significant/linear1\": [0-9]*," "$tmp/e1/metrics.jsonl" && grep -q "\"mmcs/linear2\"" "$tmp/e1/metrics.jsonl" && grep -q "target_solution_error/total\"" "$tmp/e1/metrics.jsonl"'
    figs=0
    for k in figures_causal_importance_values_40.png figures_component_activation_density_40.png \
        figures_ci_mean_per_component_40.png l0_bar_chart_40.json subcomponents_linear1_40.png ci_per_feature_40.png; do
        [ -s "$tmp/e1/figures/$k" ] && figs=$((figs + 1))
    done
    check "tms: figures/ under --out (eval figures and the summary's)" '[ $figs -eq 6 ]' "$(ls "$tmp/e1/figures" | tr '\n' ' ')"

    # Exported to .pth (float64) and imported back: the same evaluation.
    mkdir -p "$tmp/x"
    "$SPD" export "$d" --format pth --out "$tmp/x/model_40.pth" >/dev/null 2>&1
    "$SPD" import "$tmp/x/model_40.pth" >/dev/null 2>&1
    "$SPD" eval "$tmp/x/model_40.safetensors" --out "$tmp/e2" >"$tmp/e2.out" 2>"$tmp/e2.err"
    check "tms: export to .pth + import + eval = the run's final eval line" \
        '[ "$(cat "$tmp/e2/metrics.jsonl" 2>/dev/null)" = "$(cat "$tmp/e1/metrics.jsonl")" ]' "$(head -2 "$tmp/e2.err")"

    # Config from final_config.yaml beside a file without metadata; --config; the default out dir.
    mkdir -p "$tmp/bare"
    python3 - "$d/model_40.safetensors" "$tmp/bare/model_40.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
h.pop("__metadata__")
hb = json.dumps(h).encode()
hb += b" " * (-len(hb) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(hb)) + hb + b[8 + n:])
PY
    cp "$d/final_config.yaml" "$tmp/bare/"
    "$SPD" eval "$tmp/bare/model_40.safetensors" --out "$tmp/e3" >"$tmp/e3.out" 2>"$tmp/e3.err"
    check "tms: no metadata: the config from final_config.yaml beside it, the step from the name" \
        'grep -q "config  *$tmp/bare/final_config.yaml" "$tmp/e3.out" && [ "$(cat "$tmp/e3/metrics.jsonl" 2>/dev/null)" = "$(cat "$tmp/e1/metrics.jsonl")" ]' \
        "$(head -2 "$tmp/e3.err")"
    SPD_OUT_DIR="$tmp/def" "$SPD" eval "$tmp/bare/model_40.safetensors" --config "$tmp/tms.yaml" --n-eval-steps 2 \
        >"$tmp/e4.out" 2>"$tmp/e4.err"
    e4=$(run_dir "$tmp/def" 2>/dev/null)
    check "tms: --config FILE, --n-eval-steps 2, default output \$SPD_OUT_DIR/spd/<run_id>" \
        '[ -n "$e4" ] && [ "$(wc -l <"$e4/metrics.jsonl")" -eq 1 ] && grep -q "eval data  *2 batches of 16" "$tmp/e4.out" && [ "$(cat "$e4/metrics.jsonl")" != "$(cat "$tmp/e1/metrics.jsonl")" ]' \
        "$(head -2 "$tmp/e4.err")"

    # Bad input: one line on stderr, exit 2.
    refuse() {  # $1 = name, $2 = phrase, rest = command
        local name=$1 phrase=$2
        shift 2
        "$@" >"$tmp/o" 2>"$tmp/e"
        local rc=$?
        check "$name" '[ $rc -eq 2 ] && [ "$(wc -l <"$tmp/e")" -eq 1 ] && grep -q -- "$phrase" "$tmp/e"' "rc $rc: $(cat "$tmp/e")"
    }
    edit() {  # $1 = in, $2 = out, $3 = python statement on the header dict h and the data bytes d
        python3 - "$1" "$2" "$3" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
d = b[8 + n:]
exec(sys.argv[3])
hb = json.dumps(h).encode()
hb += b" " * (-len(hb) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(hb)) + hb + d)
PY
    }
    edit "$d/model_40.safetensors" "$tmp/missing.safetensors" 'h.pop("_ci_fns.linear1.layers.0.W")'
    refuse "refuses a checkpoint without a CI-fn tensor" "no tensor '_ci_fns.linear1.layers.0.W'" \
        "$SPD" eval "$tmp/missing.safetensors" --out "$tmp/bad1"
    edit "$d/model_40.safetensors" "$tmp/extra.safetensors" '
v = h["_components.linear1.V"]; s, e = v["data_offsets"]
h["_components.linear3.V"] = dict(v, data_offsets=[len(d), len(d) + e - s]); d += d[s:e]'
    refuse "refuses a checkpoint with a tensor the model does not have" "unexpected tensor '_components.linear3.V'" \
        "$SPD" eval "$tmp/extra.safetensors" --out "$tmp/bad2"
    sed 's/^    C: 6$/    C: 7/' "$tmp/tms.yaml" >"$tmp/c7.yaml"
    refuse "refuses a config whose C differs from the checkpoint's" "expected shape" \
        "$SPD" eval "$d/model_40.safetensors" --config "$tmp/c7.yaml" --out "$tmp/bad3"
    { cat "$tmp/tms.yaml"; echo "no_such_key: 1"; } >"$tmp/unknown.yaml"
    refuse "refuses a config with an unknown key" "no_such_key: unknown key" \
        "$SPD" eval "$d/model_40.safetensors" --config "$tmp/unknown.yaml" --out "$tmp/bad4"
    mkdir -p "$tmp/lone" && cp "$tmp/bare/model_40.safetensors" "$tmp/lone/"
    refuse "refuses a checkpoint with no config anywhere (names all three sources)" \
        "no 'config' metadata, there is no .*final_config.yaml, and no --config" \
        "$SPD" eval "$tmp/lone/model_40.safetensors" --out "$tmp/bad5"
    refuse "refuses a .pth (names spd import)" "spd import" "$SPD" eval "$tmp/x/model_40.pth"
    refuse "refuses an --out whose metrics.jsonl exists" "metrics.jsonl exists" \
        "$SPD" eval "$d/model_40.safetensors" --out "$tmp/e1"
else
    notok "spd train (tied TMS) for spd eval" "$(head -3 "$tmp/train.err")"
fi

# 2. ResidMLP with an identity inserted before every mlp_in (decomposed as layers.0.mlp_in.pre_identity).
write_config "$tmp/rm.yaml" resid_mlp 'identity_module_info:
  - module_pattern: "layers.*.mlp_in"
    C: 4'
if SPD_OUT_DIR="$tmp/r" "$SPD" train "$tmp/rm.yaml" >"$tmp/rtrain.out" 2>"$tmp/rtrain.err"; then
    d=$(run_dir "$tmp/r")
    cp "$tmp/rtrain.out" "$d/train.out"
    "$SPD" eval "$d/model_40.safetensors" --out "$tmp/re" >"$tmp/re.out" 2>"$tmp/re.err"
    check "resid_mlp + identity: spd eval exits 0" '[ $? -eq 0 ]' "$(head -2 "$tmp/re.err")"
    same_as_run "resid_mlp + identity" "$d" "$tmp/re.out" "$tmp/re"
    check "resid_mlp + identity: pre_identity module evaluated, no TMS keys" \
        'grep -q "l0/0.1_layers.0.mlp_in.pre_identity" "$tmp/re/metrics.jsonl" && ! grep -q "n_significant\|mmcs" "$tmp/re/metrics.jsonl"'
else
    notok "spd train (resid_mlp + identity) for spd eval" "$(head -3 "$tmp/rtrain.err")"
fi
