#include "core/real.h"
#include "ops/masks.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/philox.h"

// Precision-free helpers: this file is compiled once per precision, so they
// are defined in the float32 object only.

// Draws 4b .. 4b+3: draw i is word i % 4 of Philox block i / 4, as
// spd_philox_uniform_f32, so one block serves four elements.
static void block_draws(real r[4], uint64_t block, spd_mask_sampling sampling, uint64_t seed, uint64_t stream) {
    SPD_ASSERT(sampling == SPD_MASK_CONTINUOUS || sampling == SPD_MASK_BINOMIAL);
    uint32_t w[4];
    spd_philox_block(seed, stream, block, w);
    for (int j = 0; j < 4; j++) {
        float u = spd_u32_to_uniform_f32(w[j]);
        r[j] = sampling == SPD_MASK_BINOMIAL ? (u >= 0.5f ? 1 : 0) : (real)u;
    }
}

void RFN(sample_draws)(real *r, long n, spd_mask_sampling sampling, uint64_t seed, uint64_t stream) {
    for (long base = 0; base < n; base += 4) {
        real w[4];
        block_draws(w, (uint64_t)base / 4, sampling, seed, stream);
        for (long j = 0; j < 4 && base + j < n; j++) r[base + j] = w[j];
    }
}

// ---- CI ------------------------------------------------------------------------------

// raw_lower = 1.05 pre - 0.05 u in the storage precision (torch scales by
// Python floats, which become tensor-dtype scalars). out may alias u.
static void jittered(real *out, const real *pre, const real *u, long n) {
    for (long i = 0; i < n; i++) out[i] = (real)1.05 * pre[i] - (real)0.05 * u[i];
}

void RFN(ci_forward)(real *ci_lower, real *ci_upper, const real *pre, const real *jitter, long n,
                     spd_sigmoid_pair sig) {
    if (ci_upper) RFN(sigmoid_forward)(sig.upper, ci_upper, pre, n);
    if (ci_lower) {
        const real *raw = pre;
        if (jitter) {
            jittered(ci_lower, pre, jitter, n);
            raw = ci_lower;
        }
        RFN(sigmoid_forward)(sig.lower, ci_lower, raw, n);
    }
}

void RFN(ci_backward)(real *dpre, const real *dci_lower, const real *dci_upper, const real *pre,
                      const real *jitter, long n, spd_sigmoid_pair sig) {
    if (dci_upper)
        RFN(sigmoid_backward)(sig.upper, dpre, dci_upper, pre, n);
    else
        memset(dpre, 0, (size_t)n * sizeof(real));
    if (!dci_lower) return;
    // In blocks through a stack buffer: elementwise, so the values are those of one
    // pass, without an [N, C] allocation (and its page faults) every step.
    enum { BLK = 1024 };
    real tmp[BLK];
    for (long b = 0; b < n; b += BLK) {
        long k = n - b < BLK ? n - b : BLK;
        const real *raw = pre + b;
        if (jitter) {
            jittered(tmp, pre + b, jitter + b, k);
            raw = tmp;
        }
        RFN(sigmoid_backward)(sig.lower, tmp, dci_lower + b, raw, k);  // tmp aliases raw: per element
        for (long i = 0; i < k; i++) dpre[b + i] += jitter ? (real)1.05 * tmp[i] : tmp[i];
    }
}

void RFN(ci_forward_philox)(real *ci_lower, real *ci_upper, const real *pre, long n, spd_sigmoid_pair sig,
                            spd_mask_sampling sampling, uint64_t seed, uint64_t stream) {
    if (sampling == SPD_MASK_BINOMIAL && ci_lower) {
        if (ci_upper) RFN(sigmoid_forward)(sig.upper, ci_upper, pre, n);
        for (long base = 0; base < n; base += 4) {  // raw_lower into ci_lower (which may alias pre)
            real u[4];
            block_draws(u, (uint64_t)base / 4, SPD_MASK_CONTINUOUS, seed, stream);
            long k = n - base < 4 ? n - base : 4;
            jittered(ci_lower + base, pre + base, u, k);
        }
        RFN(sigmoid_forward)(sig.lower, ci_lower, ci_lower, n);
        return;
    }
    RFN(ci_forward)(ci_lower, ci_upper, pre, NULL, n, sig);
}

