#include "core/real.h"

#include "ops/add.h"

void RFN(add)(real *out, const real *a, const real *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void RFN(add_inplace)(real *acc, const real *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) acc[i] += x[i];
}
