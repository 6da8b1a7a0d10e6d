// `spd check`: recompute an spd-ref-v1 reference state (shared/formats/spd-ref-v1.md)
// and compare each result with the stored expectation.
#ifndef SPD_REFERENCE_CHECK_H
#define SPD_REFERENCE_CHECK_H

#include <stdio.h>

#include "core/safetensors.h"

// Recomputes logits, loss and every V/U gradient of file f in float32 and
// float64, prints one row per tensor to out, and returns the number of tensors
// whose norm-relative error exceeds the bound (1e-5 float32, 1e-10 float64),
// or -1 with spd_last_error() set when the file is not a valid reference.
int reference_check_f32(const spd_st_file *f, FILE *out);
int reference_check_f64(const spd_st_file *f, FILE *out);
// The same on the GPU (float32, or TF32 or bf16 products when enabled); bound 1e-5,
// 5e-3 with TF32, 3e-2 with bf16 (src/cuda/backend.h). With bf16 products the loss
// (a mean of logits) is measured against the rms of the expected logits.
int reference_check_cuda(const spd_st_file *f, FILE *out);

#endif
