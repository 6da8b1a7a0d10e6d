#include "core/real.h"

#include "spd/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "core/error.h"
#include "models/module_select.h"
#include "ops/add.h"
#include "ops/components.h"
#include "ops/embedding.h"
#include "ops/faithfulness.h"
#include "ops/fill.h"
#include "ops/grad_clip.h"
#include "ops/importance_minimality.h"
#include "ops/masks.h"
#include "ops/matmul.h"
#include "ops/output_loss.h"
#include "ops/routing.h"
#include "ops/transfer.h"
#include "spd/schedule.h"


static int component_name(char *buf, const char *dashed, const char *what) {
    int n = snprintf(buf, SPD_NAME_MAX, "_components.%s.%s", dashed, what);
    if (n < 0 || n >= SPD_NAME_MAX) return spd_set_error("train: name too long: _components.%s.%s", dashed, what);
    return 0;
}

static bool term_routes(spd_term_kind k);

// Work buffers live where this backend's tensors do (zeroed).
static void *alloc_zero(size_t n, size_t size) {
#if SPD_REAL_ON_DEVICE
    void *p = spd_device_malloc((n ? n : 1) * size);
    spd_device_memset_zero(p, (n ? n : 1) * size);
    return p;
#else
    return spd_calloc(n ? n : 1, size);
#endif
}

static real *alloc_real(size_t n) { return alloc_zero(n, sizeof(real)); }

static void free_buf(void *p) {
#if SPD_REAL_ON_DEVICE
    if (p) spd_device_free(p);
#else
    free(p);
#endif
}

// n draws of a draw source into dst (this backend's memory): on the device
// through a host buffer (draw sources serve checks, not training runs).
static void draw_fill(const spd_draw_source *d, real *dst, long n, spd_rng_purpose purpose, int64_t step, int term,
                      int sample, int module) {
#if SPD_REAL_ON_DEVICE
    real *host = spd_malloc((size_t)(n ? n : 1) * sizeof(real));
    d->fill(d->ctx, host, n, purpose, step, term, sample, module);
    spd_device_upload(dst, host, (size_t)n * sizeof(real));
    free(host);
#else
    d->fill(d->ctx, dst, n, purpose, step, term, sample, module);
#endif
}

static bool is_embedding(const spd_train_module *m) { return m->comp.site->kind == SITE_EMBEDDING; }

static int check_options(const spd_train_options *o, int n_modules) {
    if (o->n_terms < 1 || o->n_terms > SPD_TRAIN_MAX_TERMS)
        return spd_set_error("train: loss terms: expected 1 to %d, found %d", SPD_TRAIN_MAX_TERMS, o->n_terms);
    for (int i = 0; i < o->n_terms; i++)
        if (o->terms[i].kind < 0 || o->terms[i].kind >= SPD_TERM_KIND_COUNT)
            return spd_set_error("train: loss term %d: unsupported kind %d", i, (int)o->terms[i].kind);
    if (o->n_mask_samples < 1 || o->n_mask_samples > SPD_RNG_MAX_SAMPLES)
        return spd_set_error("train: n_mask_samples: expected 1 to %d, found %d", SPD_RNG_MAX_SAMPLES,
                             o->n_mask_samples);
    if (o->steps < 1) return spd_set_error("train: steps: expected at least 1, found %lld", (long long)o->steps);
    for (int i = 0; i < o->n_terms; i++) {
        const spd_train_term *tm = &o->terms[i];
        if (term_routes(tm->kind) && tm->router.kind != SPD_ROUTE_ALL &&
            tm->router.kind != SPD_ROUTE_UNIFORM_K_SUBSET && tm->router.kind != SPD_ROUTE_STATIC_PROBABILITY)
            return spd_set_error("train: loss term %d: routing: expected uniform_k_subset or static_probability", i);
        if (tm->kind == SPD_TERM_PGD_RECON || tm->kind == SPD_TERM_PGD_RECON_SUBSET ||
            tm->kind == SPD_TERM_PGD_RECON_LAYERWISE) {
            if (tm->pgd.n_steps < 0 || !(tm->pgd.step_size >= 0))
                return spd_set_error("train: loss term %d: PGD: n_steps and step_size must be >= 0", i);
        }
    }
    if (n_modules < 1 || n_modules > SPD_RNG_MAX_MODULES)
        return spd_set_error("train: decomposed modules: expected 1 to %d, found %d", SPD_RNG_MAX_MODULES, n_modules);
    return 0;
}

