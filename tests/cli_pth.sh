#!/usr/bin/env bash
# spd export --format pth / spd import: a tied TMS run's model_<s>.safetensors
# exported and imported back is bit-exact (names, order, dtypes, shapes, bytes);
# the export ties linear2 to linear1 as torch does; --step, --out (with
# final_config.yaml copied beside), --dtype f32; import of model_<s>.pth picks
# up final_config.yaml as checkpoint metadata; bad input: one line, exit 2.
# Where the torch venv (.torch) and SPD's source (.peer/spd) exist (override:
# SPD_TORCH_PYTHON, SPD_PEER): torch.load(weights_only=True) and SPD's
# ComponentModel.load_state_dict(strict=True) on the export, SPD's outputs =
# spd.c's (tests/test_pth_outputs.c), and SPD's own torch.save of the loaded
# model imports to the run's tensors bit for bit.
set -u
SPD=${SPD_BIN:-build/spd}
TESTS_BIN=$(dirname "$SPD")/tests
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ok() { echo "ok - $1"; }
notok() { echo "not ok - $1${2:+: $2}"; }
check() { if eval "$2"; then ok "$1"; else notok "$1" "${3:-}"; fi; }

# Tensor names (in file order), dtypes, shapes and data hashes of a safetensors file.
tensors() {
    python3 - "$1" <<'PY'
import hashlib, json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
h.pop("__metadata__", None)
for k, v in sorted(h.items(), key=lambda kv: kv[1]["data_offsets"][0]):
    s, e = v["data_offsets"]
    print(k, v["dtype"], v["shape"], hashlib.sha256(b[8 + n + s:8 + n + e]).hexdigest())
PY
}
meta() {
    python3 - "$1" "$2" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
print(json.loads(b[8:8 + n]).get("__metadata__", {}).get(sys.argv[2], ""))
PY
}

cat >"$tmp/tms.yaml" <<'YAML'
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
  - classname: StochasticReconLoss
    coeff: 1.0
  - classname: FaithfulnessLoss
    coeff: 1.0
output_loss_type: mse
batch_size: 16
steps: 30
save_freq: 10
lr_schedule:
  start_val: 1e-2
  fn_type: cosine
  final_val_frac: 0.1
  warmup_pct: 0.1
faithfulness_warmup_steps: 5
train_log_freq: 10
eval_freq: 1000
n_eval_steps: 1
pretrained_model_class: spd.experiments.tms.models.TMSModel
task_config:
  task_name: tms
  feature_probability: 0.2
YAML
if ! SPD_OUT_DIR="$tmp/out" "$SPD" train "$tmp/tms.yaml" --tied >"$tmp/train.log" 2>&1; then
    notok "spd train (tied TMS) for the export" "$(tail -2 "$tmp/train.log")"
    exit 1
fi
run=$(find "$tmp/out/spd" -mindepth 1 -maxdepth 1 -type d | head -1)

# Export (latest step), import back: bit-exact.
"$SPD" export "$run" --format pth >"$tmp/exp.log" 2>&1
check "export writes the latest step's model_30.pth" '[ -f "$run/model_30.pth" ] && grep -q "3 tied as transposed views, 1 component biases shared with the target" "$tmp/exp.log"' "$(cat "$tmp/exp.log")"
"$SPD" import "$run/model_30.pth" --out "$tmp/back.safetensors" >"$tmp/imp.log" 2>&1
check "export then import: every tensor bit-exact, in order" '[ "$(tensors "$tmp/back.safetensors")" = "$(tensors "$run/model_30.safetensors")" ]' "$(cat "$tmp/imp.log")"
check "import of model_<s>.pth beside final_config.yaml: checkpoint metadata" \
    '[ "$(meta "$tmp/back.safetensors" format)" = spd-checkpoint-v1 ] && [ "$(meta "$tmp/back.safetensors" step)" = 30 ] && [ "$(meta "$tmp/back.safetensors" config)" = "$(cat "$run/final_config.yaml")" ]'

# --step, --out elsewhere (final_config.yaml copied), --dtype f32.
mkdir -p "$tmp/elsewhere"
"$SPD" export "$run" --step 10 --out "$tmp/elsewhere/model_10.pth" --dtype f32 >"$tmp/exp2.log" 2>&1
check "export --step 10 --out DIR/model_10.pth copies final_config.yaml" 'cmp -s "$tmp/elsewhere/final_config.yaml" "$run/final_config.yaml"' "$(cat "$tmp/exp2.log")"
"$SPD" import "$tmp/elsewhere/model_10.pth" >/dev/null 2>&1
check "export --dtype f32: float32 tensors" '"$SPD" info "$tmp/elsewhere/model_10.safetensors" | grep -q "_components.linear1.V  *F32" && ! "$SPD" info "$tmp/elsewhere/model_10.safetensors" | grep -q " F64 "'

# A lone model file: final_config.yaml written beside the .pth from the checkpoint's config metadata.
mkdir -p "$tmp/lone"
cp "$run/model_30.safetensors" "$tmp/lone/"
"$SPD" export "$tmp/lone/model_30.safetensors" >"$tmp/exp3.log" 2>&1
check "export of a lone model file writes final_config.yaml from its metadata" '[ -f "$tmp/lone/model_30.pth" ] && cmp -s "$tmp/lone/final_config.yaml" "$run/final_config.yaml"' "$(cat "$tmp/exp3.log")"

