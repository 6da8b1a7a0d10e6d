#include "core/real.h"
#include "ops/components.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ops/matmul.h"

// Every matrix product goes through matmul (BLAS); the loops here are elementwise.
// delta_mask NULL (with a delta) means all ones, like mask.

static real delta_mask_at(const real *delta_mask, long n) { return delta_mask ? delta_mask[n] : 1; }

// scratch [N, C] = a * mask; returns a itself when mask is NULL (all ones).
static const real *masked_acts(real *scratch, const real *a, const real *mask, long NC) {
    if (!mask) return a;
    for (long i = 0; i < NC; i++) scratch[i] = a[i] * mask[i];
    return scratch;
}

// x [N, d_in], V [d_in, C], U [C, d_out], mask [N, C], delta [d_out, d_in], delta_mask [N]
// -> a = x @ V [N, C], out = (a * mask) @ U + delta_mask * (x @ delta^T) [N, d_out]
void RFN(components_forward)(real *out, real *a, const real *x, const real *V, const real *U, const real *mask,
                             const real *delta, const real *delta_mask, int N, int d_in, int C, int d_out,
                             real *scratch) {
    RFN(matmul)(a, x, V, N, C, d_in, false, false, 1, 0);
    const real *am = masked_acts(scratch, a, mask, (long)N * C);
    real beta = 0;
    if (delta) {  // out = delta_mask * (x @ delta^T) first, then the components add onto it
        RFN(matmul)(out, x, delta, N, d_out, d_in, false, true, 1, 0);
        if (delta_mask)
            for (long n = 0; n < N; n++)
                for (int o = 0; o < d_out; o++) out[n * d_out + o] *= delta_mask[n];
        beta = 1;
    }
    RFN(matmul)(out, am, U, N, d_out, C, false, false, 1, beta);
}

// dout [N, d_out] -> dU += (a*mask)^T dout; h = dout @ U^T; dmask = h * a; g_a = h * mask;
// dV += x^T g_a; dx = g_a @ V^T + delta_mask * (dout @ delta);
// ddelta += (delta_mask * dout)^T x; ddelta_mask[n] = dout[n] . (x[n] @ delta^T) = x[n] . (dout[n] @ delta).
// dx doubles as the [N, d_in] workspace of the delta path (a temporary when dx is NULL
// or added onto).
void RFN(components_backward)(real *dx, real *dV, real *dU, real *ddelta, real *dmask, real *ddelta_mask,
                              const real *dout, const real *x, const real *a, const real *V, const real *U,
                              const real *mask, const real *delta, const real *delta_mask, int N, int d_in,
                              int C, int d_out, real *scratch, bool add_dx) {
    const long NC = (long)N * C;
    if (dU) {
        const real *am = masked_acts(scratch, a, mask, NC);
        RFN(matmul)(dU, am, dout, C, d_out, N, true, false, 1, 1);
    }
    real dx_beta = add_dx ? 1 : 0;
    if (delta && (dx || ddelta || ddelta_mask)) {
        real *tmp = dx && !add_dx ? dx : spd_malloc((size_t)N * d_in * sizeof(real));
        if (ddelta) {  // (delta_mask * dout)^T x = dout^T (delta_mask * x)
            for (long n = 0; n < N; n++)
                for (int i = 0; i < d_in; i++) tmp[n * d_in + i] = delta_mask_at(delta_mask, n) * x[n * d_in + i];
            RFN(matmul)(ddelta, dout, tmp, d_out, d_in, N, true, false, 1, 1);
        }
        if (dx || ddelta_mask) {
            RFN(matmul)(tmp, dout, delta, N, d_in, d_out, false, false, 1, 0);
            for (long n = 0; n < N; n++) {
                real *tn = tmp + n * d_in;
                if (ddelta_mask) {
                    double dot = 0;
                    for (int i = 0; i < d_in; i++) dot += (double)x[n * d_in + i] * tn[i];
                    ddelta_mask[n] = (real)dot;
                }
                real g = delta_mask_at(delta_mask, n);
                for (int i = 0; i < d_in; i++) tn[i] *= g;
            }
            if (dx && tmp != dx)
                for (long i = 0; i < (long)N * d_in; i++) dx[i] += tmp[i];
            dx_beta = 1;
        }
        if (tmp != dx) free(tmp);
    }
    if (dx || dV || dmask) {
        real *h = scratch;
        RFN(matmul)(h, dout, U, N, C, d_out, false, true, 1, 0);
        if (dmask)
            for (long i = 0; i < NC; i++) dmask[i] = h[i] * a[i];
        if (mask)  // h becomes g_a in place
            for (long i = 0; i < NC; i++) h[i] *= mask[i];
        if (dV) RFN(matmul)(dV, x, h, d_in, C, N, true, false, 1, 1);
        if (dx) RFN(matmul)(dx, h, V, N, d_in, C, false, true, 1, dx_beta);
    }
}

// The members one after another (the GPU's fused mode groups their launches).
void RFN(components_forward_group)(int G, const components_member *m, const real *x, int N, int d_in, int C,
                                   int d_out) {
    SPD_ASSERT(G >= 1 && G <= COMPONENTS_GROUP_MAX);
    for (int g = 0; g < G; g++)
        RFN(components_forward)(m[g].out, m[g].a, x, m[g].V, m[g].U, m[g].mask, m[g].delta, m[g].delta_mask, N, d_in,
                                C, d_out, m[g].scratch);
}

