// The toy targets and their data (SPD_SPEC.md 7.2-7.4): TMS and ResidMLP
// forward/backward, SPD's names, shapes and init, TMS's tied weights, and the
// sparse-feature data generators.
//
// Backward checks are finite differences in float64 (tests/test_ops_grad.c's
// reasoning: L = sum(out * R), central differences with h = 1e-6; the models are
// piecewise linear in each parameter (ReLU) or smooth (GELU), so a correct
// backward lands near 1e-9 relative; bound 1e-6). Parameter gradients are
// pre-filled with random values (they must accumulate), dx with NaN (it must be
// written). Generator statistics use 5-sigma bounds over fixed Philox streams
// (deterministic: no flakiness).
#define SPD_F64
#include "core/real.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/spec.h"
#include "models/module_select.h"
#include "models/resid_mlp.h"
#include "models/tms.h"
#include "models/toy_data.h"
#include "ops/adamw.h"
#include "ops/components.h"
#include "ops/loss.h"

#define FD_H 1e-6
#define FD_TOL 1e-6
#define TEST_NAME "test_toy_models"
#define TEST_SEED 2024
#include "test_inputs.h"

// The float32 twins (the headers declare this backend's _f64 names only).
void tms_declare_f32(tms_model_f32 *m, spd_spec *spec, const tms_config *cfg, const tms_options *opt);
void tms_bind_f32(tms_model_f32 *m, const spd_spec *spec);
void tms_init_params_f32(tms_model_f32 *m, uint64_t seed);
void tms_forward_f32(tms_model_f32 *m);
void tms_free_f32(tms_model_f32 *m);
void resid_mlp_declare_f32(resid_mlp_model_f32 *m, spd_spec *spec, const resid_mlp_config *cfg,
                           const resid_mlp_options *opt);
void resid_mlp_bind_f32(resid_mlp_model_f32 *m, const spd_spec *spec);
void resid_mlp_init_params_f32(resid_mlp_model_f32 *m, uint64_t seed);
void resid_mlp_forward_f32(resid_mlp_model_f32 *m);
void resid_mlp_free_f32(resid_mlp_model_f32 *m);

static const double U32 = 0x1p-24;  // float32 unit roundoff

// ---- building ------------------------------------------------------------------

static void tms_build(spd_spec *spec, tms_model *m, const tms_config *cfg, const tms_options *opt, uint64_t seed) {
    spd_spec_init(spec);
    tms_declare_f64(m, spec, cfg, opt);
    spd_spec_alloc(spec);
    tms_bind_f64(m, spec);
    tms_init_params_f64(m, seed);
}

static void resid_build(spd_spec *spec, resid_mlp_model *m, const resid_mlp_config *cfg,
                        const resid_mlp_options *opt, uint64_t seed) {
    spd_spec_init(spec);
    resid_mlp_declare_f64(m, spec, cfg, opt);
    spd_spec_alloc(spec);
    resid_mlp_bind_f64(m, spec);
    resid_mlp_init_params_f64(m, seed);
}

static bool has_tensor(const spd_spec *spec, const char *name, spd_role role, int ndim, const int64_t *shape) {
    const spd_tensor *t = spd_spec_find(spec, name);
    return t && t->role == role && spd_shape_equal(t->ndim, t->shape, ndim, shape);
}

// ---- finite differences over every trained tensor --------------------------------

typedef struct {
    void (*forward)(void *model);
    void *model;
    const double *out, *R;
    long n_out;
} fd_ctx;

static double fd_loss(void *p) {
    fd_ctx *c = p;
    c->forward(c->model);
    return dot(c->out, c->R, c->n_out);
}

// dL/dx and dL/d(every TRAINED tensor of spec), L = sum(out * R), against central differences.
static void check_grads(const char *label, spd_spec *spec, fd_ctx *c, void (*backward)(void *), double *dout,
                        double *x, double *dx, long n_x) {
    memcpy(dout, c->R, (size_t)c->n_out * sizeof *dout);
    size_t ng = spd_spec_trained_elems(spec);
    double *g0 = normal((long)ng, 1.0);
    memcpy(spec->grad, g0, ng * sizeof(double));
    for (long i = 0; i < n_x; i++) dx[i] = NAN;
    c->forward(c->model);
    backward(c->model);
    char name[256];
    snprintf(name, sizeof name, "%s: dx", label);
    check_fd(name, fd_loss, c, x, copy(dx, n_x), n_x);
    for (int i = 0; i < spec->count; i++) {
        spd_tensor *t = &spec->tensors[i];
        if (t->role != SPD_ROLE_TRAINED) continue;
        long n = (long)spd_tensor_numel(t);
        double *g = copy(spd_spec_grad(spec, t), n);
        subtract(g, g0 + t->offset / sizeof(double), n);
        snprintf(name, sizeof name, "%s: d %s", label, t->name);
        check_fd(name, fd_loss, c, t->data, g, n);
    }
}

static void tms_fwd(void *m) { tms_forward_f64(m); }
static void tms_bwd(void *m) { tms_backward_f64(m); }
static void resid_fwd(void *m) { resid_mlp_forward_f64(m); }
static void resid_bwd(void *m) { resid_mlp_backward_f64(m); }

static void test_tms_grads(int n_hidden_layers, bool tied, tms_hidden_init hidden) {
    const int B = 7, F = 5, H = 3;
    tms_config cfg = {.n_features = F, .n_hidden = H, .n_hidden_layers = n_hidden_layers, .tied_weights = tied};
    tms_options opt = {.B = B, .train = true, .hidden = hidden};
    spd_spec spec;
    tms_model m;
    tms_build(&spec, &m, &cfg, &opt, 5);
    memcpy(m.x, uniform((long)B * F, -1, 1), (size_t)B * F * sizeof(double));
    fd_ctx c = {tms_fwd, &m, m.out, normal((long)B * F, 1.0), (long)B * F};
    char label[128];
    snprintf(label, sizeof label, "tms %d-%d, %d hidden%s%s", F, H, n_hidden_layers, tied ? ", tied" : "",
             hidden == TMS_HIDDEN_FIXED_IDENTITY ? " (fixed identity)" : "");
    check_grads(label, &spec, &c, tms_bwd, m.dout, m.x, m.dx, (long)B * F);
    if (hidden == TMS_HIDDEN_FIXED_IDENTITY) {
        bool frozen = true;
        for (int i = 0; i < n_hidden_layers; i++) frozen &= m.dW[TMS_HIDDEN0 + i] == NULL;
        snprintf(label, sizeof label, "tms -id: fixed hidden layers are frozen while training (no gradient)");
        test_report(frozen, label, NULL);
    }
    tms_free_f64(&m);
    spd_spec_free(&spec);
}

