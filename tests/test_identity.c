// SPD's identity insertion (SPD_SPEC.md 1.3; models/identity_insertion.h):
// matching identity patterns as insert_identity_operations_ does, the
// ".pre_identity" module names in SPD's all_module_info, the inserted site's
// forward (the target passes its input through, bit for bit), components on
// it, and the backward chained through it (finite differences in float64, as
// tests/test_toy_models.c: L = sum(out * R), h = 1e-6, bound 1e-6).
#define SPD_F64
#include "core/real.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/spec.h"
#include "models/identity_insertion.h"
#include "models/llama_simple.h"
#include "models/module_select.h"
#include "models/resid_mlp.h"
#include "models/tms.h"
#include "ops/components.h"
#include "spd/target_resid_mlp.h"
#include "spd/target_tms.h"

#define FD_H 1e-6
#define FD_TOL 1e-6
#define TEST_NAME "test_identity"
#define TEST_SEED 1303
#include "test_inputs.h"

static bool error_has(const char *want) { return strstr(spd_last_error(), want) != NULL; }

// ---- matching -----------------------------------------------------------------------

static bool owners_are(const char *const *cand, int n, const spd_module_pattern *p, int np, const int *want, int nw) {
    int *got = NULL, ng = 0;
    if (spd_select_identity_owners(cand, n, p, np, &got, &ng)) return false;
    bool same = ng == nw;
    for (int i = 0; same && i < nw; i++) same = got[i] == want[i];
    free(got);
    return same;
}

static void test_matching(void) {
    const char *cand[] = {"linear1", "linear2", "hidden_layers.0"};
    test_report(owners_are(cand, 3, (spd_module_pattern[]){{"linear*", 4}}, 1, (int[]){0, 1}, 2),
                "identity patterns: 'linear*' matches linear1 and linear2, in the target's order", NULL);
    test_report(owners_are(cand, 3, (spd_module_pattern[]){{"linear2", 4}, {"linear1", 4}}, 2, (int[]){1, 0}, 2),
                "identity patterns: owners in pattern order", NULL);
    test_report(owners_are(cand, 3, (spd_module_pattern[]){{"h*0", 4}}, 1, (int[]){2}, 1),
                "identity patterns: fnmatch's '*' runs across dots ('h*0' matches hidden_layers.0)", NULL);
    int *o = NULL, no = 0;
    int rc = spd_select_identity_owners(cand, 3, (spd_module_pattern[]){{"linear1", 4}, {"linear1", 2}}, 2, &o, &no);
    test_report(rc != 0 && error_has("duplicate pattern 'linear1'"), "identity patterns: a duplicate is an error",
                "%s", spd_last_error());
    rc = spd_select_identity_owners(cand, 3, (spd_module_pattern[]){{"linear3", 4}}, 1, &o, &no);
    test_report(rc != 0 && error_has("pattern 'linear3' matches no linear module"),
                "identity patterns: a pattern matching nothing is an error naming it", "%s", spd_last_error());
    rc = spd_select_identity_owners(cand, 3, (spd_module_pattern[]){{"linear*", 4}, {"linear1", 2}}, 2, &o, &no);
    test_report(rc != 0 && error_has("'linear1' is matched by two patterns"),
                "identity patterns: a module matched twice is an error", "%s", spd_last_error());

    // all_module_info: module_info, then the identity patterns + ".pre_identity", same C.
    spd_module_pattern mi[] = {{"linear1", 6}, {"linear2", 6}}, ii[] = {{"layers.*.mlp_in", 4}};
    spd_module_pattern *all = NULL;
    int n_all = 0;
    spd_all_module_patterns(mi, 2, ii, 1, &all, &n_all);
    test_report(n_all == 3 && strcmp(all[0].pattern, "linear1") == 0 && strcmp(all[1].pattern, "linear2") == 0 &&
                    strcmp(all[2].pattern, "layers.*.mlp_in.pre_identity") == 0 && all[2].C == 4,
                "all_module_info: identity patterns follow module_info with '.pre_identity' appended", NULL);
    spd_module_patterns_free(all, n_all);

    // Selection over the named_modules order with identities (SPD's expand_module_patterns).
    const char *named[] = {"linear1", "linear1.pre_identity", "linear2", "hidden_layers.0"};
    spd_module_choice *ch = NULL;
    int nch = 0;
    spd_all_module_patterns((spd_module_pattern[]){{"linear?", 6}}, 1, (spd_module_pattern[]){{"linear1", 4}}, 1,
                            &all, &n_all);
    rc = spd_select_modules(named, 4, all, n_all, &ch, &nch);
    test_report(rc == 0 && nch == 3 && strcmp(ch[0].path, "linear1") == 0 && strcmp(ch[1].path, "linear2") == 0 &&
                    strcmp(ch[2].path, "linear1.pre_identity") == 0 && ch[2].C == 4,
                "module selection: 'linear?' leaves the identity to its own pattern (order linear1, linear2, "
                "linear1.pre_identity)", "%s", rc ? spd_last_error() : "");
    spd_module_choices_free(ch, nch);
    spd_module_patterns_free(all, n_all);
    spd_all_module_patterns((spd_module_pattern[]){{"linear*", 6}}, 1, (spd_module_pattern[]){{"linear1", 4}}, 1,
                            &all, &n_all);
    rc = spd_select_modules(named, 4, all, n_all, &ch, &nch);
    test_report(rc != 0 && error_has("'linear1.pre_identity' is matched by two patterns"),
                "module selection: 'linear*' also matches linear1.pre_identity, so its own pattern is a second "
                "match (an error, as in SPD)", "%s", spd_last_error());
    spd_module_patterns_free(all, n_all);
    rc = spd_select_modules(named, 4, (spd_module_pattern[]){{"*.pre_identity", 2}}, 1, &ch, &nch);
    test_report(rc == 0 && nch == 1 && strcmp(ch[0].path, "linear1.pre_identity") == 0,
                "module selection: '*.pre_identity' matches the inserted identities only", NULL);
    spd_module_choices_free(ch, nch);
}

