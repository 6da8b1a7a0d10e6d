#include "core/real.h"

#include "models/linear_site.h"
#include "ops/components.h"
#include "ops/embedding.h"
#include "ops/linear.h"
#include "ops/transfer.h"

void RFN(site_forward)(linear_site *s, real *y, const real *x, const int32_t *tokens, int N) {
    component_module *c = s->comp;
    if (c && c->x_cache && s->kind == SITE_LINEAR) RFN(copy)(c->x_cache, x, (int64_t)N * s->d_in);
    if (c && !c->replaced) c = NULL;
    if (s->kind == SITE_EMBEDDING) {
        if (!c) {
            RFN(embedding_forward)(y, tokens, s->W, N, s->d_out);
            return;
        }
        RFN(embedding_components_forward)(y, c->a, tokens, c->V, c->U, c->mask, c->delta_mask ? c->delta : NULL,
                                          c->delta_mask, N, s->d_in, c->C, s->d_out, c->scratch);
        return;
    }
    if (!c) {
        RFN(linear_forward)(y, x, s->W, NULL, N, s->d_in, s->d_out);
        return;
    }
    RFN(components_forward)(y, c->a, x, c->V, c->U, c->mask, c->delta_mask ? c->delta : NULL, c->delta_mask, N,
                            s->d_in, c->C, s->d_out, c->scratch);
}

void RFN(site_backward)(linear_site *s, real *dx, const real *dy, const real *x, const int32_t *tokens, int N) {
    component_module *c = s->comp && s->comp->replaced ? s->comp : NULL;
    const real *delta = c && c->delta_mask ? c->delta : NULL;
    if (s->kind == SITE_EMBEDDING) {
        if (!c) return;  // frozen embedding: nothing upstream of the tokens
        RFN(embedding_components_backward)(c->dV, c->dU, delta ? c->ddelta : NULL, c->dmask, NULL, dy, tokens, c->a,
                                           c->V, c->U, c->mask, delta, c->delta_mask, N, s->d_in, c->C, s->d_out,
                                           c->scratch);
        return;
    }
    if (!c) {
        if (dx) RFN(linear_backward)(dx, dy, s->W, N, s->d_in, s->d_out);
        return;
    }
    RFN(components_backward)(dx, c->dV, c->dU, delta ? c->ddelta : NULL, c->dmask, NULL, dy, x, c->a, c->V, c->U,
                             c->mask, delta, c->delta_mask, N, s->d_in, c->C, s->d_out, c->scratch);
}