static void test_resid_grads(int n_layers, bool bias, resid_mlp_act act) {
    const int B = 6, F = 6, D = 8, M = 5;
    resid_mlp_config cfg = {.n_features = F, .d_embed = D, .d_mlp = M, .n_layers = n_layers, .act = act,
                            .in_bias = bias, .out_bias = bias};
    resid_mlp_options opt = {.B = B, .train = true};
    spd_spec spec;
    resid_mlp_model m;
    resid_build(&spec, &m, &cfg, &opt, 6);
    memcpy(m.x, uniform((long)B * F, -1, 1), (size_t)B * F * sizeof(double));
    fd_ctx c = {resid_fwd, &m, m.out, normal((long)B * F, 1.0), (long)B * F};
    char label[128];
    snprintf(label, sizeof label, "resid_mlp %d layer%s, %s%s", n_layers, n_layers > 1 ? "s" : "",
             act == RESID_MLP_RELU ? "relu" : "gelu", bias ? ", biases" : "");
    check_grads(label, &spec, &c, resid_bwd, m.dout, m.x, m.dx, (long)B * F);
    resid_mlp_free_f64(&m);
    spd_spec_free(&spec);
}

// ---- TMS tied weights ------------------------------------------------------------

typedef struct {
    tms_model *m;
    double *R;
} tied_ctx;

// The tied function of W = linear1.weight: linear2 re-tied after each perturbation.
static double tied_loss(void *p) {
    tied_ctx *c = p;
    tms_tie_weights_f64(c->m);
    tms_forward_f64(c->m);
    return dot(c->m->out, c->R, (long)c->m->B * c->m->cfg.n_features);
}

static void test_tms_tied(void) {
    const int B = 9, F = 5, H = 2;
    tms_config cfg = {.n_features = F, .n_hidden = H, .tied_weights = true};
    tms_options opt = {.B = B, .train = true};
    spd_spec spec;
    tms_model m;
    tms_build(&spec, &m, &cfg, &opt, 7);
    const double *W1 = m.sites[TMS_LINEAR1].W, *W2 = m.sites[TMS_LINEAR2].W;
    bool tied = true;
    for (int h = 0; h < H; h++)
        for (int f = 0; f < F; f++) tied &= W2[f * H + h] == W1[h * F + f];
    test_report(tied, "tms tied: after init linear2.weight == linear1.weight^T exactly", NULL);

    // out = ReLU(W^T W x + b), by hand.
    memcpy(m.x, uniform((long)B * F, 0, 1), (size_t)B * F * sizeof(double));
    tms_forward_f64(&m);
    double *want = tmalloc((size_t)B * F * sizeof(double));
    for (int b = 0; b < B; b++)
        for (int f = 0; f < F; f++) {
            double s = m.bias[f];
            for (int h = 0; h < H; h++) {
                double hid = 0;
                for (int j = 0; j < F; j++) hid += W1[h * F + j] * m.x[b * F + j];
                s += W1[h * F + f] * hid;
            }
            want[b * F + f] = s > 0 ? s : 0;
        }
    double err = max_rel_err(m.out, want, (long)B * F);
    test_report(err < 1e-14, "tms tied: forward is ReLU(W^T W x + b)", "max rel err %.2e", err);

    // The gradient of the tied function is dW1 + dW2^T.
    double *R = normal((long)B * F, 1.0);
    memcpy(m.dout, R, (size_t)B * F * sizeof(double));
    spd_spec_zero_grad(&spec);
    tms_forward_f64(&m);
    tms_backward_f64(&m);
    double *total = tmalloc((size_t)H * F * sizeof(double));
    for (int h = 0; h < H; h++)
        for (int f = 0; f < F; f++) total[h * F + f] = m.dW[TMS_LINEAR1][h * F + f] + m.dW[TMS_LINEAR2][f * H + h];
    tied_ctx tc = {&m, R};
    check_fd("tms tied: d(tied loss)/dW = dW1 + dW2^T", tied_loss, &tc, (double *)W1, total, (long)H * F);

    // Copy back the other way (after a trainer's step on linear2.weight).
    ((double *)W2)[1] += 0.25;
    tms_tie_weights_reverse_f64(&m);
    test_report(W1[0 * F + 0] == W2[0 * H + 0] && W1[1 * F + 0] == W2[0 * H + 1] && W1[1 * F + 2] == W2[2 * H + 1],
                "tms tied: tie_weights_reverse copies linear2.weight^T into linear1.weight", NULL);
    tms_free_f64(&m);
    spd_spec_free(&spec);
}

// ---- names, shapes, sites ----------------------------------------------------------