int RFN(spd_trainer_declare)(spd_trainer *t, spd_spec *spec, const spd_train_options *opt, const spd_target *target,
                             const int *site, const int *C, int n) {
    memset(t, 0, sizeof *t);
    if (check_options(opt, n)) return -1;
    t->opt = *opt;
    t->spec = spec;
    t->n_mods = n;
    t->mods = spd_calloc((size_t)n, sizeof *t->mods);
    for (int l = 0; l < n; l++) {
        spd_train_module *m = &t->mods[l];
        if (site[l] < 0 || site[l] >= target->n_sites) return spd_set_error("train: site index %d out of range", site[l]);
        const linear_site *s = &target->sites[site[l]];
        if (s->kind == SITE_EMBEDDING && opt->ci_kind != SPD_CI_MLP)  // SPD_SPEC.md 2.1
            return spd_set_error("train: %s: an embedding needs ci_fn_type mlp", s->path);
        for (int i = 0; i < opt->n_terms; i++)
            if (s->kind == SITE_EMBEDDING && opt->terms[i].kind == SPD_TERM_STOCHASTIC_HIDDEN_ACTS_RECON)
                return spd_set_error("train: %s: StochasticHiddenActsReconLoss compares module inputs, an "
                                     "embedding's are token ids (SPD_SPEC.md 4.7)", s->path);
        m->site = site[l];
        m->d_in = s->d_in;
        m->d_out = s->d_out;
        m->comp.C = C[l];
        spd_dashed_name(m->comp.dashed, sizeof m->comp.dashed, s->path);
        if (spd_ci_fn_arch_init(&m->ci.arch, opt->ci_kind, C[l], s->d_in, opt->ci_hidden, opt->n_ci_hidden))
            return -1;
        char name[SPD_NAME_MAX];
        if (component_name(name, m->comp.dashed, "V")) return -1;
        m->t_V = spd_spec_add(spec, name, SPD_REAL_DTYPE, 2, (int64_t[]){s->d_in, C[l]}, SPD_ROLE_TRAINED,
                              SPD_INIT_NORMAL, 1.0 / sqrt((double)s->d_in));
        if (component_name(name, m->comp.dashed, "U")) return -1;
        m->t_U = spd_spec_add(spec, name, SPD_REAL_DTYPE, 2, (int64_t[]){C[l], s->d_out}, SPD_ROLE_TRAINED,
                              SPD_INIT_NORMAL, 1.0 / sqrt((double)C[l]));
        for (int k = 0; k < m->ci.arch.n_layers; k++) {
            int64_t shape[3];
            int nd = spd_ci_fn_param_shape(&m->ci.arch, k, false, shape);
            if (spd_ci_fn_param_name(name, sizeof name, m->comp.dashed, k, false)) return -1;
            m->t_W[k] = spd_spec_add(spec, name, SPD_REAL_DTYPE, nd, shape, SPD_ROLE_TRAINED, SPD_INIT_NORMAL,
                                     spd_ci_fn_init_std(&m->ci.arch, k));
            nd = spd_ci_fn_param_shape(&m->ci.arch, k, true, shape);
            if (spd_ci_fn_param_name(name, sizeof name, m->comp.dashed, k, true)) return -1;
            m->t_b[k] = spd_spec_add(spec, name, SPD_REAL_DTYPE, nd, shape, SPD_ROLE_TRAINED, SPD_INIT_ZERO, 0);
        }
    }
    return 0;
}

