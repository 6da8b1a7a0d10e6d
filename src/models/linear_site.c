#include "core/real.h"

#include "models/linear_site.h"

#include <string.h>

#include "core/error.h"
#include "ops/add.h"
#include "ops/components.h"
#include "ops/embedding.h"
#include "ops/fill.h"
#include "ops/linear.h"
#include "ops/transfer.h"
#include "ops/routing.h"
#if SPD_REAL_ON_DEVICE
#include "cuda/backend.h"
#endif

// Where the forward saves a = x @ V. Only the mask gradient reads it when a mask is
// given; the GPU's fused mode then skips that N x C write for modules without one
// (ops/components.h).
static real *saved_acts(component_module *c) {
#if SPD_REAL_ON_DEVICE
    if (c->mask && !c->dmask && spd_cuda_mode_get() == SPD_CUDA_FUSED) return NULL;
#endif
    return c->a;
}

static void components_out(linear_site *s, component_module *c, real *y, const real *x, const int32_t *tokens,
                           int N) {
    if (s->kind == SITE_EMBEDDING)
        RFN(embedding_components_forward)(y, c->a, tokens, c->V, c->U, c->mask, c->delta_mask ? c->delta : NULL,
                                          c->delta_mask, N, s->d_in, c->C, s->d_out, c->scratch);
    else
        RFN(components_forward)(y, saved_acts(c), x, c->V, c->U, c->mask, c->delta_mask ? c->delta : NULL,
                                c->delta_mask, N, s->d_in, c->C, s->d_out, c->scratch);
}

static void target_out(linear_site *s, real *y, const real *x, const int32_t *tokens, int N) {
    if (s->kind == SITE_EMBEDDING)
        RFN(embedding_forward)(y, tokens, s->W, N, s->d_out);
    else if (s->kind == SITE_IDENTITY)  // torch's Identity returns its input: exact, no product with I
        RFN(copy)(y, x, (int64_t)N * s->d_in);
    else
        RFN(linear_forward)(y, x, s->W, NULL, N, s->d_in, s->d_out);
}

// dx [N, d_in] = dy through the target weight (linear or identity sites); with add, dx +=.
static void target_dx(linear_site *s, real *dx, const real *dy, int N, bool add) {
    if (s->kind == SITE_IDENTITY && add)
        RFN(add_inplace)(dx, dy, (int64_t)N * s->d_in);
    else if (s->kind == SITE_IDENTITY)
        RFN(copy)(dx, dy, (int64_t)N * s->d_in);
    else
        RFN(linear_backward)(dx, dy, s->W, N, s->d_in, s->d_out, add);
}

void RFN(site_init)(linear_site *s, const char *path, site_kind kind, int d_in, int d_out) {
    memset(s, 0, sizeof *s);
    SPD_ASSERT(strlen(path) < SPD_NAME_MAX);
    strcpy(s->path, path);
    s->kind = kind;
    s->d_in = d_in;
    s->d_out = d_out;
}

void RFN(site_delta_forward)(component_module *c) {
    const linear_site *s = c->site;
    if (s->kind == SITE_EMBEDDING)
        RFN(embedding_weight_delta_forward)(c->delta, s->W, c->V, c->U, s->d_in, c->C, s->d_out);
    else
        RFN(weight_delta_forward)(c->delta, s->W, c->V, c->U, s->d_in, c->C, s->d_out);
    RFN(fill_zero)(c->ddelta, (int64_t)s->d_in * s->d_out);
}

void RFN(site_delta_backward)(component_module *c) {
    const linear_site *s = c->site;
    if (s->kind == SITE_EMBEDDING)
        RFN(embedding_weight_delta_backward)(c->dV, c->dU, c->ddelta, c->V, c->U, s->d_in, c->C, s->d_out);
    else
        RFN(weight_delta_backward)(c->dV, c->dU, c->ddelta, c->V, c->U, s->d_in, c->C, s->d_out);
}

void RFN(site_forward)(linear_site *s, real *y, const real *x, const int32_t *tokens, int N) {
    if (s->pre) {  // SPD's pre-hook: this module's input is the identity's output
        RFN(site_forward)(s->pre, s->pre_out, x, NULL, N);
        x = s->pre_out;
    }
    component_module *c = s->comp;
    if (c && c->x_cache && s->kind != SITE_EMBEDDING) RFN(copy)(c->x_cache, x, (int64_t)N * s->d_in);
    if (c && !c->replaced) c = NULL;
    if (!c) {
        target_out(s, y, x, tokens, N);
        return;
    }
    components_out(s, c, y, x, tokens, N);
    if (c->routing) {  // both branches, then the select: unrouted positions take the target's output
        target_out(s, c->route_y, x, tokens, N);
        RFN(routed_select_forward)(y, y, c->route_y, c->routing, N, s->d_out);
    }
}

static void own_backward(linear_site *s, real *dx, bool add_dx, const real *dy, const real *x,
                         const int32_t *tokens, int N);

static void backward(linear_site *s, real *dx, bool add_dx, const real *dy, const real *x, const int32_t *tokens,
                     int N) {
    if (!s->pre) {
        own_backward(s, dx, add_dx, dy, x, tokens, N);
        return;
    }
    // Through this site onto the identity's output, then through the identity
    // (whose components need their gradients even when the caller wants no dx).
    own_backward(s, s->pre_dout, false, dy, s->pre_out, tokens, N);
    backward(s->pre, dx, add_dx, s->pre_dout, x, NULL, N);
}

