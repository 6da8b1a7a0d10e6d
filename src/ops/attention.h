// Causal grouped-query softmax attention, scale 1/sqrt(hd). Query head h reads
// key/value head h / (n_head / n_kv) (torch repeat_interleave). Heads are
// head-major in the feature dim: feature h*hd + i.
#ifndef SPD_OPS_ATTENTION_H
#define SPD_OPS_ATTENTION_H

#include "core/real.h"

// q [B, S, nh*hd], k, v [B, S, nkv*hd] -> out [B, S, nh*hd],
// att [B, nh, S, S] (softmax probabilities, saved; zero above the diagonal). The GPU's
// memory-lean path (attention_tc_lean, cuda/attention_tc.h) saves only each row's
// log2-sum-exp2 there, in the first B*nh*S floats, and its backward recomputes P.
void RFN(attention_forward)(real *out, real *att, const real *q, const real *k, const real *v, int B, int S,
                            int nh, int nkv, int hd);
// dout [B, S, nh*hd] -> dq [B, S, nh*hd], dk, dv [B, S, nkv*hd] (written); out and att are
// the forward's (the lean path's row sums D = dout . out read out; the others, P from att).
void RFN(attention_backward)(real *dq, real *dk, real *dv, const real *dout, const real *q, const real *k,
                             const real *v, const real *out, const real *att, int B, int S, int nh, int nkv, int hd);

#endif
