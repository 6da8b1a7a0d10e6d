// SwiGLU gate: out = silu(gate) * up, silu(z) = z * sigmoid(z).
#ifndef SPD_OPS_SWIGLU_H
#define SPD_OPS_SWIGLU_H

#include <stdint.h>

#include "core/real.h"

// gate, up, out [n] (elementwise).
void RFN(swiglu_forward)(real *out, const real *gate, const real *up, int64_t n);
// dout [n] -> dgate, dup [n] (written).
void RFN(swiglu_backward)(real *dgate, real *dup, const real *dout, const real *gate, const real *up, int64_t n);

#endif
