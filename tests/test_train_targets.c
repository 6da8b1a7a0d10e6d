// The SPD training step (src/spd/train.c) over the LlamaSimple and ResidMLP
// targets (src/spd/target_llama.h, target_resid_mlp.h), CPU float64, and the
// faithfulness warm-up (src/spd/faithfulness_warmup.h):
//  - the step's gradient of the total loss w.r.t. every trained parameter (V, U,
//    CI-fn W and b) against central differences of the total at the same draws
//    (as tests/test_train.c does for TMS): LlamaSimple with every site
//    decomposed (wte an embedding site, lm_head) under kl and mse, LlamaSimple's
//    linear sites with vector_mlp, ResidMLP (gelu with biases; relu);
//  - an embedding site with a CI type other than mlp is refused (SPD_SPEC.md 2.1);
//  - the warm-up: its first step is exactly one AdamW step (with weight decay)
//    on the faithfulness gradient of V and U, the CI functions and the main
//    optimizer are untouched, and a few dozen steps lower the faithfulness loss.
// Logistic sigmoid (the leaky-hard backward is not the derivative of its
// forward), h = 1e-5, bound 1e-6 (see test_train.c). With wte decomposed the
// largest error (~1e-7, on wte.V) is the differences' truncation: it scales as
// h^2 (RMSNorm right after the rank-C embedding output is strongly curved).
#define SPD_F64
#include "core/real.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/spec.h"
#include "models/linear_site.h"
#include "models/llama_simple.h"
#include "models/resid_mlp.h"
#include "models/tms.h"
#include "spd/faithfulness_warmup.h"
#include "spd/schedule.h"
#include "spd/target_llama.h"
#include "spd/target_resid_mlp.h"
#include "spd/target_tms.h"
#include "spd/tied.h"
#include "spd/train.h"

#ifndef FD_H
#define FD_H 1e-5
#endif
#define FD_TOL 1e-6
#define TEST_NAME "test_train_targets"
#define TEST_SEED 4343
#include "test_inputs.h"
#include "testing.h"

typedef enum { LLAMA, RESID, TMS_TIED } target_kind;

typedef struct {
    target_kind kind;
    spd_spec spec;
    llama_model llama;
    resid_mlp_model rm;
    tms_model tms;
    spd_trainer tr;
} fixture;

// LlamaSimple: vocab 7, d 4, 2 heads of 2 (1 kv head), intermediate 6, one
// layer, B 2 x S 3 (tokens with repeats, for the embedding's scatter-adds).
// Site indices: 0 wte, 1..7 q k v o gate up down, 8 lm_head.
static const llama_config tiny_llama = {.vocab_size = 7, .n_layer = 1, .n_head = 2, .n_kv_heads = 1, .n_embd = 4,
                                        .n_intermediate = 6, .n_ctx = 4, .rotary_base = 10000,
                                        .rms_norm_eps = 1e-6};
enum { LB = 2, LS = 3, RB = 4 };

static const resid_mlp_config tiny_resid_gelu = {
    .n_features = 5, .d_embed = 4, .d_mlp = 3, .n_layers = 2, .act = RESID_MLP_GELU, .in_bias = true, .out_bias = true};
static const resid_mlp_config tiny_resid_relu = {
    .n_features = 5, .d_embed = 4, .d_mlp = 3, .n_layers = 1, .act = RESID_MLP_RELU};

static spd_target target_of(fixture *fx) {
    return fx->kind == LLAMA   ? spd_target_llama_f64(&fx->llama)
           : fx->kind == RESID ? spd_target_resid_mlp_f64(&fx->rm)
                               : spd_target_tms_f64(&fx->tms);
}

