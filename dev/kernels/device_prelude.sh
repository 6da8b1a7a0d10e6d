# Sourced by the dev/kernels device scripts, from the repository root on the GPU machine:
# $OUT (default /tmp/out) made, the device environment, the GPU and commit printed, t0 set,
# and make's target $1 built (the log in $OUT/build.log; its tail and exit 1 if it fails).
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
source scripts/device-env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
cat COMMIT 2>/dev/null
t0=$SECONDS
make -j16 "${SPD_MAKE_ARGS[@]}" "$1" >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
