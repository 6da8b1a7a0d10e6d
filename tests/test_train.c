// The SPD training step (src/spd/train.c) over a tiny TMS target, CPU float64:
//  - the step's gradient of the total loss w.r.t. every trained parameter (V, U,
//    CI-fn W and b) against central differences of the total computed by the
//    same step at the same draws (Philox streams are a function of the step, so
//    re-running it with a perturbed parameter sees identical masks), for every
//    implemented term, both output losses and the three CI-fn types;
//  - term values on hand-checkable cases (V U = W^T: UnmaskedRecon and
//    Faithfulness are 0; Faithfulness = mean squared delta);
//  - SPD_SPEC.md 12's golden values (term values, total and gradients, with its
//    fixed draws supplied through a draw source) on its two-linear problem;
//  - ten AdamW steps lower the total loss at fixed draws.
// The finite differences use the logistic sigmoid (the leaky-hard backward is by
// design not the derivative of its forward) and h = 1e-5: the loss is smooth
// except at ReLU kinks of the target, so a correct backward lands near 1e-9
// relative; bound 1e-6. (h = 1e-5: with h = 1e-6 the roundoff of the total,
// ~1e-16 / h, reaches 1e-6 relative on the smallest CI-bias gradients.)
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
#include "models/tms.h"
#include "ops/components.h"
#include "spd/train.h"

#define FD_H 1e-5
#define FD_TOL 1e-6
#define TEST_NAME "test_train"
#define TEST_SEED 4242
#include "test_inputs.h"
#include "testing.h"

enum { F = 5, H = 3, B = 4 };

typedef struct {
    spd_spec spec;
    tms_model tms;
    spd_trainer tr;
} fixture;

static void tms_fwd(void *m) { tms_forward_f64(m); }
static void tms_bwd(void *m) { tms_backward_f64(m); }

static spd_target tms_target(tms_model *m) {
    return (spd_target){.model = m, .sites = m->sites, .n_sites = m->n_sites, .N = m->B,
                        .d_out = m->cfg.n_features, .out = m->out, .dout = m->dout,
                        .forward = tms_fwd, .backward = tms_bwd};
}

// TMS F=5, H=3, one hidden layer, untied, frozen; all three sites decomposed
// with C components each; x in [0, 1) with about a third of the entries zero.
static int build(fixture *fx, const spd_train_options *opt, int C) {
    memset(fx, 0, sizeof *fx);
    spd_spec_init(&fx->spec);
    tms_config cfg = {.n_features = F, .n_hidden = H, .n_hidden_layers = 1};
    tms_options topt = {.B = B, .prefix = "target_model."};
    tms_declare_f64(&fx->tms, &fx->spec, &cfg, &topt);
    spd_target tg = tms_target(&fx->tms);
    int sites[3] = {TMS_LINEAR1, TMS_LINEAR2, TMS_HIDDEN0};
    int Cs[3] = {C, C, C};
    if (spd_trainer_declare_f64(&fx->tr, &fx->spec, opt, &tg, sites, Cs, 3)) return -1;
    spd_spec_alloc(&fx->spec);
    tms_bind_f64(&fx->tms, &fx->spec);
    tms_init_params_f64(&fx->tms, 7);
    tg = tms_target(&fx->tms);
    spd_trainer_bind_f64(&fx->tr, &tg);
    spd_trainer_init_params_f64(&fx->tr, 11);
    const double *x = uniform(B * F, -0.5, 1);
    for (int i = 0; i < B * F; i++) fx->tms.x[i] = x[i] > 0 ? x[i] : 0;
    return 0;
}

static void fixture_free(fixture *fx) {
    spd_trainer_free_f64(&fx->tr);
    tms_free_f64(&fx->tms);
    spd_spec_free(&fx->spec);
}

static void all_terms(spd_train_options *o) {
    static const double coeffs[SPD_TERM_KIND_COUNT] = {0.7, 0.05, 1.0, 0.6, 0.5, 0.3, 0.2,
                                                       0.4, 0.35, 0.8, 0.45, 0.25, 0.3};
    o->n_terms = SPD_TERM_KIND_COUNT;
    for (int k = 0; k < SPD_TERM_KIND_COUNT; k++) {
        o->terms[k].kind = (spd_term_kind)k;
        o->terms[k].coeff = coeffs[k];
    }
    o->terms[SPD_TERM_IMPORTANCE_MINIMALITY].imp =
        (spd_importance_minimality_config){.pnorm = 2.0, .beta = 0.5, .p_anneal_start_frac = 1,
                                           .p_anneal_end_frac = 1, .eps = 1e-12};
    o->terms[SPD_TERM_STOCHASTIC_RECON_SUBSET].router = (spd_router){.kind = SPD_ROUTE_UNIFORM_K_SUBSET};
    o->terms[SPD_TERM_CI_MASKED_RECON_SUBSET].router = (spd_router){.kind = SPD_ROUTE_STATIC_PROBABILITY, .p = 0.5};
    o->terms[SPD_TERM_PGD_RECON_SUBSET].router = (spd_router){.kind = SPD_ROUTE_UNIFORM_K_SUBSET};
    // Small n_steps: the FD perturbation must not flip a sign step (checked: the final sources
    // of every run are identical at +-h; a flip would also show as an O(step^2 / h) FD error).
    o->terms[SPD_TERM_PGD_RECON].pgd = (spd_pgd_config){.init = SPD_PGD_INIT_RANDOM, .step_size = 0.1, .n_steps = 2,
                                                        .mask_scope = SPD_MASK_SCOPE_UNIQUE_PER_DATAPOINT};
    o->terms[SPD_TERM_PGD_RECON_SUBSET].pgd = (spd_pgd_config){
        .init = SPD_PGD_INIT_RANDOM, .step_size = 0.2, .n_steps = 1, .mask_scope = SPD_MASK_SCOPE_SHARED_ACROSS_BATCH};
    // (Not init ones here: at s = 1 the output is the target's, the source gradient is rounding
    // noise and its sign is arbitrary, in SPD too.)
    o->terms[SPD_TERM_PGD_RECON_LAYERWISE].pgd = (spd_pgd_config){
        .init = SPD_PGD_INIT_RANDOM, .step_size = 0.15, .n_steps = 2, .mask_scope = SPD_MASK_SCOPE_SHARED_ACROSS_BATCH};
}