static void test_tms_names(void) {
    const int F = 5, H = 2;
    tms_config cfg = {.n_features = F, .n_hidden = H, .n_hidden_layers = 1, .tied_weights = true};
    tms_options opt = {.B = 4, .prefix = "target_model.", .hidden = TMS_HIDDEN_FIXED_IDENTITY};
    spd_spec spec;
    tms_model m;
    tms_build(&spec, &m, &cfg, &opt, 1);
    test_report(m.n_sites == 3 && strcmp(m.sites[0].path, "linear1") == 0 && strcmp(m.sites[1].path, "linear2") == 0 &&
                    strcmp(m.sites[2].path, "hidden_layers.0") == 0,
                "tms sites in SPD's module order: linear1, linear2, hidden_layers.0", NULL);
    test_report(m.sites[0].d_in == F && m.sites[0].d_out == H && m.sites[1].d_in == H && m.sites[1].d_out == F &&
                    m.sites[2].d_in == H && m.sites[2].d_out == H && m.sites[0].kind == SITE_LINEAR,
                "tms site shapes: linear1 5->2, linear2 2->5, hidden_layers.0 2->2", NULL);
    bool names = has_tensor(&spec, "target_model.linear1.weight", SPD_ROLE_FROZEN, 2, (int64_t[]){H, F}) &&
                 has_tensor(&spec, "target_model.linear2.weight", SPD_ROLE_FROZEN, 2, (int64_t[]){F, H}) &&
                 has_tensor(&spec, "target_model.linear2.bias", SPD_ROLE_FROZEN, 1, (int64_t[]){F}) &&
                 has_tensor(&spec, "target_model.hidden_layers.0.weight", SPD_ROLE_FROZEN, 2, (int64_t[]){H, H});
    test_report(names, "tms state-dict names and shapes (linear1.weight [2,5], linear2.weight [5,2], linear2.bias [5], "
                       "hidden_layers.0.weight [2,2])",
                NULL);
    const char *order[] = {"target_model.linear1.weight", "target_model.linear2.weight", "target_model.linear2.bias",
                           "target_model.hidden_layers.0.weight"};
    bool in_order = true;
    for (int i = 0; i < 4; i++) in_order &= strcmp(spec.tensors[i].name, order[i]) == 0;
    test_report(in_order, "tms parameters in SPD's state-dict order", NULL);
    const double *Wh = m.sites[2].W;
    test_report(Wh[0] == 1 && Wh[1] == 0 && Wh[2] == 0 && Wh[3] == 1, "tms -id: hidden_layers.0 is the identity", NULL);

    // SPD's tms_5-2-id module_info selects the three sites in config order.
    const char *paths[3] = {m.sites[0].path, m.sites[1].path, m.sites[2].path};
    spd_module_pattern pats[] = {{"linear1", 20}, {"linear2", 20}, {"hidden_layers.0", 20}};
    spd_module_choice *out = NULL;
    int n = 0;
    int rc = spd_select_modules(paths, 3, pats, 3, &out, &n);
    test_report(rc == 0 && n == 3 && strcmp(out[2].path, "hidden_layers.0") == 0,
                "tms_5-2-id config's module patterns select linear1, linear2, hidden_layers.0", "%s", spd_last_error());
    spd_module_choices_free(out, n);
    tms_free_f64(&m);
    spd_spec_free(&spec);

    // Training the target: TRAINED parameters under their bare names.
    tms_config c2 = {.n_features = F, .n_hidden = H, .n_hidden_layers = 1, .tied_weights = true};
    tms_options o2 = {.B = 4, .train = true};
    tms_build(&spec, &m, &c2, &o2, 1);
    test_report(has_tensor(&spec, "linear1.weight", SPD_ROLE_TRAINED, 2, (int64_t[]){H, F}) &&
                    has_tensor(&spec, "hidden_layers.0.weight", SPD_ROLE_TRAINED, 2, (int64_t[]){H, H}) &&
                    m.dW[TMS_LINEAR1] && m.dW[TMS_LINEAR2] && m.dbias && m.dW[TMS_HIDDEN0],
                "tms training: parameters TRAINED with gradients, names without prefix", NULL);
    tms_free_f64(&m);
    spd_spec_free(&spec);

    tms_config bad = {.n_features = 0, .n_hidden = 2};
    test_report(spd_tms_config_check(&bad) == -1 && strstr(spd_last_error(), "n_features: expected at least 1"),
                "tms config: n_features 0 is rejected with a message", "%s", spd_last_error());
}

static void test_resid_names(void) {
    const int F = 6, D = 8, M = 3;
    resid_mlp_config cfg = {.n_features = F, .d_embed = D, .d_mlp = M, .n_layers = 2, .in_bias = true,
                            .out_bias = true};
    resid_mlp_options opt = {.B = 2, .prefix = "target_model."};
    spd_spec spec;
    resid_mlp_model m;
    resid_build(&spec, &m, &cfg, &opt, 1);
    test_report(m.n_sites == 4 && strcmp(m.sites[0].path, "layers.0.mlp_in") == 0 &&
                    strcmp(m.sites[1].path, "layers.0.mlp_out") == 0 &&
                    strcmp(m.sites[2].path, "layers.1.mlp_in") == 0 &&
                    strcmp(m.sites[3].path, "layers.1.mlp_out") == 0,
                "resid_mlp sites in SPD's module order: layers.0.mlp_in, layers.0.mlp_out, layers.1.mlp_in, ...",
                NULL);
    test_report(m.sites[0].d_in == D && m.sites[0].d_out == M && m.sites[1].d_in == M && m.sites[1].d_out == D,
                "resid_mlp site shapes: mlp_in d_embed->d_mlp, mlp_out d_mlp->d_embed", NULL);
    const char *order[] = {"target_model.W_E",
                           "target_model.W_U",
                           "target_model.layers.0.mlp_in.weight",
                           "target_model.layers.0.mlp_in.bias",
                           "target_model.layers.0.mlp_out.weight",
                           "target_model.layers.0.mlp_out.bias",
                           "target_model.layers.1.mlp_in.weight"};
    bool in_order = true;
    for (int i = 0; i < 7; i++) in_order &= strcmp(spec.tensors[i].name, order[i]) == 0;
    bool shapes = has_tensor(&spec, "target_model.W_E", SPD_ROLE_FROZEN, 2, (int64_t[]){F, D}) &&
                  has_tensor(&spec, "target_model.W_U", SPD_ROLE_FROZEN, 2, (int64_t[]){D, F}) &&
                  has_tensor(&spec, "target_model.layers.1.mlp_in.weight", SPD_ROLE_FROZEN, 2, (int64_t[]){M, D}) &&
                  has_tensor(&spec, "target_model.layers.1.mlp_in.bias", SPD_ROLE_FROZEN, 1, (int64_t[]){M}) &&
                  has_tensor(&spec, "target_model.layers.1.mlp_out.weight", SPD_ROLE_FROZEN, 2, (int64_t[]){D, M}) &&
                  has_tensor(&spec, "target_model.layers.1.mlp_out.bias", SPD_ROLE_FROZEN, 1, (int64_t[]){D});
    test_report(in_order && shapes, "resid_mlp state-dict names, shapes and order (W_E [F,D], W_U [D,F], "
                                    "mlp_in [d_mlp,D], mlp_out [D,d_mlp], biases)",
                NULL);
    const char *paths[4] = {m.sites[0].path, m.sites[1].path, m.sites[2].path, m.sites[3].path};
    spd_module_pattern pats[] = {{"layers.*.mlp_in", 100}, {"layers.*.mlp_out", 100}};
    spd_module_choice *out = NULL;
    int n = 0;
    int rc = spd_select_modules(paths, 4, pats, 2, &out, &n);
    test_report(rc == 0 && n == 4 && strcmp(out[0].path, "layers.0.mlp_in") == 0 &&
                    strcmp(out[1].path, "layers.1.mlp_in") == 0 && strcmp(out[2].path, "layers.0.mlp_out") == 0,
                "resid_mlp2 config's patterns select mlp_in of both layers, then mlp_out", "%s", spd_last_error());
    spd_module_choices_free(out, n);
    resid_mlp_free_f64(&m);
    spd_spec_free(&spec);

    // The reference targets: no biases, fixed random embedding frozen while training.
    resid_mlp_config ref = {.n_features = F, .d_embed = D, .d_mlp = M, .n_layers = 1};
    resid_mlp_options o2 = {.B = 2, .train = true, .embedding = RESID_EMBED_FIXED_RANDOM};
    resid_build(&spec, &m, &ref, &o2, 1);
    test_report(!spd_spec_find(&spec, "layers.0.mlp_in.bias") && !spd_spec_find(&spec, "layers.0.mlp_out.bias") &&
                    has_tensor(&spec, "W_E", SPD_ROLE_FROZEN, 2, (int64_t[]){F, D}) && !m.dW_E && !m.dW_U &&
                    has_tensor(&spec, "layers.0.mlp_in.weight", SPD_ROLE_TRAINED, 2, (int64_t[]){M, D}),
                "resid_mlp training with fixed random embedding: W_E, W_U frozen, MLP trained, no bias tensors",
                NULL);
    resid_mlp_free_f64(&m);
    spd_spec_free(&spec);

    resid_mlp_config bad = {.n_features = 5, .d_embed = 8, .d_mlp = 2, .n_layers = 1};
    test_report(spd_resid_mlp_config_check(&bad, RESID_EMBED_FIXED_IDENTITY) == -1 &&
                    strstr(spd_last_error(), "n_features == d_embed"),
                "resid_mlp config: identity embedding with n_features != d_embed is rejected", "%s",
                spd_last_error());
}

