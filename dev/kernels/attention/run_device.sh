#!/usr/bin/env bash
# On the GPU machine, from the repo root (after scripts/device-env.sh and make gpu-tests):
# builds and runs bench_attention against build/libspd.a.
set -euo pipefail
source scripts/device-env.sh
libs=${SPD_MAKE_ARGS[1]#PKG_LIBS=}
nvcc -O3 -std=c++17 -Isrc -Iinclude -gencode=arch=compute_90,code=sm_90 -o build/bench_attention \
    dev/kernels/attention/bench_attention.cu build/libspd.a $libs -lcublasLt -lcublas -lm
./build/bench_attention "$@"