# Old SPD names, mapped as SPD's loader maps them.
"$SPD" import tests/refs/pth/old_names.pth --out "$tmp/old.safetensors" >/dev/null 2>&1
check "import maps old SPD names as SPD's loader does" '[ "$("$SPD" info "$tmp/old.safetensors" | awk "/^  [^ ]/ && NF >= 4 {print \$1}" | tr "\n" " ")" = "target_model.h.0.mlp.weight _components.h-0-mlp.U _components.h-1-attn.V _ci_fns.h-0-mlp.layers.0.W " ]' "$("$SPD" info "$tmp/old.safetensors" 2>&1 | tail -4 | tr '\n' ' ')"

# Bad input: one line on stderr naming the file, exit 2.
refuse() {  # $1 = name, $2 = phrase, rest = command
    local name=$1 phrase=$2
    shift 2
    "$@" >"$tmp/o" 2>"$tmp/e"
    local rc=$?
    check "$name" '[ $rc -eq 2 ] && [ "$(wc -l <"$tmp/e")" -eq 1 ] && grep -q -- "$phrase" "$tmp/e"' "rc $rc: $(cat "$tmp/e")"
}
head -c 1000 "$run/model_30.pth" >"$tmp/trunc.pth"
refuse "import refuses a truncated .pth" "trunc.pth: no end-of-central-directory" "$SPD" import "$tmp/trunc.pth"
printf 'not a zip' >"$tmp/junk.pth"
refuse "import refuses a non-zip file" "junk.pth" "$SPD" import "$tmp/junk.pth"
refuse "import refuses a global outside the subset" "posix.system' is not allowed" "$SPD" import tests/refs/pth/bad_global.pth --out "$tmp/x.safetensors"
refuse "import refuses a bad --meta" "expected KEY=VALUE" "$SPD" import "$run/model_30.pth" --meta novalue
refuse "import refuses a --meta key it sets itself" "step: key already set" "$SPD" import "$run/model_30.pth" --out "$tmp/m.safetensors" --meta step=3
"$SPD" import tests/refs/pth/old_names.pth --out "$tmp/meta.safetensors" --meta act_fn_name=relu >/dev/null 2>&1
check "import --meta KEY=VALUE adds metadata" '[ "$(meta "$tmp/meta.safetensors" act_fn_name)" = relu ]'
refuse "export refuses an unknown format" "expected pth" "$SPD" export "$run" --format onnx
refuse "export refuses a missing step" "no model_7.safetensors" "$SPD" export "$run" --step 7
mkdir -p "$tmp/empty"
refuse "export refuses a run dir without checkpoints" "no model_<step>.safetensors" "$SPD" export "$tmp/empty"
echo "different" >"$tmp/elsewhere/final_config.yaml"
refuse "export does not overwrite a different final_config.yaml" "exists and differs" "$SPD" export "$run" --out "$tmp/elsewhere/model_30.pth"

# Against PyTorch SPD, where its environment exists.
PY=${SPD_TORCH_PYTHON:-.torch/bin/python}
PEER=${SPD_PEER:-.peer/spd}
if [ -x "$PY" ] && [ -d "$PEER/spd" ] && "$PY" -c 'import torch, pydantic, yaml, safetensors' 2>/dev/null; then
    "$PY" tests/refgen/check_pth_export.py --spd-path "$PEER" "$run" 30 "$tmp/spd" 2>"$tmp/py.err"
    rc=$?
    [ $rc -eq 0 ] || notok "check_pth_export.py ran" "exit $rc: $(tail -3 "$tmp/py.err" | tr '\n' ' ')"
    if [ -f "$tmp/spd/io.safetensors" ]; then
        SPD_PTH_MODEL="$run/model_30.safetensors" SPD_PTH_IO="$tmp/spd/io.safetensors" "$TESTS_BIN/test_pth_outputs" \
            >"$tmp/outputs.log" 2>&1
        rc=$?
        cat "$tmp/outputs.log"
        # A crash (or an exit without a report) must count as a failure, not vanish.
        if [ $rc -ne 0 ] && ! grep -q '^not ok' "$tmp/outputs.log"; then
            notok "test_pth_outputs ran (SPD's outputs against spd.c's)" "exit $rc: $(tail -2 "$tmp/outputs.log" | tr '\n' ' ')"
        elif ! grep -q '^ok' "$tmp/outputs.log"; then
            notok "test_pth_outputs reported its comparisons" "$(tail -2 "$tmp/outputs.log" | tr '\n' ' ')"
        fi
        "$SPD" import "$tmp/spd/model_30.pth" >"$tmp/imp3.log" 2>&1
        check "SPD's own torch.save of the loaded model imports to the run's tensors bit for bit" \
            '[ "$(tensors "$tmp/spd/model_30.safetensors")" = "$(tensors "$run/model_30.safetensors")" ]' "$(cat "$tmp/imp3.log")"
    fi
else
    echo "# skip: no torch venv with pydantic at $PY or no SPD source at $PEER (checks against PyTorch SPD)"
fi