// Declares the target and the trainer over sites[n] (C components each), allocates, binds, initialises.
static int build(fixture *fx, target_kind kind, const resid_mlp_config *rcfg, const spd_train_options *opt,
                 const int *sites, int n, int C) {
    memset(fx, 0, sizeof *fx);
    fx->kind = kind;
    spd_spec_init(&fx->spec);
    if (kind == LLAMA) {
        llama_declare_f64(&fx->llama, &fx->spec, &tiny_llama, LB, LS, false);
    } else if (kind == TMS_TIED) {
        tms_config tc = {.n_features = 5, .n_hidden = 3, .n_hidden_layers = 1, .tied_weights = true};
        tms_options to = {.B = RB, .prefix = "target_model."};
        tms_declare_f64(&fx->tms, &fx->spec, &tc, &to);
    } else {
        resid_mlp_options ro = {.B = RB, .prefix = "target_model."};
        resid_mlp_declare_f64(&fx->rm, &fx->spec, rcfg, &ro);
    }
    spd_target tg = target_of(fx);
    int Cs[16];
    for (int i = 0; i < n; i++) Cs[i] = C;
    if (spd_trainer_declare_f64(&fx->tr, &fx->spec, opt, &tg, sites, Cs, n)) return -1;
    spd_spec_alloc(&fx->spec);
    if (kind == LLAMA) {
        llama_bind_f64(&fx->llama, &fx->spec);
        // LlamaSimple's init (std 0.02) scaled up, so the logits are far from uniform.
        spd_spec_init_values(&fx->spec, SPD_ROLE_FROZEN, 5);
        for (int k = 0; k < fx->spec.count; k++) {
            spd_tensor *t = &fx->spec.tensors[k];
            if (t->role != SPD_ROLE_FROZEN || t->ndim != 2) continue;
            double *w = t->data;
            for (int64_t j = 0; j < spd_tensor_numel(t); j++) w[j] *= 25;
        }
        static const int32_t tokens[LB * LS] = {1, 4, 1, 0, 6, 4};
        memcpy(fx->llama.tokens, tokens, sizeof tokens);
    } else if (kind == TMS_TIED) {
        tms_bind_f64(&fx->tms, &fx->spec);
        tms_init_params_f64(&fx->tms, 7);  // ties linear2.weight = linear1.weight^T
        const double *x = uniform((long)RB * 5, -0.5, 1);
        for (int i = 0; i < RB * 5; i++) fx->tms.x[i] = x[i] > 0 ? x[i] : 0;
    } else {
        resid_mlp_bind_f64(&fx->rm, &fx->spec);
        resid_mlp_init_params_f64(&fx->rm, 7);
        const double *x = uniform((long)RB * rcfg->n_features, -1.3, 1);
        for (int i = 0; i < RB * rcfg->n_features; i++) fx->rm.x[i] = x[i] > -0.3 ? x[i] : 0;
    }
    tg = target_of(fx);
    spd_trainer_bind_f64(&fx->tr, &tg);
    spd_trainer_init_params_f64(&fx->tr, 11);
    return 0;
}

static void fixture_free(fixture *fx) {
    spd_trainer_free_f64(&fx->tr);
    if (fx->kind == LLAMA) llama_free_f64(&fx->llama);
    else if (fx->kind == TMS_TIED) tms_free_f64(&fx->tms);
    else resid_mlp_free_f64(&fx->rm);
    spd_spec_free(&fx->spec);
}

static void all_terms(spd_train_options *o) {
    static const double coeffs[] = {0.7, 0.05, 1.0, 0.6, 0.5, 0.3, 0.2};
    // The seven terms from Faithfulness to UnmaskedRecon (the enum's first seven).
    o->n_terms = 7;
    for (int k = 0; k < 7; k++) {
        o->terms[k].kind = (spd_term_kind)k;
        o->terms[k].coeff = coeffs[k];
    }
    o->terms[SPD_TERM_IMPORTANCE_MINIMALITY].imp =
        (spd_importance_minimality_config){.pnorm = 2.0, .beta = 0.5, .p_anneal_start_frac = 1,
                                           .p_anneal_end_frac = 1, .eps = 1e-12};
    o->sigmoid = (spd_sigmoid_pair){SPD_SIGMOID_FN_LOGISTIC, SPD_SIGMOID_FN_LOGISTIC};
    o->steps = 10;
}

