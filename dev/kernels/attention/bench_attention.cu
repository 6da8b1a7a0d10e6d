// Validates and times the GPU attention (src/cuda/attention.cu) at given shapes.
// Validation: a small batch of the same shape against the float64-summing CPU reference
// (norm-relative error, bound 1e-5, outputs poisoned with NaN first). Timing: CUDA events
// around each call on the backend's stream, 5 warm-ups, median and min of 50; no cache flush
// (att, 67 MB at B 64, exceeds the 50 MB L2 anyway).
// Build and run (repo root, after make gpu-tests): dev/kernels/attention/run_device.sh.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <algorithm>
#include <vector>

#include "cuda/cuda_common.h"

extern "C" {
void attention_forward_f32(float *out, float *att, const float *q, const float *k, const float *v, int B, int S,
                           int nh, int nkv, int hd);
void attention_backward_f32(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                            const float *v, const float *att, int B, int S, int nh, int nkv, int hd);
void attention_forward_cuda(float *out, float *att, const float *q, const float *k, const float *v, int B, int S,
                            int nh, int nkv, int hd);
void attention_backward_cuda(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                             const float *v, const float *att, int B, int S, int nh, int nkv, int hd);
}

static unsigned long long rng = 88172645463325252ull;
static float urand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

struct buf {
    std::vector<float> h;
    float *d;
    buf(size_t n, bool random) : h(n) {
        for (auto &x : h) x = random ? urand() : NAN;
        CUDA_CHECK(cudaMalloc(&d, n * sizeof(float)));
        CUDA_CHECK(cudaMemcpy(d, h.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    }
    ~buf() { cudaFree(d); }
    double err_vs_host() {  // norm-relative error of the device copy against h
        std::vector<float> g(h.size());
        CUDA_CHECK(cudaMemcpy(g.data(), d, g.size() * sizeof(float), cudaMemcpyDeviceToHost));
        double num = 0, den = 0;
        for (size_t i = 0; i < g.size(); i++) {
            const double e = (double)g[i] - h[i];
            num += e * e;
            den += (double)h[i] * h[i];
        }
        return isnan(num) ? INFINITY : sqrt(num / (den > 0 ? den : 1));
    }
};

static int failures;

static void validate(int B, int S, int nh, int nkv, int hd) {
    const size_t nq = (size_t)B * S * nh * hd, nk = (size_t)B * S * nkv * hd;
    buf q(nq, true), k(nk, true), v(nk, true), dout(nq, true);
    buf out(nq, false), att((size_t)B * nh * S * S, false), dq(nq, false), dk(nk, false), dv(nk, false);
    attention_forward_f32(out.h.data(), att.h.data(), q.h.data(), k.h.data(), v.h.data(), B, S, nh, nkv, hd);
    attention_forward_cuda(out.d, att.d, q.d, k.d, v.d, B, S, nh, nkv, hd);
    attention_backward_f32(dq.h.data(), dk.h.data(), dv.h.data(), dout.h.data(), q.h.data(), k.h.data(),
                           v.h.data(), att.h.data(), B, S, nh, nkv, hd);
    attention_backward_cuda(dq.d, dk.d, dv.d, dout.d, q.d, k.d, v.d, att.d, B, S, nh, nkv, hd);
    CUDA_CHECK(cudaDeviceSynchronize());
    const double e[5] = {out.err_vs_host(), att.err_vs_host(), dq.err_vs_host(), dk.err_vs_host(),
                         dv.err_vs_host()};
    double worst = 0;
    for (double x : e) worst = x > worst || isnan(x) ? x : worst;
    const bool ok = worst <= 1e-5;
    failures += !ok;
    printf("%s validate B=%d S=%d nh=%d nkv=%d hd=%d: out %.1e att %.1e dq %.1e dk %.1e dv %.1e\n",
           ok ? "ok  " : "FAIL", B, S, nh, nkv, hd, e[0], e[1], e[2], e[3], e[4]);
}

static void stats(std::vector<float> &t, float *med, float *mn) {
    std::sort(t.begin(), t.end());
    *med = t[t.size() / 2];
    *mn = t[0];
}

static void time_shape(int B, int S, int nh, int nkv, int hd) {
    const size_t nq = (size_t)B * S * nh * hd, nk = (size_t)B * S * nkv * hd;
    buf q(nq, true), k(nk, true), v(nk, true), dout(nq, true);
    buf out(nq, false), att((size_t)B * nh * S * S, false), dq(nq, false), dk(nk, false), dv(nk, false);
    cudaStream_t st = spd_cuda_stream();
    cudaEvent_t e0, e1, e2;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    CUDA_CHECK(cudaEventCreate(&e2));
    std::vector<float> tf, tb;
    for (int r = 0; r < 55; r++) {
        CUDA_CHECK(cudaEventRecord(e0, st));
        attention_forward_cuda(out.d, att.d, q.d, k.d, v.d, B, S, nh, nkv, hd);
        CUDA_CHECK(cudaEventRecord(e1, st));
        attention_backward_cuda(dq.d, dk.d, dv.d, dout.d, q.d, k.d, v.d, att.d, B, S, nh, nkv, hd);
        CUDA_CHECK(cudaEventRecord(e2, st));
        CUDA_CHECK(cudaEventSynchronize(e2));
        float a, b;
        CUDA_CHECK(cudaEventElapsedTime(&a, e0, e1));
        CUDA_CHECK(cudaEventElapsedTime(&b, e1, e2));
        if (r >= 5) tf.push_back(a * 1000), tb.push_back(b * 1000);
    }
    float fmed, fmin, bmed, bmin;
    stats(tf, &fmed, &fmin);
    stats(tb, &bmed, &bmin);
    // Floors: one causal product = B nh S^2/2 hd 2 FLOP; forward 2 products, backward 4;
    // bytes: forward q k v out + att written; backward reads the causal half of att.
    const double prod = (double)B * nh * S * S / 2 * hd * 2, fl32 = 60e12, bw = 3.0e12;
    const double fwd_bytes = 4.0 * (2 * nq + 2 * nk + (double)B * nh * S * S);
    const double bwd_bytes = 4.0 * (3 * nq + 4 * nk + (double)B * nh * S * S / 2);
    const double ffl = std::max(2 * prod / fl32, fwd_bytes / bw) * 1e6, bfl = std::max(4 * prod / fl32, bwd_bytes / bw) * 1e6;
    printf("time B=%d S=%d nh=%d nkv=%d hd=%d: forward median %.1f us (min %.1f; floor %.1f us, %.0f%%), "
           "backward median %.1f us (min %.1f; floor %.1f us, %.0f%%)\n",
           B, S, nh, nkv, hd, fmed, fmin, ffl, 100 * ffl / fmed, bmed, bmin, bfl, 100 * bfl / bmed);
}

int main(int argc, char **argv) {  // argument "validate": skip the timing
    spd_cuda_init();
    printf("# device: %s\n", spd_cuda_device_name());
    static const int shapes[][5] = {{64, 256, 4, 2, 32}, {128, 256, 4, 2, 32}, {64, 256, 4, 4, 32},
                                    {16, 512, 4, 2, 32}, {16, 256, 4, 2, 64}, {8, 512, 8, 2, 128}};
    for (auto &s : shapes) validate(2, s[1], s[2], s[3], s[4]);
    if (argc < 2) for (auto &s : shapes) time_shape(s[0], s[1], s[2], s[3], s[4]);
    printf("# %d validation failures\n", failures);
    return failures != 0;
}
