#include "core/real.h"
#include "ops/linear.h"

#include "ops/matmul.h"

// x [N, d_in], W [d_out, d_in], bias [d_out] or NULL -> out [N, d_out] = x @ W^T + bias
void RFN(linear_forward)(real *out, const real *x, const real *W, const real *bias, int N, int d_in, int d_out) {
    RFN(matmul)(out, x, W, N, d_out, d_in, false, true, 1, 0);
    if (!bias) return;
    for (long n = 0; n < N; n++)
        for (int o = 0; o < d_out; o++) out[n * d_out + o] += bias[o];
}

// dout [N, d_out], W [d_out, d_in] -> dx [N, d_in] = dout @ W (written; added onto dx with add_dx)
void RFN(linear_backward)(real *dx, const real *dout, const real *W, int N, int d_in, int d_out, bool add_dx) {
    RFN(matmul)(dx, dout, W, N, d_in, d_out, false, false, 1, add_dx ? 1 : 0);
}
