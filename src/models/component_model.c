#include "core/real.h"

#include "models/component_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ops/components.h"
#include "ops/fill.h"

static linear_site *find_site(llama_model *m, const char *path) {
    for (int i = 0; i < m->n_sites; i++)
        if (strcmp(m->sites[i].path, path) == 0) return &m->sites[i];
    return NULL;
}

static void component_name(char *buf, const char *dashed, const char *what) {
    int n = snprintf(buf, SPD_NAME_MAX, "_components.%s.%s", dashed, what);
    SPD_ASSERT(n > 0 && n < SPD_NAME_MAX);
}

static void act_name(char *buf, const char *prefix, const char *dashed) {
    int n = snprintf(buf, SPD_NAME_MAX, "%s.%s", prefix, dashed);
    SPD_ASSERT(n > 0 && n < SPD_NAME_MAX);
}

// V, U (SPD init: N(0, 1/fan) with fan d_in for V, C for U) and the per-step buffers.
static void declare_module(spd_spec *spec, const component_module *c, int N, bool use_delta, int B, int S) {
    const linear_site *s = c->site;
    char name[SPD_NAME_MAX];
    component_name(name, c->dashed, "V");
    spd_spec_add(spec, name, SPD_REAL_DTYPE, 2, (int64_t[]){s->d_in, c->C}, SPD_ROLE_TRAINED, SPD_INIT_NORMAL,
                 1.0 / sqrt((double)s->d_in));
    component_name(name, c->dashed, "U");
    spd_spec_add(spec, name, SPD_REAL_DTYPE, 2, (int64_t[]){c->C, s->d_out}, SPD_ROLE_TRAINED, SPD_INIT_NORMAL,
                 1.0 / sqrt((double)c->C));
    act_name(name, "act.acts", c->dashed);
    spd_spec_add(spec, name, SPD_REAL_DTYPE, 2, (int64_t[]){N, c->C}, SPD_ROLE_ACT, SPD_INIT_ZERO, 0);
    act_name(name, "act.scratch", c->dashed);
    spd_spec_add(spec, name, SPD_REAL_DTYPE, 2, (int64_t[]){N, c->C}, SPD_ROLE_ACT, SPD_INIT_ZERO, 0);
    act_name(name, "input.masks", c->dashed);
    spd_spec_add(spec, name, SPD_REAL_DTYPE, 3, (int64_t[]){B, S, c->C}, SPD_ROLE_ACT, SPD_INIT_ONES, 0);
    if (!use_delta) return;
    // The weight delta has the target weight's layout: [d_out, d_in], or [vocab, d] for an embedding.
    int64_t wshape[2] = {s->kind == SITE_EMBEDDING ? s->d_in : s->d_out,
                         s->kind == SITE_EMBEDDING ? s->d_out : s->d_in};
    act_name(name, "input.delta_masks", c->dashed);
    spd_spec_add(spec, name, SPD_REAL_DTYPE, 2, (int64_t[]){B, S}, SPD_ROLE_ACT, SPD_INIT_ONES, 0);
    act_name(name, "act.delta", c->dashed);
    spd_spec_add(spec, name, SPD_REAL_DTYPE, 2, wshape, SPD_ROLE_ACT, SPD_INIT_ZERO, 0);
    act_name(name, "grad.delta", c->dashed);
    spd_spec_add(spec, name, SPD_REAL_DTYPE, 2, wshape, SPD_ROLE_ACT, SPD_INIT_ZERO, 0);
}

static real *data_of(const spd_spec *spec, const char *prefix, const char *dashed) {
    return (real *)spd_spec_getf(spec, "%s.%s", prefix, dashed)->data;
}

static void bind_module(const spd_spec *spec, component_module *c, bool use_delta) {
    spd_tensor *V = spd_spec_getf(spec, "_components.%s.V", c->dashed);
    spd_tensor *U = spd_spec_getf(spec, "_components.%s.U", c->dashed);
    c->V = V->data;
    c->U = U->data;
    c->dV = spd_spec_grad(spec, V);
    c->dU = spd_spec_grad(spec, U);
    c->a = data_of(spec, "act.acts", c->dashed);
    c->scratch = data_of(spec, "act.scratch", c->dashed);
    c->mask = data_of(spec, "input.masks", c->dashed);
    if (use_delta) {
        c->delta_mask = data_of(spec, "input.delta_masks", c->dashed);
        c->delta = data_of(spec, "act.delta", c->dashed);
        c->ddelta = data_of(spec, "grad.delta", c->dashed);
    }
}

int RFN(component_model_build)(component_model *cm, const llama_config *cfg, const spd_module_pattern *patterns,
                               int n_patterns, const component_model_options *opt) {
    memset(cm, 0, sizeof *cm);
    spd_spec_init(&cm->spec);
    cm->spec.on_device = SPD_REAL_ON_DEVICE;
    cm->use_delta = opt->use_delta;
    llama_model *m = &cm->target;
    RFN(llama_declare)(m, &cm->spec, cfg, opt->B, opt->S, opt->untied_lm_head);

    const char **paths = spd_malloc((size_t)m->n_sites * sizeof *paths);
    for (int i = 0; i < m->n_sites; i++) paths[i] = m->sites[i].path;
    spd_module_choice *chosen = NULL;
    int n_chosen = 0;
    int rc = spd_select_modules(paths, m->n_sites, patterns, n_patterns, &chosen, &n_chosen);
    free(paths);
    if (rc) {
        RFN(component_model_free)(cm);
        return -1;
    }
    cm->n_modules = n_chosen;
    cm->modules = spd_calloc((size_t)(n_chosen ? n_chosen : 1), sizeof *cm->modules);
    for (int i = 0; i < n_chosen; i++) {
        component_module *c = &cm->modules[i];
        c->site = find_site(m, chosen[i].path);
        c->C = chosen[i].C;
        c->replaced = true;
        spd_dashed_name(c->dashed, sizeof c->dashed, chosen[i].path);
        c->site->comp = c;
        declare_module(&cm->spec, c, m->N, opt->use_delta, opt->B, opt->S);
    }
    spd_module_choices_free(chosen, n_chosen);

    spd_spec_alloc(&cm->spec);
    spd_spec_init_values(&cm->spec, SPD_ROLE_ACT, 0);  // masks and delta masks start at one
    RFN(llama_bind)(m, &cm->spec);
    for (int i = 0; i < cm->n_modules; i++) bind_module(&cm->spec, &cm->modules[i], opt->use_delta);
    return 0;
}

void RFN(component_model_disable_delta)(component_model *cm, int module) {
    SPD_ASSERT(module >= 0 && module < cm->n_modules);
    cm->modules[module].delta_mask = NULL;
}

void RFN(component_model_forward)(component_model *cm) {
    for (int i = 0; i < cm->n_modules; i++) {
        component_module *c = &cm->modules[i];
        if (c->delta_mask) RFN(site_delta_forward)(c);
    }
    RFN(llama_forward)(&cm->target);
}

void RFN(component_model_backward)(component_model *cm) {
    RFN(llama_backward)(&cm->target);
    // The delta is computed once per step, so its gradient is chained into V and U once.
    for (int i = 0; i < cm->n_modules; i++) {
        component_module *c = &cm->modules[i];
        if (c->delta_mask) RFN(site_delta_backward)(c);
    }
}

void RFN(component_model_free)(component_model *cm) {
    RFN(llama_free)(&cm->target);
    free(cm->modules);
    spd_spec_free(&cm->spec);
    memset(cm, 0, sizeof *cm);
}
