#include "core/real.h"
#include "ops/attention.h"

#include <math.h>
#include <stdlib.h>

#include "core/error.h"

// Plain loops, one (batch, query head, query row) at a time; dot products,
// softmax sums and the accumulations over keys run in float64 in both precisions.
// Row s of head hq in a [B, S, n*hd] tensor starts at ((b*S + s)*n + hq)*hd.

static long row(long b, long s, long head, int S, int n_heads, int hd) { return ((b * S + s) * n_heads + head) * hd; }

// q [B, S, nh*hd], k, v [B, S, nkv*hd] -> out [B, S, nh*hd], att [B, nh, S, S]
void RFN(attention_forward)(real *out, real *att, const real *q, const real *k, const real *v, int B, int S,
                            int nh, int nkv, int hd) {
    SPD_ASSERT(nkv >= 1 && nh % nkv == 0);
    const int rep = nh / nkv;
    const double scale = 1.0 / sqrt((double)hd);
    double *score = spd_malloc((size_t)S * sizeof(double));
    double *acc = spd_malloc((size_t)hd * sizeof(double));
    for (long b = 0; b < B; b++) {
        for (int hq = 0; hq < nh; hq++) {
            const int hk = hq / rep;
            for (int s = 0; s < S; s++) {
                const real *qs = q + row(b, s, hq, S, nh, hd);
                double mx = -INFINITY;
                for (int t = 0; t <= s; t++) {
                    const real *kt = k + row(b, t, hk, S, nkv, hd);
                    double dot = 0;
                    for (int i = 0; i < hd; i++) dot += (double)qs[i] * kt[i];
                    score[t] = dot * scale;
                    if (score[t] > mx) mx = score[t];
                }
                double sum = 0;
                for (int t = 0; t <= s; t++) {
                    score[t] = exp(score[t] - mx);
                    sum += score[t];
                }
                real *p = att + ((b * nh + hq) * S + s) * (long)S;
                for (int t = 0; t < S; t++) p[t] = t <= s ? (real)(score[t] / sum) : 0;
                for (int i = 0; i < hd; i++) acc[i] = 0;
                for (int t = 0; t <= s; t++) {
                    const real *vt = v + row(b, t, hk, S, nkv, hd);
                    double pt = score[t] / sum;
                    for (int i = 0; i < hd; i++) acc[i] += pt * vt[i];
                }
                real *os = out + row(b, s, hq, S, nh, hd);
                for (int i = 0; i < hd; i++) os[i] = (real)acc[i];
            }
        }
    }
    free(score);
    free(acc);
}

// dout [B, S, nh*hd] -> dq [B, S, nh*hd], dk, dv [B, S, nkv*hd] (written).
// With P = att row and dP = dout . v: dS = P * (dP - sum(P * dP));
// dq = scale * dS @ k; dk += scale * dS^T q; dv += P^T dout (summed over the
// query heads that share a kv head).
void RFN(attention_backward)(real *dq, real *dk, real *dv, const real *dout, const real *q, const real *k,
                             const real *v, const real *out, const real *att, int B, int S, int nh, int nkv, int hd) {
    (void)out;  // the reference sums D from P and dP, by its definition
    SPD_ASSERT(nkv >= 1 && nh % nkv == 0);
    const int rep = nh / nkv;
    const double scale = 1.0 / sqrt((double)hd);
    const size_t nkv_el = (size_t)B * S * nkv * hd;
    double *dk_acc = spd_calloc(nkv_el, sizeof(double));
    double *dv_acc = spd_calloc(nkv_el, sizeof(double));
    double *ds = spd_malloc((size_t)S * sizeof(double));
    double *acc = spd_malloc((size_t)hd * sizeof(double));
    for (long b = 0; b < B; b++) {
        for (int hq = 0; hq < nh; hq++) {
            const int hk = hq / rep;
            for (int s = 0; s < S; s++) {
                const real *p = att + ((b * nh + hq) * S + s) * (long)S;
                const real *gs = dout + row(b, s, hq, S, nh, hd);
                const real *qs = q + row(b, s, hq, S, nh, hd);
                double pdp = 0;
                for (int t = 0; t <= s; t++) {
                    long kv = row(b, t, hk, S, nkv, hd);
                    double dp = 0;
                    for (int i = 0; i < hd; i++) {
                        dp += (double)gs[i] * v[kv + i];
                        dv_acc[kv + i] += (double)p[t] * gs[i];
                    }
                    ds[t] = dp;
                    pdp += (double)p[t] * dp;
                }
                for (int i = 0; i < hd; i++) acc[i] = 0;
                for (int t = 0; t <= s; t++) {
                    long kv = row(b, t, hk, S, nkv, hd);
                    double dst = (double)p[t] * (ds[t] - pdp) * scale;
                    for (int i = 0; i < hd; i++) {
                        acc[i] += dst * k[kv + i];
                        dk_acc[kv + i] += dst * qs[i];
                    }
                }
                real *dqs = dq + row(b, s, hq, S, nh, hd);
                for (int i = 0; i < hd; i++) dqs[i] = (real)acc[i];
            }
        }
    }
    for (size_t i = 0; i < nkv_el; i++) {
        dk[i] = (real)dk_acc[i];
        dv[i] = (real)dv_acc[i];
    }
    free(dk_acc);
    free(dv_acc);
    free(ds);
    free(acc);
}