void RFN(spd_trainer_bind)(spd_trainer *t, const spd_target *target) {
    t->target = *target;
    const int N = target->N;
    size_t sumC = 0;
    bool hidden = false, pgd = false, routes = false;
    for (int i = 0; i < t->opt.n_terms; i++) {
        spd_term_kind k = t->opt.terms[i].kind;
        hidden |= k == SPD_TERM_STOCHASTIC_HIDDEN_ACTS_RECON;
        pgd |= k == SPD_TERM_PGD_RECON || k == SPD_TERM_PGD_RECON_SUBSET || k == SPD_TERM_PGD_RECON_LAYERWISE;
        routes |= term_routes(k);
    }
    for (int l = 0; l < t->n_mods; l++) {
        spd_train_module *m = &t->mods[l];
        component_module *c = &m->comp;
        const spd_spec *spec = t->spec;
        const size_t NC = (size_t)N * c->C;
        sumC += (size_t)c->C;
        c->site = &t->target.sites[m->site];
        c->site->comp = c;
        c->replaced = true;
        c->V = spec->tensors[m->t_V].data;
        c->U = spec->tensors[m->t_U].data;
        c->dV = spd_spec_grad(spec, &spec->tensors[m->t_V]);
        c->dU = spd_spec_grad(spec, &spec->tensors[m->t_U]);
        c->a = alloc_real(NC);
        c->scratch = alloc_real(NC);
        c->delta = alloc_real((size_t)m->d_in * m->d_out);
        c->ddelta = alloc_real((size_t)m->d_in * m->d_out);
        for (int k = 0; k < m->ci.arch.n_layers; k++) {
            m->ci.W[k] = spec->tensors[m->t_W[k]].data;
            m->ci.b[k] = spec->tensors[m->t_b[k]].data;
            m->ci.dW[k] = spd_spec_grad(spec, &spec->tensors[m->t_W[k]]);
            m->ci.db[k] = spd_spec_grad(spec, &spec->tensors[m->t_b[k]]);
            if (k < m->ci.arch.n_layers - 1) {
                size_t h = spd_ci_fn_hidden_elems(&m->ci.arch, N, k);
                m->ci.pre[k] = alloc_real(h);
                m->ci.post[k] = alloc_real(h);
#if !SPD_REAL_ON_DEVICE  // the CPU's fused mlp path caches Phi; the CUDA twin recomputes it
                m->ci.cdf[k] = alloc_real(h);
#endif
            }
        }
        m->ci.work = alloc_real(spd_ci_fn_workspace_elems(&m->ci.arch, N));
        SPD_ASSERT(!is_embedding(m) || target->tokens);  // an embedding's input is target.tokens
        m->x_cache = alloc_real(is_embedding(m) ? 0 : (size_t)N * m->d_in);
        if (m->ci.arch.kind == SPD_CI_MLP) {
            m->ci_in = alloc_real(NC);
            m->dci_in = alloc_real(NC);
        }
        m->pre = alloc_real(NC);
        m->dpre = alloc_real(NC);
        m->ci_lower = alloc_real(NC);
        m->ci_upper = alloc_real(NC);
        m->dci_lower = alloc_real(NC);
        m->dci_upper = alloc_real(NC);
        m->tmp = alloc_real(NC);
        m->mask_buf = alloc_real(NC);
        m->dmask_buf = alloc_real(NC);
        m->delta_mask_buf = alloc_real((size_t)N);
        m->r_buf = alloc_real(NC);
        m->jitter_buf = alloc_real(NC);
        if (hidden) {
            m->hid_buf = alloc_real((size_t)N * m->d_in);
            m->dhid_buf = alloc_real((size_t)N * m->d_in);
        }
        if (pgd) {
            m->pgd_src = alloc_real((size_t)N * (c->C + 1));
            m->pgd_grad = alloc_real((size_t)N * (c->C + 1));
        }
        m->ddelta_mask_buf = alloc_real((size_t)N);
        if (routes) {
            c->route_y = alloc_real((size_t)N * m->d_out);
            c->route_dy = alloc_real((size_t)N * m->d_out);
            c->route_dx = alloc_real((size_t)N * m->d_in);
        }
    }
    t->y_t = alloc_real((size_t)N * target->d_out);
    t->routed = alloc_zero((size_t)t->n_mods * N + 1, 1);
    t->routed_host = spd_calloc((size_t)t->n_mods * N + 1, 1);
    t->route_k = spd_calloc((size_t)N + 1, sizeof *t->route_k);
    t->route_draws = spd_calloc((size_t)t->n_mods * N + 1, sizeof *t->route_draws);
    t->route_tmp = spd_calloc((size_t)N + 1, sizeof(real));  // host: draw-source staging
    t->imp_sums = alloc_zero(sumC, sizeof(double));
}

void RFN(spd_trainer_init_params)(spd_trainer *t, uint64_t seed) {
    spd_spec_init_values(t->spec, SPD_ROLE_TRAINED, seed);
}

// ---- the step ------------------------------------------------------------------------

typedef enum { MASK_STOCHASTIC, MASK_CI, MASK_NONE, MASK_PGD } mask_kind;

static uint64_t stream(int64_t step, spd_rng_purpose purpose, int term, int sample, int module) {
    return spd_rng_stream((uint64_t)step, purpose, term, sample, module);
}

// Positions or elements one forward's divergence divides by (SPD_SPEC.md 4.0).
static int64_t count_per_forward(const spd_trainer *t) {
    return t->opt.output_loss == SPD_DIVERGENCE_MSE ? (int64_t)t->target.N * t->target.d_out : t->target.N;
}

static bool term_routes(spd_term_kind k) {
    return k == SPD_TERM_STOCHASTIC_RECON_SUBSET || k == SPD_TERM_CI_MASKED_RECON_SUBSET ||
           k == SPD_TERM_PGD_RECON_SUBSET;
}

// One masked forward of a term.
typedef struct {
    mask_kind mk;
    int term, sample;
    int only;      // -1: every module replaced; else only module `only`
    bool routed;   // t->routed holds this forward's routing masks
    bool hidden;   // StochasticHiddenActsRecon: the loss is on the module inputs
    bool inner;    // PGD inner step: source gradients only (into pgd_grad)
    bool shared;   // PGD sources shared across positions
    double coeff;  // dout (or the hidden-acts gradient) is scaled by coeff / count_total
    int64_t count_total;
} forward_spec;

static int pgd_width(const spd_trainer *t, const spd_train_module *m) { return m->comp.C + (t->opt.use_delta ? 1 : 0); }

