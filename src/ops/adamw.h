// AdamW exactly as torch.optim.AdamW (amsgrad off, maximize off):
//   p *= 1 - lr * wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// One pass over the flat buffer of all trained parameters.
#ifndef SPD_OPS_ADAMW_H
#define SPD_OPS_ADAMW_H

#include <stddef.h>
#include <stdint.h>

#include "core/real.h"

typedef struct {
    double lr, beta1, beta2, eps, weight_decay;
} spd_adamw_config;

// param, grad, m, v [n]; t is the 1-based step count after this update.
void RFN(adamw_step)(real *param, const real *grad, real *m, real *v, size_t n, const spd_adamw_config *cfg,
                     int64_t t);

#endif