// ---- init ------------------------------------------------------------------------

// |mean(w^2) - bound^2/3| within 5 sigma of U(-bound, bound)'s, and every |w| < bound.
static bool uniform_ok(const double *w, long n, double bound) {
    double s2 = 0;
    for (long i = 0; i < n; i++) {
        if (!(fabs(w[i]) < bound)) return false;
        s2 += w[i] * w[i];
    }
    double b2 = bound * bound, sigma = sqrt(4.0 / 45.0 / (double)n) * b2;
    return fabs(s2 / (double)n - b2 / 3) < 5 * sigma;
}

static bool normal_ok(const double *w, long n, double std) {
    double s2 = 0;
    for (long i = 0; i < n; i++) s2 += w[i] * w[i];
    double sigma = sqrt(2.0 / (double)n) * std * std;  // Var(w^2) = 2 std^4
    return fabs(s2 / (double)n - std * std) < 5 * sigma;
}

static void test_init(void) {
    const int F = 40, H = 10;
    spd_spec spec;
    tms_model m;
    tms_config cfg = {.n_features = F, .n_hidden = H, .tied_weights = true, .init_bias_to_zero = true};
    tms_options opt = {.B = 1};
    tms_build(&spec, &m, &cfg, &opt, 3);
    bool zero = true;
    for (int f = 0; f < F; f++) zero &= m.bias[f] == 0;
    test_report(uniform_ok(m.sites[TMS_LINEAR1].W, H * F, 1 / sqrt(F)) && zero,
                "tms 40-10 init: linear1.weight ~ U(+-1/sqrt(40)), bias zeroed (init_bias_to_zero)", NULL);
    double *first = copy(m.sites[TMS_LINEAR1].W, H * F);
    tms_init_params_f64(&m, 3);
    bool same = memcmp(first, m.sites[TMS_LINEAR1].W, (size_t)H * F * sizeof(double)) == 0;
    tms_init_params_f64(&m, 4);
    bool differ = memcmp(first, m.sites[TMS_LINEAR1].W, (size_t)H * F * sizeof(double)) != 0;
    test_report(same && differ, "tms init: a pure function of the seed", NULL);
    tms_free_f64(&m);
    spd_spec_free(&spec);

    tms_config c52 = {.n_features = 5, .n_hidden = 2, .n_hidden_layers = 1, .tied_weights = true};
    tms_options o52 = {.B = 1, .hidden = TMS_HIDDEN_FIXED_RANDOM};
    tms_build(&spec, &m, &c52, &o52, 3);
    bool bias_ok = true, nonzero = false;
    for (int f = 0; f < 5; f++) {
        bias_ok &= fabs(m.bias[f]) < 1 / sqrt(2.0);
        nonzero |= m.bias[f] != 0;
    }
    test_report(bias_ok && nonzero, "tms 5-2 init: linear2.bias ~ U(+-1/sqrt(n_hidden)), not zeroed", NULL);
    const double *Wh = m.sites[TMS_HIDDEN0].W;
    test_report(fabs(Wh[0]) + fabs(Wh[1]) + fabs(Wh[2]) + fabs(Wh[3]) > 0 && m.dW[TMS_HIDDEN0] == NULL,
                "tms fixed_random_hidden_layers: N(0, 1) values, frozen", NULL);
    tms_free_f64(&m);
    spd_spec_free(&spec);

    const int RF = 100, D = 200, M = 50;
    resid_mlp_model r;
    resid_mlp_config rc = {.n_features = RF, .d_embed = D, .d_mlp = M, .n_layers = 1, .in_bias = true};
    resid_mlp_options ro = {.B = 1};
    resid_build(&spec, &r, &rc, &ro, 9);
    test_report(normal_ok(r.W_E, RF * D, 1 / sqrt(RF)) && normal_ok(r.W_U, D * RF, 1 / sqrt(D)),
                "resid_mlp init: W_E ~ N(0, 1/n_features), W_U ~ N(0, 1/d_embed)", NULL);
    test_report(uniform_ok(r.sites[0].W, M * D, 1 / sqrt(D)) && uniform_ok(r.sites[1].W, D * M, 1 / sqrt(M)) &&
                    uniform_ok(r.b_in[0], M, 1 / sqrt(D)),
                "resid_mlp init: mlp_in, mlp_out, bias ~ U(+-1/sqrt(fan_in))", NULL);
    resid_mlp_free_f64(&r);
    spd_spec_free(&spec);

    resid_mlp_config r1 = {.n_features = RF, .d_embed = D, .d_mlp = M, .n_layers = 1};
    resid_mlp_options fixed = {.B = 1, .embedding = RESID_EMBED_FIXED_RANDOM};
    resid_build(&spec, &r, &r1, &fixed, 9);
    double worst = 0;
    bool transposed = true;
    for (int f = 0; f < RF; f++) {
        double s = 0;
        for (int d = 0; d < D; d++) {
            s += r.W_E[f * D + d] * r.W_E[f * D + d];
            transposed &= r.W_U[d * RF + f] == r.W_E[f * D + d];
        }
        worst = fmax(worst, fabs(s - 1));
    }
    test_report(worst < 1e-14 && transposed,
                "resid_mlp fixed_random_embedding: W_E rows unit norm, W_U = W_E^T", "worst |norm^2 - 1| %.2e",
                worst);
    resid_mlp_free_f64(&r);
    spd_spec_free(&spec);

    resid_mlp_config rid = {.n_features = 8, .d_embed = 8, .d_mlp = 3, .n_layers = 1};
    resid_mlp_options oid = {.B = 1, .embedding = RESID_EMBED_FIXED_IDENTITY};
    resid_build(&spec, &r, &rid, &oid, 9);
    bool eye = true;
    for (int i = 0; i < 64; i++) eye &= r.W_E[i] == (i % 9 == 0 ? 1 : 0);
    test_report(eye, "resid_mlp fixed_identity_embedding: W_E = I", NULL);
    resid_mlp_free_f64(&r);
    spd_spec_free(&spec);
}