// Gradient of the total vs central differences over every element of the TRAINED buffer.
static void check_step_fd(const char *name, target_kind kind, const resid_mlp_config *rcfg, const spd_train_options *o,
                          const int *sites, int n, int C) {
    fixture fx;
    if (build(&fx, kind, rcfg, o, sites, n, C)) {
        test_report(0, name, "build: %s", spd_last_error());
        return;
    }
    const int64_t step = 3;
    spd_spec *spec = &fx.spec;
    size_t ne = spd_spec_trained_elems(spec);
    double *p = spec->buf[SPD_ROLE_TRAINED];
    spd_train_step_f64(&fx.tr, step);
    double *g = copy(spec->grad, (long)ne);
    double *fd = filled((long)ne, 0);
    for (size_t i = 0; i < ne; i++) {
        double keep = p[i];
        p[i] = keep + FD_H;
        double lp = spd_train_step_f64(&fx.tr, step);
        p[i] = keep - FD_H;
        double lm = spd_train_step_f64(&fx.tr, step);
        p[i] = keep;
        fd[i] = (lp - lm) / (2 * FD_H);
    }
    double err = test_rel_norm_err(g, fd, (long)ne);
    int zero_tensor = -1;
    double worst = 0;
    const char *worst_name = "";
    for (int k = 0; k < spec->count; k++) {
        const spd_tensor *t = &spec->tensors[k];
        if (t->role != SPD_ROLE_TRAINED) continue;
        size_t off = t->offset / sizeof(double);
        double s = 0;
        for (int64_t j = 0; j < spd_tensor_numel(t); j++) s += fabs(g[off + j]);
        if (s == 0 && zero_tensor < 0) zero_tensor = k;
        double e = test_rel_norm_err(g + off, fd + off, (long)spd_tensor_numel(t));
        if (e > worst) {
            worst = e;
            worst_name = t->name;
        }
    }
    printf("# %s: %zu params, rel err %.3g (worst tensor %s %.3g), total %.6g\n", name, ne, err, worst_name, worst, fx.tr.total);
    test_report(err < FD_TOL && worst < FD_TOL && zero_tensor < 0 && isfinite(fx.tr.total), name,
                "total rel err %.3g, worst tensor %s %.3g, zero-gradient tensor %s (total %.6g)", err, worst_name,
                worst, zero_tensor < 0 ? "none" : spec->tensors[zero_tensor].name, fx.tr.total);
    fixture_free(&fx);
}

static void test_llama_gradients(void) {
    static const int all[] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
    spd_train_options o;
    spd_train_options_default(&o);
    all_terms(&o);
    o.n_mask_samples = 2;
    o.ci_kind = SPD_CI_MLP;
    o.ci_hidden[0] = 3;
    o.output_loss = SPD_DIVERGENCE_KL;
    check_step_fd("llama fd: every site (wte, lm_head), all terms, kl, mlp, delta, S=2", LLAMA, NULL, &o, all, 9, 2);

    o.output_loss = SPD_DIVERGENCE_MSE;
    o.use_delta = false;
    o.sampling = SPD_MASK_BINOMIAL;
    o.n_mask_samples = 1;
    check_step_fd("llama fd: every site, all terms, mse, mlp, no delta, binomial", LLAMA, NULL, &o, all, 9, 2);

    static const int linear[] = {1, 4, 7, 8};  // q_proj, o_proj, down_proj, lm_head
    o.use_delta = true;
    o.sampling = SPD_MASK_CONTINUOUS;
    o.ci_kind = SPD_CI_VECTOR_MLP;
    o.ci_hidden[0] = 2;
    check_step_fd("llama fd: q, o, down, lm_head, all terms, mse, vector_mlp, delta", LLAMA, NULL, &o, linear, 4,
                  3);
    o.output_loss = SPD_DIVERGENCE_KL;
    o.ci_kind = SPD_CI_SHARED_MLP;
    check_step_fd("llama fd: q, o, down, lm_head, all terms, kl, shared_mlp, delta", LLAMA, NULL, &o, linear, 4,
                  3);

    // SPD_SPEC.md 2.1: an embedding takes the mlp CI function only.
    fixture fx;
    int rc = build(&fx, LLAMA, NULL, &o, all, 9, 2);
    test_report(rc == -1 && strstr(spd_last_error(), "wte") && strstr(spd_last_error(), "mlp"),
                "llama: wte with ci_fn_type shared_mlp refused", "rc %d: %s", rc, rc ? spd_last_error() : "");
    fixture_free(&fx);
}

