#include "core/real.h"
#include "ops/swiglu.h"

#include <math.h>

// The activation is evaluated in float64 and rounded once, in both precisions.
static double sigmoid(double z) { return 1.0 / (1.0 + exp(-z)); }

// gate, up [n] -> out [n] = silu(gate) * up
void RFN(swiglu_forward)(real *out, const real *gate, const real *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double z = gate[i];
        out[i] = (real)(z * sigmoid(z) * (double)up[i]);
    }
}

// dout [n] -> dgate = dout * up * silu'(gate), dup = dout * silu(gate) (written);
// silu'(z) = s + z s (1 - s), s = sigmoid(z).
void RFN(swiglu_backward)(real *dgate, real *dup, const real *dout, const real *gate, const real *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double z = gate[i], s = sigmoid(z), g = dout[i];
        dgate[i] = (real)(g * (double)up[i] * (s + z * s * (1.0 - s)));
        dup[i] = (real)(g * z * s);
    }
}
