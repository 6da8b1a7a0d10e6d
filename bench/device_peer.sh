#!/usr/bin/env bash
# PyTorch peer rows for the benchmark tables. Run ON THE DEVICE from the repo root, with
# `.peer/carry` carried (build it here first: bench/make_peer_carry.sh), e.g. in the same device
# call as the C benchmark:      bash bench/device_peer.sh
#
# Writes 3 files (leaving room under the 8-files-back limit for the C benchmark's own):
#   $OUT/peer_full.txt       full model: SS Llama 4L (random init), 28 modules, C=1200
#   $OUT/peer_linear.txt     isolated LinearComponents (B=64, T=256)
#   $OUT/peer_results.jsonl  every RESULT line, one JSON object per (shape, variant)
#
# Default plan, measured on an H100 (torch 2.11, cold inductor cache): about 3.6 min in all.
#   full, steps 50 / warmup 10 (benchmark_full_model.py's defaults), ONE process (~165 s):
#     rows 16x128 32x256 64x256 128x256, variants eager, reduce-overhead,
#     reduce-overhead-nogetattr (compile ~12-18 s each)
#   linear, steps 200 / warmup 50 (benchmark_linear_components.py's defaults), ONE process (~50 s):
#     rows d=C=512, 2048, 4096 at B=64 T=256, variants components-eager,
#     components-reduce-overhead, pure-eager, pure-reduce-overhead
# max-autotune is OFF by default because its compile alone blows the budget:
#   PEER_MAX_AUTOTUNE=1               + max-autotune-nogetattr on 64x256 in a 2nd process
#                                     (+~3.2 min cold: 178 s compile; total ~6.8 min)
#   PEER_FULL_MAX_AUTOTUNE_GETATTR=1  + max-autotune (MaskedModule.__getattr__ kept; 17 graph
#                                     breaks, recompiles): +~4 min (233 s compile) on top
#   Both together (~11 min) do not fit in one 10-minute device command with the rest: then use
#   PEER_SKIP_LINEAR=1 / PEER_FULL_VARIANTS= (empty) to split them over calls.
#
# Knobs (environment):
#   PEER_FULL_ROWS        default "16x128,32x256,64x256,128x256"
#   PEER_FULL_VARIANTS    default eager,reduce-overhead,reduce-overhead-nogetattr
#                         (set it empty to run only the extra process)
#   PEER_FULL_EXTRA_ROWS  default "64x256"   rows of the 2nd full process
#   PEER_FULL_EXTRA_VARIANTS  variants of the 2nd full process; default empty (no 2nd process),
#                         PEER_MAX_AUTOTUNE=1 / PEER_FULL_MAX_AUTOTUNE_GETATTR=1 fill it (above)
#   PEER_FULL_STEPS / PEER_FULL_WARMUP       default 50 / 10
#   PEER_LINEAR_ROWS      default "512:512,2048:2048,4096:4096" (d:C)
#   PEER_LINEAR_VARIANTS  default components-eager,components-reduce-overhead,pure-eager,pure-reduce-overhead
#   PEER_LINEAR_STEPS / PEER_LINEAR_WARMUP   default 200 / 50
#   PEER_SKIP_FULL=1, PEER_SKIP_LINEAR=1, PEER_PY (default python3), PEER_ARGS (extra args, e.g. --no-tf32)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/peer_out}
mkdir -p "$OUT"
PY=${PEER_PY:-python3}
export PYTHONUNBUFFERED=1
FULL_ROWS=${PEER_FULL_ROWS:-16x128,32x256,64x256,128x256}
FULL_VARIANTS=${PEER_FULL_VARIANTS-eager,reduce-overhead,reduce-overhead-nogetattr}
EXTRA_ROWS=${PEER_FULL_EXTRA_ROWS:-64x256}
EXTRA_VARIANTS=${PEER_FULL_EXTRA_VARIANTS:-}
if [ -n "${PEER_MAX_AUTOTUNE:-}" ]; then
  EXTRA_VARIANTS=${EXTRA_VARIANTS:+$EXTRA_VARIANTS,}max-autotune-nogetattr