// Every module's PGD sources after a step (the last PGD run's), concatenated.
static double *pgd_sources(const spd_trainer *tr, long *n) {
    long total = 0;
    for (int l = 0; l < tr->n_mods; l++) total += (long)tr->target.N * (tr->mods[l].comp.C + 1);
    double *v = calloc((size_t)total, sizeof *v);  // caller frees (not tmalloc: called per FD evaluation)
    SPD_ASSERT(v);
    long k = 0;
    for (int l = 0; l < tr->n_mods; l++) {
        long m = (long)tr->target.N * (tr->mods[l].comp.C + 1);
        if (tr->mods[l].pgd_src) memcpy(v + k, tr->mods[l].pgd_src, (size_t)m * sizeof *v);
        k += m;
    }
    *n = total;
    return v;
}

// Gradient of the total vs central differences over every element of the TRAINED buffer.
// zero_ok: tensors whose name contains it may have an all-zero gradient (NULL: none).
static void check_step_fd_z(const char *name, spd_train_options *o, int C, const char *zero_ok) {
    fixture fx;
    if (build(&fx, o, C)) {
        test_report(0, name, "build: %s", spd_last_error());
        return;
    }
    const int64_t step = 3;
    spd_spec *spec = &fx.spec;
    size_t n = spd_spec_trained_elems(spec);
    double *p = spec->buf[SPD_ROLE_TRAINED];
    spd_train_step_f64(&fx.tr, step);
    double *g = copy(spec->grad, (long)n);
    double *fd = filled((long)n, 0);
    long n_src;
    double *src0 = pgd_sources(&fx.tr, &n_src);
    long src_moved = 0;
    for (size_t i = 0; i < n; i++) {
        double keep = p[i];
        p[i] = keep + FD_H;
        double lp = spd_train_step_f64(&fx.tr, step);
        double *sp = pgd_sources(&fx.tr, &n_src);
        p[i] = keep - FD_H;
        double lm = spd_train_step_f64(&fx.tr, step);
        double *sm = pgd_sources(&fx.tr, &n_src);
        if (memcmp(sp, src0, (size_t)n_src * sizeof *sp) || memcmp(sm, src0, (size_t)n_src * sizeof *sm)) src_moved++;
        free(sp);
        free(sm);
        p[i] = keep;
        fd[i] = (lp - lm) / (2 * FD_H);
    }
    free(src0);
    double err = test_rel_norm_err(g, fd, (long)n);
    // Every trained tensor gets a gradient (no path silently missing).
    int zero_tensor = -1;
    for (int k = 0; k < spec->count; k++) {
        const spd_tensor *t = &spec->tensors[k];
        if (t->role != SPD_ROLE_TRAINED) continue;
        const double *gt = spd_spec_grad(spec, t);
        double s = 0;
        for (int64_t j = 0; j < spd_tensor_numel(t); j++) s += fabs(gt[j]);
        if (s == 0 && zero_tensor < 0 && !(zero_ok && strstr(t->name, zero_ok))) zero_tensor = k;
    }
    // Per-tensor relative error too, so a small tensor's error is not hidden by big ones.
    double worst = 0;
    const char *worst_name = "";
    for (int k = 0; k < spec->count; k++) {
        const spd_tensor *t = &spec->tensors[k];
        if (t->role != SPD_ROLE_TRAINED) continue;
        size_t off = t->offset / sizeof(double);
        double e = test_rel_norm_err(g + off, fd + off, (long)spd_tensor_numel(t));
        if (e > worst) {
            worst = e;
            worst_name = t->name;
        }
    }
    printf("# %s: rel err %.3g (worst tensor %.3g), total %.6g\n", name, err, worst, fx.tr.total);
    test_report(err < FD_TOL && worst < FD_TOL && zero_tensor < 0 && src_moved == 0, name,
                "total rel err %.3g, worst tensor %s %.3g, zero-gradient tensor %s, PGD sources changed by %ld "
                "perturbations (total %.6g)",
                err, worst_name, worst, zero_tensor < 0 ? "none" : spec->tensors[zero_tensor].name, src_moved,
                fx.tr.total);
    fixture_free(&fx);
}

static void check_step_fd(const char *name, spd_train_options *o, int C) { check_step_fd_z(name, o, C, NULL); }