// One masked forward and its backward (see forward_spec). Returns sumD.
static double masked_forward_backward(spd_trainer *t, int64_t step, const forward_spec *f) {
    const spd_train_options *o = &t->opt;
    const spd_target *tg = &t->target;
    const int N = tg->N;
    const bool backward = !t->forward_only || f->inner;  // PGD's inner steps need their source gradients
    const int term = f->term, sample = f->sample;
    for (int l = 0; l < t->n_mods; l++) {
        spd_train_module *m = &t->mods[l];
        component_module *c = &m->comp;
        const long NC = (long)N * c->C;
        c->replaced = f->only < 0 || f->only == l;
        c->x_cache = f->hidden ? m->hid_buf : NULL;
        c->mask = NULL;
        c->dmask = NULL;
        c->delta_mask = NULL;
        c->ddelta_mask = NULL;
        c->dx_extra = NULL;
        c->routing = f->routed && c->replaced ? t->routed + (size_t)l * N : NULL;
        if (!c->replaced) continue;
        if (f->mk == MASK_STOCHASTIC) {
            if (o->draws) {
                draw_fill(o->draws, m->r_buf, NC, SPD_RNG_MASK, step, term, sample, l);
                RFN(mask_interpolate_forward)(m->mask_buf, m->ci_lower, m->r_buf, N, c->C, c->C);
            } else {
                RFN(mask_sample)(m->mask_buf, m->ci_lower, NC, o->sampling, o->seed,
                                 stream(step, SPD_RNG_MASK, term, sample, l));
            }
            c->mask = m->mask_buf;
            c->dmask = m->dmask_buf;
            if (o->use_delta) {
                if (o->draws)
                    draw_fill(o->draws, m->delta_mask_buf, N, SPD_RNG_DELTA_MASK, step, term, sample, l);
                else
                    RFN(delta_mask_sample)(m->delta_mask_buf, N, o->seed,
                                           stream(step, SPD_RNG_DELTA_MASK, term, sample, l));
                c->delta_mask = m->delta_mask_buf;
            }
        } else if (f->mk == MASK_CI) {
            c->mask = m->ci_lower;
            c->dmask = m->dmask_buf;
        } else if (f->mk == MASK_PGD) {
            const int W = pgd_width(t, m);
            RFN(mask_interpolate_forward)(m->mask_buf, m->ci_lower, m->pgd_src, N, c->C, f->shared ? 0 : W);
            c->mask = m->mask_buf;
            c->dmask = m->dmask_buf;
            if (o->use_delta) {  // the last column is the delta mask itself
                RFN(pgd_delta_mask_gather)(m->delta_mask_buf, m->pgd_src, N, c->C, f->shared ? 0 : W);
                c->delta_mask = m->delta_mask_buf;
                if (f->inner) c->ddelta_mask = m->ddelta_mask_buf;
            }
            c->no_param_grads = f->inner;  // inner steps: source gradients only
        }
    }
    tg->forward(tg->model);
    double sumD = 0;
    const double scale = f->coeff / (double)f->count_total;
    if (f->hidden) {  // sum over modules of |x_masked - x_clean|^2; its gradient enters at each site's input
        for (int l = 0; l < t->n_mods; l++) {
            spd_train_module *m = &t->mods[l];
            sumD += RFN(hidden_acts_loss)(m->dhid_buf, m->hid_buf, m->x_cache, (int64_t)N * m->d_in, scale);
            m->comp.x_cache = NULL;
            m->comp.dx_extra = m->dhid_buf;
        }
        RFN(fill_zero)(tg->dout, (int64_t)N * tg->d_out);
    } else {
        sumD = RFN(output_loss_sum)(o->output_loss, NULL, tg->out, t->y_t, N, tg->d_out);
        if (backward) RFN(output_loss_backward)(o->output_loss, tg->dout, tg->out, t->y_t, N, tg->d_out, scale);
    }
    if (backward) tg->backward(tg->model);
    for (int l = 0; l < t->n_mods; l++) {
        spd_train_module *m = &t->mods[l];
        component_module *c = &m->comp;
        const long NC = (long)N * c->C;
        c->dx_extra = NULL;
        c->routing = NULL;
        c->no_param_grads = false;
        if (!backward || !c->replaced || !c->dmask) continue;
        if (f->mk == MASK_PGD) {
            const int W = pgd_width(t, m), ld = f->shared ? 0 : W;
            if (f->inner) {  // d L / d sources
                RFN(mask_interpolate_backward)(NULL, m->pgd_grad, c->dmask, m->ci_lower, m->pgd_src, N, c->C, ld);
                if (o->use_delta) RFN(pgd_delta_grad_scatter)(m->pgd_grad, m->ddelta_mask_buf, N, c->C, ld);
                c->ddelta_mask = NULL;
            } else {  // dci = dm (1 - s)
                RFN(mask_interpolate_backward)(m->tmp, NULL, c->dmask, m->ci_lower, m->pgd_src, N, c->C, ld);
                RFN(add_inplace)(m->dci_lower, m->tmp, NC);
            }
        } else if (f->mk == MASK_STOCHASTIC) {
            if (o->draws)  // r_buf still holds this forward's draws
                RFN(mask_interpolate_backward)(m->tmp, NULL, c->dmask, m->ci_lower, m->r_buf, N, c->C, c->C);
            else
                RFN(mask_sample_backward)(m->tmp, c->dmask, NC, o->sampling, o->seed,
                                          stream(step, SPD_RNG_MASK, term, sample, l));
            RFN(add_inplace)(m->dci_lower, m->tmp, NC);
        } else {
            RFN(add_inplace)(m->dci_lower, c->dmask, NC);
        }
    }
    return sumD;
}