// ---- components on a site -------------------------------------------------------------

// A component module on site s for N positions: V, U random, masks random in [0, 1],
// delta masks random (or no delta).
static component_module *attach(linear_site *s, int C, int N, bool delta) {
    component_module *c = tmalloc(sizeof *c);
    memset(c, 0, sizeof *c);
    const int din = s->d_in, dout = s->d_out;
    *c = (component_module){.site = s, .C = C, .replaced = true};
    c->V = normal((long)din * C, 1 / sqrt(din));
    c->U = normal((long)C * dout, 1 / sqrt(C));
    c->dV = filled((long)din * C, 0);
    c->dU = filled((long)C * dout, 0);
    c->a = tmalloc((size_t)N * C * sizeof(double));
    c->scratch = tmalloc((size_t)N * C * sizeof(double));
    c->mask = uniform((long)N * C, 0, 1);
    c->delta = tmalloc((size_t)din * dout * sizeof(double));
    c->ddelta = tmalloc((size_t)din * dout * sizeof(double));
    if (delta) c->delta_mask = uniform(N, 0, 1);
    s->comp = c;
    return c;
}

typedef struct {
    void (*forward)(void *model);
    void *model;
    component_module **comps;
    int n_comps;
    const double *out, *R;
    long n_out;
} fd_ctx;

// The step's deltas (they depend on V and U), then the forward; L = sum(out * R).
static double fd_loss(void *p) {
    fd_ctx *c = p;
    for (int i = 0; i < c->n_comps; i++) site_delta_forward_f64(c->comps[i]);
    c->forward(c->model);
    return dot(c->out, c->R, c->n_out);
}

// dL/dx, dL/dV and dL/dU of every component module against central differences.
static void check_grads(const char *label, fd_ctx *c, void (*backward)(void *), double *dout, double *x, double *dx,
                        long n_x) {
    fd_loss(c);
    memcpy(dout, c->R, (size_t)c->n_out * sizeof *dout);
    for (long i = 0; i < n_x; i++) dx[i] = NAN;  // must be written
    backward(c->model);
    char name[SPD_NAME_MAX + 40];  // a path and a label; fits report_err's line
    for (int i = 0; i < c->n_comps; i++) site_delta_backward_f64(c->comps[i]);
    snprintf(name, sizeof name, "%s: dx", label);
    check_fd(name, fd_loss, c, x, copy(dx, n_x), n_x);
    for (int i = 0; i < c->n_comps; i++) {
        component_module *m = c->comps[i];
        long nv = (long)m->site->d_in * m->C, nu = (long)m->C * m->site->d_out;
        snprintf(name, sizeof name, "%s: d %s.V", label, m->site->path);
        check_fd(name, fd_loss, c, m->V, copy(m->dV, nv), nv);
        snprintf(name, sizeof name, "%s: d %s.U", label, m->site->path);
        check_fd(name, fd_loss, c, m->U, copy(m->dU, nu), nu);
    }
}