static void test_gradients(void) {
    spd_train_options o;
    spd_train_options_default(&o);
    all_terms(&o);
    o.sigmoid = (spd_sigmoid_pair){SPD_SIGMOID_FN_LOGISTIC, SPD_SIGMOID_FN_LOGISTIC};
    o.n_mask_samples = 2;
    o.steps = 10;
    o.ci_kind = SPD_CI_VECTOR_MLP;
    o.ci_hidden[0] = 3;
    o.output_loss = SPD_DIVERGENCE_MSE;
    check_step_fd("fd: all terms, mse, vector_mlp, delta, continuous, S=2", &o, 3);

    o.output_loss = SPD_DIVERGENCE_KL;
    o.ci_kind = SPD_CI_MLP;
    check_step_fd("fd: all terms, kl, mlp, delta, continuous, S=2", &o, 3);

    o.output_loss = SPD_DIVERGENCE_MSE;
    o.ci_kind = SPD_CI_SHARED_MLP;
    o.use_delta = false;
    o.sampling = SPD_MASK_BINOMIAL;
    o.n_mask_samples = 1;
    o.ci_hidden[0] = 4;
    check_step_fd("fd: all terms, mse, shared_mlp, no delta, binomial", &o, 2);

    // p annealing mid-way (step 3 of 10: p between 2 and 1.2), kl. (Not swish_hard:
    // its ci_upper dips below 0, and a negative base to a fractional p is NaN, in SPD too.)
    o.output_loss = SPD_DIVERGENCE_KL;
    o.use_delta = true;
    o.sampling = SPD_MASK_CONTINUOUS;
    spd_importance_minimality_config *imp = &o.terms[SPD_TERM_IMPORTANCE_MINIMALITY].imp;
    imp->p_anneal_start_frac = 0;
    imp->has_p_anneal_final_p = true;
    imp->p_anneal_final_p = 1.2;
    imp->p_anneal_end_frac = 1;
    check_step_fd("fd: all terms, kl, shared_mlp, p annealed", &o, 3);

    // Each new term alone (with the delta component), so a failure names its term.
    for (int k = SPD_TERM_STOCHASTIC_RECON_SUBSET; k < SPD_TERM_KIND_COUNT; k++) {
        spd_train_options one;
        spd_train_options_default(&one);
        all_terms(&one);
        one.terms[0] = one.terms[k];
        one.n_terms = 1;
        one.sigmoid = (spd_sigmoid_pair){SPD_SIGMOID_FN_LOGISTIC, SPD_SIGMOID_FN_LOGISTIC};
        one.n_mask_samples = 2;
        one.steps = 10;
        one.ci_kind = SPD_CI_MLP;
        one.ci_hidden[0] = 3;
        char name[128];
        snprintf(name, sizeof name, "fd: %s alone, mse, mlp, delta", spd_term_kind_name((spd_term_kind)k));
        // Hidden acts: linear2 (last in execution) feeds no module input: no gradient to it.
        check_step_fd_z(name, &one, 3, k == SPD_TERM_STOCHASTIC_HIDDEN_ACTS_RECON ? "linear2" : NULL);
    }
}

// V = I (C = d_in), U = W^T: every module reproduces its target weight.
static void test_values(void) {
    spd_train_options o;
    spd_train_options_default(&o);
    o.n_terms = 3;
    o.terms[0] = (spd_train_term){.kind = SPD_TERM_UNMASKED_RECON, .coeff = 1};
    o.terms[1] = (spd_train_term){.kind = SPD_TERM_FAITHFULNESS, .coeff = 1};
    o.terms[2] = (spd_train_term){.kind = SPD_TERM_STOCHASTIC_RECON, .coeff = 1};
    // C = F (the largest d_in): V = [I 0], U = [W^T; 0].
    fixture fx;
    if (build(&fx, &o, F)) {
        test_report(0, "values: build", "%s", spd_last_error());
        return;
    }
    for (int l = 0; l < fx.tr.n_mods; l++) {
        component_module *c = &fx.tr.mods[l].comp;
        int d_in = c->site->d_in, d_out = c->site->d_out;
        memset(c->V, 0, sizeof(double) * (size_t)d_in * c->C);
        memset(c->U, 0, sizeof(double) * (size_t)c->C * d_out);
        for (int i = 0; i < d_in; i++) c->V[i * c->C + i] = 1;
        for (int i = 0; i < d_in; i++)
            for (int j = 0; j < d_out; j++) c->U[i * d_out + j] = c->site->W[j * d_in + i];
    }
    spd_train_step_f64(&fx.tr, 0);
    test_report(fabs(fx.tr.values[0]) < 1e-28 && fx.tr.values[1] == 0, "values: V U = W^T gives UnmaskedRecon 0 and Faithfulness 0",
                "unmasked %.3g, faithfulness %.3g", fx.tr.values[0], fx.tr.values[1]);
    // With a zero delta and all masks in (ci, 1), stochastic recon is positive unless CI = 1.
    test_report(fx.tr.values[2] >= 0, "values: stochastic recon non-negative", "%.3g", fx.tr.values[2]);

    // Random components: Faithfulness = mean over all entries of (W - (V U)^T)^2.
    spd_trainer_init_params_f64(&fx.tr, 99);
    spd_train_step_f64(&fx.tr, 0);
    double sum = 0;
    long count = 0;
    for (int l = 0; l < fx.tr.n_mods; l++) {
        component_module *c = &fx.tr.mods[l].comp;
        int d_in = c->site->d_in, d_out = c->site->d_out;
        for (int o2 = 0; o2 < d_out; o2++)
            for (int i = 0; i < d_in; i++) {
                double w = 0;
                for (int k = 0; k < c->C; k++) w += c->V[i * c->C + k] * c->U[k * d_out + o2];
                double d = c->site->W[o2 * d_in + i] - w;
                sum += d * d;
                count++;
            }
    }
    double want = sum / (double)count;
    test_report(fabs(fx.tr.values[1] - want) <= 1e-14 * want, "values: Faithfulness = mean squared delta",
                "got %.17g want %.17g", fx.tr.values[1], want);
    fixture_free(&fx);
}

