#include "core/real.h"
#include "ops/embedding.h"

#include <string.h>

// tokens [N], wte [vocab, d] -> out [N, d] = wte[tokens]. Token ids are
// validated against vocab where they are read from user data.
void RFN(embedding_forward)(real *out, const int32_t *tokens, const real *wte, int N, int d) {
    for (long n = 0; n < N; n++) memcpy(out + n * d, wte + (long)tokens[n] * d, (size_t)d * sizeof(real));
}

void RFN(embedding_backward)(real *dwte, const int32_t *tokens, const real *dout, int N, int d) {
    for (long n = 0; n < N; n++)
        for (long j = 0; j < d; j++) dwte[(long)tokens[n] * d + j] += dout[n * d + j];
}
