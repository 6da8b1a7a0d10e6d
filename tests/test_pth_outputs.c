// The C side of tests/cli_pth.sh's check against PyTorch SPD: a tied-TMS run
// exported with `spd export --format pth` and loaded by SPD's ComponentModel
// (tests/refgen/check_pth_export.py) computes, on SPD's input batch, the same
// outputs as spd.c's ops on the run's own model_<s>.safetensors:
//   target output ReLU(W2 W1 x + b); per module the mlp CI function's output
//   on the component acts of the module's input and the causal importances
//   (its lower leaky hard sigmoid); the output through all components (masks
//   of ones) and through the components masked by the CI.
// Both sides compute in float64; bound 1e-12 (max- and norm-relative).
// Environment: SPD_PTH_MODEL (model_<s>.safetensors) and SPD_PTH_IO (SPD's
// io.safetensors). Without them (the plain test run) it only says it skipped:
// the shell test that makes the files runs it where the torch venv exists.
#define SPD_F64
#include "core/real.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/safetensors.h"
#include "ops/ci_fn.h"
#include "ops/components.h"
#include "ops/sigmoid.h"
#include "testing.h"

static spd_st_file *model, *io;

// Every buffer, freed at the end (LeakSanitizer runs in CI).
static void *owned[256];
static int n_owned;
static void *alloc(size_t bytes) {
    SPD_ASSERT(n_owned < 256);
    return owned[n_owned++] = spd_calloc(1, bytes ? bytes : 1);
}

// Tensor `name` of f as float64 (shape into shape[], ndim returned via *nd).
static double *get(spd_st_file *f, const char *name, int *nd, int64_t *shape) {
    const spd_st_entry *e = spd_st_find(f, name);
    if (!e) spd_die_input("%s: no tensor '%s'", f->path, name);
    int64_t n = 1;
    for (int i = 0; i < e->ndim; i++) n *= e->shape[i];
    double *d = alloc((size_t)n * sizeof *d);
    if (spd_st_read(f, name, SPD_DTYPE_F64, -1, NULL, d)) spd_die_last_error();
    if (nd) *nd = e->ndim;
    if (shape) memcpy(shape, e->shape, (size_t)e->ndim * sizeof *shape);
    return d;
}

static void compare(const char *what, const double *ours, const char *io_name, int64_t n) {
    int64_t shape[SPD_MAX_DIMS];
    int nd;
    double *ref = get(io, io_name, &nd, shape);
    int64_t m = 1;
    for (int i = 0; i < nd; i++) m *= shape[i];
    double norm = m == n ? test_rel_norm_err(ours, ref, (long)n) : INFINITY, mx = 0, big = 0;
    for (int64_t i = 0; m == n && i < n; i++) {
        mx = fmax(mx, fabs(ours[i] - ref[i]));
        big = fmax(big, fabs(ref[i]));
    }
    double maxrel = big > 0 ? mx / big : mx;
    char name[200];
    snprintf(name, sizeof name, "SPD's loaded model = spd.c on the exported run: %s (max-rel %.1e, norm-rel %.1e)", what,
             maxrel, norm);
    test_report(m == n && maxrel <= 1e-12 && norm <= 1e-12, name, "%lld elements vs %lld", (long long)n, (long long)m);
}

typedef struct {
    double *V, *U;
    int d_in, d_out, C;
    ci_fn f;
    double *Wl[SPD_CI_FN_MAX_LAYERS], *bl[SPD_CI_FN_MAX_LAYERS];
} module;

static void load_module(module *m, const char *dashed, int N) {
    *m = (module){0};  // every ci_fn pointer not set below is NULL (an unset cdf would select the fused path)
    char name[SPD_NAME_MAX];
    int64_t sv[2], su[2], sw[3];
    snprintf(name, sizeof name, "_components.%s.V", dashed);
    m->V = get(model, name, NULL, sv);
    snprintf(name, sizeof name, "_components.%s.U", dashed);
    m->U = get(model, name, NULL, su);
    m->d_in = (int)sv[0];
    m->C = (int)sv[1];
    m->d_out = (int)su[1];
    int hidden[SPD_CI_FN_MAX_LAYERS], n_layers = 0;
    for (;; n_layers++) {  // layers.0, .2, ...: W [C, in, out]
        snprintf(name, sizeof name, "_ci_fns.%s.layers.%d.W", dashed, 2 * n_layers);
        if (!spd_st_find(model, name)) break;
        m->Wl[n_layers] = get(model, name, NULL, sw);
        if (n_layers > 0) hidden[n_layers - 1] = (int)sw[1];
        snprintf(name, sizeof name, "_ci_fns.%s.layers.%d.b", dashed, 2 * n_layers);
        m->bl[n_layers] = get(model, name, NULL, NULL);
    }
    if (spd_ci_fn_arch_init(&m->f.arch, SPD_CI_MLP, m->C, m->d_in, hidden, n_layers - 1)) spd_die_last_error();
    for (int k = 0; k < n_layers; k++) {
        m->f.W[k] = m->Wl[k];
        m->f.b[k] = m->bl[k];
        if (k < n_layers - 1) {
            m->f.pre[k] = alloc(spd_ci_fn_hidden_elems(&m->f.arch, N, k) * sizeof(double));
            m->f.post[k] = alloc(spd_ci_fn_hidden_elems(&m->f.arch, N, k) * sizeof(double));
        }
    }
    m->f.work = alloc((spd_ci_fn_workspace_elems(&m->f.arch, N) + 1) * sizeof(double));
}

