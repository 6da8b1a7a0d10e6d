#!/bin/bash
# Builds the lab harness into build-lab/ (repo root; ignored by git) and prints
# the compiler's resource report (registers, spills, shared memory) to
# build-lab/resource.txt.
set -e
here=$(cd "$(dirname "$0")" && pwd)
root=$here/../../..
out=$root/build-lab
mkdir -p "$out"
"$here/make_lib.sh" >/dev/null
FLAGS="-O3 -std=c++17 -gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_90a,code=sm_90a -lineinfo -I$root/src -I$root/include -I$here -I$here/lib"
nvcc $FLAGS --resource-usage -c -o "$out/harness.o" "$here/harness.cu" 2> "$out/resource.txt"
nvcc $FLAGS --resource-usage -DSPD_CUDA -c -o "$out/components_fused.o" "$root/dev/kernels/b2b_masked/lib/components_fused.cu" 2>> "$out/resource.txt"
nvcc $FLAGS -o "$out/harness" "$out/harness.o" "$out/components_fused.o" -lcublas -lcurand
grep -i "spill\|warning\|error" "$out/resource.txt" | grep -v " 0 bytes spill" | sort | uniq -c || true
echo "built $out/harness"
