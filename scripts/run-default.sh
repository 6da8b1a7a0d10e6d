#!/usr/bin/env bash
# The built-in default job (`make run`): `spd train` with no argument, SPD on
# TMS 5-2: trains the target (runs/targets/tms_5-2.safetensors, reused when it
# exists), decomposes it, prints what it found (alive subcomponents, per-feature
# cosine and norm ratio, final losses) and writes figures into the run directory
# ($SPD_OUT_DIR/spd/<run_id>/figures, default ~/spd_out). About a minute on two
# CPU cores. The reference checks run in `make test` (tests/cli_check.sh,
# tests/cli_train_check.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
exec ./build/spd train
