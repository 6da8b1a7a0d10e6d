#!/usr/bin/env bash
# Runs SPD's toy experiments end to end for docs/RESULTS-toys.md: for each NAME, the
# target (runs/targets/NAME.safetensors, trained by `spd train-target` when absent),
# then the decomposition with configs/NAME.yaml exactly as shipped except the eval
# cadence: evaluation at step 0 and the last step only, over SPD_TOY_EVAL_STEPS batches
# (default 10; the eval runs on the CPU in float64 and does not touch training, so
# training is the shipped config's). Run from the repository root:
#   bash scripts/toy_experiments.sh [--device cuda] [NAME...]
# Each run's directory is runs/toys/NAME (metrics.jsonl, final_config.yaml, figures/,
# checkpoints) with train.log (stdout) and wall_s; then
#   python3 scripts/make_toy_results.py runs/toys > docs/RESULTS-toys.md
set -uo pipefail
cd "$(dirname "$0")/.."
SPD=${SPD_BIN:-build/spd}
dev=()
if [ "${1:-}" = "--device" ]; then dev=(--device "$2"); shift 2; fi
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(tms_5-2 tms_5-2-id tms_40-10 tms_40-10-id resid_mlp_1)
eval_steps=${SPD_TOY_EVAL_STEPS:-10}
mkdir -p runs/toys runs/targets
status=0
for name in "${names[@]}"; do
    cfg=configs/$name.yaml
    [ -f "$cfg" ] || { echo "toy_experiments: $cfg: no such config" >&2; status=2; continue; }
    target=runs/targets/$name.safetensors
    t0=$(date +%s.%N)
    if [ ! -f "$target" ]; then
        "$SPD" train-target --experiment "$name" --out "$target" >"runs/toys/$name.target.log" 2>&1 ||
            { echo "toy_experiments: $name: train-target failed" >&2; status=1; continue; }
    fi
    t1=$(date +%s.%N)
    steps=$(sed -n 's/^steps: *//p' "$cfg")
    short=()  # SPD_TOY_STEPS=N: a shortened smoke run (spd train --steps N), not a result
    if [ -n "${SPD_TOY_STEPS:-}" ]; then steps=$SPD_TOY_STEPS; short=(--steps "$steps"); fi
    tmp=$(mktemp -d)
    sed -e "s/^eval_freq: .*/eval_freq: $steps/" -e "s/^slow_eval_freq: .*/slow_eval_freq: $steps/" \
        -e "s/^n_eval_steps: .*/n_eval_steps: $eval_steps/" "$cfg" >"$tmp/$name.yaml"
    rm -rf "runs/toys/$name"
    SPD_OUT_DIR="$tmp/out" "$SPD" train "$tmp/$name.yaml" "${dev[@]}" "${short[@]}" >"$tmp/train.log" 2>"$tmp/train.err"
    rc=$?
    t2=$(date +%s.%N)
    run=$(find "$tmp/out/spd" -mindepth 1 -maxdepth 1 -type d | head -1)
    if [ -n "$run" ]; then
        mv "$run" "runs/toys/$name"
        cp "$tmp/train.log" "$tmp/train.err" "runs/toys/$name/"
        echo "$name target_s $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") train_s $(awk "BEGIN{printf \"%.1f\", $t2 - $t1}") rc $rc device ${dev[1]:-cpu}" \
            >"runs/toys/$name/wall_s"
    fi
    echo "$name: exit $rc, $(cat "runs/toys/$name/wall_s" 2>/dev/null)"
    [ $rc -eq 0 ] || { tail -3 "$tmp/train.err" >&2; status=1; }
    rm -rf "$tmp"
done
exit $status
