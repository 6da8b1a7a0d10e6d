// Importance minimality's effective p (annealing) and its value from all-reduced sums.
// Compiled once (precision-free); the precision-generic loss is in importance_minimality.c.
#include "ops/importance_minimality.h"
#include <math.h>
#include "core/error.h"

double importance_minimality_p(double pnorm, double start_frac, bool has_final_p, double final_p, double end_frac,
                               double frac) {
    if (!has_final_p || start_frac >= 1.0) return pnorm;
    SPD_ASSERT(end_frac >= start_frac);
    if (frac < start_frac) return pnorm;
    if (frac >= end_frac) return final_p;
    double progress = (frac - start_frac) / (end_frac - start_frac);
    return pnorm + (final_p - pnorm) * progress;
}

// Evaluated as SPD writes it: mean + beta * mean * log2(1 + S * W), summed over
// components, then over modules.
double importance_minimality_from_sums(const double *S, const int *C, int n_modules, double N, double beta,
                                       double world_size) {
    double total = 0;
    for (int l = 0, off = 0; l < n_modules; off += C[l], l++) {
        double layer = 0;
        for (int c = 0; c < C[l]; c++) {
            double mean = S[off + c] / N;
            layer += mean + beta * mean * log2(1.0 + S[off + c] * world_size);
        }
        total += layer;
    }
    return total;
}