// Ten AdamW steps lower the total at fixed draws (step 0's streams before and after).
static void test_training(void) {
    spd_train_options o;
    spd_train_options_default(&o);
    o.n_terms = 4;
    o.terms[0] = (spd_train_term){.kind = SPD_TERM_FAITHFULNESS, .coeff = 1};
    o.terms[1] = (spd_train_term){.kind = SPD_TERM_IMPORTANCE_MINIMALITY, .coeff = 3e-3,
                                  .imp = {.pnorm = 1, .p_anneal_start_frac = 1, .p_anneal_end_frac = 1, .eps = 1e-12}};
    o.terms[2] = (spd_train_term){.kind = SPD_TERM_STOCHASTIC_RECON, .coeff = 1};
    o.terms[3] = (spd_train_term){.kind = SPD_TERM_STOCHASTIC_RECON_LAYERWISE, .coeff = 1};
    o.steps = 10;
    o.lr = (spd_schedule_config){.start_val = 1e-2, .warmup_pct = 0.1, .final_val_frac = 0.1, .fn_type = SPD_SCHEDULE_COSINE};
    o.grad_clip_components = 10;
    o.grad_clip_ci_fns = 10;
    fixture fx;
    if (build(&fx, &o, 4)) {
        test_report(0, "train: build", "%s", spd_last_error());
        return;
    }
    double before = spd_train_step_f64(&fx.tr, 0);
    for (int64_t s = 0; s < o.steps; s++) {
        spd_train_step_f64(&fx.tr, s);
        spd_train_update_f64(&fx.tr, s);
    }
    double after = spd_train_step_f64(&fx.tr, 0);
    test_report(after < 0.9 * before && isfinite(after), "train: ten steps lower the total loss",
                "before %.6g after %.6g", before, after);
    // Bad options are rejected with a message.
    spd_trainer bad;
    spd_spec spec;
    spd_spec_init(&spec);
    o.n_terms = 0;
    spd_target tg = tms_target(&fx.tms);
    int site = 0, C = 2;
    int rc = spd_trainer_declare_f64(&bad, &spec, &o, &tg, &site, &C, 1);
    test_report(rc == -1 && strstr(spd_last_error(), "loss terms"), "train: no loss terms rejected", "%s",
                spd_last_error());
    spd_trainer_free_f64(&bad);
    spd_spec_free(&spec);
    fixture_free(&fx);
}


// ---- SPD_SPEC.md section 12: golden values of an independent re-implementation -------

// y = (x W1^T) W2^T through two linear sites fc1 [3, 2], fc2 [2, 3]; N = 2.
typedef struct {
    linear_site sites[2];
    double x[4], h[6], out[4], dout[4], dh[6];
} two_linear;

static void two_fwd(void *p) {
    two_linear *m = p;
    site_forward_f64(&m->sites[0], m->h, m->x, NULL, 2);
    site_forward_f64(&m->sites[1], m->out, m->h, NULL, 2);
}
static void two_bwd(void *p) {
    two_linear *m = p;
    site_backward_f64(&m->sites[1], m->dh, m->dout, m->h, NULL, 2);
    site_backward_f64(&m->sites[0], NULL, m->dh, m->x, NULL, 2);
}

// The fixed draws of section 12, the same for every term and sample.
static void golden_draws(void *ctx, double *out, long n, spd_rng_purpose purpose, int64_t step, int term,
                         int sample, int module) {
    (void)ctx, (void)step, (void)term, (void)sample;
    static const double r[2][4] = {{0.25, 0.6, 0.9, 0.1}, {0.5, 0.33, 0.05, 0.75}};
    static const double md[2][2] = {{0.4, 0.7}, {0.2, 0.95}};
    // Routing fc1 = [F, T], fc2 = [T, T] as uniform_k_subset draws: k = [1, 2]; at position 0
    // fc2's noise ranks first.
    static const double k[2] = {1, 2}, noise[2][2] = {{0.7, 0.3}, {0.2, 0.6}};
    if (purpose == SPD_RNG_ROUTING) {
        SPD_ASSERT(n == 2 && module >= SPD_DRAW_ROUTING_K && module < 2);
        memcpy(out, module == SPD_DRAW_ROUTING_K ? k : noise[module], 2 * sizeof *out);
        return;
    }
    SPD_ASSERT(purpose == SPD_RNG_MASK || purpose == SPD_RNG_DELTA_MASK);
    SPD_ASSERT(n == (purpose == SPD_RNG_MASK ? 4 : 2));
    memcpy(out, purpose == SPD_RNG_MASK ? r[module] : md[module], (size_t)n * sizeof *out);
}

