#include "core/real.h"
#include "ops/importance_minimality.h"

#include <math.h>

#include "core/error.h"

// Precision-free functions: this file is compiled once per precision, so they
// are defined in the float32 object only.

// ci_upper [N, C] -> S [C] += sum_n (ci_upper + eps)^p.
void RFN(importance_minimality_sums)(double *S, const real *ci_upper, int64_t N, int C, double p, double eps) {
    for (int64_t n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            real t = ci_upper[n * C + c] + (real)eps;
            S[c] += pow((double)t, p);
        }
}

double RFN(importance_minimality_forward)(double *S, const real *const *ci_upper, const int *C, int n_modules,
                                          int64_t N, double p, double eps, double beta, double world_size) {
    SPD_ASSERT(n_modules > 0 && N > 0);
    for (int l = 0, off = 0; l < n_modules; off += C[l], l++) {
        for (int c = 0; c < C[l]; c++) S[off + c] = 0;
        RFN(importance_minimality_sums)(S + off, ci_upper[l], N, C[l], p, eps);
    }
    return importance_minimality_from_sums(S, C, n_modules, (double)N, beta, world_size);
}

// dci [N, C] (written) = scale * dL/dS_c * p (ci + eps)^(p-1); torch's
// pow_backward returns zeros for p = 0 and otherwise evaluates p * t^(p-1)
// (inf at t = 0 for p < 1, 1 at t = 0 for p = 1).
static void module_backward(real *dci, const real *ci, const double *S, int64_t N, int C, double p, double eps,
                            double beta, double world_size, double scale) {
    for (int c = 0; c < C; c++) {
        double sw = S[c] * world_size;
        double dS = (1.0 + beta * log2(1.0 + sw)) / (double)N +
                    beta * (S[c] / (double)N) * world_size / ((1.0 + sw) * M_LN2);
        for (int64_t n = 0; n < N; n++) {
            if (p == 0) {
                dci[n * C + c] = 0;
                continue;
            }
            real t = ci[n * C + c] + (real)eps;
            dci[n * C + c] = (real)(scale * dS * (p * pow((double)t, p - 1.0)));
        }
    }
}

void RFN(importance_minimality_backward)(real *const *dci_upper, const real *const *ci_upper, const double *S,
                                         const int *C, int n_modules, int64_t N, double p, double eps,
                                         double beta, double world_size, double scale) {
    for (int l = 0, off = 0; l < n_modules; off += C[l], l++)
        module_backward(dci_upper[l], ci_upper[l], S + off, N, C[l], p, eps, beta, world_size, scale);
}
