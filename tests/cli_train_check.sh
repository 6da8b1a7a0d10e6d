#!/usr/bin/env bash
# spd check on the spd-ref-train-v1 files (tests/refs/train, docs/spd-ref-train-v1.md):
# the ones the C trainer supports must pass; the ones needing what spd.c does not
# implement yet are refused (exit 2, one line naming what is missing); tampered
# expectations fail (exit 1); malformed files are refused (exit 2).
#
# The lists below are explicit: when support lands (or a file is regenerated),
# move the file from REFUSED / KNOWN_FAIL to PASS consciously.
set -u
SPD=${SPD_BIN:-build/spd}
REFS=tests/refs/train
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ok() { echo "ok - $1"; }
notok() { echo "not ok - $1${2:+: $2}"; }

PASS=(train_tms_basic train_tms_stochastic train_tms_pgd train_resid_mlp train_llama_kl train_llama_binomial
      train_llama_embed train_tms_10steps train_tms_identity train_resid_mlp_identity
      train_llama_identity)
# file -> the refusal (exit 2) naming what spd.c lacks (none at the moment)
declare -A REFUSED=()

for name in "${PASS[@]}"; do
    r=$REFS/$name.safetensors
    [ -f "$r" ] || { notok "$name present"; continue; }
    out=$("$SPD" check "$r" 2>&1); status=$?
    if [ $status -eq 0 ] && echo "$out" | grep -q "$name.safetensors: PASS (0 tensors failed)" &&
        echo "$out" | grep -q 'draws consumed: .* ok$'; then
        ok "spd check passes $name (float64, every draw consumed)"
    else
        notok "spd check passes $name" "status $status: $(echo "$out" | grep -E 'FAIL|spd:' | head -5)"
    fi
done

for name in "${!REFUSED[@]}"; do
    r=$REFS/$name.safetensors
    "$SPD" check "$r" >/dev/null 2>"$tmp/err"; status=$?
    lines=$(wc -l <"$tmp/err")
    if [ $status -eq 2 ] && [ "$lines" -eq 1 ] && grep -q "^spd: $r: ${REFUSED[$name]}" "$tmp/err"; then
        ok "$name is refused (exit 2: $(cat "$tmp/err"))"
    else
        notok "$name refused" "status $status, $lines lines: $(head -3 "$tmp/err")"
    fi
done


# Rewrites a reference: $1 source, $2 output, $3 python statements on `meta` (dict) and
# `tensors` (name -> [dtype, shape, bytes]); the file is re-packed.
edit_ref() {
    python3 - "$1" "$2" "$3" <<'PY'
import json, struct, sys
src, dst, code = sys.argv[1:4]
with open(src, 'rb') as f:
    n = struct.unpack('<Q', f.read(8))[0]
    header = json.loads(f.read(n))
    data = f.read()
meta = header.pop('__metadata__', {})
tensors = {k: [v['dtype'], v['shape'], data[v['data_offsets'][0]:v['data_offsets'][1]]] for k, v in header.items()}
exec(code)
out, blob = {'__metadata__': meta}, b''
for k, (dt, shape, b) in tensors.items():
    out[k] = {'dtype': dt, 'shape': shape, 'data_offsets': [len(blob), len(blob) + len(b)]}
    blob += b
h = json.dumps(out).encode()
h += b' ' * (-len(h) % 8)
with open(dst, 'wb') as f:
    f.write(struct.pack('<Q', len(h)) + h + blob)
PY
}
BASIC=$REFS/train_tms_basic.safetensors