static void test_resid_gradients(void) {
    spd_train_options o;
    spd_train_options_default(&o);
    all_terms(&o);
    o.n_mask_samples = 2;
    o.ci_kind = SPD_CI_MLP;
    o.ci_hidden[0] = 3;
    o.output_loss = SPD_DIVERGENCE_MSE;
    static const int two[] = {RESID_MLP_IN(0), RESID_MLP_OUT(0), RESID_MLP_IN(1), RESID_MLP_OUT(1)};
    check_step_fd("resid_mlp fd: 2 layers gelu + biases, all terms, mse, mlp, delta, S=2", RESID, &tiny_resid_gelu,
                  &o, two, 4, 3);
    o.ci_kind = SPD_CI_VECTOR_MLP;
    o.output_loss = SPD_DIVERGENCE_KL;
    o.n_mask_samples = 1;
    check_step_fd("resid_mlp fd: 2 layers gelu + biases, all terms, kl, vector_mlp, delta", RESID, &tiny_resid_gelu,
                  &o, two, 4, 2);
    o.ci_kind = SPD_CI_SHARED_MLP;
    o.output_loss = SPD_DIVERGENCE_MSE;
    o.sampling = SPD_MASK_BINOMIAL;
    check_step_fd("resid_mlp fd: 1 layer relu, all terms, mse, shared_mlp, binomial", RESID, &tiny_resid_relu, &o, two,
                  2, 3);
}

// Max |a - b| / max |b| over the V and U of every module of a and b (same layout).
static double vu_rel_err(const spd_trainer *t, const double *got, const double *want) {
    double num = 0, den = 0;
    for (int l = 0; l < t->n_mods; l++) {
        const spd_train_module *m = &t->mods[l];
        int idx[2] = {m->t_V, m->t_U};
        for (int j = 0; j < 2; j++) {
            const spd_tensor *ts = &t->spec->tensors[idx[j]];
            size_t off = ts->offset / sizeof(double);
            for (int64_t i = 0; i < spd_tensor_numel(ts); i++) {
                num = fmax(num, fabs(got[off + i] - want[off + i]));
                den = fmax(den, fabs(want[off + i]));
            }
        }
    }
    return num / den;
}

static int n_logged = 0;
static void count_log(void *ctx, int64_t step, double loss) {
    (void)ctx;
    (void)step;
    if (isfinite(loss)) n_logged++;
}

