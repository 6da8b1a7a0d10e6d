// Routers: which positions of which modules use components (uint8 masks).
// Compiled once (precision-free); the precision-generic ops are in the file of the same concept.
#include "ops/routing.h"
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "core/philox.h"

static const char *const router_names[SPD_ROUTE_KIND_COUNT] = {"all", "uniform_k_subset", "static_probability",
                                                                 "layer"};

int spd_router_kind_parse(const char *name, spd_router_kind *out) {
    if (strcmp(name, "uniform_k_subset") == 0) {
        *out = SPD_ROUTE_UNIFORM_K_SUBSET;
        return 0;
    }
    if (strcmp(name, "static_probability") == 0) {
        *out = SPD_ROUTE_STATIC_PROBABILITY;
        return 0;
    }
    return spd_set_error("routing.type: expected one of uniform_k_subset, static_probability, found \"%s\"", name);
}

const char *spd_router_kind_name(spd_router_kind t) {
    SPD_ASSERT(t >= 0 && t < SPD_ROUTE_KIND_COUNT);
    return router_names[t];
}

void spd_route_all(uint8_t *routed, int L, long N) { memset(routed, 1, (size_t)L * N); }

void spd_route_layer(uint8_t *routed, int L, long N, int layer) {
    SPD_ASSERT(layer >= 0 && layer < L);
    memset(routed, 0, (size_t)L * N);
    memset(routed + (size_t)layer * N, 1, (size_t)N);
}

// Per position n: rank_i = #{j : noise_j < noise_i, or equal with j < i}, a
// permutation of 0..L-1 (SPD's argsort().argsort() along the module axis).
void spd_route_uniform_k_subset_from_draws(uint8_t *routed, int L, long N, const int64_t *k, const float *noise) {
    for (long n = 0; n < N; n++) {
        SPD_ASSERT(k[n] >= 1 && k[n] <= L);
        for (int i = 0; i < L; i++) {
            float ui = noise[(long)i * N + n];
            int rank = 0;
            for (int j = 0; j < L; j++) {
                float uj = noise[(long)j * N + n];
                rank += uj < ui || (uj == ui && j < i);
            }
            routed[(long)i * N + n] = rank < k[n];
        }
    }
}

void spd_route_uniform_k_subset(uint8_t *routed, int L, long N, uint64_t seed, uint64_t stream) {
    SPD_ASSERT(L >= 1);
    int64_t *k = spd_malloc((size_t)(N > 0 ? N : 1) * sizeof(int64_t));
    float *noise = spd_malloc((size_t)(N > 0 ? (long)L * N : 1) * sizeof(float));
    spd_philox_fill_uniform_f32(seed, stream, 0, (size_t)N, noise);
    // u = j 2^-24 exactly, so floor(u L) = (j L) >> 24 in integers: k is uniform on
    // 1..L up to a bias of L / 2^24.
    for (long n = 0; n < N; n++) k[n] = 1 + (int64_t)(((uint64_t)(noise[n] * 16777216.0f) * (uint64_t)L) >> 24);
    spd_philox_fill_uniform_f32(seed, stream, (uint64_t)N, (size_t)L * N, noise);
    spd_route_uniform_k_subset_from_draws(routed, L, N, k, noise);
    free(noise);
    free(k);
}

// torch compares float32 draws with p as a float32 scalar.
void spd_route_static_probability_from_draws(uint8_t *routed, int L, long N, double p, const float *u) {
    float pf = (float)p;
    for (long i = 0; i < (long)L * N; i++) routed[i] = u[i] < pf;
}

void spd_route_static_probability(uint8_t *routed, int L, long N, double p, uint64_t seed, uint64_t stream) {
    float pf = (float)p;
    for (long base = 0; base < (long)L * N; base += 4) {
        uint32_t w[4];
        spd_philox_block(seed, stream, (uint64_t)base / 4, w);
        for (long j = 0; j < 4 && base + j < (long)L * N; j++) routed[base + j] = spd_u32_to_uniform_f32(w[j]) < pf;
    }
}

void spd_route_sample(const spd_router *router, uint8_t *routed, int L, long N, uint64_t seed, uint64_t stream) {
    switch (router->kind) {
    case SPD_ROUTE_ALL: spd_route_all(routed, L, N); break;
    case SPD_ROUTE_UNIFORM_K_SUBSET: spd_route_uniform_k_subset(routed, L, N, seed, stream); break;
    case SPD_ROUTE_STATIC_PROBABILITY: spd_route_static_probability(routed, L, N, router->p, seed, stream); break;
    case SPD_ROUTE_LAYER: spd_route_layer(routed, L, N, router->layer); break;
    default: spd_die("spd_route_sample: bad router type %d", (int)router->kind);
    }
}
