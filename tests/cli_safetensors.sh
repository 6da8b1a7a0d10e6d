#!/usr/bin/env bash
# spd info: lists a good safetensors file; refuses bad ones with exit status 2
# and exactly one line "spd: <message naming the file>" on stderr.
set -u
SPD_BIN=${SPD_BIN:-build/spd}
if [ ! -x "$SPD_BIN" ]; then
    echo "not ok - spd binary missing ($SPD_BIN)"
    exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
ok() { echo "ok - $1"; }
notok() { echo "not ok - $1"; fails=$((fails + 1)); }

# mk FILE HEADER_JSON DATA_HEX [HEADER_LENGTH_OVERRIDE]: 8-byte little-endian
# header length, the header verbatim, then the data bytes.
mk() {
    python3 - "$@" <<'EOF'
import struct, sys
path, header, data = sys.argv[1], sys.argv[2].encode(), bytes.fromhex(sys.argv[3])
n = int(sys.argv[4]) if len(sys.argv) > 4 else len(header)
with open(path, "wb") as f:
    f.write(struct.pack("<Q", n) + header + data)
EOF
}

# A good file written the way safetensors does (json.dumps, space padding).
python3 - "$tmp/good.safetensors" <<'EOF'
import json, struct, sys
tensors = [("layer.weight", "F32", [2, 3], struct.pack("<6f", 1, 2, 3, 4, 5, 6)),
           ("tokens", "I64", [4], struct.pack("<4q", 1, -2, 3, 4)),
           ("scale", "F64", [], struct.pack("<d", 0.5))]
header, data = {"__metadata__": {"format": "pt", "seed": "0"}}, b""
for name, dtype, shape, raw in tensors:
    header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
    data += raw
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + data)
EOF

out=$("$SPD_BIN" info "$tmp/good.safetensors" 2>"$tmp/err")
status=$?
if [ $status -eq 0 ] && [ ! -s "$tmp/err" ] &&
    grep -q '^  format = pt$' <<<"$out" && grep -q '^  seed = 0$' <<<"$out" &&
    grep -Eq '^  layer\.weight +F32 +\[2, 3\] +24$' <<<"$out" &&
    grep -Eq '^  tokens +I64 +\[4\] +32$' <<<"$out" &&
    grep -Eq '^  scale +F64 +\[\] +8$' <<<"$out"; then
    ok "spd info lists metadata and tensors of a good file"
else
    notok "spd info on a good file: status $status, stdout: $out, stderr: $(cat "$tmp/err")"
fi

if "$SPD_BIN" info --help | grep -q '^usage: spd info FILE'; then
    ok "spd info --help prints usage"
else
    notok "spd info --help prints usage"
fi

# expect_refused NAME FILE PHRASE: status 2, one stderr line "spd: ...FILE...PHRASE", no stdout.
expect_refused() {
    local name=$1 file=$2 phrase=$3
    "$SPD_BIN" info "$file" >"$tmp/out" 2>"$tmp/err"
    local status=$? lines first
    lines=$(wc -l <"$tmp/err")
    first=$(head -n 1 "$tmp/err")
    if [ $status -eq 2 ] && [ "$lines" -eq 1 ] && [[ "$first" == "spd: "* ]] &&
        [[ "$first" == *"$file"* ]] && [[ "$first" == *"$phrase"* ]] && [ ! -s "$tmp/out" ]; then
        ok "spd info refuses $name"
        echo "#   $first"
    else
        notok "spd info refuses $name: status $status, $lines stderr lines: $(cat "$tmp/err")"
    fi
}

F32x2='{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}'
printf 'abc' >"$tmp/short.safetensors"
expect_refused "a file shorter than 8 bytes" "$tmp/short.safetensors" "expected at least 8 bytes"
mk "$tmp/hlen.safetensors" '{}' '' 4096
expect_refused "a header length past the end" "$tmp/hlen.safetensors" "runs past the end of the file"
mk "$tmp/json.safetensors" '{"w": {"dtype": ' ''
expect_refused "a header that is not JSON" "$tmp/json.safetensors" "not valid JSON"
mk "$tmp/dtype.safetensors" '{"w": {"dtype": "F128", "shape": [2], "data_offsets": [0, 8]}}' 0000000000000000
expect_refused "an unknown dtype" "$tmp/dtype.safetensors" "tensor 'w': dtype"
mk "$tmp/past.safetensors" "$F32x2" 00000000
expect_refused "data_offsets past the data section" "$tmp/past.safetensors" "tensor 'w': data_offsets [0, 8] run past"
mk "$tmp/size.safetensors" '{"w": {"dtype": "F64", "shape": [2], "data_offsets": [0, 8]}}' 0000000000000000
expect_refused "a byte size that disagrees with the shape" "$tmp/size.safetensors" "needs 16 bytes"
mk "$tmp/overlap.safetensors" '{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "w": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}' 000000000000000000000000
expect_refused "overlapping tensors" "$tmp/overlap.safetensors" "overlap"
mk "$tmp/dup.safetensors" '{"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "w": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}' 0000
expect_refused "a duplicate tensor name" "$tmp/dup.safetensors" "tensor 'w' appears twice"
mk "$tmp/meta.safetensors" '{"__metadata__": {"step": 3}}' ''
expect_refused "a non-string metadata value" "$tmp/meta.safetensors" "__metadata__ 'step'"
expect_refused "a missing file" "$tmp/absent.safetensors" "No such file"

"$SPD_BIN" info >"$tmp/out" 2>"$tmp/err"
status=$?
if [ $status -eq 2 ] && grep -q '^usage: spd info FILE' "$tmp/err"; then
    ok "spd info without FILE prints usage to stderr and exits 2"
else
    notok "spd info without FILE: status $status"
fi
"$SPD_BIN" info "$tmp/good.safetensors" "$tmp/good.safetensors" >"$tmp/out" 2>"$tmp/err"
status=$?
if [ $status -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q '^spd: info: expected one FILE' "$tmp/err"; then
    ok "spd info with two files is refused"
else
    notok "spd info with two files: status $status, stderr: $(cat "$tmp/err")"
fi
[ $fails -eq 0 ]
