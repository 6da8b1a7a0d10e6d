#include "core/real.h"

#include "models/resid_mlp.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/philox.h"
#include "models/identity_insertion.h"
#include "ops/add.h"
#include "ops/bias_act.h"
#include "ops/gelu.h"
#include "ops/masks.h"
#include "ops/matmul.h"


// Precision-free: defined once, in the float64 build.
#ifdef SPD_F64
int spd_resid_mlp_config_check(const resid_mlp_config *cfg, resid_mlp_embedding embedding) {
    const struct {
        const char *name;
        int value;
    } sizes[] = {{"n_features", cfg->n_features}, {"d_embed", cfg->d_embed}, {"d_mlp", cfg->d_mlp},
                 {"n_layers", cfg->n_layers}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (sizes[i].value < 1)
            return spd_set_error("resid_mlp: %s: expected at least 1, found %d", sizes[i].name, sizes[i].value);
    if (cfg->act != RESID_MLP_RELU && cfg->act != RESID_MLP_GELU)
        return spd_set_error("resid_mlp: act_fn_name: expected relu or gelu");
    if (embedding == RESID_EMBED_FIXED_IDENTITY && cfg->n_features != cfg->d_embed)
        return spd_set_error("resid_mlp: fixed_identity_embedding needs n_features == d_embed, found %d and %d",
                             cfg->n_features, cfg->d_embed);
    return 0;
}
#endif

static void add(spd_spec *spec, spd_role role, int ndim, const int64_t *shape, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    spd_spec_vaddf(spec, SPD_REAL_DTYPE, ndim, shape, role, SPD_INIT_ZERO, 0, fmt, ap);
    va_end(ap);
}

static spd_tensor *get(const spd_spec *spec, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    spd_tensor *t = spd_spec_vgetf(spec, fmt, ap);
    va_end(ap);
    return t;
}

static real *grad_or_null(const spd_spec *spec, const spd_tensor *t) {
    return t->role == SPD_ROLE_TRAINED ? (real *)spd_spec_grad(spec, t) : NULL;
}


void RFN(resid_mlp_declare)(resid_mlp_model *m, spd_spec *spec, const resid_mlp_config *cfg,
                            const resid_mlp_options *opt) {
    SPD_ASSERT(spd_resid_mlp_config_check(cfg, opt->embedding) == 0 && opt->B >= 1);
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->opt = *opt;
    const char *prefix = opt->prefix ? opt->prefix : "";
    SPD_ASSERT(strlen(prefix) < sizeof m->prefix);
    strcpy(m->prefix, prefix);
    m->opt.prefix = m->prefix;
    m->B = opt->B;
    const int64_t B = opt->B, F = cfg->n_features, D = cfg->d_embed, M = cfg->d_mlp, L = cfg->n_layers;
    m->n_sites = 2 * cfg->n_layers;
    m->sites = spd_calloc((size_t)m->n_sites, sizeof *m->sites);
    m->dW = spd_calloc((size_t)m->n_sites, sizeof *m->dW);
    m->b_in = spd_calloc((size_t)L, sizeof *m->b_in);
    m->b_out = spd_calloc((size_t)L, sizeof *m->b_out);
    m->db_in = spd_calloc((size_t)L, sizeof *m->db_in);
    m->db_out = spd_calloc((size_t)L, sizeof *m->db_out);
    m->resid = spd_calloc((size_t)(L + 1), sizeof *m->resid);
    m->pre = spd_calloc((size_t)L, sizeof *m->pre);
    m->mid = spd_calloc((size_t)L, sizeof *m->mid);

    const spd_role role = opt->train ? SPD_ROLE_TRAINED : SPD_ROLE_FROZEN;
    const spd_role embed_role = opt->embedding == RESID_EMBED_DEFAULT ? role : SPD_ROLE_FROZEN;
    add(spec, embed_role, SPD_SHAPE(F, D), "%sW_E", prefix);
    add(spec, embed_role, SPD_SHAPE(D, F), "%sW_U", prefix);
    for (int i = 0; i < L; i++) {
        char path[SPD_NAME_MAX];
        snprintf(path, sizeof path, "layers.%d.mlp_in", i);
        RFN(site_init)(&m->sites[RESID_MLP_IN(i)], path, SITE_LINEAR, (int)D, (int)M);
        add(spec, role, SPD_SHAPE(M, D), "%s%s.weight", prefix, path);
        if (cfg->in_bias) add(spec, role, SPD_SHAPE(M), "%s%s.bias", prefix, path);
        snprintf(path, sizeof path, "layers.%d.mlp_out", i);
        RFN(site_init)(&m->sites[RESID_MLP_OUT(i)], path, SITE_LINEAR, (int)M, (int)D);
        add(spec, role, SPD_SHAPE(D, M), "%s%s.weight", prefix, path);
        if (cfg->out_bias) add(spec, role, SPD_SHAPE(D), "%s%s.bias", prefix, path);
    }
    add(spec, SPD_ROLE_ACT, SPD_SHAPE(B, F), "input.x");
    for (int i = 0; i <= L; i++) add(spec, SPD_ROLE_ACT, SPD_SHAPE(B, D), "act.resid.%d", i);
    for (int i = 0; i < L; i++) {
        add(spec, SPD_ROLE_ACT, SPD_SHAPE(B, M), "act.layers.%d.pre", i);
        add(spec, SPD_ROLE_ACT, SPD_SHAPE(B, M), "act.layers.%d.mid", i);
    }
    add(spec, SPD_ROLE_ACT, SPD_SHAPE(B, D), "act.proj");
    add(spec, SPD_ROLE_ACT, SPD_SHAPE(B, F), "act.out");
    add(spec, SPD_ROLE_ACT, SPD_SHAPE(B, F), "grad.out");
    add(spec, SPD_ROLE_ACT, SPD_SHAPE(B, F), "grad.x");
    add(spec, SPD_ROLE_ACT, SPD_SHAPE(B, D), "grad.resid");
    add(spec, SPD_ROLE_ACT, SPD_SHAPE(B, M), "grad.mid");
    add(spec, SPD_ROLE_ACT, SPD_SHAPE(B, M), "grad.pre");
}

int RFN(resid_mlp_insert_identity)(resid_mlp_model *m, spd_spec *spec, const spd_module_pattern *patterns,
                                   int n_patterns) {
    return RFN(identity_insert)(&m->sites, m->n_sites, &m->n_identity, spec, m->B, patterns, n_patterns);
}

void RFN(resid_mlp_bind)(resid_mlp_model *m, const spd_spec *spec) {
    const char *p = m->prefix;
    spd_tensor *t = get(spec, "%sW_E", p);
    m->W_E = (real *)t->data;
    m->dW_E = grad_or_null(spec, t);
    t = get(spec, "%sW_U", p);
    m->W_U = (real *)t->data;
    m->dW_U = grad_or_null(spec, t);
    for (int k = 0; k < m->n_sites; k++) {
        t = get(spec, "%s%s.weight", p, m->sites[k].path);
        m->sites[k].W = (const real *)t->data;
        m->dW[k] = grad_or_null(spec, t);
    }
    for (int i = 0; i < m->cfg.n_layers; i++) {
        if (m->cfg.in_bias) {
            t = get(spec, "%s%s.bias", p, m->sites[RESID_MLP_IN(i)].path);
            m->b_in[i] = (real *)t->data;
            m->db_in[i] = grad_or_null(spec, t);
        }
        if (m->cfg.out_bias) {
            t = get(spec, "%s%s.bias", p, m->sites[RESID_MLP_OUT(i)].path);
            m->b_out[i] = (real *)t->data;
            m->db_out[i] = grad_or_null(spec, t);
        }
        m->pre[i] = (real *)get(spec, "act.layers.%d.pre", i)->data;
        m->mid[i] = (real *)get(spec, "act.layers.%d.mid", i)->data;
    }
    for (int i = 0; i <= m->cfg.n_layers; i++) m->resid[i] = (real *)get(spec, "act.resid.%d", i)->data;
    m->x = (real *)get(spec, "input.x")->data;
    m->proj = (real *)get(spec, "act.proj")->data;
    m->out = (real *)get(spec, "act.out")->data;
    m->dout = (real *)get(spec, "grad.out")->data;
    m->dx = (real *)get(spec, "grad.x")->data;
    m->dres = (real *)get(spec, "grad.resid")->data;
    m->dmid = (real *)get(spec, "grad.mid")->data;
    m->dpre = (real *)get(spec, "grad.pre")->data;
    RFN(identity_bind)(m->sites, m->n_sites, m->n_identity, spec);
}

#if !SPD_REAL_ON_DEVICE  // init writes host memory: a device model is filled by upload
static void fill_uniform_init(real *t, int64_t n, double bound, uint64_t seed, int k) {
    uint64_t stream = spd_rng_stream(0, SPD_RNG_INIT, 1, 0, k);
    for (int64_t i = 0; i < n; i++)
        t[i] = (real)(bound * (2.0 * spd_philox_uniform_f64(seed, stream, (uint64_t)i) - 1.0));
}

static void fill_normal_init(real *t, int64_t n, double std, uint64_t seed, int term, int k) {
    double *v = spd_malloc((size_t)n * sizeof *v);
    spd_philox_fill_normal_f64(seed, spd_rng_stream(0, SPD_RNG_INIT, term, 0, k), (size_t)n, std, v);
    for (int64_t i = 0; i < n; i++) t[i] = (real)v[i];
    free(v);
}

// W_E rows N(0, 1) normalised to unit norm (in float64), W_U = W_E^T.
static void fixed_random_embedding(resid_mlp_model *m, uint64_t seed) {
    const int64_t F = m->cfg.n_features, D = m->cfg.d_embed;
    double *v = spd_malloc((size_t)(F * D) * sizeof *v);
    spd_philox_fill_normal_f64(seed, spd_rng_stream(0, SPD_RNG_INIT, 2, 0, 0), (size_t)(F * D), 1.0, v);
    for (int64_t f = 0; f < F; f++) {
        double ss = 0;
        for (int64_t d = 0; d < D; d++) ss += v[f * D + d] * v[f * D + d];
        double inv = 1.0 / sqrt(ss);
        for (int64_t d = 0; d < D; d++) {
            real w = (real)(v[f * D + d] * inv);
            m->W_E[f * D + d] = w;
            m->W_U[d * F + f] = w;
        }
    }
    free(v);
}

void RFN(resid_mlp_init_params)(resid_mlp_model *m, uint64_t seed) {
    const int64_t F = m->cfg.n_features, D = m->cfg.d_embed, M = m->cfg.d_mlp;
    fill_normal_init(m->W_E, F * D, 1.0 / sqrt((double)F), seed, 1, 0);
    fill_normal_init(m->W_U, D * F, 1.0 / sqrt((double)D), seed, 1, 1);
    int k = 2;  // parameter number in SPD's state-dict order
    for (int i = 0; i < m->cfg.n_layers; i++) {
        fill_uniform_init((real *)m->sites[RESID_MLP_IN(i)].W, M * D, 1.0 / sqrt((double)D), seed, k++);
        if (m->b_in[i]) fill_uniform_init(m->b_in[i], M, 1.0 / sqrt((double)D), seed, k++);
        fill_uniform_init((real *)m->sites[RESID_MLP_OUT(i)].W, D * M, 1.0 / sqrt((double)M), seed, k++);
        if (m->b_out[i]) fill_uniform_init(m->b_out[i], D, 1.0 / sqrt((double)M), seed, k++);
    }
    if (m->opt.embedding == RESID_EMBED_FIXED_RANDOM) fixed_random_embedding(m, seed);
    if (m->opt.embedding == RESID_EMBED_FIXED_IDENTITY)
        for (int64_t j = 0; j < F * D; j++) m->W_E[j] = j % (D + 1) == 0 ? 1 : 0;
}

#endif

static void add_bias(real *y, const real *bias, int N, int d) {
    if (bias) RFN(bias_add)(y, bias, N, d);
}

static void bias_grad(real *db, const real *dy, int N, int d) {
    if (db) RFN(bias_grad)(db, dy, N, d);
}

// dW [d_out, d_in] += dy^T @ x, when the weight is trained.
static void weight_grad(real *dW, const real *dy, const real *x, int N, int d_in, int d_out) {
    if (dW) RFN(matmul)(dW, dy, x, d_out, d_in, N, true, false, 1, 1);
}

void RFN(resid_mlp_forward)(resid_mlp_model *m) {
    const int B = m->B, F = m->cfg.n_features, D = m->cfg.d_embed, M = m->cfg.d_mlp;
    const int64_t nm = (int64_t)B * M;
    RFN(matmul)(m->resid[0], m->x, m->W_E, B, D, F, false, false, 1, 0);
    for (int i = 0; i < m->cfg.n_layers; i++) {
        RFN(site_forward)(&m->sites[RESID_MLP_IN(i)], m->pre[i], m->resid[i], NULL, B);
        add_bias(m->pre[i], m->b_in[i], B, M);
        if (m->cfg.act == RESID_MLP_GELU)
            RFN(gelu_forward)(m->mid[i], m->pre[i], (long)nm);
        else
            RFN(relu_forward)(m->mid[i], m->pre[i], nm);
        RFN(site_forward)(&m->sites[RESID_MLP_OUT(i)], m->proj, m->mid[i], NULL, B);
        add_bias(m->proj, m->b_out[i], B, D);
        RFN(add)(m->resid[i + 1], m->resid[i], m->proj, (int64_t)B * D);
    }
    RFN(matmul)(m->out, m->resid[m->cfg.n_layers], m->W_U, B, F, D, false, false, 1, 0);
}

void RFN(resid_mlp_backward)(resid_mlp_model *m) {
    const int B = m->B, F = m->cfg.n_features, D = m->cfg.d_embed, M = m->cfg.d_mlp, L = m->cfg.n_layers;
    const int64_t nm = (int64_t)B * M;
    // out = r_L W_U
    RFN(matmul)(m->dres, m->dout, m->W_U, B, D, F, false, true, 1, 0);
    if (m->dW_U) RFN(matmul)(m->dW_U, m->resid[L], m->dout, D, F, B, true, false, 1, 1);
    for (int i = L - 1; i >= 0; i--) {  // dres holds dL/dr_{i+1}, which is also dL/d(mlp_out output)
        bias_grad(m->db_out[i], m->dres, B, D);
        weight_grad(m->dW[RESID_MLP_OUT(i)], m->dres, m->mid[i], B, M, D);
        RFN(site_backward)(&m->sites[RESID_MLP_OUT(i)], m->dmid, m->dres, m->mid[i], NULL, B);
        if (m->cfg.act == RESID_MLP_GELU)
            RFN(gelu_backward)(m->dpre, m->dmid, m->pre[i], (long)nm);
        else  // torch's ReLU backward passes the gradient where the output is positive
            RFN(relu_backward)(m->dpre, m->dmid, m->pre[i], nm);
        bias_grad(m->db_in[i], m->dpre, B, M);
        weight_grad(m->dW[RESID_MLP_IN(i)], m->dpre, m->resid[i], B, D, M);
        RFN(site_backward_add)(&m->sites[RESID_MLP_IN(i)], m->dres, m->dpre, m->resid[i], B);  // now dL/dr_i
    }
    // r_0 = x W_E
    RFN(matmul)(m->dx, m->dres, m->W_E, B, F, D, false, true, 1, 0);
    if (m->dW_E) RFN(matmul)(m->dW_E, m->x, m->dres, F, D, B, true, false, 1, 1);
}

void RFN(resid_mlp_free)(resid_mlp_model *m) {
    free(m->sites);
    free(m->dW);
    free(m->b_in);
    free(m->b_out);
    free(m->db_in);
    free(m->db_out);
    free(m->resid);
    free(m->pre);
    free(m->mid);
    memset(m, 0, sizeof *m);
}
