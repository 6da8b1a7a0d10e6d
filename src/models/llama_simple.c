#include "core/real.h"

#include "models/llama_simple.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "models/identity_insertion.h"
#include "ops/add.h"
#include "ops/attention.h"
#include "ops/components.h"
#include "ops/rmsnorm.h"
#include "ops/rope.h"
#include "ops/swiglu.h"

static const char *site_names[LLAMA_SITES_PER_LAYER] = {"attn.q_proj",   "attn.k_proj", "attn.v_proj",
                                                        "attn.o_proj",   "mlp.gate_proj", "mlp.up_proj",
                                                        "mlp.down_proj"};

// Adds a tensor of dtype real with the given role; name from the format.
static void add(spd_spec *spec, spd_role role, spd_init init, double std, int ndim, const int64_t *shape,
                const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    spd_spec_vaddf(spec, SPD_REAL_DTYPE, ndim, shape, role, init, std, fmt, ap);
    va_end(ap);
}

static real *get(const spd_spec *spec, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    real *data = spd_spec_vgetf(spec, fmt, ap)->data;
    va_end(ap);
    return data;
}


void RFN(llama_declare)(llama_model *m, spd_spec *spec, const llama_config *cfg, int B, int S,
                        bool untied_lm_head) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->B = B;
    m->S = S;
    m->N = B * S;
    m->untied_lm_head = untied_lm_head;
    const int64_t N = m->N, d = cfg->n_embd, hd = cfg->n_embd / cfg->n_head, kvd = hd * cfg->n_kv_heads;
    const int64_t I = cfg->n_intermediate, V = cfg->vocab_size, L = cfg->n_layer;
    const double lin_std = 0.02, o_std = 0.02 / sqrt(2.0 * (double)L);  // LlamaSimple's init

    m->n_sites = 2 + LLAMA_SITES_PER_LAYER * cfg->n_layer;
    m->sites = spd_calloc((size_t)m->n_sites, sizeof *m->sites);
    m->layers = spd_calloc((size_t)L, sizeof *m->layers);
    m->wte_site = &m->sites[0];
    m->lm_head_site = &m->sites[m->n_sites - 1];
    RFN(site_init)(m->wte_site, "wte", SITE_EMBEDDING, (int)V, (int)d);
    RFN(site_init)(m->lm_head_site, "lm_head", SITE_LINEAR, (int)d, (int)V);

    add(spec, SPD_ROLE_FROZEN, SPD_INIT_NORMAL, 0.02, SPD_SHAPE(V, d), "target_model.wte.weight");
    const int64_t site_shape[LLAMA_SITES_PER_LAYER][2] = {{d, d}, {kvd, d}, {kvd, d}, {d, d},
                                                          {I, d}, {I, d},   {d, I}};
    for (int l = 0; l < L; l++) {
        llama_layer *ly = &m->layers[l];
        add(spec, SPD_ROLE_FROZEN, SPD_INIT_ONES, 0, SPD_SHAPE(d), "target_model.h.%d.rms_1.weight", l);
        add(spec, SPD_ROLE_FROZEN, SPD_INIT_ONES, 0, SPD_SHAPE(d), "target_model.h.%d.rms_2.weight", l);
        for (int k = 0; k < LLAMA_SITES_PER_LAYER; k++) {
            char path[SPD_NAME_MAX];
            snprintf(path, sizeof path, "h.%d.%s", l, site_names[k]);
            ly->sites[k] = &m->sites[1 + LLAMA_SITES_PER_LAYER * l + k];
            RFN(site_init)(ly->sites[k], path, SITE_LINEAR, (int)site_shape[k][1], (int)site_shape[k][0]);
            add(spec, SPD_ROLE_FROZEN, SPD_INIT_NORMAL, k == LLAMA_O ? o_std : lin_std, 2, site_shape[k],
                "target_model.%s.weight", path);
        }
        add(spec, SPD_ROLE_ACT, SPD_INIT_ZERO, 0, SPD_SHAPE(N, d), "act.h.%d.x_in", l);
        add(spec, SPD_ROLE_ACT, SPD_INIT_ZERO, 0, SPD_SHAPE(N, d), "act.h.%d.ln1", l);
        add(spec, SPD_ROLE_ACT, SPD_INIT_ZERO, 0, SPD_SHAPE(N), "act.h.%d.rstd1", l);
        add(spec, SPD_ROLE_ACT, SPD_INIT_ZERO, 0, SPD_SHAPE(N, d), "act.h.%d.q", l);
        add(spec, SPD_ROLE_ACT, SPD_INIT_ZERO, 0, SPD_SHAPE(N, kvd), "act.h.%d.k", l);
        add(spec, SPD_ROLE_ACT, SPD_INIT_ZERO, 0, SPD_SHAPE(N, kvd), "act.h.%d.v", l);
        add(spec, SPD_ROLE_ACT, SPD_INIT_ZERO, 0, SPD_SHAPE(B, cfg->n_head, S, S), "act.h.%d.att", l);
        add(spec, SPD_ROLE_ACT, SPD_INIT_ZERO, 0, SPD_SHAPE(N, d), "act.h.%d.atty", l);
        add(spec, SPD_ROLE_ACT, SPD_INIT_ZERO, 0, SPD_SHAPE(N, d), "act.h.%d.mid", l);
        add(spec, SPD_ROLE_ACT, SPD_INIT_ZERO, 0, SPD_SHAPE(N, d), "act.h.%d.ln2", l);
        add(spec, SPD_ROLE_ACT, SPD_INIT_ZERO, 0, SPD_SHAPE(N), "act.h.%d.rstd2", l);
        add(spec, SPD_ROLE_ACT, SPD_INIT_ZERO, 0, SPD_SHAPE(N, I), "act.h.%d.gate", l);
        add(spec, SPD_ROLE_ACT, SPD_INIT_ZERO, 0, SPD_SHAPE(N, I), "act.h.%d.up", l);
        add(spec, SPD_ROLE_ACT, SPD_INIT_ZERO, 0, SPD_SHAPE(N, I), "act.h.%d.hidden", l);
    }
    add(spec, SPD_ROLE_FROZEN, SPD_INIT_ONES, 0, SPD_SHAPE(d), "target_model.ln_f.weight");
    if (untied_lm_head)
        add(spec, SPD_ROLE_FROZEN, SPD_INIT_NORMAL, 0.02, SPD_SHAPE(V, d), "target_model.lm_head.weight");
    spd_spec_add(spec, "input.tokens", SPD_DTYPE_I32, 2, (int64_t[]){B, S}, SPD_ROLE_ACT, SPD_INIT_ZERO, 0);
    add(spec, SPD_ROLE_ACT, SPD_INIT_ZERO, 0, SPD_SHAPE(cfg->n_ctx, hd), "act.rope_cos");
    add(spec, SPD_ROLE_ACT, SPD_INIT_ZERO, 0, SPD_SHAPE(cfg->n_ctx, hd), "act.rope_sin");
    add(spec, SPD_ROLE_ACT, SPD_INIT_ZERO, 0, SPD_SHAPE(N, d), "act.resid");
    add(spec, SPD_ROLE_ACT, SPD_INIT_ZERO, 0, SPD_SHAPE(N, d), "act.lnf");
    add(spec, SPD_ROLE_ACT, SPD_INIT_ZERO, 0, SPD_SHAPE(N), "act.rstdf");
    add(spec, SPD_ROLE_ACT, SPD_INIT_ZERO, 0, SPD_SHAPE(N, d), "act.proj");
    add(spec, SPD_ROLE_ACT, SPD_INIT_ZERO, 0, SPD_SHAPE(B, S, V), "act.logits");
    add(spec, SPD_ROLE_ACT, SPD_INIT_ZERO, 0, SPD_SHAPE(1), "act.loss");
    // Backward buffers.
    add(spec, SPD_ROLE_ACT, SPD_INIT_ZERO, 0, SPD_SHAPE(N, V), "grad.logits");
    const char *dnames[] = {"grad.res", "grad.ln", "grad.q", "grad.atty"};
    for (int i = 0; i < 4; i++) add(spec, SPD_ROLE_ACT, SPD_INIT_ZERO, 0, SPD_SHAPE(N, d), "%s", dnames[i]);
    add(spec, SPD_ROLE_ACT, SPD_INIT_ZERO, 0, SPD_SHAPE(N, kvd), "grad.k");
    add(spec, SPD_ROLE_ACT, SPD_INIT_ZERO, 0, SPD_SHAPE(N, kvd), "grad.v");
    add(spec, SPD_ROLE_ACT, SPD_INIT_ZERO, 0, SPD_SHAPE(N, I), "grad.gate");
    add(spec, SPD_ROLE_ACT, SPD_INIT_ZERO, 0, SPD_SHAPE(N, I), "grad.up");
    add(spec, SPD_ROLE_ACT, SPD_INIT_ZERO, 0, SPD_SHAPE(N, I), "grad.hidden");
}