static linear_site *site_named(linear_site *sites, int n, const char *path) {
    for (int i = 0; i < n; i++)
        if (strcmp(sites[i].path, path) == 0) return &sites[i];
    return NULL;
}

// ---- TMS ------------------------------------------------------------------------------

static void tms_fwd(void *m) { tms_forward_f64(m); }
static void tms_bwd(void *m) { tms_backward_f64(m); }

static void tms_build(spd_spec *spec, tms_model *m, const spd_module_pattern *id, int n_id) {
    tms_config cfg = {.n_features = 5, .n_hidden = 3, .n_hidden_layers = 1, .tied_weights = true};
    tms_options opt = {.B = 7, .prefix = "target_model."};
    spd_spec_init(spec);
    tms_declare_f64(m, spec, &cfg, &opt);
    if (n_id) SPD_ASSERT(tms_insert_identity_f64(m, spec, id, n_id) == 0);
    spd_spec_alloc(spec);
    tms_bind_f64(m, spec);
    tms_init_params_f64(m, 31);
}

static bool is_eye(const double *W, int d) {
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++)
            if (W[i * d + j] != (i == j ? 1.0 : 0.0)) return false;
    return true;
}

static void test_tms(void) {
    const int B = 7, F = 5, H = 3;
    spd_spec ps, is;
    tms_model plain, m;
    tms_build(&ps, &plain, NULL, 0);
    tms_build(&is, &m, (spd_module_pattern[]){{"linear*", 4}}, 1);
    spd_target tg = spd_target_tms_f64(&m);
    linear_site *id1 = site_named(tg.sites, tg.n_sites, "linear1.pre_identity");
    linear_site *id2 = site_named(tg.sites, tg.n_sites, "linear2.pre_identity");
    test_report(tg.n_sites == 5 && m.n_sites == 3 && id1 == &m.sites[3] && id2 == &m.sites[4] &&
                    id1->kind == SITE_IDENTITY && id1->d_in == F && id1->d_out == F && id2->d_in == H &&
                    is_eye(id1->W, F) && is_eye(id2->W, H) && m.sites[TMS_LINEAR1].pre == id1 &&
                    m.sites[TMS_LINEAR2].pre == id2 && m.sites[TMS_HIDDEN0].pre == NULL,
                "tms: 'linear*' inserts linear1.pre_identity [5, 5] and linear2.pre_identity [3, 3] after the "
                "model's sites, target weight I", NULL);
    // SPD's state dict holds nothing for an Identity: no frozen or trained tensor is added.
    int frozen = 0, trained = 0;
    for (int i = 0; i < is.count; i++) {
        frozen += is.tensors[i].role == SPD_ROLE_FROZEN;
        trained += is.tensors[i].role == SPD_ROLE_TRAINED;
    }
    int frozen0 = 0;
    for (int i = 0; i < ps.count; i++) frozen0 += ps.tensors[i].role == SPD_ROLE_FROZEN;
    test_report(frozen == frozen0 && trained == 0 && spd_spec_find(&is, "target_model.linear1.pre_identity.weight") == NULL,
                "tms: the identity adds no parameter (the state dict is unchanged)", NULL);
    int order[5];
    identity_named_order_f64(m.sites, m.n_sites, m.n_identity, order);
    test_report(order[0] == 0 && order[1] == 3 && order[2] == 1 && order[3] == 4 && order[4] == 2,
                "tms: named_modules order puts each identity right after its module", NULL);

    double *x = uniform((long)B * F, 0, 1);
    memcpy(plain.x, x, (size_t)B * F * sizeof *x);
    memcpy(m.x, x, (size_t)B * F * sizeof *x);
    tms_forward_f64(&plain);
    tms_forward_f64(&m);
    test_report(memcmp(plain.out, m.out, (size_t)B * F * sizeof(double)) == 0 &&
                    memcmp(m.sites[TMS_LINEAR1].pre_out, x, (size_t)B * F * sizeof(double)) == 0,
                "tms: the target identity passes its input through (output bit for bit the plain model's)", NULL);

    // Components on the identity with V = U = I (C = d) and no delta: still the target.
    component_module *c = attach(id1, F, B, false);
    for (int i = 0; i < F * F; i++) c->V[i] = c->U[i] = i % (F + 1) == 0 ? 1 : 0;
    for (int i = 0; i < B * F; i++) c->mask[i] = 1;
    tms_forward_f64(&m);
    double err = test_rel_norm_err(m.out, plain.out, (long)B * F);
    test_report(err == 0, "tms: identity components V = U = I with masks 1 reproduce the target", "rel err %.2e", err);
    // Random components with masks 1 and delta masks 1: x V U + x (I - V U) = x.
    id1->comp = NULL;
    c = attach(id1, 4, B, true);
    for (int i = 0; i < B * 4; i++) c->mask[i] = 1;
    for (int i = 0; i < B; i++) c->delta_mask[i] = 1;
    site_delta_forward_f64(c);
    tms_forward_f64(&m);
    err = test_rel_norm_err(m.out, plain.out, (long)B * F);
    test_report(err < 1e-13, "tms: random identity components with masks 1 and the delta (I - (V U)^T) reproduce the target",
                "rel err %.2e", err);

    // Backward through the inserted identities: components on linear1.pre_identity,
    // linear1 (whose input is the identity's output) and linear2.pre_identity.
    id1->comp = NULL;
    component_module *comps[3] = {attach(id1, 4, B, true), attach(&m.sites[TMS_LINEAR1], 3, B, true),
                                  attach(id2, 2, B, false)};
    fd_ctx fc = {tms_fwd, &m, comps, 3, m.out, normal((long)B * F, 1.0), (long)B * F};
    check_grads("tms + identities", &fc, tms_bwd, m.dout, m.x, m.dx, (long)B * F);
    for (int i = 0; i < 3; i++) comps[i]->site->comp = NULL;

    int rc = tms_insert_identity_f64(&m, &is, (spd_module_pattern[]){{"linear1", 4}}, 1);
    test_report(rc != 0 && error_has("'linear1' has an inserted identity already"),
                "tms: a second identity before the same module is refused", "%s", spd_last_error());
    tms_free_f64(&plain);
    tms_free_f64(&m);
    spd_spec_free(&ps);
    spd_spec_free(&is);
}

