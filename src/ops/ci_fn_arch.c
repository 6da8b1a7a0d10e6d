// CI function architectures: shapes, names and initialisation of their parameters.
// Compiled once (precision-free); the precision-generic ops are in the file of the same concept.
#include "ops/ci_fn.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "core/philox.h"
#include "ops/gelu.h"
#include "ops/matmul.h"

static bool parallel(const spd_ci_fn_arch *a) { return a->kind != SPD_CI_SHARED_MLP; }

static const char *const kind_names[SPD_CI_KIND_COUNT] = {"mlp", "vector_mlp", "shared_mlp"};

int spd_ci_fn_kind_parse(const char *name, spd_ci_fn_kind *out) {
    for (int t = 0; t < SPD_CI_KIND_COUNT; t++)
        if (strcmp(name, kind_names[t]) == 0) {
            *out = (spd_ci_fn_kind)t;
            return 0;
        }
    return spd_set_error("ci_fn_type: expected one of mlp, vector_mlp, shared_mlp, found \"%s\"", name);
}

const char *spd_ci_fn_kind_name(spd_ci_fn_kind t) {
    SPD_ASSERT(t >= 0 && t < SPD_CI_KIND_COUNT);
    return kind_names[t];
}

int spd_ci_fn_arch_init(spd_ci_fn_arch *arch, spd_ci_fn_kind kind, int C, int d_in, const int *hidden,
                        int n_hidden) {
    memset(arch, 0, sizeof *arch);
    if (kind < 0 || kind >= SPD_CI_KIND_COUNT) return spd_set_error("ci_fn_type: unknown type %d", (int)kind);
    const char *tn = kind_names[kind];
    if (C < 1) return spd_set_error("ci_fn %s: C must be >= 1, found %d", tn, C);
    if (kind != SPD_CI_MLP && d_in < 1) return spd_set_error("ci_fn %s: d_in must be >= 1, found %d", tn, d_in);
    if (kind != SPD_CI_SHARED_MLP && n_hidden < 1)
        return spd_set_error("ci_fn_hidden_dims: ci_fn_type %s needs at least one hidden layer, found none", tn);
    if (n_hidden < 0 || n_hidden > SPD_CI_FN_MAX_LAYERS - 1)
        return spd_set_error("ci_fn_hidden_dims: at most %d hidden layers are supported, found %d",
                             SPD_CI_FN_MAX_LAYERS - 1, n_hidden);
    for (int k = 0; k < n_hidden; k++)
        if (hidden[k] < 1)
            return spd_set_error("ci_fn_hidden_dims[%d]: expected a width >= 1, found %d", k, hidden[k]);
    arch->kind = kind;
    arch->C = C;
    arch->d_in = kind == SPD_CI_MLP ? 0 : d_in;
    arch->n_layers = n_hidden + 1;
    arch->width[0] = kind == SPD_CI_MLP ? 1 : d_in;
    for (int k = 0; k < n_hidden; k++) arch->width[k + 1] = hidden[k];
    arch->width[n_hidden + 1] = kind == SPD_CI_SHARED_MLP ? C : 1;
    return 0;
}

int spd_ci_fn_input_width(const spd_ci_fn_arch *arch) { return arch->kind == SPD_CI_MLP ? arch->C : arch->d_in; }

int spd_ci_fn_param_shape(const spd_ci_fn_arch *arch, int layer, bool bias, int64_t shape[3]) {
    SPD_ASSERT(layer >= 0 && layer < arch->n_layers);
    int64_t wi = arch->width[layer], wo = arch->width[layer + 1];
    if (parallel(arch)) {
        shape[0] = arch->C;
        shape[1] = bias ? wo : wi;
        shape[2] = wo;
        return bias ? 2 : 3;
    }
    shape[0] = bias ? wo : wi;
    shape[1] = wo;
    return bias ? 1 : 2;
}

int spd_ci_fn_param_name(char *out, size_t size, const char *dashed, int layer, bool bias) {
    int n = snprintf(out, size, "_ci_fns.%s.layers.%d.%s", dashed, 2 * layer, bias ? "b" : "W");
    if (n < 0 || (size_t)n >= size) return spd_set_error("ci_fn parameter name for %s is too long", dashed);
    return 0;
}

double spd_ci_fn_init_std(const spd_ci_fn_arch *arch, int layer) {
    SPD_ASSERT(layer >= 0 && layer < arch->n_layers);
    double gain2 = layer == arch->n_layers - 1 ? 1.0 : 2.0;
    return sqrt(gain2 / arch->width[layer]);
}

size_t spd_ci_fn_hidden_elems(const spd_ci_fn_arch *arch, int N, int k) {
    SPD_ASSERT(k >= 0 && k < arch->n_layers - 1);
    return (size_t)N * (parallel(arch) ? (size_t)arch->C : 1) * (size_t)arch->width[k + 1];
}

size_t spd_ci_fn_workspace_elems(const spd_ci_fn_arch *arch, int N) {
    int n_hidden = arch->n_layers - 1;
    size_t max_hidden = 0;
    for (int k = 0; k < n_hidden; k++) {
        size_t e = spd_ci_fn_hidden_elems(arch, N, k);
        if (e > max_hidden) max_hidden = e;
    }
    size_t w = (size_t)(n_hidden < 2 ? n_hidden : 2) * max_hidden;
    if (arch->kind == SPD_CI_VECTOR_MLP) w += (size_t)arch->d_in * arch->C * arch->width[1];
    return w;
}
