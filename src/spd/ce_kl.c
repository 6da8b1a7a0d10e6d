#include "core/real.h"

#include "spd/ce_kl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ops/output_loss.h"

#if !SPD_REAL_ON_DEVICE  // CPU only (ce_kl.h)

double RFN(spd_lm_next_token_ce)(const real *logits, const int32_t *tokens, int B, int S, int V) {
    double sum = 0;
    long n = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t + 1 < S; t++) {
            const real *row = logits + ((size_t)b * S + t) * V;
            double mx = -INFINITY;
            for (int v = 0; v < V; v++) mx = fmax(mx, (double)row[v]);
            double se = 0;
            for (int v = 0; v < V; v++) se += exp((double)row[v] - mx);
            sum += mx + log(se) - (double)row[tokens[(size_t)b * S + t + 1]];
            n++;
        }
    return n ? sum / (double)n : NAN;  // torch's mean over no targets is nan
}

enum { V_CI, V_STOCH, V_UNMASKED, V_RANDOM, V_ROUNDED, V_ZERO, N_VARIANTS };

// SPD's dict order of the outputs: kl_<ci, unmasked, stoch, random, rounded, zero>,
// then ce_difference_ and ce_unrecovered_ of the first five.
static const int key_variant[6] = {V_CI, V_UNMASKED, V_STOCH, V_RANDOM, V_ROUNDED, V_ZERO};

// The masks of one variant into every module's mask buffer (delta masks for stoch).
static void set_masks(component_model *cm, int variant, const real *const *ci, const spd_ce_kl_options *o,
                      real *const *delta_buf) {
    const long N = cm->target.N;
    for (int l = 0; l < cm->n_modules; l++) {
        component_module *c = &cm->modules[l];
        const long n = N * c->C;
        real *m = c->mask;
        c->delta_mask = NULL;
        switch (variant) {
        case V_CI: memcpy(m, ci[l], (size_t)n * sizeof *m); break;
        case V_UNMASKED:
            for (long i = 0; i < n; i++) m[i] = 1;
            break;
        case V_ZERO: memset(m, 0, (size_t)n * sizeof *m); break;
        case V_ROUNDED:
            for (long i = 0; i < n; i++) m[i] = (double)ci[l][i] > o->rounding_threshold ? 1 : 0;
            break;
        case V_RANDOM:
            if (o->draws) memcpy(m, o->draws->random[l], (size_t)n * sizeof *m);
            else
                RFN(sample_draws)(m, n, SPD_MASK_CONTINUOUS, o->seed,
                                  spd_rng_stream((uint64_t)o->step, SPD_RNG_MASK, o->term, 1, l));
            break;
        case V_STOCH:
            if (o->draws) {
                const real *r = o->draws->stoch_r[l];
                for (long i = 0; i < n; i++) m[i] = ci[l][i] + (1 - ci[l][i]) * r[i];
                memcpy(delta_buf[l], o->draws->delta[l], (size_t)N * sizeof(real));
            } else {
                RFN(mask_sample)(m, ci[l], n, o->sampling, o->seed,
                                 spd_rng_stream((uint64_t)o->step, SPD_RNG_MASK, o->term, 0, l));
                RFN(delta_mask_sample)(delta_buf[l], N, o->seed,
                                       spd_rng_stream((uint64_t)o->step, SPD_RNG_DELTA_MASK, o->term, 0, l));
            }
            c->delta_mask = delta_buf[l];
            break;
        }
    }
}

void RFN(spd_ce_kl_batch)(component_model *cm, const real *const *ci, const spd_ce_kl_options *opt, double *out,
                          spd_ce_kl_acc *acc) {
    llama_model *m = &cm->target;
    const int B = m->B, S = m->S, V = m->cfg.vocab_size, L = cm->n_modules;
    const int64_t N = m->N;
    real **saved_delta = spd_malloc((size_t)(L + 1) * sizeof *saved_delta);
    real **delta_buf = spd_malloc((size_t)(L + 1) * sizeof *delta_buf);
    for (int l = 0; l < L; l++) {
        SPD_ASSERT(cm->modules[l].delta);  // stoch_masked needs the weight deltas: build cm with use_delta
        saved_delta[l] = cm->modules[l].delta_mask;
        delta_buf[l] = spd_malloc((size_t)N * sizeof(real));
    }
    // The target: every module on its target weight.
    real *target = spd_malloc((size_t)N * V * sizeof *target);
    for (int l = 0; l < L; l++) cm->modules[l].replaced = false;
    RFN(llama_forward)(m);
    memcpy(target, m->logits, (size_t)N * V * sizeof *target);
    for (int l = 0; l < L; l++) cm->modules[l].replaced = true;
    const double ce_t = RFN(spd_lm_next_token_ce)(target, m->tokens, B, S, V);
    double ce[N_VARIANTS], kl[N_VARIANTS];
    for (int v = 0; v < N_VARIANTS; v++) {
        set_masks(cm, v, ci, opt, delta_buf);
        RFN(component_model_forward)(cm);
        int64_t count = 0;
        double s = RFN(output_loss_sum)(SPD_DIVERGENCE_KL, &count, m->logits, target, N, V);
        kl[v] = s / (double)count;
        ce[v] = RFN(spd_lm_next_token_ce)(m->logits, m->tokens, B, S, V);
    }
    for (int l = 0; l < L; l++) {
        cm->modules[l].delta_mask = saved_delta[l];
        free(delta_buf[l]);
    }
    int k = 0;
    for (int i = 0; i < 6; i++) out[k++] = kl[key_variant[i]];
    for (int i = 0; i < 5; i++) out[k++] = ce[key_variant[i]] - ce_t;
    for (int i = 0; i < 5; i++) out[k++] = (ce[key_variant[i]] - ce_t) / (ce[V_ZERO] - ce_t);
    if (acc) {
        for (int i = 0; i < SPD_CE_KL_N_KEYS; i++) acc->sums[i] += out[i] * (double)N;
        acc->n_positions += (double)N;
    }
    free(target);
    free(saved_delta);
    free(delta_buf);
}

#endif