// ---- components in a toy site ------------------------------------------------------

// linear2 with components: full masks plus the delta reproduce the target, and with
// zero masks and no delta the bias is still added (SPD_SPEC.md 1.5 step 4).
static void test_tms_components(void) {
    const int B = 6, F = 5, H = 3, C = 4;
    tms_config cfg = {.n_features = F, .n_hidden = H};
    tms_options opt = {.B = B, .prefix = "target_model."};
    spd_spec spec;
    tms_model m;
    tms_build(&spec, &m, &cfg, &opt, 8);
    memcpy(m.x, uniform((long)B * F, 0, 1), (size_t)B * F * sizeof(double));
    tms_forward_f64(&m);
    double *want = copy(m.out, (long)B * F);
    linear_site *s = &m.sites[TMS_LINEAR2];
    component_module c = {.site = s, .C = C, .replaced = true};
    c.V = normal((long)H * C, 1 / sqrt(H));
    c.U = normal((long)C * F, 1 / sqrt(C));
    c.a = tmalloc((size_t)B * C * sizeof(double));
    c.scratch = tmalloc((size_t)B * C * sizeof(double));
    c.mask = filled((long)B * C, 1.0);
    c.delta_mask = filled(B, 1.0);
    c.delta = tmalloc((size_t)F * H * sizeof(double));
    weight_delta_forward_f64(c.delta, s->W, c.V, c.U, H, C, F);
    s->comp = &c;
    tms_forward_f64(&m);
    double err = test_rel_norm_err(m.out, want, (long)B * F);
    test_report(err < 1e-13, "tms: components at linear2 with masks 1 and the delta reproduce the target",
                "rel err %.2e", err);
    for (int i = 0; i < B * C; i++) c.mask[i] = 0;
    c.delta_mask = NULL;
    tms_forward_f64(&m);
    bool bias_only = true;
    for (int b = 0; b < B; b++)
        for (int f = 0; f < F; f++) bias_only &= m.out[b * F + f] == (m.bias[f] > 0 ? m.bias[f] : 0);
    test_report(bias_only, "tms: with every mask 0 linear2 still adds its bias (out = ReLU(b))", NULL);
    s->comp = NULL;
    tms_free_f64(&m);
    spd_spec_free(&spec);
}

// ---- float32 vs float64 ------------------------------------------------------------

// Rounds every float tensor of role to float32 in place (a float64 model holding the
// float32 model's exact values).
static void round_role(spd_spec *spec, spd_role role) {
    for (int i = 0; i < spec->count; i++) {
        spd_tensor *t = &spec->tensors[i];
        if (t->role != role) continue;
        double *p = t->data;
        for (int64_t j = 0; j < spd_tensor_numel(t); j++) p[j] = (float)p[j];
    }
}

static void copy_params_f32(spd_spec *dst32, const spd_spec *src64) {
    for (int i = 0; i < src64->count; i++) {
        const spd_tensor *t = &src64->tensors[i];
        if (t->role == SPD_ROLE_ACT) continue;
        spd_tensor *u = spd_spec_get(dst32, t->name);
        const double *p = t->data;
        float *q = u->data;
        for (int64_t j = 0; j < spd_tensor_numel(t); j++) q[j] = (float)p[j];
    }
}

static void report_f32(const char *name, const float *got, const double *want, long n, double bound) {
    double *g = to_f64(got, n);
    double rn = test_rel_norm_err(g, want, n), rm = max_rel_err(g, want, n);
    char full[256];
    snprintf(full, sizeof full, "%s (norm rel %.1e, max rel %.1e, bound %.1e)", name, rn, rm, bound);
    test_report(rn < bound && rm < bound, full, NULL);
}

