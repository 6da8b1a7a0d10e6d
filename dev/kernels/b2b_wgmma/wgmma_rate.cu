// The tensor pipe's rate for the wgmma shapes of the back-to-back kernel, alone and in
// its schedule: cycles per iteration of each pattern below with 1 or 2 warpgroups per
// CTA, one CTA per SM, operands from zeroed shared memory (the values do not matter).
// What it answers: is a chain of 16 dependent m64n32k8 (GEMM1 at K1 = 128) slower than its
// 16 x 16 tensor cycles, and does the kernel's GEMM1 / GEMM2 / mask-pass loop without any
// loads reach the tensor rate?
// Build (GPU machine): nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a \
//   -I src dev/kernels/b2b_wgmma/wgmma_rate.cu -o wgmma_rate && ./wgmma_rate
#include <cstdio>
#include <cuda_runtime.h>

#include "cuda/wgmma_sm90.cuh"

#define ITERS 512

#define SMEM_BYTES (96 * 1024)

enum pattern {
    CHAIN_N32_16,    // GEMM1: 16 dependent m64n32k8 into one accumulator, then wait
    TWO_CHAINS_N32,  // the same 16 steps as two independent chains of 8 (two accumulators)
    CHAIN_N64_16,    // 16 dependent m64n64k8
    CHAIN_N128_4,    // GEMM2: 4 dependent m64n128k8
    CHAIN_N176_4,    // GEMM2 at BN = 176
    LOOP_B2B128,     // the kernel's loop: GEMM1 (c + 1), GEMM2 (c), wait 1, a mask pass; BN = 128
    LOOP_B2B128_BC64,  // the same with 64-wide chunks: GEMM1 16 x m64n64k8, GEMM2 8 x m64n128k8
    N_PATTERNS
};
static const char *names[N_PATTERNS] = {"chain n32 x16", "two chains n32 x8", "chain n64 x16", "chain n128 x4",
                                        "chain n176 x4", "b2b loop BC=32", "b2b loop BC=64"};
// Multiply-adds per iteration and warpgroup.
static const double fma_per_iter[N_PATTERNS] = {64.0 * 32 * 128, 64.0 * 32 * 128, 64.0 * 64 * 128, 64.0 * 128 * 32,
                                                64.0 * 176 * 32, 64.0 * 32 * 128 + 64.0 * 128 * 32,
                                                64.0 * 64 * 128 + 64.0 * 128 * 64};

#ifdef WG_HAVE_WGMMA
static __device__ __forceinline__ void commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int n>
static __device__ __forceinline__ void wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(n) : "memory");
}
static __device__ __forceinline__ void fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }

static __device__ __forceinline__ void n32(float *s, const float *a, uint64_t b, bool first) {
    if (first)
        wgmma_m64n32k8_rs<true>(s, a, b);
    else
        wgmma_m64n32k8_rs<false>(s, a, b);
}

// S [64, BC] = X At^T over K1 = 128: one chain of 16 k8 steps (m64n32k8 or m64n64k8).
template <int BC>
static __device__ __forceinline__ void gemm1(float *s, const float (*xr)[4], uint64_t b) {
#pragma unroll
    for (int k = 0; k < 16; k++) {
        if constexpr (BC == 32)
            n32(s, xr[k], b + 2 * k, k == 0);
        else
            wgmma_acc_rs<64>(s, xr[k][0], xr[k][1], xr[k][2], xr[k][3], b + 2 * k, k);
    }
}

// The back-to-back kernel's loop over chunks of BC components, with no loads: GEMM1 of
// chunk c + 1, GEMM2 of chunk c (BC / 8 m64n128k8 with P from registers), a wait for
// GEMM1, then the mask pass on its S (a multiply and a TF32 rounding per value).
template <int BC>
static __device__ __forceinline__ void b2b_loop(float *sa, float *sb, float *y, const float (*xr)[4], uint64_t b0) {
    fence();
    gemm1<BC>(sa, xr, b0);
    commit();
    wait<0>();
    fence_regs<BC / 2>(sa);
    for (int it = 0; it < ITERS; it += 2) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            float *cur = h ? sb : sa, *nxt = h ? sa : sb;
            fence();
            gemm1<BC>(nxt, xr, b0 + 64);
            commit();
            fence();
#pragma unroll
            for (int k = 0; k < BC / 8; k++)
                wgmma_acc_rs<128>(y, cur[4 * k], cur[4 * k + 2], cur[4 * k + 1], cur[4 * k + 3], b0 + 512 + 2 * k, 1);
            commit();
            wait<1>();
            fence_regs<BC / 2>(nxt);
#pragma unroll
            for (int i = 0; i < BC / 2; i++) {
                uint32_t r;
                asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(nxt[i] * 0.5f));
                nxt[i] = __uint_as_float(r);
            }
        }
    }
    wait<0>();
    fence_regs<64>(y);
}

// GEMM2 alone: a chain of four m64nNk8 into Y (N / 2 accumulators), P from registers.
template <int N>
static __device__ __forceinline__ void chain_y(float *y, const float *sa, uint64_t b0) {
    for (int it = 0; it < ITERS; it++) {
        fence();
#pragma unroll
        for (int k = 0; k < 4; k++) wgmma_acc_rs<N>(y, sa[4 * k], sa[4 * k + 1], sa[4 * k + 2], sa[4 * k + 3], b0 + 2 * k, 1);
        commit();
        wait<0>();
        fence_regs<N / 2>(y);
    }
}
#endif