void RFN(ci_backward_philox)(real *dpre, const real *dci_lower, const real *dci_upper, const real *pre, long n,
                             spd_sigmoid_pair sig, spd_mask_sampling sampling, uint64_t seed, uint64_t stream) {
    real *u = NULL;
    if (sampling == SPD_MASK_BINOMIAL && dci_lower) {
        u = spd_malloc((size_t)(n ? n : 1) * sizeof(real));
        RFN(sample_draws)(u, n, SPD_MASK_CONTINUOUS, seed, stream);
    }
    RFN(ci_backward)(dpre, dci_lower, dci_upper, pre, u, n, sig);
    free(u);
}

// ---- masks ---------------------------------------------------------------------------

void RFN(mask_interpolate_forward)(real *m, const real *ci, const real *s, int N, int C, int ld) {
    SPD_ASSERT(ld == 0 || ld >= C);
    for (long n = 0; n < N; n++)
        for (long c = 0; c < C; c++) {
            real v = ci[n * C + c];
            m[n * C + c] = v + (1 - v) * s[n * ld + c];
        }
}

void RFN(mask_interpolate_backward)(real *dci, real *ds, const real *dm, const real *ci, const real *s, int N,
                                    int C, int ld) {
    SPD_ASSERT(ld == 0 || ld >= C);
    if (dci)
        for (long n = 0; n < N; n++)
            for (long c = 0; c < C; c++) {
                real g = dm[n * C + c];
                dci[n * C + c] = g - g * s[n * ld + c];
            }
    if (!ds) return;
    if (ld > 0) {
        for (long n = 0; n < N; n++)
            for (long c = 0; c < C; c++) ds[n * ld + c] = dm[n * C + c] * (1 - ci[n * C + c]);
        return;
    }
    double *acc = spd_calloc((size_t)(C ? C : 1), sizeof(double));
    for (long n = 0; n < N; n++)
        for (long c = 0; c < C; c++) acc[c] += (double)(dm[n * C + c] * (1 - ci[n * C + c]));
    for (long c = 0; c < C; c++) ds[c] = (real)acc[c];
    free(acc);
}

void RFN(mask_sample)(real *m, const real *ci, long n, spd_mask_sampling sampling, uint64_t seed, uint64_t stream) {
    for (long base = 0; base < n; base += 4) {
        real r[4];
        block_draws(r, (uint64_t)base / 4, sampling, seed, stream);
        for (long j = 0; j < 4 && base + j < n; j++) {
            real v = ci[base + j];
            m[base + j] = v + (1 - v) * r[j];
        }
    }
}

void RFN(mask_sample_backward)(real *dci, const real *dm, long n, spd_mask_sampling sampling, uint64_t seed,
                               uint64_t stream) {
    for (long base = 0; base < n; base += 4) {
        real r[4];
        block_draws(r, (uint64_t)base / 4, sampling, seed, stream);
        for (long j = 0; j < 4 && base + j < n; j++) {
            real g = dm[base + j];
            dci[base + j] = g - g * r[j];
        }
    }
}

void RFN(delta_mask_sample)(real *m_delta, long N, uint64_t seed, uint64_t stream) {
    RFN(sample_draws)(m_delta, N, SPD_MASK_CONTINUOUS, seed, stream);
}

// ---- PGD sources -----------------------------------------------------------------------

void RFN(pgd_source_step)(real *s, const real *g, long n, double step_size) {
    for (long i = 0; i < n; i++) {
        real gi = g[i];
        double v = (double)s[i] + step_size * (double)((gi > 0) - (gi < 0));
        s[i] = (real)(v < 0 ? 0 : v > 1 ? 1 : v);
    }
}

void RFN(pgd_delta_mask_gather)(real *m_delta, const real *s, int N, int C, int ld) {
    for (long n = 0; n < N; n++) m_delta[n] = s[ld ? n * ld + C : C];
}

void RFN(pgd_delta_grad_scatter)(real *ds, const real *ddelta, int N, int C, int ld) {
    if (ld) {
        for (long n = 0; n < N; n++) ds[n * ld + C] = ddelta[n];
        return;
    }
    double acc = 0;
    for (long n = 0; n < N; n++) acc += (double)ddelta[n];
    ds[C] = (real)acc;
}
