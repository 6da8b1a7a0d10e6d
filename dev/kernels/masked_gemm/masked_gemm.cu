// KERNEL LAB (not built): the TF32 mma.sync product with a mask-multiply epilogue
// (masked_gemm.h). It was wired into src/cuda/components.cu at commit 1808126afac3
// and lost to cuBLAS + one elementwise pass (NOTES.md); kept here as the record.
// One CTA = a 128 x 64 tile of the output; K goes through shared memory in chunks
// of up to 128 (<= 102 KB, so two CTAs share an SM and one loads while the other
// computes);
// 8 warps of 32 x 32, m16n8k8 TF32 mma with fp32 accumulation. Rows of the shared
// tiles are padded to K + 4 floats (a stride of 4 mod 32 banks), which makes the
// fragment loads conflict-free. Predicted to be bound by the epilogue's N x C
// traffic; measured bound by the mma.sync TF32 issue rate instead (NOTES.md).
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_common.h"
#include "cuda/masked_gemm.h"

#define MG_BM 128
#define MG_BN 64
#define MG_KCHUNK 128  // K is walked in chunks of this many columns
#define MG_THREADS 256
// Above a few hundred, K makes the product compute-bound, where cuBLAS's wgmma kernels win.
#define MG_DEFAULT_KMAX 384

static __device__ __forceinline__ uint32_t to_tf32(float x) {  // round to nearest, as cuBLAS
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}

static __device__ __forceinline__ void mma_tf32(float *d, const uint32_t *a, const uint32_t *b) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

static __device__ __forceinline__ void cp_async16(void *smem, const float *g, bool valid) {
    const uint32_t d = (uint32_t)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(g), "r"(valid ? 16 : 0));
}

// rows x cols tile of src (row stride ld) into shared memory (row stride S), 16 bytes
// per cp.async, all in flight at once; zeros outside [0, rows_valid) x [0, cols_valid).
// (The first version loaded, converted and stored one float4 at a time, so every
// iteration waited on its load; this one was 0.8 ms faster over a 64x256 step.)
static __device__ __forceinline__ void load_tile(float *dst, int S, const float *src, int ld, int rows, int cols,
                                                 int rows_valid, int cols_valid) {
    const int per_row = cols / 4;
    for (int i = threadIdx.x; i < rows * per_row; i += MG_THREADS) {
        const int r = i / per_row, c = (i % per_row) * 4;
        const bool valid = r < rows_valid && c < cols_valid;
        cp_async16(dst + r * S + c, valid ? src + (size_t)r * ld + c : src, valid);
    }
}

// B_KN: B stored [K, N] (V in the forward), else [N, K] (U in the backward).
template <bool B_KN>
static __global__ void __launch_bounds__(MG_THREADS, 2)
    masked_gemm_kernel(const float *__restrict__ A, int lda, const float *__restrict__ B, int ldb, int M, int N, int K,
                       float *__restrict__ out0, float *__restrict__ out1, const float *__restrict__ m1,
                       float *__restrict__ out2, const float *__restrict__ m2, int ldo) {
    extern __shared__ float smem[];
    // Row strides of 4 (mod 32) floats for [row][k] tiles and 8 (mod 32) for the
    // [k][n] tile keep the fragment loads free of bank conflicts.
    const int S = ((K < MG_KCHUNK ? K : MG_KCHUNK) + 7) / 8 * 8 + 4, SB = MG_BN + 8;
    float *As = smem, *Bs = smem + MG_BM * S;
    const int m0 = blockIdx.y * MG_BM, n0 = blockIdx.x * MG_BN;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int wm = (warp % 4) * 32, wn = (warp / 4) * 32;
    float acc[2][4][4] = {};
    for (int k0 = 0; k0 < K; k0 += MG_KCHUNK) {
        const int Kc = K - k0 < MG_KCHUNK ? K - k0 : MG_KCHUNK, Kp = (Kc + 7) & ~7;
        if (k0) __syncthreads();  // every warp is done with the previous chunk
        load_tile(As, S, A + (size_t)m0 * lda + k0, lda, MG_BM, Kp, M - m0, Kc);
        if (B_KN) load_tile(Bs, SB, B + (size_t)k0 * ldb + n0, ldb, Kp, MG_BN, Kc, N - n0);
        else load_tile(Bs, S, B + (size_t)n0 * ldb + k0, ldb, MG_BN, Kp, N - n0, Kc);
        asm volatile("cp.async.commit_group;\n\tcp.async.wait_group 0;" ::: "memory");
        __syncthreads();
#pragma unroll 2
        for (int kk = 0; kk < Kp; kk += 8) {
            uint32_t a[2][4], b[4][2];
#pragma unroll
            for (int mi = 0; mi < 2; mi++) {
                const float *p = As + (wm + mi * 16 + g) * S + kk + t;
                a[mi][0] = to_tf32(p[0]);
                a[mi][1] = to_tf32(p[8 * S]);
                a[mi][2] = to_tf32(p[4]);
                a[mi][3] = to_tf32(p[8 * S + 4]);
            }
#pragma unroll
            for (int ni = 0; ni < 4; ni++) {
                if (B_KN) {
                    const float *p = Bs + (kk + t) * SB + wn + ni * 8 + g;
                    b[ni][0] = to_tf32(p[0]);
                    b[ni][1] = to_tf32(p[4 * SB]);
                } else {
                    const float *p = Bs + (wn + ni * 8 + g) * S + kk + t;
                    b[ni][0] = to_tf32(p[0]);
                    b[ni][1] = to_tf32(p[4]);
                }
            }
#pragma unroll
            for (int mi = 0; mi < 2; mi++)
#pragma unroll
                for (int ni = 0; ni < 4; ni++) mma_tf32(acc[mi][ni], a[mi], b[ni]);
        }
    }

    // Accumulator layout: c0, c1 at (row g, columns 2t, 2t + 1), c2, c3 at row g + 8.
#pragma unroll
    for (int mi = 0; mi < 2; mi++)
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const int row = m0 + wm + mi * 16 + g + half * 8;
            if (row >= M) continue;
#pragma unroll
            for (int ni = 0; ni < 4; ni++) {
                const int col = n0 + wn + ni * 8 + 2 * t;
                if (col >= N) continue;  // N is even and col is even: col + 1 < N too
                const size_t o = (size_t)row * ldo + col;
                const float2 v = make_float2(acc[mi][ni][2 * half], acc[mi][ni][2 * half + 1]);
                if (out0) *(float2 *)(out0 + o) = v;
                if (out1) {
                    const float2 m = __ldg((const float2 *)(m1 + o));
                    *(float2 *)(out1 + o) = make_float2(v.x * m.x, v.y * m.y);
                }
                if (out2) {
                    const float2 m = __ldg((const float2 *)(m2 + o));
                    *(float2 *)(out2 + o) = make_float2(v.x * m.x, v.y * m.y);
                }
            }
        }
}

