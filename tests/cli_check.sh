#!/usr/bin/env bash
# spd check on every shipped reference (must pass), on a reference whose
# expectation was tampered with (must fail, exit 1), and on malformed references
# (one line on stderr, exit 2).
set -u
SPD=${SPD_BIN:-build/spd}
SHARED=${SHARED_DIR:-../shared}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ok() { echo "ok - $1"; }
notok() { echo "not ok - $1${2:+: $2}"; }

refs=(tests/refs/*.safetensors "$SHARED"/refs/*.safetensors)
for r in "${refs[@]}"; do
    [ -f "$r" ] || { notok "reference present" "$r missing"; continue; }
    if out=$("$SPD" check "$r" 2>&1); then
        ok "spd check passes $(basename "$r") in float64 and float32"
    else
        notok "spd check passes $(basename "$r")" "$(echo "$out" | grep -E 'FAIL|spd:' | head -5)"
    fi
done

# Rewrites one reference with a python edit: $1 output, $2 python statements on
# `meta` (dict), `tensors` (name -> [dtype, shape, bytes]); the file is re-packed.
edit_ref() {
    python3 - "$SHARED/refs/ref_tiny.safetensors" "$1" "$2" <<'PY'
import json, struct, sys
src, dst, code = sys.argv[1:4]
with open(src, 'rb') as f:
    n = struct.unpack('<Q', f.read(8))[0]
    header = json.loads(f.read(n))
    data = f.read()
meta = header.pop('__metadata__', {})
tensors = {k: [v['dtype'], v['shape'], data[v['data_offsets'][0]:v['data_offsets'][1]]] for k, v in header.items()}
exec(code)
out, blob = {'__metadata__': meta} if meta is not None else {}, b''
for k, (dt, shape, b) in tensors.items():
    out[k] = {'dtype': dt, 'shape': shape, 'data_offsets': [len(blob), len(blob) + len(b)]}
    blob += b
h = json.dumps(out).encode()
h += b' ' * (-len(h) % 8)
with open(dst, 'wb') as f:
    f.write(struct.pack('<Q', len(h)) + h + blob)
PY
}

# A wrong expectation must be caught: scale one gradient by 1 + 1e-6.
edit_ref "$tmp/tampered.safetensors" '
name = "expected.grad._components.h-1-mlp-up_proj.U"
dt, shape, b = tensors[name]
vals = struct.unpack("<%dd" % (len(b) // 8), b)
tensors[name][2] = struct.pack("<%dd" % len(vals), *[v * (1 + 1e-6) for v in vals])'
"$SPD" check "$tmp/tampered.safetensors" >"$tmp/out" 2>&1
status=$?
if [ $status -eq 1 ] && grep -q 'float64  expected.grad._components.h-1-mlp-up_proj.U .*FAIL' "$tmp/out" &&
    ! grep -q 'h-0-mlp-up_proj.U .*FAIL' "$tmp/out"; then
    ok "a gradient off by 1e-6 fails in float64 (exit 1) and nothing else does"
else
    notok "tampered gradient detected" "status $status"
fi

# Malformed references: exit 2, one line on stderr naming the file and the problem.
expect_input_error() {  # name file pattern
    "$SPD" check "$2" >/dev/null 2>"$tmp/err"
    local status=$? lines
    lines=$(wc -l <"$tmp/err")
    if [ $status -eq 2 ] && [ "$lines" -eq 1 ] && grep -q "^spd: .*$3" "$tmp/err"; then
        ok "$1 (exit 2: $(cat "$tmp/err"))"
    else
        notok "$1" "status $status, $lines lines: $(head -3 "$tmp/err")"
    fi
}
edit_ref "$tmp/nofmt.safetensors" 'del meta["format"]'
expect_input_error "missing format metadata is refused" "$tmp/nofmt.safetensors" "nofmt.safetensors: __metadata__.format: missing"
edit_ref "$tmp/badloss.safetensors" 'meta["loss"] = "cross_entropy"'
expect_input_error "unknown loss is refused" "$tmp/badloss.safetensors" '__metadata__.loss: expected "mean_logits", found "cross_entropy"'
edit_ref "$tmp/badcfg.safetensors" 'c = json.loads(meta["target_config"]); c["n_head"] = 5; meta["target_config"] = json.dumps(c)'
expect_input_error "a config whose heads do not divide n_embd is refused" "$tmp/badcfg.safetensors" "n_embd 32 is not a multiple of n_head 5"
edit_ref "$tmp/nomodule.safetensors" 'meta["modules"] = json.dumps([{"path": "h.7.mlp.up_proj", "C": 3}])'
expect_input_error "a module path that matches nothing is refused" "$tmp/nomodule.safetensors" "__metadata__.modules: module pattern 'h.7.mlp.up_proj' matches no decomposable module"
edit_ref "$tmp/missing.safetensors" 'del tensors["_components.h-0-attn-v_proj.U"]'
expect_input_error "a missing component tensor is refused" "$tmp/missing.safetensors" "tensor '_components.h-0-attn-v_proj.U' is missing"
edit_ref "$tmp/shape.safetensors" 'dt, s, b = tensors["input.masks.h-0-attn-q_proj"]; tensors["input.masks.h-0-attn-q_proj"] = [dt, [3, 11, 4], b[:3*11*4*8]]'
expect_input_error "a mask of the wrong shape is refused" "$tmp/shape.safetensors" "expected shape \[3, 11, 5\], found \[3, 11, 4\]"
edit_ref "$tmp/token.safetensors" 'dt, s, b = tensors["input.tokens"]; tensors["input.tokens"][2] = struct.pack("<q", 97) + b[8:]'
expect_input_error "a token id outside the vocabulary is refused" "$tmp/token.safetensors" "element 0 is 97, outside \[0, vocab_size 97)"
"$SPD" check --precision f16 x 2>"$tmp/err"; status=$?
[ $status -eq 2 ] && grep -q -- '--precision: expected f32, f64 or both' "$tmp/err" && ok "an unknown precision is refused" || notok "unknown precision" "status $status"

# Product precisions are GPU options, and one at a time (here before any GPU is looked for).
r0=${refs[0]}
for args in "check --bf16 $r0" "check --tf32 --bf16 --device cuda $r0" "bench full --bf16" \
    "bench full --device cuda --bf16 --tf32"; do
    "$SPD" $args >/dev/null 2>"$tmp/err"; status=$?
    if [ $status -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -qE -- 'appl(y|ies) to --device cuda only|exclude each other' "$tmp/err"; then
        ok "spd ${args%% /*} refused (exit 2: $(cat "$tmp/err"))"
    else
        notok "spd $args refused" "status $status: $(head -2 "$tmp/err")"
    fi
done

# A plain LlamaSimple state dict (no "target_model." prefix) loads too.
edit_ref "$tmp/bare.safetensors" '
tensors = {(k[len("target_model."):] if k.startswith("target_model.") else k): v for k, v in tensors.items()}'
if "$SPD" check "$tmp/bare.safetensors" >/dev/null 2>&1; then
    ok "target weights under bare LlamaSimple names load and pass"
else
    notok "target weights under bare names" "spd check failed"
fi