// The routing masks t->routed [L][N] of (term, sample): from the draw source or Philox.
static void draw_routing(spd_trainer *t, int64_t step, int term, int sample, const spd_router *r) {
    const int L = t->n_mods;
    const long N = t->target.N;
    spd_router router = *r;
    if (router.kind == SPD_ROUTE_ALL) router.kind = SPD_ROUTE_UNIFORM_K_SUBSET;  // SPD's default
    const spd_draw_source *d = t->opt.draws;
    if (!d) {
        RFN(route_sample)(&router, t->routed, L, N, t->opt.seed, stream(step, SPD_RNG_ROUTING, term, sample, 0));
        return;
    }
    if (router.kind == SPD_ROUTE_UNIFORM_K_SUBSET) {
        d->fill(d->ctx, t->route_tmp, N, SPD_RNG_ROUTING, step, term, sample, SPD_DRAW_ROUTING_K);
        for (long n = 0; n < N; n++) t->route_k[n] = (int64_t)t->route_tmp[n];
    }
    for (int l = 0; l < L; l++) {
        d->fill(d->ctx, t->route_tmp, N, SPD_RNG_ROUTING, step, term, sample, l);
        for (long n = 0; n < N; n++) t->route_draws[(size_t)l * N + n] = (float)t->route_tmp[n];
    }
    if (router.kind == SPD_ROUTE_UNIFORM_K_SUBSET)
        spd_route_uniform_k_subset_from_draws(t->routed_host, L, N, t->route_k, t->route_draws);
    else
        spd_route_static_probability_from_draws(t->routed_host, L, N, router.p, t->route_draws);
#if SPD_REAL_ON_DEVICE
    spd_device_upload(t->routed, t->routed_host, (size_t)L * N);
#else
    memcpy(t->routed, t->routed_host, (size_t)L * N);
#endif
}

// A reconstruction term: its forwards (S or S L or 1 or L), sumD / count.
static double recon_term(spd_trainer *t, int64_t step, int term) {
    const spd_train_term *tm = &t->opt.terms[term];
    const spd_term_kind k = tm->kind;
    bool layerwise = k == SPD_TERM_STOCHASTIC_RECON_LAYERWISE || k == SPD_TERM_CI_MASKED_RECON_LAYERWISE;
    bool hidden = k == SPD_TERM_STOCHASTIC_HIDDEN_ACTS_RECON;
    mask_kind mk = k == SPD_TERM_STOCHASTIC_RECON || k == SPD_TERM_STOCHASTIC_RECON_LAYERWISE ||
                           k == SPD_TERM_STOCHASTIC_RECON_SUBSET || hidden
                       ? MASK_STOCHASTIC
                   : k == SPD_TERM_UNMASKED_RECON ? MASK_NONE
                                                  : MASK_CI;
    bool routed = term_routes(k);
    int samples = mk == MASK_STOCHASTIC ? t->opt.n_mask_samples : 1;
    int layers = layerwise ? t->n_mods : 1;
    int64_t per_forward = count_per_forward(t);
    if (hidden) {
        per_forward = 0;
        for (int l = 0; l < t->n_mods; l++) per_forward += (int64_t)t->target.N * t->mods[l].d_in;
    }
    int64_t count_total = per_forward * samples * layers;
    double sumD = 0;
    for (int s = 0; s < samples; s++) {
        if (routed) draw_routing(t, step, term, s, &tm->router);  // per mask sample; CI-masked: once (S = 1)
        for (int l = 0; l < layers; l++) {
            forward_spec f = {.mk = mk, .term = term, .sample = s, .only = layerwise ? l : -1, .routed = routed,
                              .hidden = hidden, .coeff = tm->coeff, .count_total = count_total};
            sumD += masked_forward_backward(t, step, &f);
        }
    }
    return sumD / (double)count_total;
}