static bool aligned(const void *p, size_t bytes) { return !p || (uintptr_t)p % bytes == 0; }

extern "C" bool masked_gemm_usable(bool b_kn, int M, int N, int K, int lda, int ldb, int ldo, const void *A,
                                   const void *B, const void *out0, const void *out1, const void *m1,
                                   const void *out2, const void *m2) {
    // SPD_CUDA_MASKED_GEMM=K0 takes products with K <= K0 only (0: none), for measuring.
    static int k_max = -1;
    if (k_max < 0) {
        const char *e = getenv("SPD_CUDA_MASKED_GEMM");
        k_max = e ? atoi(e) : MG_DEFAULT_KMAX;
        if (k_max < 0) k_max = 0;
    }
    // Small problems stay on cuBLAS: nothing to gain there (and the reference
    // checks' toy models keep the products they were validated with).
    return spd_cuda_mode_get() == SPD_CUDA_FUSED && spd_cuda_matmul_precision() == SPD_MATMUL_TF32 && M > 0 &&
           N > 0 && K > 0 && K <= k_max && K % 4 == 0 && lda % 4 == 0 && ldb % 4 == 0 &&
           N % (b_kn ? 4 : 2) == 0 && ldo % 2 == 0 && (double)M * N * K >= (double)(1 << 24) && aligned(A, 16) &&
           aligned(B, 16) && aligned(out0, 8) && aligned(out1, 8) && aligned(m1, 8) && aligned(out2, 8) &&
           aligned(m2, 8);
}

extern "C" void masked_gemm_cuda(bool b_kn, const float *A, int lda, const float *B, int ldb, int M, int N, int K,
                                 float *out0, float *out1, const float *m1, float *out2, const float *m2, int ldo) {
    SPD_ASSERT(masked_gemm_usable(b_kn, M, N, K, lda, ldb, ldo, A, B, out0, out1, m1, out2, m2));
    const int Kp = ((K < MG_KCHUNK ? K : MG_KCHUNK) + 7) & ~7;  // the widest chunk
    const size_t smem = (MG_BM * (size_t)(Kp + 4) + (b_kn ? (size_t)Kp * (MG_BN + 8) : MG_BN * (size_t)(Kp + 4))) *
                        sizeof(float);
    static bool attr_set;
    if (!attr_set) {
        const int b_nk = MG_BN * (MG_KCHUNK + 4), b_kn_ = MG_KCHUNK * (MG_BN + 8);
        const int max_smem = (MG_BM * (MG_KCHUNK + 4) + (b_nk > b_kn_ ? b_nk : b_kn_)) * (int)sizeof(float);
        CUDA_CHECK(cudaFuncSetAttribute(masked_gemm_kernel<false>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        max_smem));
        CUDA_CHECK(cudaFuncSetAttribute(masked_gemm_kernel<true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        max_smem));
        attr_set = true;
    }
    dim3 grid((N + MG_BN - 1) / MG_BN, (M + MG_BM - 1) / MG_BM);
    if (b_kn)
        masked_gemm_kernel<true><<<grid, MG_THREADS, smem, spd_cuda_stream()>>>(A, lda, B, ldb, M, N, K, out0, out1,
                                                                                 m1, out2, m2, ldo);
    else
        masked_gemm_kernel<false><<<grid, MG_THREADS, smem, spd_cuda_stream()>>>(A, lda, B, ldb, M, N, K, out0, out1,
                                                                                  m1, out2, m2, ldo);
    CUDA_CHECK_LAUNCH();
}