static void test_f32_vs_f64(void) {
    const int B = 64;
    spd_toy_data data;
    // TMS 40-10 with one hidden layer on SPD's data.
    {
        const int F = 40, H = 10, L = 1;
        tms_config cfg = {.n_features = F, .n_hidden = H, .n_hidden_layers = L, .tied_weights = true};
        tms_options opt = {.B = B};
        spd_spec s64, s32;
        tms_model m;
        tms_model_f32 m32;
        tms_build(&s64, &m, &cfg, &opt, 21);
        round_role(&s64, SPD_ROLE_FROZEN);
        spd_spec_init(&s32);
        tms_declare_f32(&m32, &s32, &cfg, &opt);
        spd_spec_alloc(&s32);
        tms_bind_f32(&m32, &s32);
        tms_init_params_f32(&m32, 21);
        bool same_init = true;  // the float32 init is the float64 one rounded
        for (int i = 0; i < H * F; i++) same_init &= (double)((const float *)m32.sites[0].W)[i] == m.sites[0].W[i];
        test_report(same_init, "tms init: float32 parameters are the float64 ones rounded", NULL);
        copy_params_f32(&s32, &s64);
        SPD_ASSERT(spd_toy_data_init_tms(&data, F, 0.2, SPD_TOY_AT_LEAST_ZERO_ACTIVE, 1) == 0);
        spd_toy_batch_f64(&data, 0, -1, 0, B, m.x, NULL);
        spd_toy_batch_f32(&data, 0, -1, 0, B, m32.x, NULL);
        tms_forward_f64(&m);
        tms_forward_f32(&m32);
        // Each output sums F + (L + 1) H + 1 products along its path; first-order
        // float32 error K u relative to the sum of |terms|, times 4 for cancellation.
        report_f32("tms 40-10-id forward: float32 vs float64", m32.out, m.out, (long)B * F,
                   4.0 * (F + (L + 1) * H + 1) * U32);
        tms_free_f64(&m);
        tms_free_f32(&m32);
        spd_spec_free(&s64);
        spd_spec_free(&s32);
        spd_toy_data_free(&data);
    }
    // ResidMLP 2 layers, gelu and biases.
    {
        const int F = 30, D = 64, M = 12, L = 2;
        resid_mlp_config cfg = {.n_features = F, .d_embed = D, .d_mlp = M, .n_layers = L, .act = RESID_MLP_GELU,
                                .in_bias = true, .out_bias = true};
        resid_mlp_options opt = {.B = B, .embedding = RESID_EMBED_FIXED_RANDOM};
        spd_spec s64, s32;
        resid_mlp_model m;
        resid_mlp_model_f32 m32;
        resid_build(&s64, &m, &cfg, &opt, 22);
        round_role(&s64, SPD_ROLE_FROZEN);
        spd_spec_init(&s32);
        resid_mlp_declare_f32(&m32, &s32, &cfg, &opt);
        spd_spec_alloc(&s32);
        resid_mlp_bind_f32(&m32, &s32);
        resid_mlp_init_params_f32(&m32, 22);
        copy_params_f32(&s32, &s64);
        SPD_ASSERT(spd_toy_data_init_resid_mlp(&data, F, 0.2, SPD_TOY_AT_LEAST_ZERO_ACTIVE, 2) == 0);
        spd_toy_batch_f64(&data, 0, -1, 0, B, m.x, NULL);
        spd_toy_batch_f32(&data, 0, -1, 0, B, m32.x, NULL);
        resid_mlp_forward_f64(&m);
        resid_mlp_forward_f32(&m32);
        // Path: F (embed) + L (D + M + 2) (MLPs, biases, residual add) + D (unembed).
        report_f32("resid_mlp 2 layers gelu forward: float32 vs float64", m32.out, m.out, (long)B * F,
                   4.0 * (F + L * (D + M + 2) + D) * U32);
        resid_mlp_free_f64(&m);
        resid_mlp_free_f32(&m32);
        spd_spec_free(&s64);
        spd_spec_free(&s32);
        spd_toy_data_free(&data);
    }
}

// ---- data --------------------------------------------------------------------------

static int nonzeros(const double *row, int F) {
    int k = 0;
    for (int f = 0; f < F; f++) k += row[f] != 0;
    return k;
}

