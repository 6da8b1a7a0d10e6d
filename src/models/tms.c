#include "core/real.h"

#include "models/tms.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/philox.h"
#include "models/identity_insertion.h"
#include "ops/masks.h"
#include "ops/bias_act.h"
#include "ops/matmul.h"

// spd_tms_config_check is precision-free: defined once, in the float64 build.
#ifdef SPD_F64
int spd_tms_config_check(const tms_config *cfg) {
    if (cfg->n_features < 1) return spd_set_error("tms: n_features: expected at least 1, found %d", cfg->n_features);
    if (cfg->n_hidden < 1) return spd_set_error("tms: n_hidden: expected at least 1, found %d", cfg->n_hidden);
    if (cfg->n_hidden_layers < 0 || cfg->n_hidden_layers > 1000)
        return spd_set_error("tms: n_hidden_layers: expected 0 to 1000, found %d", cfg->n_hidden_layers);
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

static real *data(const spd_spec *spec, const char *name) { return (real *)spd_spec_get(spec, name)->data; }

static real *grad_or_null(const spd_spec *spec, const spd_tensor *t) {
    return t->role == SPD_ROLE_TRAINED ? (real *)spd_spec_grad(spec, t) : NULL;
}


static bool hidden_fixed(const tms_model *m) { return m->opt.hidden != TMS_HIDDEN_DEFAULT; }

void RFN(tms_declare)(tms_model *m, spd_spec *spec, const tms_config *cfg, const tms_options *opt) {
    SPD_ASSERT(spd_tms_config_check(cfg) == 0 && opt->B >= 1);
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->opt = *opt;
    const char *prefix = opt->prefix ? opt->prefix : "";
    SPD_ASSERT(strlen(prefix) < sizeof m->prefix);
    strcpy(m->prefix, prefix);
    m->opt.prefix = m->prefix;
    m->B = opt->B;
    const int64_t B = opt->B, F = cfg->n_features, H = cfg->n_hidden, L = cfg->n_hidden_layers;
    m->n_sites = 2 + cfg->n_hidden_layers;
    m->sites = spd_calloc((size_t)m->n_sites, sizeof *m->sites);
    m->dW = spd_calloc((size_t)m->n_sites, sizeof *m->dW);
    m->hidden = spd_calloc((size_t)(L + 1), sizeof *m->hidden);

    const spd_role role = opt->train ? SPD_ROLE_TRAINED : SPD_ROLE_FROZEN;
    const spd_role hidden_role = hidden_fixed(m) ? SPD_ROLE_FROZEN : role;
    RFN(site_init)(&m->sites[TMS_LINEAR1], "linear1", SITE_LINEAR, (int)F, (int)H);
    RFN(site_init)(&m->sites[TMS_LINEAR2], "linear2", SITE_LINEAR, (int)H, (int)F);
    add(spec, role, SPD_SHAPE(H, F), "%slinear1.weight", prefix);
    add(spec, role, SPD_SHAPE(F, H), "%slinear2.weight", prefix);
    add(spec, role, SPD_SHAPE(F), "%slinear2.bias", prefix);
    for (int i = 0; i < L; i++) {
        char path[SPD_NAME_MAX];
        snprintf(path, sizeof path, "hidden_layers.%d", i);
        RFN(site_init)(&m->sites[TMS_HIDDEN0 + i], path, SITE_LINEAR, (int)H, (int)H);
        add(spec, hidden_role, SPD_SHAPE(H, H), "%s%s.weight", prefix, path);
    }
    add(spec, SPD_ROLE_ACT, SPD_SHAPE(B, F), "input.x");
    for (int i = 0; i <= L; i++) add(spec, SPD_ROLE_ACT, SPD_SHAPE(B, H), "act.hidden.%d", i);
    add(spec, SPD_ROLE_ACT, SPD_SHAPE(B, F), "act.pre");
    add(spec, SPD_ROLE_ACT, SPD_SHAPE(B, F), "act.out");
    add(spec, SPD_ROLE_ACT, SPD_SHAPE(B, F), "grad.out");
    add(spec, SPD_ROLE_ACT, SPD_SHAPE(B, F), "grad.pre");
    add(spec, SPD_ROLE_ACT, SPD_SHAPE(B, F), "grad.x");
    add(spec, SPD_ROLE_ACT, SPD_SHAPE(B, H), "grad.hidden.0");
    add(spec, SPD_ROLE_ACT, SPD_SHAPE(B, H), "grad.hidden.1");
}

int RFN(tms_insert_identity)(tms_model *m, spd_spec *spec, const spd_module_pattern *patterns, int n_patterns) {
    return RFN(identity_insert)(&m->sites, m->n_sites, &m->n_identity, spec, m->B, patterns, n_patterns);
}

void RFN(tms_bind)(tms_model *m, const spd_spec *spec) {
    for (int k = 0; k < m->n_sites; k++) {
        spd_tensor *t = get(spec, "%s%s.weight", m->prefix, m->sites[k].path);
        m->sites[k].W = (const real *)t->data;
        m->dW[k] = grad_or_null(spec, t);
    }
    spd_tensor *b = get(spec, "%slinear2.bias", m->prefix);
    m->bias = (real *)b->data;
    m->dbias = grad_or_null(spec, b);
    m->x = data(spec, "input.x");
    for (int i = 0; i <= m->cfg.n_hidden_layers; i++) m->hidden[i] = (real *)get(spec, "act.hidden.%d", i)->data;
    m->pre = data(spec, "act.pre");
    m->out = data(spec, "act.out");
    m->dout = data(spec, "grad.out");
    m->dpre = data(spec, "grad.pre");
    m->dx = data(spec, "grad.x");
    m->dh[0] = data(spec, "grad.hidden.0");
    m->dh[1] = data(spec, "grad.hidden.1");
    RFN(identity_bind)(m->sites, m->n_sites, m->n_identity, spec);
}

#if !SPD_REAL_ON_DEVICE  // init and ties write host memory: a device model is filled by upload
// t[i] = U(-bound, bound) from parameter k's init stream.
static void fill_uniform_init(real *t, int64_t n, double bound, uint64_t seed, int k) {
    uint64_t stream = spd_rng_stream(0, SPD_RNG_INIT, 1, 0, k);
    for (int64_t i = 0; i < n; i++)
        t[i] = (real)(bound * (2.0 * spd_philox_uniform_f64(seed, stream, (uint64_t)i) - 1.0));
}

void RFN(tms_init_params)(tms_model *m, uint64_t seed) {
    const int64_t F = m->cfg.n_features, H = m->cfg.n_hidden;
    const double bound_F = 1.0 / sqrt((double)F), bound_H = 1.0 / sqrt((double)H);
    // Parameter numbers follow SPD's state-dict order.
    fill_uniform_init((real *)m->sites[TMS_LINEAR1].W, H * F, bound_F, seed, 0);
    fill_uniform_init((real *)m->sites[TMS_LINEAR2].W, F * H, bound_H, seed, 1);
    fill_uniform_init(m->bias, F, bound_H, seed, 2);
    if (m->cfg.init_bias_to_zero)
        for (int64_t f = 0; f < F; f++) m->bias[f] = 0;
    for (int i = 0; i < m->cfg.n_hidden_layers; i++) {
        real *W = (real *)m->sites[TMS_HIDDEN0 + i].W;
        fill_uniform_init(W, H * H, bound_H, seed, 3 + i);
        if (m->opt.hidden == TMS_HIDDEN_FIXED_IDENTITY) {
            for (int64_t j = 0; j < H * H; j++) W[j] = j % (H + 1) == 0 ? 1 : 0;
        } else if (m->opt.hidden == TMS_HIDDEN_FIXED_RANDOM) {
            double *v = spd_malloc((size_t)(H * H) * sizeof *v);
            spd_philox_fill_normal_f64(seed, spd_rng_stream(0, SPD_RNG_INIT, 2, 0, 3 + i), (size_t)(H * H), 1.0, v);
            for (int64_t j = 0; j < H * H; j++) W[j] = (real)v[j];
            free(v);
        }
    }
    if (m->cfg.tied_weights) RFN(tms_tie_weights)(m);
}

// dst [rows, cols] = src^T, src [cols, rows].
static void transpose(real *dst, const real *src, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) dst[(int64_t)r * cols + c] = src[(int64_t)c * rows + r];
}

