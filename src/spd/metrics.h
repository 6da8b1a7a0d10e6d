// SPD's evaluation metrics (SPD_SPEC.md 8; spd/metrics/*.py), on host arrays.
// CI arrays are [N, C] row-major (positions x components) in float32 or float64
// (spd_dtype SPD_DTYPE_F32 / SPD_DTYPE_F64); everything accumulates in double.
//
// Key names are SPD's, unprefixed as in metrics.jsonl (wandb adds "eval/"):
//   l0/<thr>_<module>, l0/<thr>_<group>     CI_L0 (thr as Python's str(float): 0.0, 0.1, 1e-05)
//   target_solution_error/total, .../total_0p2, .../<module>   IdentityCIError
// Ours (no SPD key at HEAD):
//   n_alive/t<thr>_<module>   components with ci > thr at some eval position
//                             (AliveComponentsTracker's train/n_alive/t<thr>_<module>, SPD_SPEC 5.11)
//   mmcs/<module>, ml2r/<module>   the paper's TMS metrics (SPD_SPEC 7.5)
//   n_significant/<module>         the paper's TMS subcomponent count (spd_tms_n_significant)
// (spd_component_norms / spd_count_nonnegligible: components with a non-negligible
// rank-one weight, the paper's qualitative TMS check; no key is emitted for it here.)
//
// Eval flow (SPD's Metric.update / compute): spd_eval_acc_init once per eval,
// spd_eval_acc_update per eval batch with every module's ci_lower (and
// pre-sigmoid CI for the histograms), spd_eval_acc_compute into a key list.
// Density and mean CI per component are read from the accumulator
// (spd_eval_acc_density / spd_eval_acc_ci_mean) for the figures.
#ifndef SPD_METRICS_H
#define SPD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/tensor.h"
#include "spd/config.h"

// ------------------------------------------------------------ key/value list

typedef struct {
    char key[256];
    double value;
    bool is_int;  // written without a fraction (SPD's ints: target_solution_error)
} spd_metric_kv;

typedef struct {
    spd_metric_kv *items;
    int count, cap;
} spd_metric_list;

void spd_metric_list_add(spd_metric_list *l, const char *key, double value, bool is_int);
// NULL if absent.
const spd_metric_kv *spd_metric_list_find(const spd_metric_list *l, const char *key);
// Writes `, "key": value` for every item (to splice into a metrics.jsonl line).
void spd_metric_list_write_json(const spd_metric_list *l, FILE *f);
void spd_metric_list_free(spd_metric_list *l);

// Python's str(float) (shortest round-trip repr): 0.0, 0.1, 1e-05, 0.0001, 1.0.
void spd_py_float_str(char *buf, size_t size, double v);
// CI_L0's group match: re.match(pattern.replace("*", ".*"), name) (anchored at
// the start only; '.' any char; other characters literal).
bool spd_l0_group_match(const char *pattern, const char *name);
// fnmatch.fnmatch (IdentityCIError's layer_pattern): '*', '?', '[...]'.
bool spd_fnmatch(const char *pattern, const char *name);

// Reads element i of a float32/float64 array.
static inline double spd_metric_at(const void *p, spd_dtype dtype, int64_t i) {
    return dtype == SPD_DTYPE_F64 ? ((const double *)p)[i] : (double)((const float *)p)[i];
}

// A Python-float threshold as torch compares it with a tensor of `dtype`
// (the scalar is cast to the tensor's dtype: float32 CI vs 0.1 compares with 0.1f).
static inline double spd_metric_threshold(double thr, spd_dtype dtype) {
    return dtype == SPD_DTYPE_F32 ? (double)(float)thr : thr;
}

// ------------------------------------------------------------ per-batch metrics

// mean_n #{c : ci[n, c] > thr} (calc_ci_l_zero; strict >).
double spd_ci_l0(const void *ci, spd_dtype dtype, int64_t N, int C, double thr);

// ------------------------------------------------------------ eval accumulator