// The model's pointers into m->sites, in the layout llama_declare made.
static void point_at_sites(llama_model *m) {
    m->wte_site = &m->sites[0];
    m->lm_head_site = &m->sites[m->n_sites - 1];
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int k = 0; k < LLAMA_SITES_PER_LAYER; k++)
            m->layers[l].sites[k] = &m->sites[1 + LLAMA_SITES_PER_LAYER * l + k];
}

int RFN(llama_insert_identity)(llama_model *m, spd_spec *spec, const spd_module_pattern *patterns, int n_patterns) {
    int rc = RFN(identity_insert)(&m->sites, m->n_sites, &m->n_identity, spec, m->N, patterns, n_patterns);
    point_at_sites(m);  // the sites array may have moved
    return rc;
}

void RFN(llama_bind)(llama_model *m, const spd_spec *spec) {
    const llama_config *cfg = &m->cfg;
    real *wte = get(spec, "target_model.wte.weight");
    m->wte_site->W = wte;
    m->lm_head_site->W = m->untied_lm_head ? get(spec, "target_model.lm_head.weight") : wte;
    for (int l = 0; l < cfg->n_layer; l++) {
        llama_layer *ly = &m->layers[l];
        ly->rms_1 = get(spec, "target_model.h.%d.rms_1.weight", l);
        ly->rms_2 = get(spec, "target_model.h.%d.rms_2.weight", l);
        for (int k = 0; k < LLAMA_SITES_PER_LAYER; k++)
            ly->sites[k]->W = get(spec, "target_model.%s.weight", ly->sites[k]->path);
        ly->x_in = get(spec, "act.h.%d.x_in", l);
        ly->ln1 = get(spec, "act.h.%d.ln1", l);
        ly->rstd1 = get(spec, "act.h.%d.rstd1", l);
        ly->q = get(spec, "act.h.%d.q", l);
        ly->k = get(spec, "act.h.%d.k", l);
        ly->v = get(spec, "act.h.%d.v", l);
        ly->att = get(spec, "act.h.%d.att", l);
        ly->atty = get(spec, "act.h.%d.atty", l);
        ly->mid = get(spec, "act.h.%d.mid", l);
        ly->ln2 = get(spec, "act.h.%d.ln2", l);
        ly->rstd2 = get(spec, "act.h.%d.rstd2", l);
        ly->gate = get(spec, "act.h.%d.gate", l);
        ly->up = get(spec, "act.h.%d.up", l);
        ly->hidden = get(spec, "act.h.%d.hidden", l);
    }
    m->ln_f = get(spec, "target_model.ln_f.weight");
    m->tokens = (int32_t *)spd_spec_get(spec, "input.tokens")->data;
    m->rope_cos = get(spec, "act.rope_cos");
    m->rope_sin = get(spec, "act.rope_sin");
    RFN(rope_tables)(m->rope_cos, m->rope_sin, cfg->n_ctx, cfg->n_embd / cfg->n_head, cfg->rotary_base,
                     cfg->rotary_adjacent_pairs);
    m->resid = get(spec, "act.resid");
    m->lnf = get(spec, "act.lnf");
    m->rstdf = get(spec, "act.rstdf");
    m->proj = get(spec, "act.proj");
    m->logits = get(spec, "act.logits");
    m->loss = get(spec, "act.loss");
    m->dlogits = get(spec, "grad.logits");
    m->dres = get(spec, "grad.res");
    m->dln = get(spec, "grad.ln");
    m->dq = get(spec, "grad.q");
    m->datty = get(spec, "grad.atty");
    m->dk = get(spec, "grad.k");
    m->dv = get(spec, "grad.v");
    m->dgate = get(spec, "grad.gate");
    m->dup = get(spec, "grad.up");
    m->dhidden = get(spec, "grad.hidden");
    RFN(identity_bind)(m->sites, m->n_sites, m->n_identity, spec);
}