// PGDRecon / PGDReconSubset / PGDReconLayerwise (SPD_SPEC.md 4.6).
static double pgd_term(spd_trainer *t, int64_t step, int term) {
    const spd_train_options *o = &t->opt;
    const spd_train_term *tm = &o->terms[term];
    const spd_pgd_config *p = &tm->pgd;
    const int N = t->target.N;
    bool layerwise = tm->kind == SPD_TERM_PGD_RECON_LAYERWISE;
    bool routed = tm->kind == SPD_TERM_PGD_RECON_SUBSET;
    bool shared = p->mask_scope == SPD_MASK_SCOPE_SHARED_ACROSS_BATCH;
    int runs = layerwise ? t->n_mods : 1;
    int64_t count_total = count_per_forward(t) * runs;
    if (routed) draw_routing(t, step, term, 0, &tm->router);  // once, fixed over the PGD steps
    double sumD = 0;
    for (int run = 0; run < runs; run++) {
        int sample = layerwise ? run : 0;
        for (int l = 0; l < t->n_mods; l++) {
            spd_train_module *m = &t->mods[l];
            long n = (long)pgd_width(t, m) * (shared ? 1 : N);
            if (p->init == SPD_PGD_INIT_RANDOM) {
                if (o->draws)
                    draw_fill(o->draws, m->pgd_src, n, SPD_RNG_PGD_INIT, step, term, sample, l);
                else
                    RFN(sample_draws)(m->pgd_src, n, SPD_MASK_CONTINUOUS, o->seed,
                                      stream(step, SPD_RNG_PGD_INIT, term, sample, l));
            } else {
                RFN(fill_value)(m->pgd_src, n, p->init == SPD_PGD_INIT_ONES ? 1 : 0);
            }
            if (shared && o->coll) o->coll->broadcast(o->coll->ctx, m->pgd_src, n);  // data parallel: rank 0's
        }
        forward_spec f = {.mk = MASK_PGD, .term = term, .sample = sample, .only = layerwise ? run : -1,
                          .routed = routed, .shared = shared, .inner = true,
                          // any positive scale: only the gradient's sign is used (coeff may be 0)
                          .coeff = 1, .count_total = count_per_forward(t)};
        for (int64_t it = 0; it < p->n_steps; it++) {
            masked_forward_backward(t, step, &f);
            for (int l = 0; l < t->n_mods; l++) {
                spd_train_module *m = &t->mods[l];
                if (f.only >= 0 && f.only != l) continue;
                long n = (long)pgd_width(t, m) * (shared ? 1 : N);
                if (shared && o->coll) o->coll->allreduce_avg(o->coll->ctx, m->pgd_grad, n);  // data parallel
                RFN(pgd_source_step)(m->pgd_src, m->pgd_grad, n, p->step_size);
            }
        }
        f.inner = false;
        f.coeff = tm->coeff;
        f.count_total = count_total;
        sumD += masked_forward_backward(t, step, &f);
    }
    return sumD / (double)count_total;
}

static void deltas_forward(spd_trainer *t) {
    for (int l = 0; l < t->n_mods; l++) {
        spd_train_module *m = &t->mods[l];
        RFN(site_delta_forward)(&m->comp);
    }
}

// Target forward with every site on its target weight, caching module inputs; y_t.
static void clean_forward(spd_trainer *t) {
    for (int l = 0; l < t->n_mods; l++) {
        component_module *c = &t->mods[l].comp;
        c->replaced = false;
        c->x_cache = t->mods[l].x_cache;
    }
    t->target.forward(t->target.model);
    RFN(copy)(t->y_t, t->target.out, (int64_t)t->target.N * t->target.d_out);
    for (int l = 0; l < t->n_mods; l++) t->mods[l].comp.x_cache = NULL;
}

static const real *ci_input(spd_train_module *m) { return m->ci.arch.kind == SPD_CI_MLP ? m->ci_in : m->x_cache; }

static void ci_forward_all(spd_trainer *t, int64_t step) {
    const int N = t->target.N;
    for (int l = 0; l < t->n_mods; l++) {
        spd_train_module *m = &t->mods[l];
        const int C = m->comp.C;
        const long NC = (long)N * C;
        if (is_embedding(m))  // a = V[tokens]
            RFN(embedding_forward)(m->ci_in, t->target.tokens, m->comp.V, N, C);
        else if (m->ci.arch.kind == SPD_CI_MLP)  // a = x V from the clean input
            RFN(matmul)(m->ci_in, m->x_cache, m->comp.V, N, C, m->d_in, false, false, 1, 0);
        RFN(ci_fn_forward)(&m->ci, m->pre, ci_input(m), N);
        const spd_draw_source *d = t->opt.draws;
        if (d) {
            bool jitter = t->opt.sampling == SPD_MASK_BINOMIAL;
            if (jitter) draw_fill(d, m->jitter_buf, NC, SPD_RNG_CI_JITTER, step, 0, 0, l);
            RFN(ci_forward)(m->ci_lower, m->ci_upper, m->pre, jitter ? m->jitter_buf : NULL, NC, t->opt.sigmoid);
        } else {
            RFN(ci_forward_philox)(m->ci_lower, m->ci_upper, m->pre, NC, t->opt.sigmoid, t->opt.sampling,
                                   t->opt.seed, stream(step, SPD_RNG_CI_JITTER, 0, 0, l));
        }
        RFN(fill_zero)(m->dci_lower, NC);
        RFN(fill_zero)(m->dci_upper, NC);
    }
}

