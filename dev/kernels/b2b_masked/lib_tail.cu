
// The lab's per-shape winners (NOTES.md, run 2 on H100): v5 for K1 <= 64 (BC=64),
// v4 for K1 <= 128 (BC=32), 192-wide Y slices when K2 > 128, v1's configuration
// for K1 in (128, 344]. Returns false if K1 > 344.
template <bool AT, bool BT>
bool pick(float *Y, float *P, const float *X, const float *A, const float *M, const float *B, int N, int K1, int C,
          int K2, cudaStream_t s) {
    if (K1 <= 128 && K2 > 128) {
        if (K1 <= 64) return launch4<Cfg4<64, 32, 192, AT, BT, 3>>(Y, P, X, A, M, B, N, K1, C, K2, s);
        return launch4<Cfg4<128, 32, 192, AT, BT, 3>>(Y, P, X, A, M, B, N, K1, C, K2, s);
    }
    if (K1 <= 64) return launch4<Cfg4<64, 64, 128, AT, BT, 3>>(Y, P, X, A, M, B, N, K1, C, K2, s);
    if (K1 <= 128) return launch4<Cfg4<128, 32, 128, AT, BT, 3>>(Y, P, X, A, M, B, N, K1, C, K2, s);
    return launch<Cfg<64, 32, 344, 128, 4, 2, 2, 4, AT, BT, 1>>(Y, P, X, A, M, B, N, K1, C, K2, s);
}

// Fallback (K1 > 344): exact fp32 on CUDA cores, 16x16 shared-memory tiles.
// out [rows, cols] = (L [rows, K] @ R) * M, R [K, cols] or (rt) stored [cols, K]; M NULL = ones.
__global__ void fallback_gemm(float *out, const float *L, const float *R, bool rt, const float *M, int rows, int K,
                              int cols) {
    __shared__ float ls[16][17], rs[16][17];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int r = blockIdx.y * 16 + ty, c = blockIdx.x * 16 + tx;
    float sum = 0.f;
    for (int k0 = 0; k0 < K; k0 += 16) {
        const int kl = k0 + tx, kr = k0 + ty;
        ls[ty][tx] = (r < rows && kl < K) ? L[(long)r * K + kl] : 0.f;
        rs[ty][tx] = (kr < K && c < cols) ? (rt ? R[(long)c * K + kr] : R[(long)kr * cols + c]) : 0.f;
        __syncthreads();
#pragma unroll
        for (int k = 0; k < 16; k++) sum += ls[ty][k] * rs[k][tx];
        __syncthreads();
    }
    if (r < rows && c < cols) out[(long)r * cols + c] = M ? sum * M[(long)r * cols + c] : sum;
}

void fallback(float *Y, float *P, const float *X, const float *A, bool at, const float *M, const float *B, bool bt,
              int N, int K1, int C, int K2, cudaStream_t s) {
    float *T = P;
    if (!T) CUDA_CHECK(cudaMallocAsync((void **)&T, (size_t)N * C * sizeof(float), s));
    dim3 blk(16, 16);
    if (C > 0) {
        fallback_gemm<<<dim3((C + 15) / 16, (N + 15) / 16), blk, 0, s>>>(T, X, A, at, M, N, K1, C);
        CUDA_CHECK_LAUNCH();
    }
    if (K2 > 0) {
        fallback_gemm<<<dim3((K2 + 15) / 16, (N + 15) / 16), blk, 0, s>>>(Y, T, B, bt, nullptr, N, C, K2);
        CUDA_CHECK_LAUNCH();
    }
    if (!P) CUDA_CHECK(cudaFreeAsync(T, s));
}

}  // namespace

extern "C" void b2b_masked_gemm(float *Y, float *P, const float *X, const float *A, bool a_transposed,
                                const float *M, const float *B, bool b_transposed, int N, int K1, int C, int K2,
                                cudaStream_t stream) {
    SPD_ASSERT(N >= 0 && K1 >= 0 && C >= 0 && K2 >= 0);
    SPD_ASSERT(Y && X && A && B);
    if (N == 0 || K2 == 0) {
        if (P && N > 0 && C > 0) {  // K2 == 0: P is still asked for
            fallback(Y, P, X, A, a_transposed, M, B, b_transposed, N, K1, C, K2, stream);
        }
        return;
    }
    bool ok = a_transposed ? (b_transposed ? pick<true, true>(Y, P, X, A, M, B, N, K1, C, K2, stream)
                                           : pick<true, false>(Y, P, X, A, M, B, N, K1, C, K2, stream))
                           : (b_transposed ? pick<false, true>(Y, P, X, A, M, B, N, K1, C, K2, stream)
                                           : pick<false, false>(Y, P, X, A, M, B, N, K1, C, K2, stream));
    if (ok) CUDA_CHECK_LAUNCH();
    else fallback(Y, P, X, A, a_transposed, M, B, b_transposed, N, K1, C, K2, stream);
}