static void test_warmup_target(const char *name, target_kind kind, const resid_mlp_config *rcfg, const int *sites,
                               int n) {
    spd_train_options o;
    spd_train_options_default(&o);
    o.n_terms = 1;
    o.terms[0] = (spd_train_term){.kind = SPD_TERM_FAITHFULNESS, .coeff = 1};
    o.ci_kind = SPD_CI_MLP;
    fixture fx;
    if (build(&fx, kind, rcfg, &o, sites, n, 3)) {
        test_report(0, name, "build: %s", spd_last_error());
        return;
    }
    spd_spec *spec = &fx.spec;
    const long ne = (long)spd_spec_trained_elems(spec);
    double *p = spec->buf[SPD_ROLE_TRAINED];
    double *p0 = copy(p, ne);
    // The faithfulness gradient from the trainer's step (only the Faithfulness term: dCI = 0).
    double f0 = spd_train_step_f64(&fx.tr, 0);
    double *g = copy(spec->grad, ne);
    const double lr = 0.01, wd = 0.1;
    // torch AdamW's first step: p (1 - lr wd) - lr g / (|g| + eps) (m-hat = g, sqrt(v-hat) = |g|).
    double *want = tmalloc((size_t)ne * sizeof(double));
    for (long i = 0; i < ne; i++) want[i] = p0[i] * (1 - lr * wd) - lr * g[i] / (fabs(g[i]) + 1e-8);
    spd_faithfulness_warmup_options wo = {.steps = 1, .lr = lr, .weight_decay = wd};
    double f1 = spd_faithfulness_warmup_f64(&fx.tr, &wo);
    double e1 = vu_rel_err(&fx.tr, p, want);
    // CI-fn parameters untouched; V, U gradients left zero; the main optimizer's count untouched.
    int ci_same = 1, grads_zero = 1;
    for (int k = 0; k < spec->count; k++) {
        const spd_tensor *t = &spec->tensors[k];
        if (t->role != SPD_ROLE_TRAINED) continue;
        bool comp = strncmp(t->name, "_components.", 12) == 0;
        size_t off = t->offset / sizeof(double);
        for (int64_t i = 0; i < spd_tensor_numel(t); i++) {
            if (!comp && p[off + i] != p0[off + i]) ci_same = 0;
            if (comp && ((const double *)spec->grad)[off + i] != 0) grads_zero = 0;
        }
    }
    char label[256];
    snprintf(label, sizeof label, "warm-up %s: one step is AdamW (wd) on the faithfulness gradient of V, U", name);
    test_report(e1 < 1e-12 && ci_same && grads_zero && fx.tr.adam_t == 0, label,
                "rel err %.3g, CI fns untouched %d, grads zero %d, adam_t %lld", e1, ci_same, grads_zero,
                (long long)fx.tr.adam_t);
    // The returned value is the faithfulness after the update, as the trainer's step sees it.
    spd_train_step_f64(&fx.tr, 0);
    double f1_step = fx.tr.values[0];
    n_logged = 0;
    wo = (spd_faithfulness_warmup_options){.steps = 150, .lr = 0.01, .log = count_log};
    double f2 = spd_faithfulness_warmup_f64(&fx.tr, &wo);
    snprintf(label, sizeof label, "warm-up %s: 150 steps lower the faithfulness loss", name);
    printf("# %s: faithfulness %.6g -> %.6g (1 step) -> %.6g (150 more)\n", name, f0, f1, f2);
    test_report(fabs(f1 - f1_step) <= 1e-14 * f1_step && f1 < f0 && f2 < 0.1 * f0 && n_logged == 3 && isfinite(f2),
                label, "%.6g -> %.6g (step sees %.6g) -> %.6g, logged %d", f0, f1, f1_step, f2, n_logged);
    fixture_free(&fx);
}

static void test_warmup(void) {
    static const int all[] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
    test_warmup_target("llama (every site)", LLAMA, NULL, all, 9);
    static const int two[] = {RESID_MLP_IN(0), RESID_MLP_OUT(0), RESID_MLP_IN(1), RESID_MLP_OUT(1)};
    test_warmup_target("resid_mlp", RESID, &tiny_resid_gelu, two, 4);
}

// ---- tied components (TMS with a tied target) ----------------------------------------

static const spd_tied_pair tie01 = {0, 1};  // (linear1, linear2)

// Index of the element of tgt's tensor tied to element i of src's tensor
// (src.V [din, C] <-> tgt.U [C, din]; src.U [C, dout] <-> tgt.V [dout, C]).
static size_t tied_index(size_t i, int rows, int cols) { return (i % cols) * rows + i / cols; }

static size_t offset_of(const spd_spec *spec, int idx) { return spec->tensors[idx].offset / sizeof(double); }

static bool ties_hold(const spd_trainer *t) {
    const spd_train_module *s = &t->mods[0], *g = &t->mods[1];
    const int C = s->comp.C;
    for (int i = 0; i < s->d_in * C; i++)
        if (g->comp.U[tied_index(i, s->d_in, C)] != s->comp.V[i]) return false;
    for (int i = 0; i < C * s->d_out; i++)
        if (g->comp.V[tied_index(i, C, s->d_out)] != s->comp.U[i]) return false;
    return true;
}