static void set_tensor(spd_spec *spec, const char *name, const double *v, long n) {
    spd_tensor *t = spd_spec_get(spec, name);
    SPD_ASSERT(spd_tensor_numel(t) == n);
    memcpy(t->data, v, (size_t)n * sizeof *v);
}

static bool close_to(const double *got, const double *want, long n, double tol) {
    for (long i = 0; i < n; i++)
        if (!(fabs(got[i] - want[i]) <= tol * fmax(1, fabs(want[i])))) return false;
    return true;
}

typedef struct {
    spd_spec spec;
    two_linear m;
    spd_trainer tr;
} golden_fixture;

static void golden_build(golden_fixture *g, const spd_train_options *o) {
    static const double W1[6] = {0.5, -1, 1.5, 0.25, -0.75, 1}, W2[6] = {1, 0.5, -0.5, -0.25, 0.75, 1.25};
    memset(g, 0, sizeof *g);
    spd_spec_init(&g->spec);
    g->m.sites[0] = (linear_site){.path = "fc1", .kind = SITE_LINEAR, .d_in = 2, .d_out = 3, .W = W1};
    g->m.sites[1] = (linear_site){.path = "fc2", .kind = SITE_LINEAR, .d_in = 3, .d_out = 2, .W = W2};
    memcpy(g->m.x, (double[]){1, -0.5, 0.2, 0.8}, sizeof g->m.x);
    spd_target tg = {.model = &g->m, .sites = g->m.sites, .n_sites = 2, .N = 2, .d_out = 2, .out = g->m.out,
                     .dout = g->m.dout, .forward = two_fwd, .backward = two_bwd};
    int sites[2] = {0, 1}, C[2] = {2, 2};
    SPD_ASSERT(spd_trainer_declare_f64(&g->tr, &g->spec, o, &tg, sites, C, 2) == 0);
    spd_spec_alloc(&g->spec);
    spd_trainer_bind_f64(&g->tr, &tg);
    spd_spec *sp = &g->spec;
    set_tensor(sp, "_components.fc1.V", (double[]){0.3, -0.8, 0.6, 0.4}, 4);
    set_tensor(sp, "_components.fc1.U", (double[]){0.7, 0.9, -0.2, -0.5, 0.1, 0.6}, 6);
    set_tensor(sp, "_components.fc2.V", (double[]){0.2, -0.4, 0.5, 0.3, -0.6, 0.8}, 6);
    set_tensor(sp, "_components.fc2.U", (double[]){0.9, -0.3, 0.4, 0.7}, 4);
    set_tensor(sp, "_ci_fns.fc1.layers.0.W", (double[]){1, -2, 0.5, 1.5}, 4);
    set_tensor(sp, "_ci_fns.fc1.layers.0.b", (double[]){0.1, 0.2, -0.3, 0}, 4);
    set_tensor(sp, "_ci_fns.fc1.layers.2.W", (double[]){0.8, -0.6, 1.2, 0.4}, 4);
    set_tensor(sp, "_ci_fns.fc1.layers.2.b", (double[]){0.05, 0.3}, 2);
    set_tensor(sp, "_ci_fns.fc2.layers.0.W", (double[]){-1, 0.7, 2, -0.5}, 4);
    set_tensor(sp, "_ci_fns.fc2.layers.0.b", (double[]){0, 0.1, 0.2, -0.2}, 4);
    set_tensor(sp, "_ci_fns.fc2.layers.2.W", (double[]){0.9, 0.3, -0.7, 1.1}, 4);
    set_tensor(sp, "_ci_fns.fc2.layers.2.b", (double[]){0.4, -0.1}, 2);
}

static void golden_free(golden_fixture *g) {
    spd_trainer_free_f64(&g->tr);
    spd_spec_free(&g->spec);
}

static void golden_options(spd_train_options *o, const spd_draw_source *src) {
    spd_train_options_default(o);
    o->draws = src;
    o->ci_kind = SPD_CI_MLP;
    o->ci_hidden[0] = 2;
}

static spd_importance_minimality_config imp_cfg(double p, double beta) {
    return (spd_importance_minimality_config){.pnorm = p, .beta = beta, .p_anneal_start_frac = 1,
                                              .p_anneal_end_frac = 1, .eps = 0};
}