static void test_data(void) {
    spd_toy_data d;
    const int B = 4096;
    // TMS 40-10's data: at_least_zero_active, p = 0.05, values in [0, 1).
    {
        const int F = 40;
        const double p = 0.05;
        SPD_ASSERT(spd_toy_data_init_tms(&d, F, p, SPD_TOY_AT_LEAST_ZERO_ACTIVE, 0) == 0);
        double *x = tmalloc((size_t)B * F * sizeof(double)), *y = tmalloc((size_t)B * F * sizeof(double));
        spd_toy_batch_f64(&d, 3, -1, 0, B, x, y);
        long n = (long)B * F, active = 0, zero_rows = 0;
        double sum = 0;
        bool range = true;
        for (long i = 0; i < n; i++) {
            range &= x[i] >= 0 && x[i] < 1;
            if (x[i] != 0) {
                active++;
                sum += x[i];
            }
        }
        for (int b = 0; b < B; b++) zero_rows += nonzeros(x + (long)b * F, F) == 0;
        double frac = (double)active / n, sigma = sqrt(p * (1 - p) / n);
        char name[160];
        snprintf(name, sizeof name, "data at_least_zero_active: active fraction %.4f ~ feature_probability %.2f",
                 frac, p);
        test_report(fabs(frac - p) < 5 * sigma, name, NULL);
        double mean = sum / active, msig = sqrt(1.0 / 12 / active);
        test_report(range && fabs(mean - 0.5) < 5 * msig, "data tms: values in [0, 1), active values ~ U(0, 1)",
                    "mean %.4f", mean);
        double want_zero = pow(1 - p, F) * B;
        test_report(fabs(zero_rows - want_zero) < 5 * sqrt(want_zero),
                    "data at_least_zero_active: all-zero rows occur at (1-p)^F", "%ld vs %.1f", zero_rows, want_zero);
        test_report(memcmp(x, y, (size_t)n * sizeof(double)) == 0, "data tms: labels are the inputs", NULL);

        double *x2 = tmalloc((size_t)B * F * sizeof(double));
        spd_toy_batch_f64(&d, 3, -1, 0, B, x2, NULL);
        bool same = memcmp(x, x2, (size_t)n * sizeof(double)) == 0;
        spd_toy_batch_f64(&d, 4, -1, 0, B, x2, NULL);
        bool next = memcmp(x, x2, (size_t)n * sizeof(double)) != 0;
        spd_toy_batch_f64(&d, 3, 0, 0, B, x2, NULL);
        bool eval = memcmp(x, x2, (size_t)n * sizeof(double)) != 0;
        test_report(same && next && eval,
                    "data: a batch is a pure function of (seed, step, eval index); other steps and eval batches differ",
                    NULL);
        // Rows are global: two halves drawn apart equal the whole.
        spd_toy_batch_f64(&d, 3, -1, 0, B / 2, x2, NULL);
        spd_toy_batch_f64(&d, 3, -1, B / 2, B / 2, x2 + (long)(B / 2) * F, NULL);
        test_report(memcmp(x, x2, (size_t)n * sizeof(double)) == 0, "data: rows [0, B/2) + [B/2, B) == rows [0, B)",
                    NULL);
        float *xf = tmalloc((size_t)n * sizeof(float));
        spd_toy_batch_f32(&d, 3, -1, 0, B, xf, NULL);
        bool rounded = true;
        for (long i = 0; i < n; i++) rounded &= xf[i] == (float)x[i];
        test_report(rounded, "data: the float32 batch is the float64 batch rounded", NULL);
        spd_toy_data_free(&d);
    }
    // exactly_one_active / exactly_two_active, ResidMLP's range.
    for (int k = 1; k <= 2; k++) {
        const int F = 20;
        SPD_ASSERT(spd_toy_data_init_resid_mlp(&d, F, 0.01, (spd_toy_generation)k, 5) == 0);
        double *x = tmalloc((size_t)B * F * sizeof(double));
        spd_toy_batch_f64(&d, 0, -1, 0, B, x, NULL);
        bool exact = true, range = true;
        long count[20] = {0};
        double sum = 0;
        for (int b = 0; b < B; b++) {
            exact &= nonzeros(x + (long)b * F, F) == k;
            for (int f = 0; f < F; f++) {
                double v = x[(long)b * F + f];
                range &= v >= -1 && v < 1;
                if (v != 0) {
                    count[f]++;
                    sum += v;
                }
            }
        }
        char name[160];
        snprintf(name, sizeof name, "data %s: exactly %d non-zero per row, values in [-1, 1)",
                 spd_toy_generation_name((spd_toy_generation)k), k);
        test_report(exact && range, name, NULL);
        double pf = (double)k / F, want = pf * B, sig = sqrt(B * pf * (1 - pf));
        bool even = true;
        for (int f = 0; f < F; f++) even &= fabs(count[f] - want) < 5 * sig;
        double mean = sum / (k * B), msig = sqrt(1.0 / 3 / (k * B));
        snprintf(name, sizeof name, "data %s: features chosen uniformly, values ~ U(-1, 1)",
                 spd_toy_generation_name((spd_toy_generation)k));
        test_report(even && fabs(mean) < 5 * msig, name, "mean %.4f", mean);
        spd_toy_data_free(&d);
    }
    // ResidMLP labels.
    {
        const int F = 10, Bl = 256;
        SPD_ASSERT(spd_toy_data_init_resid_mlp(&d, F, 0.5, SPD_TOY_AT_LEAST_ZERO_ACTIVE, 7) == 0);
        double *x = tmalloc((size_t)Bl * F * sizeof(double)), *y = tmalloc((size_t)Bl * F * sizeof(double));
        spd_toy_data_set_labels(&d, SPD_TOY_LABELS_ACT_PLUS_RESID, SPD_TOY_ACT_RELU, NULL);
        spd_toy_batch_f64(&d, 1, -1, 0, Bl, x, y);
        bool ok = true;
        for (long i = 0; i < (long)Bl * F; i++) ok &= y[i] == (x[i] > 0 ? x[i] : 0) + x[i];
        test_report(ok, "data resid_mlp labels act_plus_resid (trivial coeffs): y = relu(x) + x", NULL);
        double coeffs[10];
        spd_toy_label_coeffs_random(coeffs, F, 0);
        bool in12 = true;
        for (int f = 0; f < F; f++) in12 &= coeffs[f] >= 1 && coeffs[f] < 2;
        test_report(in12 && coeffs[0] != coeffs[1], "data: random label coefficients in [1, 2)", NULL);
        spd_toy_data_set_labels(&d, SPD_TOY_LABELS_ACT_PLUS_RESID, SPD_TOY_ACT_GELU, coeffs);
        spd_toy_batch_f64(&d, 1, -1, 0, Bl, x, y);
        double worst = 0;
        for (int b = 0; b < Bl; b++)
            for (int f = 0; f < F; f++) {
                double z = coeffs[f] * x[b * F + f];
                double want = 0.5 * z * (1 + erf(z / sqrt(2))) + x[b * F + f];
                worst = fmax(worst, fabs(y[b * F + f] - want));
            }
        test_report(worst < 1e-15, "data resid_mlp labels act_plus_resid gelu: y = gelu(c x) + x", "%.2e", worst);
        spd_toy_data_set_labels(&d, SPD_TOY_LABELS_ABS, SPD_TOY_ACT_RELU, coeffs);
        spd_toy_batch_f64(&d, 1, -1, 0, Bl, x, y);
        ok = true;
        for (int b = 0; b < Bl; b++)
            for (int f = 0; f < F; f++) ok &= y[b * F + f] == fabs(coeffs[f] * x[b * F + f]);
        test_report(ok, "data resid_mlp labels abs: y = |c x|", NULL);
        spd_toy_data_free(&d);
    }
    // synced_inputs: a group is all zero or all active.
    {
        const int F = 8;
        SPD_ASSERT(spd_toy_data_init_tms(&d, F, 0.1, SPD_TOY_AT_LEAST_ZERO_ACTIVE, 9) == 0);
        const int g0[] = {0, 1}, g1[] = {2, 3, 4};
        const int *groups[] = {g0, g1};
        const int sizes[] = {2, 3};
        SPD_ASSERT(spd_toy_data_set_synced_inputs(&d, groups, sizes, 2) == 0);
        double *x = tmalloc((size_t)B * F * sizeof(double));
        spd_toy_batch_f64(&d, 0, -1, 0, B, x, NULL);
        bool synced = true, range = true;
        long g1_active = 0;
        for (int b = 0; b < B; b++) {
            const double *r = x + (long)b * F;
            int a0 = (r[0] != 0) + (r[1] != 0), a1 = (r[2] != 0) + (r[3] != 0) + (r[4] != 0);
            synced &= (a0 == 0 || a0 == 2) && (a1 == 0 || a1 == 3);
            g1_active += a1 == 3;
            for (int f = 0; f < F; f++) range &= r[f] >= 0 && r[f] <= 1;
        }
        double want = (1 - pow(0.9, 3)) * B;
        test_report(synced && range && fabs(g1_active - want) < 5 * sqrt(want),
                    "data synced_inputs: each group all zero or all active, active when any member is", "%ld vs %.0f",
                    g1_active, want);
        const int bad0[] = {0, 1}, bad1[] = {1, 2};
        const int *bad[] = {bad0, bad1};
        int rc = spd_toy_data_set_synced_inputs(&d, bad, sizes, 2);
        test_report(rc == -1 && strstr(spd_last_error(), "feature 1 is in groups 0 and 1"),
                    "data synced_inputs: overlapping groups are rejected", "%s", spd_last_error());
        spd_toy_data_free(&d);
    }
    // Names and validation.
    {
        bool round_trip = true;
        for (int g = 0; g < SPD_TOY_GENERATION_COUNT; g++) {
            spd_toy_generation got;
            round_trip &= spd_toy_generation_parse(spd_toy_generation_name((spd_toy_generation)g), &got) == 0 &&
                          got == (spd_toy_generation)g;
        }
        spd_toy_generation got;
        int rc = spd_toy_generation_parse("exactly_six_active", &got);
        test_report(round_trip && rc == -1 && strstr(spd_last_error(), "found \"exactly_six_active\""),
                    "data: SPD's six data_generation_type names parse; others are rejected", "%s", spd_last_error());
        rc = spd_toy_data_init_tms(&d, 5, 1.5, SPD_TOY_AT_LEAST_ZERO_ACTIVE, 0);
        test_report(rc == -1 && strstr(spd_last_error(), "feature_probability: expected a number in [0, 1], found 1.5"),
                    "data: feature_probability 1.5 is rejected", "%s", spd_last_error());
        rc = spd_toy_data_init_tms(&d, 3, 0.1, SPD_TOY_EXACTLY_FIVE_ACTIVE, 0);
        test_report(rc == -1 && strstr(spd_last_error(), "needs at least 5 features"),
                    "data: exactly_five_active with 3 features is rejected", "%s", spd_last_error());
        SPD_ASSERT(spd_toy_data_init_tms(&d, 3, 0.1, SPD_TOY_EXACTLY_ONE_ACTIVE, 0) == 0);
        const int g0[] = {0, 1};
        const int *groups[] = {g0};
        const int sizes[] = {2};
        rc = spd_toy_data_set_synced_inputs(&d, groups, sizes, 1);
        test_report(rc == -1 && strstr(spd_last_error(), "at_least_zero_active only"),
                    "data: synced_inputs with exactly_one_active is rejected (SPD syncs at_least_zero_active only)",
                    "%s", spd_last_error());
        spd_toy_data_free(&d);
    }
}

