#!/usr/bin/env bash
# spd train with no argument (the built-in default run, TMS 5-2) and
# --experiment NAME: the target is trained into runs/targets/ when absent and
# reused after; the run ends with the summary (alive subcomponents, per-feature
# cosine / norm ratio, MMCS >= 0.999 and ML2R within 0.95-1.05 for both modules)
# and its PNG figures. The plain build runs the whole default run (about 30 s of
# CPU); the sanitizer build (build-san, ~3x slower) cuts it to 300 steps with
# --steps and checks the summary and figures but not the result thresholds.
# Bad experiment names and misplaced options are refused with one line (exit 2);
# tms_5-2-id trains its own target and runs.
set -u
SPD=${SPD_BIN:-build/spd}
SPD=$(cd "$(dirname "$SPD")" && pwd)/$(basename "$SPD")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ok() { echo "ok - $1"; }
notok() { echo "not ok - $1${2:+: $2}"; }
cd "$tmp"
steps=2000 args=() full=1
case "$SPD" in */build-san/*) steps=300 args=(--steps 300) full=0 ;; esac

if SPD_OUT_DIR="$tmp/out" OMP_NUM_THREADS=1 "$SPD" train "${args[@]}" >"$tmp/log" 2>"$tmp/err"; then
    ok "default run ($steps steps) exits 0"
else
    notok "default run ($steps steps) exits 0" "$(tail -n 3 "$tmp/err")"
fi
grep -q '^target: training tms_5-2' "$tmp/log" && [ -f runs/targets/tms_5-2.safetensors ] &&
    ok "default run trains the TMS 5-2 target into runs/targets/" || notok "default run trains the TMS 5-2 target into runs/targets/"
grep -q 'default run .*TMS 5-2' "$tmp/log" && ok "start-up table names the default run and its schedule" ||
    notok "start-up table names the default run and its schedule"
grep -q '^summary (step [0-9]*): final losses ImportanceMinimalityLoss' "$tmp/log" && ok "summary prints the final losses" ||
    notok "summary prints the final losses"
for m in linear1 linear2; do
    line=$(grep "alive $m " "$tmp/log")
    read -r mmcs ml2r < <(awk -v m="$m:" '$1 == m && $2 == "MMCS" {print $3, $5}' "$tmp/log")
    if [ "$full" = 0 ]; then
        [ -n "$line" ] && [ -n "${mmcs:-}" ] && ok "$m: alive and MMCS / ML2R lines (sanitizer build: values not checked)" ||
            notok "$m: alive and MMCS / ML2R lines"
        continue
    fi
    case "$line" in
    *" 5 of 20 "*) ok "$m: 5 alive subcomponents" ;;
    *) notok "$m: 5 alive subcomponents" "${line:-no line}" ;;
    esac
    brk=$(grep -A1 "significant $m " "$tmp/log" | tail -n 1)
    case "$brk" in
    *" 5 above the largest break in those norms"*) ok "$m: 5 subcomponents above the largest break in their norms" ;;
    *) notok "$m: 5 subcomponents above the largest break in their norms" "${brk:-no line}" ;;
    esac
    if [ -n "${mmcs:-}" ] && awk -v a="$mmcs" -v b="$ml2r" 'BEGIN {exit !(a >= 0.999 && b >= 0.95 && b <= 1.05)}'; then
        ok "$m: MMCS $mmcs >= 0.999, ML2R $ml2r in [0.95, 1.05]"
    else
        notok "$m: MMCS >= 0.999, ML2R in [0.95, 1.05]" "MMCS ${mmcs:-?} ML2R ${ml2r:-?}"
    fi
done
n=$(grep -c "^    feature  *[0-4]: subcomponent .* cos .* norm ratio" "$tmp/log")
[ "$n" -eq 10 ] && ok "per-feature lines for both modules" || notok "per-feature lines for both modules" "$n"
dir=$(ls -d "$tmp"/out/spd/s-* 2>/dev/null | head -n 1)
for f in ci_per_feature subcomponents_linear1 subcomponents_linear2 hidden_space_linear1 hidden_space_linear2; do
    p="$dir/figures/${f}_$steps.png"
    if [ -f "$p" ] && [ "$(head -c 8 "$p" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]; then
        ok "figure $f is a PNG"
    else
        notok "figure $f is a PNG" "$p"
    fi
done

# --experiment reuses the target it finds; --stop-at stops before the summary.
if SPD_OUT_DIR="$tmp/out2" "$SPD" train --experiment tms_5-2 --stop-at 0 >"$tmp/log2" 2>"$tmp/err2"; then
    ok "--experiment tms_5-2 --stop-at 0 exits 0"
else
    notok "--experiment tms_5-2 --stop-at 0 exits 0" "$(tail -n 2 "$tmp/err2")"
fi
grep -q '^target: runs/targets/tms_5-2.safetensors (exists' "$tmp/log2" && ok "--experiment reuses an existing target" ||
    notok "--experiment reuses an existing target" "$(head -n 1 "$tmp/log2")"

if SPD_OUT_DIR="$tmp/out5" "$SPD" train --experiment tms_5-2 --retrain-target --stop-at 0 >"$tmp/log5" 2>&1 &&
    grep -q '^target: training tms_5-2' "$tmp/log5"; then
    ok "--retrain-target trains an existing target again"
else
    notok "--retrain-target trains an existing target again" "$(head -n 2 "$tmp/log5")"
fi

refuse() {  # $1 = name, $2 = stderr pattern, rest = args
    local name=$1 pat=$2
    shift 2
    SPD_OUT_DIR="$tmp/out3" "$SPD" train "$@" >/dev/null 2>"$tmp/e"
    local rc=$?
    if [ "$rc" -eq 2 ] && [ "$(wc -l <"$tmp/e")" -eq 1 ] && grep -q "$pat" "$tmp/e"; then ok "$name"
    else notok "$name" "exit $rc: $(head -c 300 "$tmp/e")"; fi
}
refuse "--experiment with an unknown name is refused, naming the presets" "expected one of tms_5-2, .*resid_mlp_3" \
    --experiment tms_9-9
refuse "--experiment with a CONFIG is refused" "takes no CONFIG" --experiment tms_5-2 some.yaml
refuse "--retrain-target without --experiment is refused" "only with --experiment" some.yaml --retrain-target

# *-id experiments: the target with its fixed identity hidden layer, decomposed too (one step here).
if SPD_OUT_DIR="$tmp/out4" "$SPD" train --experiment tms_5-2-id --stop-at 0 >"$tmp/log4" 2>"$tmp/e" &&
    [ -f runs/targets/tms_5-2-id.safetensors ] && grep -q '^ *hidden_layers.0 C 20' "$tmp/log4"; then
    ok "--experiment tms_5-2-id trains its target and decomposes hidden_layers.0 too"
else
    notok "--experiment tms_5-2-id trains its target and decomposes hidden_layers.0 too" "$(head -c 300 "$tmp/e")"
fi
