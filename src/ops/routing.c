#include "core/real.h"
#include "ops/routing.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/philox.h"

// Precision-free: this file is compiled once per precision, so the routers
// are defined in the float32 object only.

void RFN(routed_select_forward)(real *y, const real *y_comp, const real *y_target, const uint8_t *routed, long N,
                                int d) {
    for (long n = 0; n < N; n++) {
        const real *src = (!routed || routed[n]) ? y_comp : y_target;
        if (src != y) memmove(y + n * d, src + n * d, (size_t)d * sizeof(real));
    }
}

void RFN(routed_select_backward)(real *dy_comp, real *dy_target, const real *dy, const uint8_t *routed, long N,
                                 int d) {
    for (long i = 0; i < N * (long)d; i++) {
        real g = dy[i];
        int r = !routed || routed[i / d];
        if (dy_comp) dy_comp[i] = r ? g : 0;
        if (dy_target) dy_target[i] = r ? 0 : g;
    }
}

void RFN(route_sample)(const spd_router *router, uint8_t *routed, int L, long N, uint64_t seed, uint64_t stream) {
    spd_route_sample(router, routed, L, N, seed, stream);
}
