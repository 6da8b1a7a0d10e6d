// SPD's causal-importance functions (SPD_SPEC.md 2.1, spd/models/components.py):
// per decomposed module, a small network from the module's input (or its
// component acts) to one pre_sigmoid value per subcomponent.
//
//   ci_fn_type  input           network                                  params of layer k
//   mlp         a [N, C]        C scalar MLPs 1 -> h1 -> ... -> hk -> 1   W [C, i, o], b [C, o]
//   vector_mlp  x [N, d_in]     C MLPs d_in -> h1 -> ... -> hk -> 1       W [C, i, o], b [C, o]
//   shared_mlp  x [N, d_in]     one MLP d_in -> h1 -> ... -> hk -> C      W [i, o], b [o]
//
// Exact-erf GELU after every hidden layer; output pre_sigmoid [N, C]. The
// parallel types (mlp, vector_mlp) are SPD's ParallelLinear, y[., c, :] =
// x[., c, :] W[c] + b[c]; shared_mlp's Linear is input-major, y = x W + b.
// mlp and vector_mlp need at least one hidden layer; shared_mlp with none is a
// single Linear d_in -> C.
//
// State-dict names: `_ci_fns.<dashed>.layers.<2k>.W` and `.b` for linear layer
// k (layers.1, .3, ... are the parameter-free GELUs).
// Init (SPD's init_param_): hidden W ~ N(0, 2/fan_in) (ReLU gain, though the
// activation is GELU), final W ~ N(0, 1/fan_in), b = 0; fan_in = that layer's
// input width (1 for mlp's first layer).
//
// Gradient convention (components.h): parameter gradients accumulate (+=),
// the input gradient is written (=).
#ifndef SPD_OPS_CI_FN_H
#define SPD_OPS_CI_FN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/real.h"

#define SPD_CI_FN_MAX_LAYERS 8  // linear layers: hidden layers + the final one

typedef enum { SPD_CI_MLP, SPD_CI_VECTOR_MLP, SPD_CI_SHARED_MLP, SPD_CI_KIND_COUNT } spd_ci_fn_kind;

// The architecture of one CI function; precision-free.
// width[0] is one network's input width (1 for mlp, d_in otherwise),
// width[k + 1] the output width of linear layer k (1 for the last layer of the
// parallel types, C for shared_mlp).
typedef struct {
    spd_ci_fn_kind kind;
    int C, d_in;    // d_in: the module's input width (unused by mlp)
    int n_layers;   // linear layers = hidden layers + 1
    int width[SPD_CI_FN_MAX_LAYERS + 1];
} spd_ci_fn_arch;

// "mlp", "vector_mlp", "shared_mlp" (config ci_fn_type); else an error (-1).
// The config layer keeps its own enum (spd/config.h); it maps here by SPD's
// literal: spd_ci_fn_kind_parse(spd_ci_fn_type_name(v), &kind).
int spd_ci_fn_kind_parse(const char *name, spd_ci_fn_kind *out);
const char *spd_ci_fn_kind_name(spd_ci_fn_kind t);
// Validates (C >= 1, d_in >= 1 unless mlp, widths >= 1, >= 1 hidden layer for the
// parallel types, at most SPD_CI_FN_MAX_LAYERS - 1 hidden) with a message; 0 or -1.
int spd_ci_fn_arch_init(spd_ci_fn_arch *arch, spd_ci_fn_kind kind, int C, int d_in, const int *hidden,
                        int n_hidden);
// Width of the CI function's input per position: C for mlp, d_in otherwise.
int spd_ci_fn_input_width(const spd_ci_fn_arch *arch);
// Shape of layer k's W (bias false) or b (bias true) into shape[]; returns ndim.
int spd_ci_fn_param_shape(const spd_ci_fn_arch *arch, int layer, bool bias, int64_t shape[3]);
// "_ci_fns.<dashed>.layers.<2 layer>.W" (or ".b") into out; returns 0, or -1
// (with a message) when it does not fit.
int spd_ci_fn_param_name(char *out, size_t size, const char *dashed, int layer, bool bias);
// Standard deviation of layer k's W at init: sqrt(2 / fan_in) hidden, sqrt(1 / fan_in) final.
double spd_ci_fn_init_std(const spd_ci_fn_arch *arch, int layer);
// Elements of hidden layer k's saved activations (pre and post), k < n_layers - 1:
// N * C * width[k + 1] (parallel, laid out [N, C, h]) or N * width[k + 1] (shared, [N, h]).
size_t spd_ci_fn_hidden_elems(const spd_ci_fn_arch *arch, int N, int k);
// Elements of the workspace forward and backward need for N positions.
size_t spd_ci_fn_workspace_elems(const spd_ci_fn_arch *arch, int N);

// One CI function's buffers in one precision. Parameters and their gradients
// per linear layer k < n_layers (dW[k] / db[k] NULL: no parameter gradient);
// pre[k] / post[k] hold hidden layer k's activations before / after GELU,
// written by forward and read by backward; cdf[k] (optional, NULL: recomputed)
// caches Phi(pre[k]) between them, saving an erf per hidden element (for mlp with
// one hidden layer, forward then writes only cdf[0] and backward recomputes pre and
// post from it: pre[0] / post[0] are left unused); work has
// spd_ci_fn_workspace_elems(arch, N) elements. Defined for both precisions so
// that one program can hold both; `ci_fn` is this backend's.
#define SPD_CI_FN_DEFINE(T, NAME)                                              \
    typedef struct {                                                           \
        spd_ci_fn_arch arch;                                                   \
        const T *W[SPD_CI_FN_MAX_LAYERS], *b[SPD_CI_FN_MAX_LAYERS];            \
        T *dW[SPD_CI_FN_MAX_LAYERS], *db[SPD_CI_FN_MAX_LAYERS];                \
        T *pre[SPD_CI_FN_MAX_LAYERS - 1], *post[SPD_CI_FN_MAX_LAYERS - 1];     \
        T *work;                                                               \
        T *cdf[SPD_CI_FN_MAX_LAYERS - 1];                                      \
    } NAME;
SPD_CI_FN_DEFINE(float, ci_fn_f32)
SPD_CI_FN_DEFINE(double, ci_fn_f64)
#ifdef SPD_F64
typedef ci_fn_f64 ci_fn;
#else
typedef ci_fn_f32 ci_fn;
#endif

// in [N, spd_ci_fn_input_width] (a for mlp, x otherwise) -> pre_sigmoid [N, C];
// saves the hidden activations in f->pre, f->post.
void RFN(ci_fn_forward)(ci_fn *f, real *pre_sigmoid, const real *in, int N);

// dpre_sigmoid [N, C] -> dW, db (accumulated, where non-NULL), din [N, input
// width] (written; NULL to skip: for mlp it is d a, for the others d x).
// `in` is the forward's input; f->pre, f->post hold the forward's activations.
void RFN(ci_fn_backward)(ci_fn *f, real *din, const real *dpre_sigmoid, const real *in, int N);

// Fills W[k] (layer k's weight, N(0, spd_ci_fn_init_std^2) from Philox stream
// (seed, stream + k), drawn in float64 and rounded) and b[k] (zeros) for every
// layer; b may be NULL.
void RFN(ci_fn_init_params)(const spd_ci_fn_arch *arch, real *const *W, real *const *b, uint64_t seed,
                            uint64_t stream);

#endif
