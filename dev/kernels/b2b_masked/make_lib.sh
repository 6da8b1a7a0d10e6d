#!/bin/bash
# Regenerates dev/kernels/b2b_masked/lib/components_fused.cu from the lab's kernel (fused_kernel.cuh)
# plus lib_head.cu / lib_tail.cu (the winning policy, the fallback, the entry point).
set -e
here=$(cd "$(dirname "$0")" && pwd)
out=$here/lib/components_fused.cu  # generated, git-ignored
{
  cat "$here/lib_head.cu"
  # kernel body: everything between the namespace braces, launcher included
  sed -n '/^namespace b2b {/,/^}  \/\/ namespace b2b/p' "$here/fused_kernel.cuh" | sed '1d;$d'
  sed -n '/^namespace b2b {/,/^}  \/\/ namespace b2b/p' "$here/fused_kernel_v4.cuh" | sed '1d;$d'
  cat "$here/lib_tail.cu"
} > "$out"
echo "wrote $out"