void RFN(site_backward)(linear_site *s, real *dx, const real *dy, const real *x, const int32_t *tokens, int N) {
    backward(s, dx, false, dy, x, tokens, N);
}

void RFN(site_backward_add)(linear_site *s, real *dx, const real *dy, const real *x, int N) {
    SPD_ASSERT(s->kind != SITE_EMBEDDING);
    backward(s, dx, true, dy, x, NULL, N);
}

static void own_backward(linear_site *s, real *dx, bool add_dx, const real *dy, const real *x,
                         const int32_t *tokens, int N) {
    component_module *c = s->comp && s->comp->replaced ? s->comp : NULL;
    const real *dx_extra = s->comp ? s->comp->dx_extra : NULL;
    const real *delta = c && c->delta_mask ? c->delta : NULL;
    const real *dy_comp = dy;
    const bool pg = c && !c->no_param_grads;
    if (c && c->routing) {
        RFN(routed_select_backward)(c->route_dy, dx && s->kind != SITE_EMBEDDING ? c->route_y : NULL, dy, c->routing,
                                    N, s->d_out);
        dy_comp = c->route_dy;  // route_y (the forward's target branch, no longer needed) holds dy_target
    }
    if (s->kind == SITE_EMBEDDING) {
        if (!c) return;  // frozen embedding: nothing upstream of the tokens
        RFN(embedding_components_backward)(pg ? c->dV : NULL, pg ? c->dU : NULL, delta && pg ? c->ddelta : NULL, c->dmask, c->ddelta_mask, dy_comp,
                                           tokens, c->a, c->V, c->U, c->mask, delta, c->delta_mask, N, s->d_in, c->C,
                                           s->d_out, c->scratch);
        return;
    }
    if (!c) {
        if (dx) target_dx(s, dx, dy, N, add_dx);
    } else {
        RFN(components_backward)(dx, pg ? c->dV : NULL, pg ? c->dU : NULL, delta && pg ? c->ddelta : NULL, c->dmask, c->ddelta_mask, dy_comp, x,
                                 c->a, c->V, c->U, c->mask, delta, c->delta_mask, N, s->d_in, c->C, s->d_out,
                                 c->scratch, add_dx);
        if (c->routing && dx) {  // the target branch's input gradient at unrouted positions
            target_dx(s, c->route_dx, c->route_y, N, false);
            RFN(add_inplace)(dx, c->route_dx, (int64_t)N * s->d_in);
        }
    }
    if (dx && dx_extra) RFN(add_inplace)(dx, dx_extra, (int64_t)N * s->d_in);
}

// Whether sites s[0..n) run as one group: linear, replaced by their components with a mask,
// none of the extras that only the one-site path handles, and one shape.
static bool groupable(linear_site **s, int n) {
    if (n < 1 || n > COMPONENTS_GROUP_MAX) return false;
    for (int i = 0; i < n; i++) {
        const component_module *c = s[i]->comp;
        if (s[i]->kind != SITE_LINEAR || s[i]->pre || !c || !c->replaced || !c->mask || c->routing || c->x_cache ||
            c->dx_extra)
            return false;
        if (s[i]->d_in != s[0]->d_in || s[i]->d_out != s[0]->d_out || c->C != s[0]->comp->C) return false;
    }
    return true;
}

// The arguments that components_forward / components_backward take for site s's module.
static components_member member_of(linear_site *s) {
    component_module *c = s->comp;
    const bool pg = !c->no_param_grads, delta = c->delta_mask != NULL;
    return (components_member){.V = c->V, .U = c->U, .mask = c->mask, .delta = delta ? c->delta : NULL,
                               .delta_mask = c->delta_mask, .a = c->a, .scratch = c->scratch,
                               .dV = pg ? c->dV : NULL, .dU = pg ? c->dU : NULL,
                               .ddelta = delta && pg ? c->ddelta : NULL, .dmask = c->dmask,
                               .ddelta_mask = c->ddelta_mask};
}

void RFN(site_forward_group)(linear_site **s, real **y, const real *x, int n, int N) {
    if (!groupable(s, n)) {
        for (int i = 0; i < n; i++) RFN(site_forward)(s[i], y[i], x, NULL, N);
        return;
    }
    components_member m[COMPONENTS_GROUP_MAX];
    for (int i = 0; i < n; i++) {
        m[i] = member_of(s[i]);
        m[i].a = saved_acts(s[i]->comp);
        m[i].out = y[i];
    }
    RFN(components_forward_group)(n, m, x, N, s[0]->d_in, s[0]->comp->C, s[0]->d_out);
}

void RFN(site_backward_group)(linear_site **s, real *dx, bool add, real **dy, const real *x, int n, int N) {
    if (!groupable(s, n)) {
        for (int i = 0; i < n; i++) backward(s[i], dx, add || i > 0, dy[i], x, NULL, N);
        return;
    }
    components_member m[COMPONENTS_GROUP_MAX];
    for (int i = 0; i < n; i++) {
        m[i] = member_of(s[i]);
        m[i].dout = dy[i];
    }
    RFN(components_backward_group)(n, m, dx, add, x, N, s[0]->d_in, s[0]->comp->C, s[0]->d_out);
}
