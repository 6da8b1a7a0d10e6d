// A linear site is one decomposable matrix of a target model (an nn.Linear, an
// nn.Embedding, or an identity inserted before a linear, SPD_SPEC.md 1.3). The
// target calls site_forward/site_backward at each site; the site runs the
// target weight, or, when a component module is attached, SPD's components in
// its place (SPD_SPEC.md 1.5, cd23cf80's MaskedModule dispatch, which HEAD's
// hooks compute identically).
//
// Identity insertion (models/identity_insertion.h): a site with `pre` set runs
// that SITE_IDENTITY site on its input first and takes the identity's output
// (the components' output when decomposed) as its own input, as SPD's forward
// pre-hook does; the backward chains back through it. The model never sees it.
#ifndef SPD_LINEAR_SITE_H
#define SPD_LINEAR_SITE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/real.h"
#include "core/spec.h"

// SITE_IDENTITY: SPD's inserted Identity(d), a linear map d -> d whose target
// weight W is I_d (used by the weight delta; the target forward is a copy).
typedef enum { SITE_LINEAR, SITE_EMBEDDING, SITE_IDENTITY } site_kind;

typedef struct component_module component_module;
typedef struct linear_site linear_site;

struct linear_site {
    char path[SPD_NAME_MAX];  // "h.0.attn.q_proj", "linear1.pre_identity"
    site_kind kind;
    int d_in, d_out;  // embedding: d_in = vocab, d_out = embedding dim
    const real *W;    // linear [d_out, d_in]; embedding [vocab, d]; identity I_d; frozen
    component_module *comp;  // NULL: the target weight runs
    // Inserted identity run on the input first (NULL: none); its output and the
    // gradient there, [N, d_in] each.
    linear_site *pre;
    real *pre_out, *pre_dout;
};

// Per-module component state. V, U and their gradients live in the spec
// table's TRAINED buffers; the rest is activation memory for N positions.
// The fields under "this forward" are the mask info of one masked forward and
// its backward (docs/training.md); the training step sets them per forward.
struct component_module {
    linear_site *site;
    char dashed[SPD_NAME_MAX];  // "h-0-attn-q_proj"
    int C;
    // This forward:
    bool replaced;     // false: the site runs its target weight (layerwise terms replace one module)
    real *dmask;       // [N, C] or NULL: the backward writes d loss / d mask here (the path to the CI)
    real *x_cache;     // [N, d_in] or NULL: the forward copies the site's input here (clean forward)
    real *V, *U, *dV, *dU;  // [d_in, C], [C, d_out]
    real *a;                // [N, C] component acts, saved by forward
    real *scratch;          // [N, C]
    real *mask;             // [N, C] input.masks.<dashed>
    real *delta_mask;       // [N] input.delta_masks.<dashed>, NULL without the delta component
    real *delta, *ddelta;   // weight delta and its gradient ([d_out, d_in]; embedding [vocab, d])
    // This forward (continued):
    const uint8_t *routing;  // [N] or NULL (all routed): unrouted positions output the target weight's
                             // output on the actual input (SPD_SPEC.md 1.7; subset terms).
    bool no_param_grads;     // the backward skips dV, dU and ddelta (PGD inner steps)
    real *ddelta_mask;       // [N] or NULL: the backward writes d loss / d delta_mask here (PGD sources)
    const real *dx_extra;    // [N, d_in] or NULL: added to the backward's dx (linear; hidden-acts loss)
    real *route_y, *route_dy, *route_dx;  // routing work: [N, d_out], [N, d_out], [N, d_in] (owner allocates)
};

// A site of the model's own (no weight, no components, no pre yet): path (shorter
// than SPD_NAME_MAX), kind and sizes; the model points W at its tensor after bind.
void RFN(site_init)(linear_site *s, const char *path, site_kind kind, int d_in, int d_out);

// c->delta = W - W_comp in the target weight's own layout: linear W - (V U)^T
// [d_out, d_in]; embedding W - V U [vocab, d]. c->ddelta is zeroed for the step.
void RFN(site_delta_forward)(component_module *c);
// Chains c->ddelta into c->dV and c->dU (the delta depends on V and U): once per step.
void RFN(site_delta_backward)(component_module *c);

// y [N, d_out] from x [N, d_in] (linear) or tokens [N] (embedding).
void RFN(site_forward)(linear_site *s, real *y, const real *x, const int32_t *tokens, int N);
// dy [N, d_out] -> dx [N, d_in] (written; linear only, NULL to skip), plus the
// component gradients (accumulated) when a component module is attached.
void RFN(site_backward)(linear_site *s, real *dx, const real *dy, const real *x, const int32_t *tokens, int N);
// The same for a linear site whose input feeds other sites too: dx += (the components'
// backward adds in place, with no separate add pass).
void RFN(site_backward_add)(linear_site *s, real *dx, const real *dy, const real *x, int N);

// Sites s[0..n) (n <= COMPONENTS_GROUP_MAX) of one shape that read the same x: y[i] =
// site i's output. Where each runs its components with a mask and nothing else (no identity
// before it, no routing, no input cache or extra dx), their components run as a group
// (components_forward_group: shared launches on the GPU); else one site after another.
void RFN(site_forward_group)(linear_site **s, real **y, const real *x, int n, int N);
// Their backward: dx = the sum of the sites' input gradients from dy[i] (written; with add,
// added onto dx), plus each site's component gradients.
void RFN(site_backward_group)(linear_site **s, real *dx, bool add, real **dy, const real *x, int n, int N);

#endif
