#!/usr/bin/env bash
# On the GPU machine, from the repo root (after scripts/device-env.sh and make gpu-tests):
# builds and runs bench_wgrad_stored against build/libspd.a.
set -euo pipefail
source scripts/device-env.sh
libs=${SPD_MAKE_ARGS[1]#PKG_LIBS=}
nvcc -O3 -std=c++17 -Isrc -Iinclude -DSPD_CUDA -gencode=arch=compute_90a,code=sm_90a -o build/bench_wgrad_stored \
    dev/kernels/wgrad_stored/bench_wgrad_stored.cu build/libspd.a $libs -lcublasLt -lcublas -lm
./build/bench_wgrad_stored "$@"