typedef struct {
    int n_mods;
    char **names;  // module paths, SPD's order
    int *C;
    double thr;    // ci_alive_threshold
    // CI_L0 groups (NULL names when none).
    int n_groups;
    char **group_names;
    bool *group_has;       // [n_groups][n_mods]: module l counts in group g
    double *l0_sum;        // [n_mods + n_groups]: sum over batches of the batch L0
    int64_t n_batches;
    // Density / mean / alive.
    int64_t n_pos;         // positions seen
    double **active_count; // [n_mods][C]: #{n : ci > thr}
    double **ci_sum;       // [n_mods][C]
    double **ci_max;       // [n_mods][C]
    // CIHistograms: the raw values of the first n_batches_accum batches (< 0: all).
    int64_t hist_batches_max, hist_batches;
    double **hist_ci, **hist_pre;
    int64_t *hist_len, *hist_pre_len, *hist_cap, *hist_pre_cap;
} spd_eval_acc;

// groups: CI_L0's config groups, or NULL. hist_batches_max: CIHistograms'
// n_batches_accum (-1 for null = every batch; 0 keeps no values).
void spd_eval_acc_init(spd_eval_acc *a, int n_mods, const char *const *names, const int *C, double thr,
                       const spd_pattern_groups *groups, int64_t hist_batches_max);
// One eval batch: ci_lower[l] [N, C_l]; pre_sigmoid[l] (or pre_sigmoid NULL) for the histograms.
void spd_eval_acc_update(spd_eval_acc *a, int64_t N, const void *const *ci_lower, const void *const *pre_sigmoid,
                         spd_dtype dtype);
// Appends l0/<thr>_<module>, l0/<thr>_<group> (groups with a matching module)
// and n_alive/t<thr>_<module>.
void spd_eval_acc_compute(const spd_eval_acc *a, spd_metric_list *out);
// ComponentActivationDensity: out[c] = #{n : ci[n,c] > thr} / N_total; CIMeanPerComponent: mean ci.
void spd_eval_acc_density(const spd_eval_acc *a, int l, double *out);
void spd_eval_acc_ci_mean(const spd_eval_acc *a, int l, double *out);
// Components with ci > thr at some position seen.
int spd_eval_acc_n_alive(const spd_eval_acc *a, int l);
void spd_eval_acc_free(spd_eval_acc *a);

// ------------------------------------------------------------ IdentityCIError

// ci [F, C] row-major (CI of one-hot inputs 0.75 * e_f), float64: the tolerance
// comparisons are in float64 (torch compares float32 CI in float32; a value
// within a float32 rounding of 1 - tol or tol may count differently). Identity: columns
// permuted by the assignment maximising the diagonal (Hungarian when
// min(F, C) < 500, else SPD's greedy), then off-diagonal entries > tol plus
// diagonal entries < 1 - tol. Needs F == n_features <= C; -1 otherwise (spd_set_error).
int spd_identity_ci_distance(const double *ci, int F, int C, int n_features, double tol);
// Dense(k): columns sorted by sum (descending): per first-k column max(0, 1 -
// #{entries >= 1 - tol}), plus all entries > tol of the other columns. -1 if C < k.
int spd_dense_ci_distance(const double *ci, int F, int C, int k, double tol);
// Column permutation used by the identity distance (perm[C]; for figures).
void spd_identity_ci_permutation(const double *ci, int F, int C, int *perm);

typedef struct {
    char pattern[128];  // fnmatch layer_pattern
    bool dense;         // DenseCIPattern (k) or IdentityCIPattern (n_features)
    int n;              // n_features or k
} spd_target_ci_pattern;

// From IdentityCIError's config (identity entries first, then dense: SPD's dict
// order). Returns the count (<= max).
int spd_target_ci_patterns_from_config(spd_target_ci_pattern *out, int max, const spd_kv_dict_list *identity_ci,
                                       bool has_identity, const spd_kv_dict_list *dense_ci, bool has_dense);
