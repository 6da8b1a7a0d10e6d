// SPD's faithfulness warm-up (SPD_SPEC.md 5.5; spd/run_spd.py
// run_faithfulness_warmup): before the main loop, a separate AdamW over the
// component parameters only (V, U of every module in module order; not the CI
// functions), lr faithfulness_warmup_lr (constant), weight decay
// faithfulness_warmup_weight_decay, torch's default betas (0.9, 0.999) and eps
// 1e-8, run for faithfulness_warmup_steps steps minimising the faithfulness
// loss alone (no data, no target forward). Its optimizer state is then
// discarded: the trainer's main AdamW moments and update count are untouched.
//
// Per step: zero the V, U gradients; delta_l = W_l - (V_l U_l)^T (embedding:
// W - V U); L = sum ||delta||^2 / sum numel; backward into V, U; AdamW.
// Each parameter is updated in turn in module order (torch's for-loop AdamW,
// spd/tied.h): the order matters only for tied components (both updates and
// both weight decays land on the shared matrix).
//
// Runs on a bound trainer (spd_trainer_bind) and leaves the V, U gradients
// zero. Every backend, like the trainer.
#ifndef SPD_FAITHFULNESS_WARMUP_H
#define SPD_FAITHFULNESS_WARMUP_H

#include <stdint.h>

#include "core/real.h"
#include "spd/tied.h"
#include "spd/train.h"

typedef struct {
    int64_t steps;        // faithfulness_warmup_steps (<= 0: nothing to do)
    double lr;            // faithfulness_warmup_lr (SPD default 1e-3)
    double weight_decay;  // faithfulness_warmup_weight_decay (SPD default 0)
    // Called, when set, at the steps SPD logs (step % 100 == 0 and the last) with
    // the loss of that step before its update.
    void (*log)(void *ctx, int64_t step, double loss);
    void *log_ctx;
    const spd_tied_pair *ties;  // tied components (spd/tied.h), or NULL
    int n_ties;
} spd_faithfulness_warmup_options;

// Runs the warm-up; returns the faithfulness loss after the last update (the
// faithfulness of the components the main loop starts from), or, with steps
// <= 0, the current one.
double RFN(spd_faithfulness_warmup)(spd_trainer *t, const spd_faithfulness_warmup_options *o);

// The faithfulness loss of the trainer's current V, U (no gradients touched).
double RFN(spd_faithfulness_value)(spd_trainer *t);

#endif