static void ci_backward_all(spd_trainer *t, int64_t step) {
    const int N = t->target.N;
    for (int l = 0; l < t->n_mods; l++) {
        spd_train_module *m = &t->mods[l];
        const int C = m->comp.C;
        if (t->opt.draws)  // jitter_buf still holds this step's jitter
            RFN(ci_backward)(m->dpre, m->dci_lower, m->dci_upper, m->pre,
                             t->opt.sampling == SPD_MASK_BINOMIAL ? m->jitter_buf : NULL, (long)N * C, t->opt.sigmoid);
        else
            RFN(ci_backward_philox)(m->dpre, m->dci_lower, m->dci_upper, m->pre, (long)N * C, t->opt.sigmoid,
                                    t->opt.sampling, t->opt.seed, stream(step, SPD_RNG_CI_JITTER, 0, 0, l));
        bool mlp = m->ci.arch.kind == SPD_CI_MLP;
        RFN(ci_fn_backward)(&m->ci, mlp ? m->dci_in : NULL, m->dpre, ci_input(m), N);
        if (mlp && is_embedding(m))  // dV[tokens[n]] += da[n]: the CI input a = V[tokens]
            RFN(embedding_backward)(m->comp.dV, t->target.tokens, m->dci_in, N, C);
        else if (mlp)  // dV += x^T da: the CI input a = x V
            RFN(matmul)(m->comp.dV, m->x_cache, m->dci_in, m->d_in, C, N, true, false, 1, 1);
    }
}

static double faithfulness_term(spd_trainer *t, double coeff) {
    int n = t->n_mods;
    const real **deltas = spd_malloc((size_t)n * sizeof *deltas);
    real **ddeltas = spd_malloc((size_t)n * sizeof *ddeltas);
    int64_t *numel = spd_malloc((size_t)n * sizeof *numel);
    for (int l = 0; l < n; l++) {
        deltas[l] = t->mods[l].comp.delta;
        ddeltas[l] = t->mods[l].comp.ddelta;
        numel[l] = (int64_t)t->mods[l].d_in * t->mods[l].d_out;
    }
    double v = RFN(faithfulness_loss_forward)(deltas, numel, n);
    RFN(faithfulness_loss_backward)(ddeltas, deltas, numel, n, coeff);
    free(deltas);
    free(ddeltas);
    free(numel);
    return v;
}

static double importance_term(spd_trainer *t, int64_t step, const spd_train_term *tm) {
    const spd_importance_minimality_config *c = &tm->imp;
    int n = t->n_mods;
    const int N = t->target.N;
    double frac = (double)step / (double)t->opt.steps;
    double p = importance_minimality_p(c->pnorm, c->p_anneal_start_frac, c->has_p_anneal_final_p,
                                       c->p_anneal_final_p, c->p_anneal_end_frac, frac);
    const real **ci = spd_malloc((size_t)n * sizeof *ci);
    real **dci = spd_malloc((size_t)n * sizeof *dci);
    int *C = spd_malloc((size_t)n * sizeof *C);
    for (int l = 0; l < n; l++) {
        ci[l] = t->mods[l].ci_upper;
        dci[l] = t->mods[l].tmp;
        C[l] = t->mods[l].comp.C;
    }
    double world = t->opt.world_size > 1 ? t->opt.world_size : 1.0;  // data parallel: SPD's local_sum x world
    double v = RFN(importance_minimality_forward)(t->imp_sums, ci, C, n, N, p, c->eps, c->beta, world);
    RFN(importance_minimality_backward)(dci, ci, t->imp_sums, C, n, N, p, c->eps, c->beta, world, tm->coeff);
    for (int l = 0; l < n; l++) RFN(add_inplace)(t->mods[l].dci_upper, dci[l], (int64_t)N * C[l]);
    free(ci);
    free(dci);
    free(C);
    return v;
}

double RFN(spd_train_step)(spd_trainer *t, int64_t step) {
    spd_spec_zero_grad(t->spec);
    deltas_forward(t);
    clean_forward(t);
    ci_forward_all(t, step);
    double total = 0;
    for (int i = 0; i < t->opt.n_terms; i++) {
        const spd_train_term *tm = &t->opt.terms[i];
        double v;
        switch (tm->kind) {
        case SPD_TERM_FAITHFULNESS: v = faithfulness_term(t, tm->coeff); break;
        case SPD_TERM_IMPORTANCE_MINIMALITY: v = importance_term(t, step, tm); break;
        case SPD_TERM_PGD_RECON:
        case SPD_TERM_PGD_RECON_SUBSET:
        case SPD_TERM_PGD_RECON_LAYERWISE: v = pgd_term(t, step, i); break;
        default: v = recon_term(t, step, i); break;
        }
        t->values[i] = v;
        total += tm->coeff * v;
    }
    if (!t->forward_only) ci_backward_all(t, step);
    // The delta is shared by every use in the step: its gradient is chained into V and U once.
    for (int l = 0; l < t->n_mods; l++) {
        component_module *c = &t->mods[l].comp;
        if (!t->forward_only) RFN(site_delta_backward)(c);
        c->replaced = true;
        c->mask = NULL;
        c->dmask = NULL;
        c->delta_mask = NULL;
    }
    t->total = total;
    return total;
}

