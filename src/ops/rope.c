#include "core/real.h"
#include "ops/rope.h"

#include <math.h>

#include "core/error.h"

// cos_t, sin_t [n_ctx, hd]. Pair j (features i, i+h in the rotate-half layout;
// 2j, 2j+1 with adjacent pairs) turns by pos / base^(j/h), h = hd/2; the angle
// is computed in float64 and its cosine and sine rounded to real.
void RFN(rope_tables)(real *cos_t, real *sin_t, int n_ctx, int hd, double base, bool adjacent_pairs) {
    SPD_ASSERT(hd % 2 == 0);
    int h = hd / 2;
    for (long p = 0; p < n_ctx; p++) {
        for (int i = 0; i < hd; i++) {
            int j = adjacent_pairs ? i / 2 : i % h;
            double angle = (double)p / pow(base, j / (double)h);
            cos_t[p * hd + i] = (real)cos(angle);
            sin_t[p * hd + i] = (real)sin(angle);
        }
    }
}

// The two features of pair j of one head: rotate-half pairs (j, j+h), adjacent (2j, 2j+1).
static void pair_index(int j, int h, bool adjacent_pairs, int *i0, int *i1) {
    *i0 = adjacent_pairs ? 2 * j : j;
    *i1 = adjacent_pairs ? 2 * j + 1 : j + h;
}

// x [B, S, n_heads*hd] in place, position of row s = min(s, n_ctx - 1). Forward:
// (x0, x1) -> (x0 cos0 - x1 sin0, x1 cos1 + x0 sin1); each output reads the table
// entry of its own feature. Transpose (the backward):
// (g0, g1) -> (g0 cos0 + g1 sin1, g1 cos1 - g0 sin0).
static void rotate(real *x, const real *cos_t, const real *sin_t, int B, int S, int n_heads, int hd, int n_ctx,
                   bool adjacent_pairs, bool transpose) {
    SPD_ASSERT(hd % 2 == 0 && n_ctx >= 1);
    int h = hd / 2;
    for (long b = 0; b < B; b++) {
        for (int s = 0; s < S; s++) {
            int pos = s < n_ctx ? s : n_ctx - 1;
            const real *c = cos_t + (long)pos * hd, *sn = sin_t + (long)pos * hd;
            for (int head = 0; head < n_heads; head++) {
                real *xh = x + ((b * S + s) * n_heads + head) * hd;
                for (int j = 0; j < h; j++) {
                    int i0, i1;
                    pair_index(j, h, adjacent_pairs, &i0, &i1);
                    real x0 = xh[i0], x1 = xh[i1];
                    if (transpose) {
                        xh[i0] = x0 * c[i0] + x1 * sn[i1];
                        xh[i1] = x1 * c[i1] - x0 * sn[i0];
                    } else {
                        xh[i0] = x0 * c[i0] - x1 * sn[i0];
                        xh[i1] = x1 * c[i1] + x0 * sn[i1];
                    }
                }
            }
        }
    }
}

void RFN(rope_forward)(real *x, const real *cos_t, const real *sin_t, int B, int S, int n_heads, int hd, int n_ctx,
                       bool adjacent_pairs) {
    rotate(x, cos_t, sin_t, B, S, n_heads, hd, n_ctx, adjacent_pairs, false);
}

void RFN(rope_backward)(real *dx, const real *cos_t, const real *sin_t, int B, int S, int n_heads, int hd,
                        int n_ctx, bool adjacent_pairs) {
    rotate(dx, cos_t, sin_t, B, S, n_heads, hd, n_ctx, adjacent_pairs, true);
}