// pre [N, C] = ci_fn(in @ V), ci [N, C] = lower_leaky_hard(pre).
static void causal_importance(module *m, const double *in, int N, double *pre, double *ci) {
    double *a = alloc((size_t)N * m->C * sizeof *a), *scratch = alloc((size_t)N * m->C * sizeof *scratch),
           *out = alloc((size_t)N * m->d_out * sizeof *out);
    components_forward_f64(out, a, in, m->V, m->U, NULL, NULL, NULL, N, m->d_in, m->C, m->d_out, scratch);
    ci_fn_forward_f64(&m->f, pre, a, N);
    sigmoid_forward_f64(SPD_SIGMOID_FN_LOWER_LEAKY_HARD, ci, pre, (long)N * m->C);
}

// out [N, d_out] = ((in @ V) * mask) @ U (mask NULL: ones).
static void through(module *m, const double *in, const double *mask, int N, double *out) {
    double *a = alloc((size_t)N * m->C * sizeof *a), *scratch = alloc((size_t)N * m->C * sizeof *scratch);
    components_forward_f64(out, a, in, m->V, m->U, mask, NULL, NULL, N, m->d_in, m->C, m->d_out, scratch);
}

int main(void) {
    const char *mp = getenv("SPD_PTH_MODEL"), *ip = getenv("SPD_PTH_IO");
    if (!mp || !ip) {
        printf("# skip: run by tests/cli_pth.sh with SPD's outputs (SPD_PTH_MODEL, SPD_PTH_IO)\n");
        return 0;
    }
    if (!(model = spd_st_open(mp)) || !(io = spd_st_open(ip))) spd_die_last_error();
    int64_t sx[2], sw1[2];
    double *x = get(io, "x", NULL, sx), *W1 = get(model, "target_model.linear1.weight", NULL, sw1),
           *W2 = get(model, "target_model.linear2.weight", NULL, NULL),
           *b = get(model, "target_model.linear2.bias", NULL, NULL);
    const int N = (int)sx[0], F = (int)sx[1], H = (int)sw1[0];
    module l1, l2;
    load_module(&l1, "linear1", N);
    load_module(&l2, "linear2", N);
    // Target: h = x W1^T, out = ReLU(h W2^T + b).
    double *h = alloc((size_t)N * H * sizeof *h), *y = alloc((size_t)N * F * sizeof *y);
    for (int n = 0; n < N; n++)
        for (int j = 0; j < H; j++)
            for (int i = 0; i < F; i++) h[n * H + j] += x[n * F + i] * W1[j * F + i];
    for (int n = 0; n < N; n++)
        for (int i = 0; i < F; i++) {
            double s = b[i];
            for (int j = 0; j < H; j++) s += h[n * H + j] * W2[i * H + j];
            y[n * F + i] = s > 0 ? s : 0;
        }
    compare("target output", y, "target_out", (int64_t)N * F);
    // CI from each module's input in the clean forward (x for linear1, h for linear2).
    double *ci1 = alloc((size_t)N * l1.C * sizeof *ci1), *ci2 = alloc((size_t)N * l2.C * sizeof *ci2);
    double *pre1 = alloc((size_t)N * l1.C * sizeof *pre1), *pre2 = alloc((size_t)N * l2.C * sizeof *pre2);
    causal_importance(&l1, x, N, pre1, ci1);
    causal_importance(&l2, h, N, pre2, ci2);
    compare("CI function output of linear1", pre1, "pre_sigmoid.linear1", (int64_t)N * l1.C);
    compare("CI function output of linear2", pre2, "pre_sigmoid.linear2", (int64_t)N * l2.C);
    compare("causal importances of linear1", ci1, "ci.linear1", (int64_t)N * l1.C);
    compare("causal importances of linear2", ci2, "ci.linear2", (int64_t)N * l2.C);
    // Through the components (linear2's bias added after, as SPD's component bias).
    const double *masks[2][2] = {{NULL, NULL}, {ci1, ci2}};
    const char *names[2] = {"comp_ones", "comp_ci"}, *what[2] = {"output through all components", "output through the CI-masked components"};
    double *hc = alloc((size_t)N * H * sizeof *hc), *yc = alloc((size_t)N * F * sizeof *yc);
    for (int k = 0; k < 2; k++) {
        through(&l1, x, masks[k][0], N, hc);
        through(&l2, hc, masks[k][1], N, yc);
        for (int n = 0; n < N; n++)
            for (int i = 0; i < F; i++) {
                double s = yc[n * F + i] + b[i];
                yc[n * F + i] = s > 0 ? s : 0;
            }
        compare(what[k], yc, names[k], (int64_t)N * F);
    }
    for (int i = 0; i < n_owned; i++) free(owned[i]);
    spd_st_close(model);
    spd_st_close(io);
    return testing_failures ? 1 : 0;
}