static void test_golden(void) {
    const double tol = 1e-9;  // the spec's values carry 10 significant digits
    spd_draw_source src = {.fill = golden_draws};
    spd_train_options o;
    golden_options(&o, &src);
    o.n_terms = 8;
    o.terms[0] = (spd_train_term){.kind = SPD_TERM_FAITHFULNESS, .coeff = 1};
    o.terms[1] = (spd_train_term){.kind = SPD_TERM_IMPORTANCE_MINIMALITY, .coeff = 1, .imp = imp_cfg(2, 0)};
    o.terms[2] = (spd_train_term){.kind = SPD_TERM_IMPORTANCE_MINIMALITY, .coeff = 1, .imp = imp_cfg(1, 0.5)};
    o.terms[3] = (spd_train_term){.kind = SPD_TERM_CI_MASKED_RECON, .coeff = 1};
    o.terms[4] = (spd_train_term){.kind = SPD_TERM_CI_MASKED_RECON_LAYERWISE, .coeff = 1};
    o.terms[5] = (spd_train_term){.kind = SPD_TERM_UNMASKED_RECON, .coeff = 1};
    o.terms[6] = (spd_train_term){.kind = SPD_TERM_STOCHASTIC_RECON, .coeff = 1};
    o.terms[7] = (spd_train_term){.kind = SPD_TERM_STOCHASTIC_RECON_LAYERWISE, .coeff = 1};
    golden_fixture g;
    golden_build(&g, &o);
    spd_train_step_f64(&g.tr, 0);
    static const double want[8] = {0.4943333333, 0.5462954591, 1.5663019988, 2.1451999576,
                                   1.5867096251, 2.0532846341, 0.9214624894, 0.3813634279};
    test_report(close_to(g.tr.values, want, 8, tol), "golden: the eight term values of SPD_SPEC.md 12",
                "got %.10f %.10f %.10f %.10f %.10f %.10f %.10f %.10f", g.tr.values[0], g.tr.values[1],
                g.tr.values[2], g.tr.values[3], g.tr.values[4], g.tr.values[5], g.tr.values[6], g.tr.values[7]);
    const double pre2[4] = {0.6593065107, 0.1460432486, 0.5404871381, -1.7292439295};
    const double lower2[4] = {0.6593065107, 0.1460432486, 0.5404871381, 0};
    test_report(close_to(g.tr.mods[1].pre, pre2, 4, tol) && close_to(g.tr.mods[1].ci_lower, lower2, 4, tol),
                "golden: fc2 pre_sigmoid and ci_lower", NULL);
    golden_free(&g);

    o.n_terms = 1;
    o.terms[0] = (spd_train_term){.kind = SPD_TERM_STOCHASTIC_RECON, .coeff = 1};
    o.use_delta = false;
    golden_build(&g, &o);
    spd_train_step_f64(&g.tr, 0);
    test_report(fabs(g.tr.values[0] - 2.0348468591) <= tol, "golden: stochastic recon without delta", "got %.10f",
                g.tr.values[0]);
    golden_free(&g);

    // total = stochastic + layerwise + 0.01 importance(p = 2) and its gradients.
    o.use_delta = true;
    o.n_terms = 3;
    o.terms[0] = (spd_train_term){.kind = SPD_TERM_STOCHASTIC_RECON, .coeff = 1};
    o.terms[1] = (spd_train_term){.kind = SPD_TERM_STOCHASTIC_RECON_LAYERWISE, .coeff = 1};
    o.terms[2] = (spd_train_term){.kind = SPD_TERM_IMPORTANCE_MINIMALITY, .coeff = 0.01, .imp = imp_cfg(2, 0)};
    golden_build(&g, &o);
    double total = spd_train_step_f64(&g.tr, 0);
    test_report(fabs(total - 1.3082888718) <= tol, "golden: total", "got %.10f", total);
    static const struct {
        const char *name;
        long n;
        double v[6];
    } grads[] = {
        {"_components.fc1.V", 4, {0.1382809528, 0.1988272312, -0.0066627667, 0.0426682951}},
        {"_components.fc1.U", 6, {0.0527299442, -0.0234222250, -0.0752612060, 0.1088318894, 0.1071164159, -0.1134223057}},
        {"_components.fc2.V", 6, {-0.5555024515, -0.0815937151, -0.7762810730, -0.0723987876, 0.6982780808, 0.0986789230}},
        {"_components.fc2.U", 4, {-0.6573674105, 0.1313356412, 0.1360289891, 0.0082126141}},
        {"_ci_fns.fc1.layers.0.W", 4, {0.0071582433, 0.0002774086, -0.0109196715, -0.0165179631}},
        {"_ci_fns.fc1.layers.2.b", 2, {0.0177349772, -0.3342621514}},
        {"_ci_fns.fc2.layers.2.W", 4, {0.0379417212, -0.5599336062, -0.0085763623, 0.0216823348}},
    };
    for (size_t k = 0; k < sizeof grads / sizeof grads[0]; k++) {
        const double *gv = spd_spec_grad(&g.spec, spd_spec_get(&g.spec, grads[k].name));
        char name[128];
        snprintf(name, sizeof name, "golden: d total / d %s", grads[k].name);
        test_report(close_to(gv, grads[k].v, grads[k].n, tol), name, "got %.10f %.10f ...", gv[0], gv[1]);
    }
    golden_free(&g);
}

static double golden_value(const spd_train_term *term, bool use_delta, golden_fixture *g) {
    spd_draw_source src = {.fill = golden_draws};
    spd_train_options o;
    golden_options(&o, &src);
    o.use_delta = use_delta;
    o.n_terms = 1;
    o.terms[0] = *term;
    golden_build(g, &o);
    spd_train_step_f64(&g->tr, 0);
    return g->tr.values[0];
}

static spd_train_term pgd_term_of(spd_term_kind kind, spd_pgd_init init, int64_t n_steps, double step_size,
                                  spd_mask_scope scope) {
    return (spd_train_term){.kind = kind, .coeff = 1,
                            .router = {.kind = SPD_ROUTE_UNIFORM_K_SUBSET},
                            .pgd = {.init = init, .step_size = step_size, .n_steps = n_steps, .mask_scope = scope}};
}

