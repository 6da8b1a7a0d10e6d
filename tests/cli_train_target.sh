#!/usr/bin/env bash
# spd train-target: trains SPD's toy targets (src/spd/target_train.h) and writes
# files that `spd train` loads through the shipped configs' pretrained_model_path
# (configs/*.yaml, relative to the current directory); every shipped config
# passes `spd config check`; runs are reproducible; bad options are refused.
set -u
SPD=${SPD_BIN:-build/spd}
case "$SPD" in /*) ;; *) SPD="$PWD/$SPD" ;; esac
root=$PWD
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ok() { echo "ok - $1"; }
notok() { echo "not ok - $1${2:+: $2}"; }

# Every shipped config validates.
n=0 bad=""
for f in "$root"/configs/*.yaml; do
    n=$((n + 1))
    "$SPD" config check "$f" >/dev/null 2>"$tmp/err" || bad="$bad $(basename "$f"): $(cat "$tmp/err")"
done
if [ "$n" -eq 7 ] && [ -z "$bad" ]; then ok "spd config check accepts the 7 shipped configs/*.yaml"
else notok "shipped configs check" "$n files;$bad"; fi
for e in tms_5-2 tms_5-2-id tms_40-10 tms_40-10-id resid_mlp_1 resid_mlp_2 resid_mlp_3; do
    grep -q "^pretrained_model_path: runs/targets/$e.safetensors$" "$root/configs/$e.yaml" 2>/dev/null ||
        bad="$bad $e"
done
if [ -z "$bad" ]; then ok "each shipped config points at train-target's default output runs/targets/NAME.safetensors"
else notok "config paths" "$bad"; fi

# Default output path, relative to the current directory; the loss is printed and falls.
cd "$tmp" || exit 1
if "$SPD" train-target --experiment tms_5-2 --steps 400 --log-every 100 >"$tmp/out" 2>"$tmp/err" &&
    [ -f runs/targets/tms_5-2.safetensors ]; then
    first=$(grep '^step 0 loss' "$tmp/out" | awk '{print $4}')
    final=$(grep '^final loss' "$tmp/out" | awk '{print $3}')
    if [ -n "$first" ] && [ -n "$final" ] && awk -v a="$first" -v b="$final" 'BEGIN{exit !(b < a)}' &&
        grep -q 'seed 6$' "$tmp/out"; then
        ok "train-target tms_5-2 (preset seed 6) writes runs/targets/tms_5-2.safetensors; loss $first -> $final"
    else notok "train-target loss falls" "$first -> $final"; fi
else
    notok "train-target tms_5-2 runs" "$(cat "$tmp/err")"
fi
"$SPD" info runs/targets/tms_5-2.safetensors >"$tmp/info" 2>&1
if grep -q 'linear1.weight *F32 *\[2, 5\]' "$tmp/info" && grep -q 'linear2.weight *F32 *\[5, 2\]' "$tmp/info" &&
    grep -q 'task = tms' "$tmp/info" && grep -q 'tied = true' "$tmp/info"; then
    ok "the file holds SPD's state-dict names (float32) and task/tied metadata"
else notok "file contents" "$(head -c 600 "$tmp/info")"; fi

# Reproducible from the seed.
"$SPD" train-target --experiment tms_5-2 --steps 400 --out "$tmp/again.safetensors" >/dev/null 2>&1
if cmp -s runs/targets/tms_5-2.safetensors "$tmp/again.safetensors"; then ok "train-target is reproducible (same file bytes)"
else notok "train-target reproducible"; fi

# The shipped configs load the files in spd train (a few steps, small batch).
shrink() {  # $1 = experiment: the shipped config, run-sized down
    sed -e 's/^steps: .*/steps: 4/' -e 's/^batch_size: .*/batch_size: 64/' -e 's/^eval_batch_size: .*/eval_batch_size: 64/' \
        -e 's/^faithfulness_warmup_steps: .*/faithfulness_warmup_steps: 2/' -e 's/^train_log_freq: .*/train_log_freq: 2/' \
        "$root/configs/$1.yaml" >"$tmp/$1.yaml"
}
"$SPD" train-target --experiment tms_5-2-id --steps 50 >/dev/null 2>&1
"$SPD" train-target --experiment resid_mlp_1 --steps 3 >/dev/null 2>&1
for e in tms_5-2 tms_5-2-id resid_mlp_1; do
    shrink "$e"
    if SPD_OUT_DIR="$tmp/spd_out" "$SPD" train "$tmp/$e.yaml" >"$tmp/train.out" 2>"$tmp/train.err" &&
        grep -q '^done: 4 steps' "$tmp/train.out" && ! grep -q 'not a .safetensors file' "$tmp/train.err"; then
        ok "spd train loads the trained $e target through configs/$e.yaml (4 steps)"
    else
        notok "spd train with configs/$e.yaml" "$(tail -3 "$tmp/train.err" "$tmp/train.out" | tr '\n' ' ')"
    fi
done

# Refusals: one line on stderr, exit 2.
"$SPD" train-target --experiment tms_6-2 >/dev/null 2>"$tmp/err"
rc=$?
if [ $rc -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "unknown experiment 'tms_6-2'" "$tmp/err"; then
    ok "an unknown experiment is refused (exit 2, one line)"
else notok "unknown experiment" "rc $rc: $(cat "$tmp/err")"; fi
"$SPD" train-target --experiment tms_5-2 --steps 0 >/dev/null 2>"$tmp/err"
rc=$?
if [ $rc -eq 2 ] && grep -q -- "--steps" "$tmp/err"; then ok "--steps 0 is refused (exit 2)"
else notok "--steps 0" "rc $rc: $(cat "$tmp/err")"; fi