fi
if [ -n "${PEER_FULL_MAX_AUTOTUNE_GETATTR:-}" ]; then
  EXTRA_VARIANTS=${EXTRA_VARIANTS:+$EXTRA_VARIANTS,}max-autotune
fi
FULL_STEPS=${PEER_FULL_STEPS:-50}
FULL_WARMUP=${PEER_FULL_WARMUP:-10}
LIN_ROWS=${PEER_LINEAR_ROWS:-512:512,2048:2048,4096:4096}
LIN_VARIANTS=${PEER_LINEAR_VARIANTS:-components-eager,components-reduce-overhead,pure-eager,pure-reduce-overhead}
LIN_STEPS=${PEER_LINEAR_STEPS:-200}
LIN_WARMUP=${PEER_LINEAR_WARMUP:-50}
EXTRA_ARGS=${PEER_ARGS:-}
JSONL="$OUT/peer_results.jsonl"

if [ ! -d .peer/carry/spd-cd23cf80 ] && [ ! -d .peer/spd-cd23cf80 ]; then
  echo "device_peer.sh: no .peer/carry (run bench/make_peer_carry.sh here and carry .peer/carry)" >&2
  exit 2
fi
T0=$(date +%s)
rc=0
tables() { awk '/^=+$/{n++} n%2==1' "$1" | grep -E '^(bench|full|linear) ' ; }

if [ -z "${PEER_SKIP_FULL:-}" ]; then
  {
    echo "# device_peer.sh full: rows=$FULL_ROWS variants=$FULL_VARIANTS; extra rows=$EXTRA_ROWS variants=$EXTRA_VARIANTS; steps=$FULL_STEPS warmup=$FULL_WARMUP"
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv,noheader 2>/dev/null
  } > "$OUT/peer_full.txt"
  if [ -n "$FULL_VARIANTS" ]; then
    echo "## full rows $FULL_ROWS: $FULL_VARIANTS (t=$(( $(date +%s) - T0 ))s)" | tee -a "$OUT/peer_full.txt"
    # shellcheck disable=SC2086
    $PY bench/peer_torch.py full --rows "$FULL_ROWS" --C 1200 --steps "$FULL_STEPS" \
        --warmup "$FULL_WARMUP" --variants "$FULL_VARIANTS" --json-out "$JSONL" $EXTRA_ARGS \
        >> "$OUT/peer_full.txt" 2>&1 || rc=1
  fi
  if [ -n "$EXTRA_VARIANTS" ]; then
    echo "## full rows $EXTRA_ROWS: $EXTRA_VARIANTS (t=$(( $(date +%s) - T0 ))s)" | tee -a "$OUT/peer_full.txt"
    # shellcheck disable=SC2086
    $PY bench/peer_torch.py full --rows "$EXTRA_ROWS" --C 1200 --steps "$FULL_STEPS" \
        --warmup "$FULL_WARMUP" --variants "$EXTRA_VARIANTS" --json-out "$JSONL" $EXTRA_ARGS \
        >> "$OUT/peer_full.txt" 2>&1 || rc=1
  fi
  tables "$OUT/peer_full.txt"
fi
if [ -z "${PEER_SKIP_LINEAR:-}" ]; then
  echo "# device_peer.sh linear: rows=$LIN_ROWS B=64 T=256 steps=$LIN_STEPS warmup=$LIN_WARMUP" > "$OUT/peer_linear.txt"
  echo "## linear rows $LIN_ROWS: $LIN_VARIANTS (t=$(( $(date +%s) - T0 ))s)" | tee -a "$OUT/peer_linear.txt"
  # shellcheck disable=SC2086
  $PY bench/peer_torch.py linear --rows "$LIN_ROWS" --batch 64 --seq 256 --steps "$LIN_STEPS" \
      --warmup "$LIN_WARMUP" --variants "$LIN_VARIANTS" --json-out "$JSONL" $EXTRA_ARGS \
      >> "$OUT/peer_linear.txt" 2>&1 || rc=1
  tables "$OUT/peer_linear.txt"
fi
echo "device_peer.sh: done in $(( $(date +%s) - T0 ))s (rc=$rc)"
exit $rc