// SPD_SPEC.md 12: subset, hidden-acts and PGD values (with delta).
static void test_golden_more(void) {
    const double tol = 1e-9;
    golden_fixture g;
    spd_train_term tm = {.kind = SPD_TERM_STOCHASTIC_RECON_SUBSET, .coeff = 1, .router = {.kind = SPD_ROUTE_UNIFORM_K_SUBSET}};
    double v = golden_value(&tm, true, &g);
    bool routed_ok = g.tr.routed[0] == 0 && g.tr.routed[1] == 1 && g.tr.routed[2] == 1 && g.tr.routed[3] == 1;
    test_report(fabs(v - 0.3927792607) <= tol && routed_ok,
                "golden: stochastic subset with delta, routing fc1 [F,T] fc2 [T,T]", "got %.10f, routed %d %d %d %d",
                v, g.tr.routed[0], g.tr.routed[1], g.tr.routed[2], g.tr.routed[3]);
    golden_free(&g);

    tm = (spd_train_term){.kind = SPD_TERM_STOCHASTIC_HIDDEN_ACTS_RECON, .coeff = 1};
    v = golden_value(&tm, true, &g);
    test_report(fabs(v - 0.1517267634) <= tol, "golden: hidden-acts recon with delta", "got %.10f", v);
    golden_free(&g);

    const spd_mask_scope SH = SPD_MASK_SCOPE_SHARED_ACROSS_BATCH, UN = SPD_MASK_SCOPE_UNIQUE_PER_DATAPOINT;
    tm = pgd_term_of(SPD_TERM_PGD_RECON, SPD_PGD_INIT_ZEROES, 1, 0.1, SH);
    v = golden_value(&tm, true, &g);
    bool src_ok = close_to(g.tr.mods[0].pgd_src, (double[]){0.1, 0, 0}, 3, 1e-15) &&
                  close_to(g.tr.mods[1].pgd_src, (double[]){0.1, 0.1, 0}, 3, 1e-15);
    test_report(fabs(v - 2.1572671532) <= tol && src_ok, "golden: PGD shared, zeroes, 1 step 0.1",
                "got %.10f, sources fc1 %g %g %g fc2 %g %g %g", v, g.tr.mods[0].pgd_src[0], g.tr.mods[0].pgd_src[1],
                g.tr.mods[0].pgd_src[2], g.tr.mods[1].pgd_src[0], g.tr.mods[1].pgd_src[1], g.tr.mods[1].pgd_src[2]);
    golden_free(&g);

    tm = pgd_term_of(SPD_TERM_PGD_RECON, SPD_PGD_INIT_ZEROES, 2, 0.25, UN);
    v = golden_value(&tm, true, &g);
    src_ok = close_to(g.tr.mods[0].pgd_src, (double[]){0, 0, 0, 0.5, 0, 0}, 6, 1e-15) &&
             close_to(g.tr.mods[1].pgd_src, (double[]){0, 0.5, 0, 0.5, 0.5, 0}, 6, 1e-15);
    test_report(fabs(v - 2.2251269819) <= tol && src_ok, "golden: PGD unique, zeroes, 2 steps 0.25", "got %.10f", v);
    golden_free(&g);

    tm = pgd_term_of(SPD_TERM_PGD_RECON, SPD_PGD_INIT_ONES, 0, 0.1, SH);
    v = golden_value(&tm, true, &g);
    test_report(fabs(v) <= 1e-28, "golden: PGD shared, ones, 0 steps is the target", "got %.3g", v);
    golden_free(&g);

    tm = pgd_term_of(SPD_TERM_PGD_RECON_LAYERWISE, SPD_PGD_INIT_ZEROES, 1, 0.1, SH);
    v = golden_value(&tm, true, &g);
    test_report(fabs(v - 1.5936160206) <= tol, "golden: PGD layerwise, shared, zeroes, 1 step 0.1", "got %.10f", v);
    golden_free(&g);

    tm = pgd_term_of(SPD_TERM_PGD_RECON_SUBSET, SPD_PGD_INIT_ZEROES, 1, 0.1, SH);
    v = golden_value(&tm, true, &g);
    src_ok = close_to(g.tr.mods[0].pgd_src, (double[]){0.1, 0, 0}, 3, 1e-15) &&
             close_to(g.tr.mods[1].pgd_src, (double[]){0, 0.1, 0}, 3, 1e-15);
    test_report(fabs(v - 1.2138318831) <= tol && src_ok, "golden: PGD subset, routing fc1 [F,T] fc2 [T,T], shared, zeroes",
                "got %.10f, sources fc1 %g %g %g fc2 %g %g %g", v, g.tr.mods[0].pgd_src[0], g.tr.mods[0].pgd_src[1],
                g.tr.mods[0].pgd_src[2], g.tr.mods[1].pgd_src[0], g.tr.mods[1].pgd_src[1], g.tr.mods[1].pgd_src[2]);
    golden_free(&g);
}

// What the trainer asks a draw source for (docs/spd-ref-train-v1.md's names).
typedef struct {
    int calls, bad;
} draw_log;