void RFN(tms_tie_weights)(tms_model *m) {
    transpose((real *)m->sites[TMS_LINEAR2].W, m->sites[TMS_LINEAR1].W, m->cfg.n_features, m->cfg.n_hidden);
}

void RFN(tms_tie_weights_reverse)(tms_model *m) {
    transpose((real *)m->sites[TMS_LINEAR1].W, m->sites[TMS_LINEAR2].W, m->cfg.n_hidden, m->cfg.n_features);
}

#endif

void RFN(tms_forward)(tms_model *m) {
    const int B = m->B, F = m->cfg.n_features, L = m->cfg.n_hidden_layers;
    RFN(site_forward)(&m->sites[TMS_LINEAR1], m->hidden[0], m->x, NULL, B);
    for (int i = 0; i < L; i++) RFN(site_forward)(&m->sites[TMS_HIDDEN0 + i], m->hidden[i + 1], m->hidden[i], NULL, B);
    RFN(site_forward)(&m->sites[TMS_LINEAR2], m->pre, m->hidden[L], NULL, B);
    RFN(bias_add)(m->pre, m->bias, B, F);
    RFN(relu_forward)(m->out, m->pre, (int64_t)B * F);
}

// dW [d_out, d_in] += dy^T @ x, when the weight is trained.
static void weight_grad(real *dW, const real *dy, const real *x, int N, int d_in, int d_out) {
    if (dW) RFN(matmul)(dW, dy, x, d_out, d_in, N, true, false, 1, 1);
}

void RFN(tms_backward)(tms_model *m) {
    const int B = m->B, F = m->cfg.n_features, H = m->cfg.n_hidden, L = m->cfg.n_hidden_layers;
    const int64_t n = (int64_t)B * F;
    // torch's ReLU backward passes the gradient where the output is positive.
    RFN(relu_backward)(m->dpre, m->dout, m->pre, n);
    if (m->dbias) RFN(bias_grad)(m->dbias, m->dpre, B, F);
    weight_grad(m->dW[TMS_LINEAR2], m->dpre, m->hidden[L], B, H, F);
    RFN(site_backward)(&m->sites[TMS_LINEAR2], m->dh[L % 2], m->dpre, m->hidden[L], NULL, B);
    for (int i = L - 1; i >= 0; i--) {  // dh[(i + 1) % 2] holds dL/dh_{i+1}
        const real *dy = m->dh[(i + 1) % 2];
        weight_grad(m->dW[TMS_HIDDEN0 + i], dy, m->hidden[i], B, H, H);
        RFN(site_backward)(&m->sites[TMS_HIDDEN0 + i], m->dh[i % 2], dy, m->hidden[i], NULL, B);
    }
    weight_grad(m->dW[TMS_LINEAR1], m->dh[0], m->x, B, F, H);
    RFN(site_backward)(&m->sites[TMS_LINEAR1], m->dx, m->dh[0], m->x, NULL, B);
}

void RFN(tms_free)(tms_model *m) {
    free(m->sites);
    free(m->dW);
    free(m->hidden);
    memset(m, 0, sizeof *m);
}