template <int pat>
__global__ void __launch_bounds__(256, 1) rate_kernel(int wgs, long long *cycles, float *sink) {
#ifdef WG_HAVE_WGMMA
    extern __shared__ unsigned char smem_raw[];
    const uint32_t base = ((uint32_t)__cvta_generic_to_shared(smem_raw) + 1023) & ~1023u;
    for (int i = threadIdx.x; i < SMEM_BYTES / 4 - 256; i += blockDim.x) ((float *)smem_raw)[i] = 0.0f;
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();
    const int wg = threadIdx.x / 128;
    if (wg >= wgs) return;
    const uint64_t b0 = smem_desc(base);
    float xr[16][4];
#pragma unroll
    for (int k = 0; k < 16; k++)
#pragma unroll
        for (int q = 0; q < 4; q++) xr[k][q] = 0.0f;
    constexpr int ny = pat == CHAIN_N176_4 ? 88 : 64;  // only that pattern's y is 176 wide
    float sa[32], sb[32], y[ny];
#pragma unroll
    for (int i = 0; i < 32; i++) sa[i] = sb[i] = 0.0f;
#pragma unroll
    for (int i = 0; i < ny; i++) y[i] = 0.0f;
    const long long t0 = clock64();
    switch (pat) {  // a constant: each pattern is its own kernel, with all the registers
    case CHAIN_N32_16:
        for (int it = 0; it < ITERS; it++) {
            fence();
            gemm1<32>(sa, xr, b0);
            commit();
            wait<0>();
            fence_regs<16>(sa);
        }
        break;
    case TWO_CHAINS_N32:
        for (int it = 0; it < ITERS; it++) {
            fence();
#pragma unroll
            for (int k = 0; k < 8; k++) {
                n32(sa, xr[k], b0 + 2 * k, k == 0);
                n32(sb, xr[8 + k], b0 + 2 * (8 + k), k == 0);
            }
            commit();
            wait<0>();
            fence_regs<16>(sa);
            fence_regs<16>(sb);
        }
        break;
    case CHAIN_N64_16:
        for (int it = 0; it < ITERS; it++) {
            fence();
#pragma unroll
            for (int k = 0; k < 16; k++) wgmma_acc_rs<64>(sa, xr[k][0], xr[k][1], xr[k][2], xr[k][3], b0 + 2 * k, k);
            commit();
            wait<0>();
            fence_regs<32>(sa);
        }
        break;
    case CHAIN_N128_4:
        chain_y<128>(y, sa, b0);
        break;
    case CHAIN_N176_4:
        if constexpr (ny == 88) chain_y<176>(y, sa, b0);
        break;
    case LOOP_B2B128:
        b2b_loop<32>(sa, sb, y, xr, b0);
        break;
    case LOOP_B2B128_BC64:
        b2b_loop<64>(sa, sb, y, xr, b0);
        break;
    }
    const long long t1 = clock64();
    if (threadIdx.x % 128 == 0) cycles[blockIdx.x * 2 + wg] = t1 - t0;
    float acc = 0;
#pragma unroll
    for (int i = 0; i < 32; i++) acc += sa[i] + sb[i];
#pragma unroll
    for (int i = 0; i < ny; i++) acc += y[i];
    if (acc != 0.0f) sink[threadIdx.x] = acc;
#endif
}

typedef void (*rate_fn)(int, long long *, float *);
static const rate_fn kernels[N_PATTERNS] = {rate_kernel<0>, rate_kernel<1>, rate_kernel<2>, rate_kernel<3>,
                                            rate_kernel<4>, rate_kernel<5>, rate_kernel<6>};

int main() {
    int sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    for (int p = 0; p < N_PATTERNS; p++)
        cudaFuncSetAttribute(kernels[p], cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM_BYTES + 1024);
    long long *cyc;
    float *sink;
    cudaMalloc(&cyc, sms * 2 * sizeof(long long));
    cudaMalloc(&sink, 384 * sizeof(float));
    long long *h = new long long[sms * 2];
    printf("%-20s %4s %14s %16s %10s\n", "pattern", "wgs", "cycles/iter", "FMA/cycle/SM", "of 1024");
    for (int p = 0; p < N_PATTERNS; p++)
        for (int w = 1; w <= 2; w++) {
            kernels[p]<<<sms, 256, SMEM_BYTES + 1024>>>(w, cyc, sink);  // warm
            kernels[p]<<<sms, 256, SMEM_BYTES + 1024>>>(w, cyc, sink);
            if (cudaDeviceSynchronize() != cudaSuccess) {
                printf("%s: %s\n", names[p], cudaGetErrorString(cudaGetLastError()));
                return 1;
            }
            cudaMemcpy(h, cyc, sms * 2 * sizeof(long long), cudaMemcpyDeviceToHost);
            double worst = 0;
            for (int b = 0; b < sms; b++)
                for (int g = 0; g < w; g++) worst = h[b * 2 + g] > worst ? h[b * 2 + g] : worst;
            const double per_iter = worst / ITERS;
            const double rate = w * fma_per_iter[p] / per_iter;
            printf("%-20s %4d %14.1f %16.1f %9.0f%%\n", names[p], w, per_iter, rate, 100.0 * rate / 1024);
        }
    return 0;
}