// ---- ResidMLP ---------------------------------------------------------------------------

static void resid_fwd(void *m) { resid_mlp_forward_f64(m); }
static void resid_bwd(void *m) { resid_mlp_backward_f64(m); }

static void test_resid_mlp(void) {
    const int B = 6, F = 6, D = 4, M = 5;
    resid_mlp_config cfg = {.n_features = F, .d_embed = D, .d_mlp = M, .n_layers = 2, .act = RESID_MLP_RELU,
                            .in_bias = true, .out_bias = true};
    resid_mlp_options opt = {.B = B, .prefix = "target_model."};
    spd_spec ps, is;
    resid_mlp_model plain, m;
    spd_spec_init(&ps);
    resid_mlp_declare_f64(&plain, &ps, &cfg, &opt);
    spd_spec_alloc(&ps);
    resid_mlp_bind_f64(&plain, &ps);
    resid_mlp_init_params_f64(&plain, 41);
    spd_spec_init(&is);
    resid_mlp_declare_f64(&m, &is, &cfg, &opt);
    int rc = resid_mlp_insert_identity_f64(&m, &is, (spd_module_pattern[]){{"layers.*.mlp_in", 3}}, 1);
    spd_spec_alloc(&is);
    resid_mlp_bind_f64(&m, &is);
    resid_mlp_init_params_f64(&m, 41);
    spd_target tg = spd_target_resid_mlp_f64(&m);
    test_report(rc == 0 && tg.n_sites == 6 && strcmp(tg.sites[4].path, "layers.0.mlp_in.pre_identity") == 0 &&
                    strcmp(tg.sites[5].path, "layers.1.mlp_in.pre_identity") == 0 && tg.sites[4].d_in == D,
                "resid_mlp: 'layers.*.mlp_in' inserts layers.<i>.mlp_in.pre_identity [d_embed, d_embed]", NULL);
    double *x = uniform((long)B * F, 0, 1);
    memcpy(plain.x, x, (size_t)B * F * sizeof *x);
    memcpy(m.x, x, (size_t)B * F * sizeof *x);
    resid_mlp_forward_f64(&plain);
    resid_mlp_forward_f64(&m);
    test_report(memcmp(plain.out, m.out, (size_t)B * F * sizeof(double)) == 0,
                "resid_mlp: target identities leave the output bit for bit unchanged", NULL);
    component_module *comps[3] = {attach(&tg.sites[4], 3, B, true), attach(&tg.sites[5], 2, B, true),
                                  attach(&m.sites[RESID_MLP_IN(1)], 3, B, true)};
    fd_ctx fc = {resid_fwd, &m, comps, 3, m.out, normal((long)B * F, 1.0), (long)B * F};
    check_grads("resid_mlp + identities", &fc, resid_bwd, m.dout, m.x, m.dx, (long)B * F);
    for (int i = 0; i < 3; i++) comps[i]->site->comp = NULL;
    resid_mlp_free_f64(&plain);
    resid_mlp_free_f64(&m);
    spd_spec_free(&ps);
    spd_spec_free(&is);
}