static void test_tied(void) {
    static const int sites[] = {TMS_LINEAR1, TMS_LINEAR2, TMS_HIDDEN0};
    spd_train_options o;
    spd_train_options_default(&o);
    all_terms(&o);
    o.n_mask_samples = 2;
    o.ci_kind = SPD_CI_VECTOR_MLP;
    o.ci_hidden[0] = 3;
    fixture fx;
    if (build(&fx, TMS_TIED, NULL, &o, sites, 3, 3)) {
        test_report(0, "tied: build", "%s", spd_last_error());
        return;
    }
    spd_trainer *t = &fx.tr;
    spd_spec *spec = &fx.spec;
    test_report(spd_tied_check_f64(t, &tie01, 1) == 0, "tied: (linear1, linear2) is a valid pair", "%s",
                spd_last_error());
    spd_tied_pair bad = {0, 2};
    test_report(spd_tied_check_f64(t, &bad, 1) == -1, "tied: (linear1, hidden_layers.0) refused", "");
    spd_tied_sync_f64(t, &tie01, 1);
    test_report(ties_hold(t), "tied: sync makes tgt.U = src.V^T and tgt.V = src.U^T", "");

    // The gradient w.r.t. the shared matrix = src's gradient + tgt's (transposed), by central differences
    // moving both copies together. h = 3e-6: at 1e-5 the truncation error is 1.7e-6 (it scales as h^2).
    const double h = 3e-6;
    const int din = t->mods[0].d_in, dout = t->mods[0].d_out, C = t->mods[0].comp.C;
    double *p = spec->buf[SPD_ROLE_TRAINED];
    spd_train_step_f64(t, 3);
    const double *g = spec->grad;
    struct {
        int src, tgt, rows, cols;  // src tensor's shape
    } sh[2] = {{t->mods[0].t_V, t->mods[1].t_U, din, C}, {t->mods[0].t_U, t->mods[1].t_V, C, dout}};
    int nsh = din * C + C * dout, k = 0;
    double *an = filled(nsh, 0), *fd = filled(nsh, 0);
    for (int j = 0; j < 2; j++) {
        size_t os = offset_of(spec, sh[j].src), ot = offset_of(spec, sh[j].tgt);
        for (int i = 0; i < sh[j].rows * sh[j].cols; i++)
            an[k + i] = g[os + i] + g[ot + tied_index(i, sh[j].rows, sh[j].cols)];
        for (int i = 0; i < sh[j].rows * sh[j].cols; i++) {
            double *a = &p[os + i], *b = &p[ot + tied_index(i, sh[j].rows, sh[j].cols)];
            double keep = *a;
            *a = *b = keep + h;
            double lp = spd_train_step_f64(t, 3);
            *a = *b = keep - h;
            double lm = spd_train_step_f64(t, 3);
            *a = *b = keep;
            fd[k + i] = (lp - lm) / (2 * h);
        }
        k += sh[j].rows * sh[j].cols;
    }
    double err = test_rel_norm_err(an, fd, nsh);
    // Not vacuous: src's own gradient alone is not it.
    double *src_only = filled(nsh, 0);
    for (int j = 0, q = 0; j < 2; j++) {
        size_t os = offset_of(spec, sh[j].src);
        for (int i = 0; i < sh[j].rows * sh[j].cols; i++) src_only[q++] = g[os + i];
    }
    double err_src = test_rel_norm_err(src_only, fd, nsh);
    printf("# tied fd: rel err %.3g (src's gradient alone: %.3g)\n", err, err_src);
    test_report(err < FD_TOL && err_src > 1e-2, "tied fd: d total / d shared = src's gradient + tgt's transposed",
                "rel err %.3g, src alone %.3g", err, err_src);

    // One update (weight decay on, to see both decays): the shared matrix gets src's step, then tgt's.
    t->opt.weight_decay = 0.1;
    spd_train_step_f64(t, 0);
    const double lr = spd_schedule_value(&t->opt.lr, 0, t->opt.steps), wd = 0.1;
    double *want_V = tmalloc((size_t)din * C * sizeof(double)), *want_U = tmalloc((size_t)C * dout * sizeof(double));
    for (int j = 0; j < 2; j++) {
        size_t os = offset_of(spec, sh[j].src), ot = offset_of(spec, sh[j].tgt);
        double *w = j == 0 ? want_V : want_U;
        for (int i = 0; i < sh[j].rows * sh[j].cols; i++) {
            double gs = g[os + i], gt = g[ot + tied_index(i, sh[j].rows, sh[j].cols)];
            double x = p[os + i] * (1 - lr * wd) - lr * gs / (fabs(gs) + 1e-8);  // first Adam step: m/sqrt(v) = sign
            w[i] = x * (1 - lr * wd) - lr * gt / (fabs(gt) + 1e-8);
        }
    }
    spd_tied_update_f64(t, &tie01, 1, 0);
    double ev = test_rel_norm_err(t->mods[0].comp.V, want_V, din * C);
    double eu = test_rel_norm_err(t->mods[0].comp.U, want_U, C * dout);
    test_report(ev < 1e-13 && eu < 1e-13 && ties_hold(t) && t->adam_t == 1,
                "tied update: both Adam steps and both decays land on the shared matrix, ties hold",
                "V rel err %.3g, U %.3g, ties %d", ev, eu, ties_hold(t));

    // Warm-up with ties: the ties hold and the faithfulness drops.
    double f0 = spd_faithfulness_value_f64(t);
    spd_faithfulness_warmup_options wo = {.steps = 100, .lr = 0.01, .weight_decay = 0.01, .ties = &tie01, .n_ties = 1};
    double f1 = spd_faithfulness_warmup_f64(t, &wo);
    test_report(ties_hold(t) && f1 < 0.2 * f0, "tied warm-up: ties hold, faithfulness lowered", "%.6g -> %.6g, ties %d",
                f0, f1, ties_hold(t));
    fixture_free(&fx);
}