// Every V and U of the sites with components (W: room for two per site), for the weight
// layouts of the fused CUDA kernels (components_weights_prepare).
static int component_weights(const llama_model *m, const real **W) {
    int n = 0;
    for (int i = 0; i < m->n_sites + m->n_identity; i++) {
        const component_module *c = m->sites[i].comp;
        if (!c) continue;
        W[n++] = c->V;
        W[n++] = c->U;
    }
    return n;
}

static void weights_call(const llama_model *m, void (*call)(int, const real *const *)) {
    const real **W = spd_malloc(2 * (size_t)(m->n_sites + m->n_identity + 1) * sizeof *W);
    call(component_weights(m, W), W);
    free(W);
}

void RFN(llama_forward)(llama_model *m) {
    const llama_config *c = &m->cfg;
    const int N = m->N, d = c->n_embd, hd = d / c->n_head;
    const int64_t Nd = (int64_t)N * d;
    weights_call(m, RFN(components_weights_prepare));
    RFN(site_forward)(m->wte_site, c->n_layer ? m->layers[0].x_in : m->resid, NULL, m->tokens, N);
    for (int l = 0; l < c->n_layer; l++) {
        llama_layer *ly = &m->layers[l];
        linear_site **s = ly->sites;
        RFN(rmsnorm_forward)(ly->ln1, ly->rstd1, ly->x_in, ly->rms_1, N, d, c->rms_norm_eps);
        RFN(site_forward)(s[LLAMA_Q], ly->q, ly->ln1, NULL, N);
        RFN(site_forward_group)((linear_site *[]){s[LLAMA_K], s[LLAMA_V]}, (real *[]){ly->k, ly->v}, ly->ln1, 2, N);
        RFN(rope_forward)(ly->q, m->rope_cos, m->rope_sin, m->B, m->S, c->n_head, hd, c->n_ctx,
                          c->rotary_adjacent_pairs);
        RFN(rope_forward)(ly->k, m->rope_cos, m->rope_sin, m->B, m->S, c->n_kv_heads, hd, c->n_ctx,
                          c->rotary_adjacent_pairs);
        RFN(attention_forward)(ly->atty, ly->att, ly->q, ly->k, ly->v, m->B, m->S, c->n_head, c->n_kv_heads, hd);
        RFN(site_forward)(s[LLAMA_O], m->proj, ly->atty, NULL, N);
        RFN(add)(ly->mid, ly->x_in, m->proj, Nd);
        RFN(rmsnorm_forward)(ly->ln2, ly->rstd2, ly->mid, ly->rms_2, N, d, c->rms_norm_eps);
        RFN(site_forward_group)((linear_site *[]){s[LLAMA_GATE], s[LLAMA_UP]}, (real *[]){ly->gate, ly->up}, ly->ln2,
                                2, N);
        RFN(swiglu_forward)(ly->hidden, ly->gate, ly->up, (int64_t)N * c->n_intermediate);
        RFN(site_forward)(s[LLAMA_DOWN], m->proj, ly->hidden, NULL, N);
        real *next = l + 1 < c->n_layer ? m->layers[l + 1].x_in : m->resid;
        RFN(add)(next, ly->mid, m->proj, Nd);
    }
    RFN(rmsnorm_forward)(m->lnf, m->rstdf, m->resid, m->ln_f, N, d, c->rms_norm_eps);
    RFN(site_forward)(m->lm_head_site, m->logits, m->lnf, NULL, N);
}