// ---- the update ----------------------------------------------------------------------

// The gradients of one group (components: V, U; CI fns: W, b) as pointer lists.
static int group_grads(const spd_trainer *t, bool ci, real **g, int64_t *numel) {
    int k = 0;
    for (int l = 0; l < t->n_mods; l++) {
        const spd_train_module *m = &t->mods[l];
        const spd_spec *spec = t->spec;
        if (!ci) {
            int idx[2] = {m->t_V, m->t_U};
            for (int j = 0; j < 2; j++) {
                g[k] = spd_spec_grad(spec, &spec->tensors[idx[j]]);
                numel[k++] = spd_tensor_numel(&spec->tensors[idx[j]]);
            }
            continue;
        }
        for (int j = 0; j < m->ci.arch.n_layers; j++) {
            int idx[2] = {m->t_W[j], m->t_b[j]};
            for (int q = 0; q < 2; q++) {
                g[k] = spd_spec_grad(spec, &spec->tensors[idx[q]]);
                numel[k++] = spd_tensor_numel(&spec->tensors[idx[q]]);
            }
        }
    }
    return k;
}

static double clip_group(spd_trainer *t, bool ci, double max_norm) {
    int cap = t->n_mods * 2 * SPD_CI_FN_MAX_LAYERS;
    real **g = spd_malloc((size_t)cap * sizeof *g);
    int64_t *numel = spd_malloc((size_t)cap * sizeof *numel);
    int n = group_grads(t, ci, g, numel);
    double norm = max_norm > 0 ? RFN(clip_grad_norm)(g, numel, n, max_norm)
                               : RFN(grad_norm)((const real *const *)g, numel, n);
    free(g);
    free(numel);
    return norm;
}

void RFN(spd_train_update)(spd_trainer *t, int64_t step) {
    const spd_train_options *o = &t->opt;
    t->grad_norm_components = clip_group(t, false, o->grad_clip_components);
    t->grad_norm_ci_fns = clip_group(t, true, o->grad_clip_ci_fns);
    spd_adamw_config cfg = {.lr = spd_schedule_value(&o->lr, step, o->steps),
                            .beta1 = o->beta1,
                            .beta2 = o->beta2,
                            .eps = o->adam_eps,
                            .weight_decay = o->weight_decay};
    spd_spec *spec = t->spec;
    RFN(adamw_step)(spec->buf[SPD_ROLE_TRAINED], spec->grad, spec->adam_m, spec->adam_v,
                    spd_spec_trained_elems(spec), &cfg, ++t->adam_t);
}

void RFN(spd_trainer_free)(spd_trainer *t) {
    for (int l = 0; l < t->n_mods; l++) {
        spd_train_module *m = &t->mods[l];
        component_module *c = &m->comp;
        if (c->site && c->site->comp == c) c->site->comp = NULL;
        free_buf(c->a);
        free_buf(c->scratch);
        free_buf(c->delta);
        free_buf(c->ddelta);
        for (int k = 0; k < SPD_CI_FN_MAX_LAYERS - 1; k++) {
            free_buf(m->ci.pre[k]);
            free_buf(m->ci.post[k]);
            free_buf(m->ci.cdf[k]);
        }
        free_buf(m->ci.work);
        free_buf(m->x_cache);
        free_buf(m->ci_in);
        free_buf(m->dci_in);
        free_buf(m->pre);
        free_buf(m->dpre);
        free_buf(m->ci_lower);
        free_buf(m->ci_upper);
        free_buf(m->dci_lower);
        free_buf(m->dci_upper);
        free_buf(m->tmp);
        free_buf(m->mask_buf);
        free_buf(m->dmask_buf);
        free_buf(m->delta_mask_buf);
        free_buf(m->r_buf);
        free_buf(m->jitter_buf);
        free_buf(m->hid_buf);
        free_buf(m->dhid_buf);
        free_buf(m->pgd_src);
        free_buf(m->pgd_grad);
        free_buf(m->ddelta_mask_buf);
        free_buf(c->route_y);
        free_buf(c->route_dy);
        free_buf(c->route_dx);
    }
    free(t->mods);
    free_buf(t->y_t);
    free_buf(t->imp_sums);
    free_buf(t->routed);
    free(t->routed_host);
    free(t->route_k);
    free(t->route_draws);
    free(t->route_tmp);
    memset(t, 0, sizeof *t);
}