// Without ties, spd_tied_update is spd_train_update (the same elementwise AdamW, tensor by tensor).
static void test_update_no_ties(void) {
    static const int two[] = {RESID_MLP_IN(0), RESID_MLP_OUT(0), RESID_MLP_IN(1), RESID_MLP_OUT(1)};
    spd_train_options o;
    spd_train_options_default(&o);
    all_terms(&o);
    o.grad_clip_components = 0.05;
    o.grad_clip_ci_fns = 0.01;
    fixture a, b;
    if (build(&a, RESID, &tiny_resid_gelu, &o, two, 4, 3) || build(&b, RESID, &tiny_resid_gelu, &o, two, 4, 3)) {
        test_report(0, "update without ties: build", "%s", spd_last_error());
        return;
    }
    memcpy(b.rm.x, a.rm.x, (size_t)RB * tiny_resid_gelu.n_features * sizeof(double));  // same batch
    for (int64_t s = 0; s < 3; s++) {
        spd_train_step_f64(&a.tr, s);
        spd_train_update_f64(&a.tr, s);
        spd_train_step_f64(&b.tr, s);
        spd_tied_update_f64(&b.tr, NULL, 0, s);
    }
    size_t ne = spd_spec_trained_elems(&a.spec);
    bool same = memcmp(a.spec.buf[SPD_ROLE_TRAINED], b.spec.buf[SPD_ROLE_TRAINED], ne * sizeof(double)) == 0;
    test_report(same && a.tr.grad_norm_components == b.tr.grad_norm_components && a.tr.adam_t == b.tr.adam_t,
                "spd_tied_update without ties = spd_train_update (3 clipped steps, bitwise)", "");
    fixture_free(&a);
    fixture_free(&b);
}

int main(void) {
    test_llama_gradients();
    test_resid_gradients();
    test_warmup();
    test_tied();
    test_update_no_ties();
    free_all();
    return test_exit();
}
