// Tied components (SPD_SPEC.md 5.1 step 5, 7.2, 13.13; docs/spd-ref-train-v1.md
// "Tied components"): for a TMS target with tied weights SPD ties each pair
// (src = linear1, tgt = linear2) of decomposed modules so that tgt.U aliases
// src.V^T and tgt.V aliases src.U^T -- shared storage, but separate torch
// Parameters, each with its own gradient (its own uses only) and its own Adam
// state, both updating the one matrix.
//
// Here tgt.V and tgt.U stay their own spec tensors (own names for checkpoints,
// own gradients, own Adam moments in the spec's buffers), kept equal to the
// transposes by copies:
//   - spd_tied_sync after spd_trainer_init_params (SPD ties after the init, so
//     src's values win);
//   - the forward and backward need nothing: with equal values the step's
//     gradients are exactly torch's per-Parameter gradients (the gradient of
//     the tied function w.r.t. the shared matrix is their sum);
//   - the optimizer step is torch's for-loop AdamW (its CPU default) over the
//     parameter list [V, U of each module in module order, then the CI-fn
//     parameters]: each tensor is stepped in turn, a tgt tensor on the shared
//     numbers (copied from src just before, copied back just after), so both
//     updates land on the matrix, the weight decay twice. spd_tied_update
//     replaces spd_train_update when ties exist; the faithfulness warm-up takes
//     the ties in its options.
// (torch's foreach AdamW, its CUDA default, applies both decays before both
// updates: a difference of order lr^2 wd, zero with SPD's main wd = 0.)
//
// Every backend, like the trainer.
#ifndef SPD_TIED_H
#define SPD_TIED_H

#include <stdint.h>

#include "core/real.h"
#include "ops/adamw.h"
#include "spd/train.h"

typedef struct {
    int src, tgt;  // trainer module indices; src < tgt (linear1 before linear2)
} spd_tied_pair;

// src < tgt, same C, src's d_in == tgt's d_out and src's d_out == tgt's d_in,
// each module in at most one pair. 0, or -1 with spd_last_error().
int RFN(spd_tied_check)(const spd_trainer *t, const spd_tied_pair *ties, int n_ties);
// tgt.U = src.V^T, tgt.V = src.U^T for every pair.
void RFN(spd_tied_sync)(spd_trainer *t, const spd_tied_pair *ties, int n_ties);
// spd_train_update with ties: clipping per group (every Parameter's gradient
// counts, the tied ones too, as in torch's clip_grad_norm_), then the for-loop
// AdamW above with the spec's moments; t->adam_t and the norms as spd_train_update.
void RFN(spd_tied_update)(spd_trainer *t, const spd_tied_pair *ties, int n_ties, int64_t step);
// The for-loop AdamW over [V, U of every module in module order] (and, with
// with_ci, then the CI-fn parameters) with the given moments m, v (indexed like
// the spec's TRAINED buffer) at count t_adam. For spd_tied_update and the warm-up.
void RFN(spd_tied_adamw_in_order)(spd_trainer *t, const spd_tied_pair *ties, int n_ties, bool with_ci, real *m,
                                  real *v, const spd_adamw_config *cfg, int64_t t_adam);

#endif
