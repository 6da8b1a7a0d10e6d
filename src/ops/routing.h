// Routers: which positions of which decomposed modules run their components
// (SPD_SPEC.md 3.4, spd/routing.py), and the routed select that merges the
// component and target outputs (1.6, 1.7).
//
//   router              rule, per position independently
//   all                 every module
//   uniform_k_subset    k ~ Uniform{1..L}; route exactly k of the L modules, chosen
//                       uniformly: L uniforms, ranked along the module axis (SPD's
//                       double argsort), module i routed iff rank_i < k
//   static_probability  each module routed independently with probability p (may be none)
//   layer               one module at every position, the others nowhere (PGD layerwise)
//
// Routing masks are uint8 [L][N] (module-major: routed[i * N + n], 1 = routed).
// Draws are float32 uniforms of Philox stream (seed, stream) (masks.h gives the
// stream numbering, purpose SPD_RNG_ROUTING), laid out as torch draws them:
//   uniform_k_subset:   k of position n from draw n (k = 1 + floor(u L), exact in
//                       integers), module i's noise at n from draw N + i N + n;
//   static_probability: module i at n routed iff draw i N + n < p.
// Rank ties (equal float32 draws) go to the lower module index, so exactly k
// modules are routed (torch's unstable argsort breaks them arbitrarily).
#ifndef SPD_OPS_ROUTING_H
#define SPD_OPS_ROUTING_H

#include <stdint.h>

#include "core/real.h"

typedef enum {
    SPD_ROUTE_ALL,
    SPD_ROUTE_UNIFORM_K_SUBSET,
    SPD_ROUTE_STATIC_PROBABILITY,
    SPD_ROUTE_LAYER,
    SPD_ROUTE_KIND_COUNT
} spd_router_kind;

typedef struct {
    spd_router_kind kind;
    double p;   // static_probability
    int layer;  // layer
} spd_router;

// Config `routing.type`: "uniform_k_subset" or "static_probability" (the
// configurable ones); else an error (-1). The config layer's spd_router_type
// (spd/config.h) maps by name through spd_router_type_name.
int spd_router_kind_parse(const char *name, spd_router_kind *out);
const char *spd_router_kind_name(spd_router_kind t);

// routed [L][N] by the router; seed and stream are unused by all and layer.
void spd_route_sample(const spd_router *router, uint8_t *routed, int L, long N, uint64_t seed, uint64_t stream);
void spd_route_all(uint8_t *routed, int L, long N);
void spd_route_layer(uint8_t *routed, int L, long N, int layer);
void spd_route_uniform_k_subset(uint8_t *routed, int L, long N, uint64_t seed, uint64_t stream);
void spd_route_static_probability(uint8_t *routed, int L, long N, double p, uint64_t seed, uint64_t stream);
// The same from given draws (e.g. torch's): k [N] in 1..L, noise [L][N]; u [L][N].
void spd_route_uniform_k_subset_from_draws(uint8_t *routed, int L, long N, const int64_t *k, const float *noise);
void spd_route_static_probability_from_draws(uint8_t *routed, int L, long N, double p, const float *u);

// y_comp, y_target [N, d], routed [N] (one module's row; NULL: all routed)
// -> y [N, d] = routed[n] ? y_comp[n] : y_target[n]. y may alias either input.
void RFN(routed_select_forward)(real *y, const real *y_comp, const real *y_target, const uint8_t *routed, long N,
                                int d);
// dy [N, d] -> dy_comp = routed ? dy : 0, dy_target = routed ? 0 : dy (both
// written; either NULL to skip; either may alias dy).
void RFN(routed_select_backward)(real *dy_comp, real *dy_target, const real *dy, const uint8_t *routed, long N,
                                 int d);

// spd_route_sample with routed [L][N] in this backend's memory (the CUDA twin
// draws on the GPU, the same masks).
void RFN(route_sample)(const spd_router *router, uint8_t *routed, int L, long N, uint64_t seed, uint64_t stream);

#endif
