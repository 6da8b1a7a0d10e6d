// `spd check` for spd-ref-train-v1 files (docs/spd-ref-train-v1.md): one SPD
// training step (or a short run) recomputed by the C trainer (src/spd/train.h)
// in float64 on the CPU, with every random draw served from the file's
// `draws.*` tensors, and compared with the file's `expected.*` tensors.
//
// Single-step files: target output, pre_sigmoid / ci_lower / ci_upper per
// module, every loss term (raw), the total, every gradient, the two group
// gradient norms and the lr, each bounded at 1e-8 norm-relative. Multi-step
// files: V, U after the faithfulness warm-up, per step the loss terms, total,
// lr and group norms at 1e-6, step 0's
// gradients at 1e-8, and every parameter after the run at 1e-6.
//
// Tied components (`tied_weights`) go through spd/tied.h (spd_tied_update
// between steps, the ties in the faithfulness warm-up).
//
// What the C trainer does not implement yet (a loss term, identity modules,
// ...) is refused as bad input: -1 with spd_last_error() set to one line, e.g.
//   "FILE: loss term 'PGDReconLoss' is not implemented in spd.c yet"
//   "FILE: not implemented in spd.c yet: identity_module_info (...)"
// never a silent pass.
#ifndef SPD_TRAIN_CHECK_H
#define SPD_TRAIN_CHECK_H

#include <stdio.h>

#include "core/safetensors.h"

#define SPD_REF_TRAIN_FORMAT "spd-ref-train-v1"

// Prints one row per compared tensor to out and returns the number of failed
// rows, or -1 with spd_last_error() set when the file is malformed or needs
// something spd.c does not implement.
int train_check_f64(const spd_st_file *f, FILE *out);
// The same with the step (or run) in float32 on the GPU (CUDA builds): the host
// builds and loads as above, a device twin (spd/train_gpu.h) runs the warm-up,
// steps and updates with the file's draws, and its state is read back for the
// rows; bound 1e-4 (norm-relative) for every row.
int train_check_cuda(const spd_st_file *f, FILE *out);

#endif