// ---- training the target -------------------------------------------------------------

// TMS 5-2 trained as train_tms.py does (AdamW lr 5e-3, wd 0.01, constant; loss
// mean((|x| - out)^2); p = 0.05; batch 1024), the tied pair stepped as torch's
// for-loop AdamW steps two aliased Parameters. 2000 steps: the loss must fall well
// below the start, and the weights stay tied.
static void test_tms_training(void) {
    const int B = 1024, F = 5, H = 2, steps = 2000;
    tms_config cfg = {.n_features = F, .n_hidden = H, .tied_weights = true};
    tms_options opt = {.B = B, .train = true};
    spd_spec spec;
    tms_model m;
    tms_build(&spec, &m, &cfg, &opt, 0);
    spd_toy_data d;
    SPD_ASSERT(spd_toy_data_init_tms(&d, F, 0.05, SPD_TOY_AT_LEAST_ZERO_ACTIVE, 0) == 0);
    double *labels = tmalloc((size_t)B * F * sizeof(double)), loss[1];
    spd_adamw_config ac = {.lr = 5e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01};
    const char *order[] = {"linear1.weight", "linear2.weight", "linear2.bias"};
    double first = 0, last = 0;
    const long n = (long)B * F;
    for (int step = 0; step < steps; step++) {
        spd_toy_batch_f64(&d, (uint64_t)step, -1, 0, B, m.x, labels);
        spd_spec_zero_grad(&spec);
        tms_forward_f64(&m);
        mse_loss_forward_f64(loss, m.out, labels, n);
        mse_loss_backward_f64(m.dout, m.out, labels, n);
        tms_backward_f64(&m);
        for (int k = 0; k < 3; k++) {
            spd_tensor *t = spd_spec_get(&spec, order[k]);
            adamw_step_f64(t->data, spd_spec_grad(&spec, t), spd_spec_adam_m(&spec, t), spd_spec_adam_v(&spec, t),
                           (size_t)spd_tensor_numel(t), &ac, step + 1);
            if (k == 0) tms_tie_weights_f64(&m);          // linear2's update lands on the stepped matrix
            if (k == 1) tms_tie_weights_reverse_f64(&m);  // and linear1 sees it
        }
        if (step < 20) first += loss[0] / 20;
        if (step >= steps - 20) last += loss[0] / 20;
    }
    const double *W1 = m.sites[TMS_LINEAR1].W, *W2 = m.sites[TMS_LINEAR2].W;
    bool tied = true;
    for (int h = 0; h < H; h++)
        for (int f = 0; f < F; f++) tied &= W2[f * H + h] == W1[h * F + f];
    char name[160];
    snprintf(name, sizeof name, "tms 5-2 training as train_tms.py: loss %.2e -> %.2e over %d steps, weights stay tied",
             first, last, steps);
    test_report(last < 0.5 * first && tied, name, NULL);
    spd_toy_data_free(&d);
    tms_free_f64(&m);
    spd_spec_free(&spec);
}

int main(void) {
    test_tms_grads(0, false, TMS_HIDDEN_DEFAULT);
    test_tms_grads(0, true, TMS_HIDDEN_DEFAULT);
    test_tms_grads(1, true, TMS_HIDDEN_DEFAULT);
    test_tms_grads(2, false, TMS_HIDDEN_DEFAULT);
    test_tms_grads(1, true, TMS_HIDDEN_FIXED_IDENTITY);
    test_resid_grads(1, false, RESID_MLP_RELU);
    test_resid_grads(1, true, RESID_MLP_GELU);
    test_resid_grads(2, true, RESID_MLP_RELU);
    test_resid_grads(2, false, RESID_MLP_GELU);
    test_tms_tied();
    test_tms_names();
    test_resid_names();
    test_init();
    test_tms_components();
    test_f32_vs_f64();
    test_data();
    test_tms_training();
    free_all();
    return test_exit();
}