static void recording_draws(void *ctx, double *out, long n, spd_rng_purpose purpose, int64_t step, int term,
                            int sample, int module) {
    draw_log *log = ctx;
    // PGDReconLayerwise at term 1, unique, with delta: run l asks every module's [N, C + 1] at sample l.
    int run = log->calls / 2, want_module = log->calls % 2;
    if (purpose != SPD_RNG_PGD_INIT || step != 5 || term != 1 || sample != run || module != want_module || n != 6)
        log->bad++;
    log->calls++;
    for (long i = 0; i < n; i++) out[i] = 0.25 + 0.5 * (double)((i + (long)module) % 2);
}

static void test_draw_keys(void) {
    draw_log log = {0};
    spd_draw_source src = {.fill = recording_draws, .ctx = &log};
    spd_train_options o;
    golden_options(&o, &src);
    o.n_terms = 2;
    o.terms[0] = (spd_train_term){.kind = SPD_TERM_FAITHFULNESS, .coeff = 1};
    o.terms[1] = pgd_term_of(SPD_TERM_PGD_RECON_LAYERWISE, SPD_PGD_INIT_RANDOM, 1, 0.1,
                             SPD_MASK_SCOPE_UNIQUE_PER_DATAPOINT);
    golden_fixture g;
    golden_build(&g, &o);
    spd_train_step_f64(&g.tr, 5);
    test_report(log.calls == 4 && log.bad == 0, "draws: PGD layerwise asks pgd_init of every module per run",
                "%d calls, %d unexpected", log.calls, log.bad);
    golden_free(&g);

    // static_probability from draws u: fc1 [0.7, 0.3], fc2 [0.2, 0.6] with p = 0.65 routes
    // fc1 [F, T], fc2 [T, T]: the uniform-k golden value again (k is not asked).
    spd_train_term tm = {.kind = SPD_TERM_STOCHASTIC_RECON_SUBSET, .coeff = 1,
                         .router = {.kind = SPD_ROUTE_STATIC_PROBABILITY, .p = 0.65}};
    double v = golden_value(&tm, true, &g);
    test_report(fabs(v - 0.3927792607) <= 1e-9, "golden: stochastic subset, static_probability from draws",
                "got %.10f", v);
    golden_free(&g);
}

// Evaluation's forward-only step (spd_trainer.forward_only): every term's value and the
// CI bit for bit as the full step's on the same fixture, step and seed (no update in
// between), and no gradient written; with and without the delta component.
static void test_forward_only(void) {
    for (int delta = 0; delta < 2; delta++) {
        spd_train_options o;
        spd_train_options_default(&o);
        all_terms(&o);
        o.use_delta = delta;
        o.n_mask_samples = 2;
        fixture fx;
        if (build(&fx, &o, 4)) {
            test_report(0, "forward only: build", "%s", spd_last_error());
            return;
        }
        spd_trainer *t = &fx.tr;
        const long ng = (long)(fx.spec.bytes[SPD_ROLE_TRAINED] / sizeof(double));
        spd_train_step_f64(t, 3);
        double values[SPD_TRAIN_MAX_TERMS], total = t->total;
        memcpy(values, t->values, sizeof values);
        long n_ci = 0;
        for (int l = 0; l < t->n_mods; l++) n_ci += (long)t->target.N * t->mods[l].comp.C;
        double *ci = tmalloc((size_t)(2 * n_ci) * sizeof *ci);
        for (int l = 0, k = 0; l < t->n_mods; l++) {
            const long n = (long)t->target.N * t->mods[l].comp.C;
            memcpy(ci + k, t->mods[l].ci_lower, (size_t)n * sizeof *ci);
            memcpy(ci + n_ci + k, t->mods[l].ci_upper, (size_t)n * sizeof *ci);
            k += (int)n;
        }
        long full_nonzero = 0;
        for (long i = 0; i < ng; i++) full_nonzero += ((const double *)fx.spec.grad)[i] != 0;
        t->forward_only = true;
        spd_train_step_f64(t, 3);
        bool same = t->total == total;
        for (int i = 0; i < o.n_terms; i++) same = same && t->values[i] == values[i];
        for (int l = 0, k = 0; l < t->n_mods; l++) {
            const long n = (long)t->target.N * t->mods[l].comp.C;
            same = same && memcmp(ci + k, t->mods[l].ci_lower, (size_t)n * sizeof *ci) == 0 &&
                   memcmp(ci + n_ci + k, t->mods[l].ci_upper, (size_t)n * sizeof *ci) == 0;
            k += (int)n;
        }
        long nonzero = 0;
        for (long i = 0; i < ng; i++) nonzero += ((const double *)fx.spec.grad)[i] != 0;
        test_report(same, delta ? "forward only (delta component): all 13 term values, total and CI equal the full step's"
                                : "forward only: all 13 term values, total and CI equal the full step's",
                    "total %.17g vs %.17g", t->total, total);
        test_report(nonzero == 0 && full_nonzero > 0,
                    delta ? "forward only (delta component): no gradient written" : "forward only: no gradient written",
                    "%ld of %ld gradient entries nonzero (full step: %ld)", nonzero, ng, full_nonzero);
        fixture_free(&fx);
    }
}

int main(void) {
    test_gradients();
    test_draw_keys();
    test_golden();
    test_golden_more();
    test_values();
    test_training();
    test_forward_only();  // last: the fixtures draw from the shared input stream
    free_all();
    return test_exit();
}