// compute_target_metrics: target_solution_error/total (tol 0.1), /total_0p2, /<module>
// over the modules matched by a pattern (first match wins). ci[l] [F_l, C_l]. 0 or -1.
int spd_identity_ci_error(const spd_target_ci_pattern *pats, int n_pats, int n_mods, const char *const *names,
                          const double *const *ci, const int *F, const int *C, spd_metric_list *out);

// ------------------------------------------------------------ TMS (paper, Table 1)

// W [d_out, d_in] (nn.Linear layout), V [d_in, C], U [C, d_out]. Per input
// feature j (column w_j = W[:, j]) and component c (column U[c,:]^T V[j,c]):
// cos = <a, b> / max(|a| |b|, 1e-8) (torch's cosine_similarity);
// MMCS = mean_j max_c cos, ML2R = mean_j |U[c*,:] V[j,c*]| / |w_j| at c* = argmax_c
// (first on ties). Columns with |w_j| = 0 count ratio 0.
void spd_mmcs_ml2r(const void *W, const void *V, const void *U, spd_dtype dtype, int d_out, int d_in, int C,
                   double *mmcs, double *ml2r);
// The paper's count of significant TMS subcomponents: SPD's plotting rule
// (spd/experiments/tms/plotting.py, which drew the paper's TMS figures), float64.
// Subcomponent c's rank-one weight is V[:,c] U[c,:] (V [d_in, C], U [C, d_out]):
//   SPD_SIGNIF_INPUT_FEATURES  (TMSAnalyzer.filter_significant_subnets on linear1:
//       torch.einsum("f C, C h -> C f h", V, U).norm(dim=-1).sum(-1)):
//       norm_c = sum_i |(V[i,c] U[c,o])_o|: per input feature i the norm of the vector it
//       writes (a row of V U), summed over the input features;
//   SPD_SIGNIF_OUTPUT_FEATURES the same over output features (a module whose features are the
//       rows of W, e.g. TMS linear2: for SPD's tied target it equals linear1's);
//   SPD_SIGNIF_FROBENIUS       (HiddenLayerPlotter on hidden_layers.0:
//       einsum("f C, C h -> C f h", V, U).norm(dim=(-1, -2))): the Frobenius norm.
// Counted when norm_c > thr (strict, as SPD's mask). SPD's PlotConfig thresholds are
// SPD_TMS_SUBNET_NORM_THRESHOLD (0.017, the feature rules) and SPD_TMS_HIDDEN_LAYER_THRESHOLD
// (0.009, Frobenius); its main() used 0.03 / 0.0115 for the 5-2-identity run.
// norms (NULL or [C]) receives norm_c.
#define SPD_TMS_SUBNET_NORM_THRESHOLD 0.017
#define SPD_TMS_HIDDEN_LAYER_THRESHOLD 0.009
typedef enum { SPD_SIGNIF_INPUT_FEATURES, SPD_SIGNIF_OUTPUT_FEATURES, SPD_SIGNIF_FROBENIUS } spd_signif_rule;
int spd_tms_n_significant(const void *V, const void *U, spd_dtype dtype, int d_in, int d_out, int C,
                          spd_signif_rule rule, double thr, double *norms);
// Which rule and threshold a TMS module gets (its weight W [d_out, d_in], n_features F):
// input features when d_in == F (linear1, as SPD's plots), output features when d_out == F
// (linear2), else Frobenius (the hidden layers, H x H). Returns the threshold.
double spd_tms_significance_rule(int d_in, int d_out, int F, spd_signif_rule *rule);
// Frobenius norm of each component's rank-one weight: norms[c] = |V[:,c]| |U[c,:]|.
void spd_component_norms(const void *V, const void *U, spd_dtype dtype, int d_in, int d_out, int C, double *norms);
// #{c : norms[c] > rel * max_c norms}.
int spd_count_nonnegligible(const double *norms, int C, double rel);

#endif