// ---- LlamaSimple: the model's own site pointers survive the insertion -------------------

static void test_llama(void) {
    llama_config cfg = {.vocab_size = 13, .n_layer = 2, .n_head = 2, .n_kv_heads = 1, .n_embd = 8,
                        .n_intermediate = 12, .n_ctx = 4, .rotary_base = 10000, .rms_norm_eps = 1e-6};
    spd_spec ps, is;
    llama_model plain, m;
    spd_spec_init(&ps);
    llama_declare_f64(&plain, &ps, &cfg, 2, 4, false);
    spd_spec_alloc(&ps);
    llama_bind_f64(&plain, &ps);
    spd_spec_init_values(&ps, SPD_ROLE_FROZEN, 51);
    spd_spec_init(&is);
    llama_declare_f64(&m, &is, &cfg, 2, 4, false);
    int bad = llama_insert_identity_f64(&m, &is, (spd_module_pattern[]){{"wte", 2}}, 1);
    test_report(bad != 0 && error_has("'wte' is an embedding"), "llama: an identity before the embedding is refused",
                "%s", spd_last_error());
    int rc = llama_insert_identity_f64(&m, &is, (spd_module_pattern[]){{"h.*.mlp.down_proj", 2}, {"lm_head", 2}}, 2);
    spd_spec_alloc(&is);
    llama_bind_f64(&m, &is);
    spd_spec_init_values(&is, SPD_ROLE_FROZEN, 51);  // same frozen tensors in the same order: same weights
    test_report(rc == 0 && m.n_identity == 3 && m.layers[1].sites[LLAMA_DOWN] == &m.sites[1 + 7 + LLAMA_DOWN] &&
                    m.lm_head_site == &m.sites[m.n_sites - 1] && m.lm_head_site->pre == &m.sites[m.n_sites + 2] &&
                    m.layers[0].sites[LLAMA_DOWN]->pre->d_in == 12,
                "llama: identities before h.*.mlp.down_proj [12, 12] and lm_head; the model's site pointers follow "
                "the grown array", NULL);
    for (int n = 0; n < 8; n++) m.tokens[n] = plain.tokens[n] = (n * 5) % 13;
    llama_forward_f64(&plain);
    llama_forward_f64(&m);
    test_report(memcmp(plain.logits, m.logits, 8 * 13 * sizeof(double)) == 0,
                "llama: target identities leave the logits bit for bit unchanged", NULL);
    llama_free_f64(&plain);
    llama_free_f64(&m);
    spd_spec_free(&ps);
    spd_spec_free(&is);
}

int main(void) {
    test_matching();
    test_tms();
    test_resid_mlp();
    test_llama();
    free_all();
    return test_exit();
}