void RFN(components_backward_group)(int G, const components_member *m, real *dx, bool add_dx, const real *x, int N,
                                    int d_in, int C, int d_out) {
    SPD_ASSERT(G >= 1 && G <= COMPONENTS_GROUP_MAX && dx);
    for (int g = 0; g < G; g++)
        RFN(components_backward)(dx, m[g].dV, m[g].dU, m[g].ddelta, m[g].dmask, m[g].ddelta_mask, m[g].dout, x,
                                 m[g].a, m[g].V, m[g].U, m[g].mask, m[g].delta, m[g].delta_mask, N, d_in, C, d_out,
                                 m[g].scratch, add_dx || g > 0);
}

// The CPU reads V and U as they are.
void RFN(components_weights_prepare)(int n, const real *const *W) {
    (void)n;
    (void)W;
}
void RFN(components_weights_release)(void) {}
void RFN(components_weights_forget)(int n, const real *const *W) {
    (void)n;
    (void)W;
}

// delta [d_out, d_in] = W - (V @ U)^T = W - U^T @ V^T
void RFN(weight_delta_forward)(real *delta, const real *W, const real *V, const real *U, int d_in, int C,
                               int d_out) {
    memcpy(delta, W, (size_t)d_out * d_in * sizeof(real));
    RFN(matmul)(delta, U, V, d_out, d_in, C, true, true, -1, 1);
}

// dV [d_in, C] -= ddelta^T @ U^T; dU [C, d_out] -= V^T @ ddelta^T
void RFN(weight_delta_backward)(real *dV, real *dU, const real *ddelta, const real *V, const real *U, int d_in,
                                int C, int d_out) {
    if (dV) RFN(matmul)(dV, ddelta, U, d_in, C, d_out, true, true, -1, 1);
    if (dU) RFN(matmul)(dU, V, ddelta, C, d_out, d_in, true, true, -1, 1);
}

// tokens [N], V [vocab, C], U [C, d], mask [N, C], delta [vocab, d], delta_mask [N]
// -> a = V[tokens] [N, C], out = (a * mask) @ U + delta_mask * delta[tokens] [N, d]
void RFN(embedding_components_forward)(real *out, real *a, const int32_t *tokens, const real *V, const real *U,
                                       const real *mask, const real *delta, const real *delta_mask, int N,
                                       int vocab, int C, int d, real *scratch) {
    for (long n = 0; n < N; n++) {
        SPD_ASSERT(tokens[n] >= 0 && tokens[n] < vocab);
        memcpy(a + n * C, V + (long)tokens[n] * C, (size_t)C * sizeof(real));
    }
    const real *am = masked_acts(scratch, a, mask, (long)N * C);
    RFN(matmul)(out, am, U, N, d, C, false, false, 1, 0);
    if (!delta) return;
    for (long n = 0; n < N; n++) {
        const real *dt = delta + (long)tokens[n] * d;
        real g = delta_mask_at(delta_mask, n);
        for (int i = 0; i < d; i++) out[n * d + i] += g * dt[i];
    }
}

// dout [N, d] -> dU += (a*mask)^T dout; h = dout @ U^T; dmask = h * a;
// dV[tokens[n]] += h[n] * mask[n]; ddelta[tokens[n]] += delta_mask[n] * dout[n];
// ddelta_mask[n] = dout[n] . delta[tokens[n]].
void RFN(embedding_components_backward)(real *dV, real *dU, real *ddelta, real *dmask, real *ddelta_mask,
                                        const real *dout, const int32_t *tokens, const real *a, const real *V,
                                        const real *U, const real *mask, const real *delta,
                                        const real *delta_mask, int N, int vocab, int C, int d, real *scratch) {
    const long NC = (long)N * C;
    if (dU) {
        const real *am = masked_acts(scratch, a, mask, NC);
        RFN(matmul)(dU, am, dout, C, d, N, true, false, 1, 1);
    }
    if (delta) {
        for (long n = 0; n < N; n++) {
            long t = tokens[n];
            const real *gn = dout + n * d;
            if (ddelta) {
                real g = delta_mask_at(delta_mask, n);
                for (int i = 0; i < d; i++) ddelta[t * d + i] += g * gn[i];
            }
            if (ddelta_mask) {
                double dot = 0;
                for (int i = 0; i < d; i++) dot += (double)gn[i] * delta[t * d + i];
                ddelta_mask[n] = (real)dot;
            }
        }
    }
    if (dV || dmask) {
        real *h = scratch;
        RFN(matmul)(h, dout, U, N, C, d, false, true, 1, 0);
        if (dmask)
            for (long i = 0; i < NC; i++) dmask[i] = h[i] * a[i];
        if (dV)
            for (long n = 0; n < N; n++) {
                real *dVt = dV + (long)tokens[n] * C;
                for (int c = 0; c < C; c++) dVt[c] += h[n * C + c] * (mask ? mask[n * C + c] : 1);
            }
    }
}

// delta [vocab, d] = W - V @ U
void RFN(embedding_weight_delta_forward)(real *delta, const real *W, const real *V, const real *U, int vocab,
                                         int C, int d) {
    memcpy(delta, W, (size_t)vocab * d * sizeof(real));
    RFN(matmul)(delta, V, U, vocab, d, C, false, false, -1, 1);
}

// dV [vocab, C] -= ddelta @ U^T; dU [C, d] -= V^T @ ddelta
void RFN(embedding_weight_delta_backward)(real *dV, real *dU, const real *ddelta, const real *V, const real *U,
                                          int vocab, int C, int d) {
    if (dV) RFN(matmul)(dV, ddelta, U, vocab, C, d, false, true, -1, 1);
    if (dU) RFN(matmul)(dU, V, ddelta, C, d, vocab, true, false, -1, 1);
}
