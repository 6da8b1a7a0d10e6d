// A frozen nn.Linear without bias: the target's own weight for modules that are
// not decomposed. W is stored as torch does, [d_out, d_in].
#ifndef SPD_OPS_LINEAR_H
#define SPD_OPS_LINEAR_H

#include <stdbool.h>

#include "core/real.h"

// x [N, d_in], W [d_out, d_in], bias [d_out] or NULL -> out [N, d_out] = x @ W^T + bias.
void RFN(linear_forward)(real *out, const real *x, const real *W, const real *bias, int N, int d_in, int d_out);
// dout [N, d_out] -> dx [N, d_in] (written; added onto dx with add_dx, for an input that
// feeds several sites). W is frozen: no weight gradient.
void RFN(linear_backward)(real *dx, const real *dout, const real *W, int N, int d_in, int d_out, bool add_dx);

#endif
