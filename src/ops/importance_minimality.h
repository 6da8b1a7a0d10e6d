// Importance minimality loss (SPD_SPEC.md 4.2; SPD's ImportanceMinimalityLoss),
// on the upper (leaky) causal importances of every decomposed module:
//
//   S_c = sum_n (ci_upper[n, c] + eps)^p        (over all N positions of this rank)
//   mu_c = S_c / N
//   L_l = sum_c [ mu_c + beta mu_c log2(1 + S_c W) ],     L = sum_l L_l
//
// p is the annealed pnorm (importance_minimality_p), W the world size in
// training (the local sum stands in for the global one) and 1 in eval, where S
// and N are all-reduced first. No normalisation over modules or components.
//
// Gradient: dL/dci[n,c] = dL/dS_c * p (ci[n,c] + eps)^(p - 1), with
//   dL/dS_c = (1 + beta log2(1 + S_c W)) / N + beta S_c W / (N (1 + S_c W) ln 2).
// The power's derivative follows torch's pow_backward: p = 0 gives 0; otherwise
// p * t^(p-1) as evaluated, so at t = ci + eps = 0 with p < 1 it is +inf (eps 0)
// while SPD's default eps 1e-12 makes it finite (p = 0.5: 0.5e6).
// S and the loss are evaluated in float64; ci + eps is rounded in the storage
// precision first, as torch adds eps to the tensor.
#ifndef SPD_OPS_IMPORTANCE_MINIMALITY_H
#define SPD_OPS_IMPORTANCE_MINIMALITY_H

#include <stdbool.h>
#include <stdint.h>

#include "core/real.h"

// The effective p at training fraction frac = step / steps (SPD's
// _get_linear_annealed_p): pnorm when there is no final_p or start_frac >= 1;
// else pnorm before start_frac, final_p from end_frac on, linear in between.
// Requires end_frac >= start_frac when annealing (checked by the config).
double importance_minimality_p(double pnorm, double start_frac, bool has_final_p, double final_p, double end_frac,
                               double frac);

// Per-module sums S [sum_l C[l]] (module l's C[l] entries after the previous
// modules') -> L. N: positions (eval: summed over batches and ranks).
double importance_minimality_from_sums(const double *S, const int *C, int n_modules, double N, double beta,
                                       double world_size);

// ci_upper [N, C] -> S [C] += sum_n (ci_upper + eps)^p. Accumulates, so eval can
// add batches; zero S first.
void RFN(importance_minimality_sums)(double *S, const real *ci_upper, int64_t N, int C, double p, double eps);

// ci_upper[l] [N, C[l]] -> L; S [sum_l C[l]] (written) keeps the sums for backward.
double RFN(importance_minimality_forward)(double *S, const real *const *ci_upper, const int *C, int n_modules,
                                          int64_t N, double p, double eps, double beta, double world_size);

// dci_upper[l] [N, C[l]] (written) = scale * dL/dci_upper, S from the forward.
// scale = the loss coefficient.
void RFN(importance_minimality_backward)(real *const *dci_upper, const real *const *ci_upper, const double *S,
                                         const int *C, int n_modules, int64_t N, double p, double eps,
                                         double beta, double world_size, double scale);

#endif