# A wrong expected gradient must be caught: scale one by 1 + 1e-6.
edit_ref "$BASIC" "$tmp/tampered.safetensors" '
name = "expected.grad._components.linear1.V"
dt, shape, b = tensors[name]
vals = struct.unpack("<%dd" % (len(b) // 8), b)
tensors[name][2] = struct.pack("<%dd" % len(vals), *[v * (1 + 1e-6) for v in vals])'
"$SPD" check "$tmp/tampered.safetensors" >"$tmp/out" 2>&1; status=$?
if [ $status -eq 1 ] && grep -q '^float64  expected.grad._components.linear1.V .*FAIL$' "$tmp/out" &&
    [ "$(grep -c 'FAIL$' "$tmp/out")" -eq 1 ]; then
    ok "an expected gradient off by 1e-6 fails (exit 1) and nothing else does"
else
    notok "tampered gradient detected" "status $status: $(grep FAIL "$tmp/out" | head -3)"
fi

# A wrong loss value (one term) fails too.
edit_ref "$BASIC" "$tmp/tampered_loss.safetensors" '
name = "expected.loss.StochasticReconLoss"
v = struct.unpack("<d", tensors[name][2])[0]
tensors[name][2] = struct.pack("<d", v * (1 + 1e-7))'
"$SPD" check "$tmp/tampered_loss.safetensors" >"$tmp/out" 2>&1; status=$?
if [ $status -eq 1 ] && grep -q 'expected.loss.StochasticReconLoss .*FAIL$' "$tmp/out"; then
    ok "a loss term off by 1e-7 fails (exit 1)"
else
    notok "tampered loss detected" "status $status"
fi

# A stored draw the step does not consume fails (exit 1): draws and step must agree.
edit_ref "$BASIC" "$tmp/extra_draw.safetensors" 'tensors["draws.7.0.linear1.r"] = list(tensors["draws.2.0.linear1.r"])'
"$SPD" check "$tmp/extra_draw.safetensors" >"$tmp/out" 2>&1; status=$?
if [ $status -eq 1 ] && grep -q 'draws consumed: 8 of 9 .*FAIL$' "$tmp/out" && grep -q 'draws.7.0.linear1.r' "$tmp/out"; then
    ok "an unconsumed draw fails (exit 1) and is named"
else
    notok "unconsumed draw detected" "status $status: $(grep -i draw "$tmp/out" | head -3)"
fi

# A multi-step run: a wrong loss at step 5 (1e-5 off, bound 1e-6) and a wrong final
# parameter (1e-5 off) fail, and nothing else does.
edit_ref "$REFS/train_tms_10steps.safetensors" "$tmp/run.safetensors" '
v = struct.unpack("<d", tensors["expected.step5.loss.total"][2])[0]
tensors["expected.step5.loss.total"][2] = struct.pack("<d", v * (1 + 1e-5))
name = "expected.final._ci_fns.linear2.layers.0.W"
b = tensors[name][2]
vals = struct.unpack("<%dd" % (len(b) // 8), b)
tensors[name][2] = struct.pack("<%dd" % len(vals), *[x * (1 + 1e-5) for x in vals])'
"$SPD" check "$tmp/run.safetensors" >"$tmp/out" 2>&1; status=$?
if [ $status -eq 1 ] && [ "$(grep -c 'FAIL$' "$tmp/out")" -eq 2 ] &&
    grep -q 'expected.step5.loss.total .*FAIL$' "$tmp/out" &&
    grep -q 'expected.final._ci_fns.linear2.layers.0.W .*FAIL$' "$tmp/out"; then
    ok "a 10-step run with a wrong step-5 total and a wrong final parameter fails on exactly those (exit 1)"
else
    notok "tampered run detected" "status $status: $(grep FAIL "$tmp/out" | head -3)"
fi

# Malformed files: exit 2, one line on stderr naming the file and the problem.
expect_input_error() {  # description file pattern
    "$SPD" check "$2" >/dev/null 2>"$tmp/err"
    local status=$? lines
    lines=$(wc -l <"$tmp/err")
    if [ $status -eq 2 ] && [ "$lines" -eq 1 ] && grep -q "^spd: .*$3" "$tmp/err"; then
        ok "$1 (exit 2: $(cat "$tmp/err"))"
    else
        notok "$1" "status $status, $lines lines: $(head -3 "$tmp/err")"
    fi
}
edit_ref "$BASIC" "$tmp/nodraw.safetensors" 'del tensors["draws.2.0.linear1.r"]'
expect_input_error "a draw the step needs is missing" "$tmp/nodraw.safetensors" \
    "the step asked for draw 'draws.2.0.linear1.r' (48 values), which the file does not have"
edit_ref "$BASIC" "$tmp/noexp.safetensors" 'del tensors["expected.grad._ci_fns.linear2.layers.2.b"]'
expect_input_error "a missing expected gradient is refused" "$tmp/noexp.safetensors" \
    "tensor 'expected.grad._ci_fns.linear2.layers.2.b' is missing"
edit_ref "$BASIC" "$tmp/nocfg.safetensors" 'del meta["config"]'
expect_input_error "missing config metadata is refused" "$tmp/nocfg.safetensors" "__metadata__.config: missing"
edit_ref "$BASIC" "$tmp/badcfg.safetensors" 'meta["config"] = meta["config"].replace("n_mask_samples: 1", "n_mask_samples: 0")'
expect_input_error "an invalid config is refused" "$tmp/badcfg.safetensors" "__metadata__.config:.*n_mask_samples"
edit_ref "$BASIC" "$tmp/badtarget.safetensors" 'c = json.loads(meta["target_config"]); c["model_type"] = "GPT2"; meta["target_config"] = json.dumps(c)'
expect_input_error "an unknown target model is refused" "$tmp/badtarget.safetensors" 'model_type: expected "TMSModel", "ResidMLP" or "LlamaSimple", found "GPT2"'
edit_ref "$BASIC" "$tmp/badmodule.safetensors" 'meta["modules"] = json.dumps([{"path": "linear1", "C": 6}, {"path": "linear9", "C": 6}])'
expect_input_error "a module the target lacks is refused" "$tmp/badmodule.safetensors" "'linear9' is not a decomposable module of the TMSModel target"
edit_ref "$BASIC" "$tmp/badterms.safetensors" 'meta["loss_terms"] = json.dumps(["FaithfulnessLoss"])'
expect_input_error "loss_terms not matching the config is refused" "$tmp/badterms.safetensors" "__metadata__.loss_terms: 1 keys for 4 loss_metric_configs"
"$SPD" check --precision f32 "$BASIC" >/dev/null 2>"$tmp/err"; status=$?
[ $status -eq 2 ] && grep -q 'checked in float64 on the CPU only' "$tmp/err" && ok "--precision f32 on a training file is refused" ||
    notok "--precision f32 on a training file" "status $status"

# Identity insertion (identity_module_info): a pattern matching no module is refused
# naming it; a pattern matching another module gives identities the file does not
# list, so its "linear1.pre_identity" names no module of the target.
IDENT=$REFS/train_tms_identity.safetensors
edit_ref "$IDENT" "$tmp/id_nomatch.safetensors" '
meta["config"] = meta["config"].replace("identity_module_info:\n- module_pattern: linear1", "identity_module_info:\n- module_pattern: lin*3")'
expect_input_error "an identity pattern matching nothing is refused" "$tmp/id_nomatch.safetensors" \
    "identity_module_info\[0\]: pattern 'lin\*3' matches no linear module"
edit_ref "$IDENT" "$tmp/id_other.safetensors" '
meta["config"] = meta["config"].replace("identity_module_info:\n- module_pattern: linear1", "identity_module_info:\n- module_pattern: linear2")'
expect_input_error "an identity before another module than the file's is refused" "$tmp/id_other.safetensors" \
    "'linear1.pre_identity' is not a decomposable module"
