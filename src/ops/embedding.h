// Token embedding and the LM head tied to it (LlamaSimple: lm_head.weight is wte.weight).
#ifndef SPD_OPS_EMBEDDING_H
#define SPD_OPS_EMBEDDING_H

#include <stdint.h>

#include "core/real.h"

// tokens [N], wte [vocab, d] -> out [N, d] = wte[tokens]. wte is frozen: no backward.
void RFN(embedding_forward)(real *out, const int32_t *tokens, const real *wte, int N, int d);
// dwte [vocab, d] += scatter of dout [N, d] by tokens (positions in order).
void RFN(embedding_backward)(real *dwte, const int32_t *tokens, const real *dout, int N, int d);

#endif