void RFN(llama_backward)(llama_model *m) {
    const llama_config *c = &m->cfg;
    const int N = m->N, d = c->n_embd, hd = d / c->n_head;
    // dres holds dL/d(residual stream) as we walk back through the blocks.
    RFN(site_backward)(m->lm_head_site, m->dln, m->dlogits, m->lnf, NULL, N);
    RFN(rmsnorm_backward)(m->dres, NULL, m->dln, m->resid, m->ln_f, m->rstdf, N, d, false);
    for (int l = c->n_layer - 1; l >= 0; l--) {
        llama_layer *ly = &m->layers[l];
        linear_site **s = ly->sites;
        // MLP: next = mid + down(swiglu(gate(ln2), up(ln2))).
        RFN(site_backward)(s[LLAMA_DOWN], m->dhidden, m->dres, ly->hidden, NULL, N);
        RFN(swiglu_backward)(m->dgate, m->dup, m->dhidden, ly->gate, ly->up, (int64_t)N * c->n_intermediate);
        RFN(site_backward_group)((linear_site *[]){s[LLAMA_GATE], s[LLAMA_UP]}, m->dln, false,
                                 (real *[]){m->dgate, m->dup}, ly->ln2, 2, N);
        RFN(rmsnorm_backward)(m->dres, NULL, m->dln, ly->mid, ly->rms_2, ly->rstd2, N, d, true);  // now dL/d(mid)
        // Attention: mid = x_in + o(attn(rope(q(ln1)), rope(k(ln1)), v(ln1))).
        RFN(site_backward)(s[LLAMA_O], m->datty, m->dres, ly->atty, NULL, N);
        RFN(attention_backward)(m->dq, m->dk, m->dv, m->datty, ly->q, ly->k, ly->v, ly->atty, ly->att, m->B, m->S,
                                c->n_head, c->n_kv_heads, hd);
        RFN(rope_backward)(m->dq, m->rope_cos, m->rope_sin, m->B, m->S, c->n_head, hd, c->n_ctx,
                           c->rotary_adjacent_pairs);
        RFN(rope_backward)(m->dk, m->rope_cos, m->rope_sin, m->B, m->S, c->n_kv_heads, hd, c->n_ctx,
                           c->rotary_adjacent_pairs);
        RFN(site_backward)(s[LLAMA_Q], m->dln, m->dq, ly->ln1, NULL, N);
        RFN(site_backward_group)((linear_site *[]){s[LLAMA_K], s[LLAMA_V]}, m->dln, true, (real *[]){m->dk, m->dv},
                                 ly->ln1, 2, N);
        RFN(rmsnorm_backward)(m->dres, NULL, m->dln, ly->x_in, ly->rms_1, ly->rstd1, N, d, true);  // now dL/d(x_in)
    }
    RFN(site_backward)(m->wte_site, NULL, m->dres, NULL, m->tokens, N);
    RFN(components_weights_release)();
}

void RFN(llama_free)(llama_model *m) {
    if (m->sites) weights_call(m, RFN(components_weights_forget));
    free(m->sites);
    free(m->layers);
    memset(m, 0, sizeof *m);
}
