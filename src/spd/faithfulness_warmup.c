#include "core/real.h"

#include "spd/faithfulness_warmup.h"

#include <stdbool.h>
#include <stdlib.h>

#include "core/device.h"
#include "core/error.h"
#include "ops/adamw.h"
#include "ops/components.h"
#include "ops/faithfulness.h"
#include "ops/fill.h"

// delta_l into comp.delta for every module; pointer lists for the loss op.
static double deltas(spd_trainer *t, const real **d, real **dd, int64_t *numel) {
    for (int l = 0; l < t->n_mods; l++) {
        spd_train_module *m = &t->mods[l];
        component_module *c = &m->comp;
        RFN(site_delta_forward)(c);
        d[l] = c->delta;
        dd[l] = c->ddelta;
        numel[l] = (int64_t)m->d_in * m->d_out;
    }
    return RFN(faithfulness_loss_forward)(d, numel, t->n_mods);
}

static void zero_component_grads(spd_trainer *t) {
    for (int l = 0; l < t->n_mods; l++) {
        spd_train_module *m = &t->mods[l];
        RFN(fill_zero)(m->comp.dV, (int64_t)m->d_in * m->comp.C);
        RFN(fill_zero)(m->comp.dU, (int64_t)m->comp.C * m->d_out);
    }
}

double RFN(spd_faithfulness_value)(spd_trainer *t) {
    int n = t->n_mods;
    const real **d = spd_malloc((size_t)n * sizeof *d);
    real **dd = spd_malloc((size_t)n * sizeof *dd);
    int64_t *numel = spd_malloc((size_t)n * sizeof *numel);
    double v = deltas(t, d, dd, numel);
    free(d);
    free(dd);
    free(numel);
    return v;
}

// The warm-up's AdamW moments, where the parameters live (zeroed).
static real *moments_alloc(size_t n) {
#if SPD_REAL_ON_DEVICE
    real *p = spd_device_malloc((n ? n : 1) * sizeof(real));
    spd_device_memset_zero(p, (n ? n : 1) * sizeof(real));
    return p;
#else
    return spd_calloc(n ? n : 1, sizeof(real));
#endif
}

static void moments_free(real *p) {
#if SPD_REAL_ON_DEVICE
    spd_device_free(p);
#else
    free(p);
#endif
}

double RFN(spd_faithfulness_warmup)(spd_trainer *t, const spd_faithfulness_warmup_options *o) {
    if (o->steps <= 0) return RFN(spd_faithfulness_value)(t);
    const int n = t->n_mods;
    const real **d = spd_malloc((size_t)n * sizeof *d);
    real **dd = spd_malloc((size_t)n * sizeof *dd);
    int64_t *numel = spd_malloc((size_t)n * sizeof *numel);
    // The warm-up optimizer's own moments, laid out like the TRAINED buffer (only V, U used).
    const size_t ne = spd_spec_trained_elems(t->spec);
    real *mom_m = moments_alloc(ne), *mom_v = moments_alloc(ne);
    const spd_adamw_config cfg = {
        .lr = o->lr, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = o->weight_decay};
    for (int64_t step = 0; step < o->steps; step++) {
        zero_component_grads(t);
        double loss = deltas(t, d, dd, numel);
        for (int l = 0; l < n; l++) RFN(fill_zero)(dd[l], numel[l]);
        RFN(faithfulness_loss_backward)(dd, d, numel, n, 1.0);
        for (int l = 0; l < n; l++) {
            RFN(site_delta_backward)(&t->mods[l].comp);
        }
        if (o->log && (step % 100 == 0 || step == o->steps - 1)) o->log(o->log_ctx, step, loss);
        RFN(spd_tied_adamw_in_order)(t, o->ties, o->n_ties, false, mom_m, mom_v, &cfg, step + 1);
    }
    zero_component_grads(t);
    double v = deltas(t, d, dd, numel);
    moments_free(mom_m);
    moments_free(mom_v);
    free(d);
    free(dd);
    free(numel);
    return v;
}
