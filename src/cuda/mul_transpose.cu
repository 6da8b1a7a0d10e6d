// The mask multiply with a transposed output (mul_transpose.h): 64 x 64 tiles through
// shared memory, read and written four floats at a time, so the pass moves the bytes of
// an untransposed one.
#include "cuda/cuda_common.h"
#include "cuda/mul_transpose.h"

#define MT_TILE 64
#define MT_THREADS 256
#define MT_QUADS (MT_TILE / 4)             // float4 per tile row
#define MT_ROWS (MT_THREADS / MT_QUADS)    // tile rows one pass of the block covers

// Block (bx, by) = rows bx*64.., cols by*64.. (rows, the token count, on x: no 65535
// limit); thread t reads float4 column t % 16 of rows t / 16 + 16 i, and writes float4
// column t % 16 of dst rows t / 16 + 16 i.
static __global__ void __launch_bounds__(MT_THREADS)
    mul_transpose_kernel(float *dst, const float *src, const float *mask, const float *aux, float *o_aux, int rows,
                         int cols) {
    // +1: the column reads of the write phase fall in different banks (2-way at most).
    __shared__ float t[MT_TILE][MT_TILE + 1];
    const int r0 = blockIdx.x * MT_TILE, c0 = blockIdx.y * MT_TILE;
    const int q = threadIdx.x % MT_QUADS, i0 = threadIdx.x / MT_QUADS;
    for (int i = i0; i < MT_TILE; i += MT_ROWS) {
        const int r = r0 + i, c = c0 + 4 * q;
        float4 p = make_float4(0, 0, 0, 0);
        if (r < rows && c < cols) {  // cols % 4 == 0: the quad is wholly inside or outside
            const long long at = (long long)r * cols + c;
            const float4 s = *(const float4 *)(src + at), m = *(const float4 *)(mask + at);
            p = make_float4(s.x * m.x, s.y * m.y, s.z * m.z, s.w * m.w);
            if (o_aux) {
                const float4 a = *(const float4 *)(aux + at);
                *(float4 *)(o_aux + at) = make_float4(s.x * a.x, s.y * a.y, s.z * a.z, s.w * a.w);
            }
        }
        t[i][4 * q] = p.x;
        t[i][4 * q + 1] = p.y;
        t[i][4 * q + 2] = p.z;
        t[i][4 * q + 3] = p.w;
    }
    __syncthreads();
    for (int i = i0; i < MT_TILE; i += MT_ROWS) {
        const int c = c0 + i, r = r0 + 4 * q;
        if (c < cols && r < rows)
            *(float4 *)(dst + (long long)c * rows + r) =
                make_float4(t[4 * q][i], t[4 * q + 1][i], t[4 * q + 2][i], t[4 * q + 3][i]);
    }
}

extern "C" bool mul_transpose_ok(int rows, int cols, const float *dst, const float *src, const float *mask,
                                 const float *aux, const float *o_aux) {
    if (rows <= 0 || cols <= 0 || rows % 4 || cols % 4 || !dst || !src || !mask || (!aux != !o_aux)) return false;
    const float *p[5] = {dst, src, mask, aux, o_aux};
    for (int i = 0; i < 5; i++)
        if (p[i] && !spd_aligned(p[i], 16)) return false;
    return true;
}

extern "C" void mul_transpose_cuda(float *dst, const float *src, const float *mask, const float *aux, float *o_aux,
                                   int rows, int cols) {
    SPD_ASSERT(mul_transpose_ok(rows, cols, dst, src, mask, aux, o_aux));
    const dim3 grid((unsigned)((rows + MT_TILE - 1) / MT_TILE), (unsigned)((cols + MT_TILE - 1) / MT_TILE));
    mul_transpose_kernel<<<grid, MT_THREADS, 0, spd_cuda_stream()>>>(dst, src, mask, aux, o_aux, rows, cols);
    CUDA_CHECK_LAUNCH();
}

// Block (bx, by) = tokens bx*64.., components by*64..: the mask's tile [64 tokens, 64
// components] into shared memory, then t's rows (components) scaled by its columns, four
// tokens at a time; t's values before the multiply go out transposed through a second tile.
static __global__ void __launch_bounds__(MT_THREADS)
    mask_transposed_kernel(float *t, const float *mask, float *o_t, int rows, int cols) {
    __shared__ float m[MT_TILE][MT_TILE + 1];
    __shared__ float before[MT_TILE][MT_TILE + 1];
    const int r0 = blockIdx.x * MT_TILE, c0 = blockIdx.y * MT_TILE;
    const int q = threadIdx.x % MT_QUADS, i0 = threadIdx.x / MT_QUADS;
    for (int i = i0; i < MT_TILE; i += MT_ROWS) {  // mask rows r0 + i, columns c0 + 4q..
        const int r = r0 + i, c = c0 + 4 * q;
        float4 v = make_float4(0, 0, 0, 0);
        if (r < rows && c < cols) v = *(const float4 *)(mask + (long long)r * cols + c);
        m[i][4 * q] = v.x;
        m[i][4 * q + 1] = v.y;
        m[i][4 * q + 2] = v.z;
        m[i][4 * q + 3] = v.w;
    }
    __syncthreads();
    for (int i = i0; i < MT_TILE; i += MT_ROWS) {  // t rows c0 + i, columns (tokens) r0 + 4q..
        const int c = c0 + i, r = r0 + 4 * q;
        if (c >= cols || r >= rows) continue;
        float4 *p = (float4 *)(t + (long long)c * rows + r);
        const float4 v = *p;
        *p = make_float4(v.x * m[4 * q][i], v.y * m[4 * q + 1][i], v.z * m[4 * q + 2][i], v.w * m[4 * q + 3][i]);
        if (o_t) {
            before[i][4 * q] = v.x;
            before[i][4 * q + 1] = v.y;
            before[i][4 * q + 2] = v.z;
            before[i][4 * q + 3] = v.w;
        }
    }
    if (!o_t) return;
    __syncthreads();
    for (int i = i0; i < MT_TILE; i += MT_ROWS) {  // o_t rows r0 + i, columns c0 + 4q..
        const int r = r0 + i, c = c0 + 4 * q;
        if (r < rows && c < cols)
            *(float4 *)(o_t + (long long)r * cols + c) =
                make_float4(before[4 * q][i], before[4 * q + 1][i], before[4 * q + 2][i], before[4 * q + 3][i]);
    }
}

extern "C" void mask_transposed_cuda(float *t, const float *mask, float *o_t, int rows, int cols) {
    SPD_ASSERT(mul_transpose_ok(rows, cols, t, t, mask, o_t, o_t));
    const dim3 grid((unsigned)((rows + MT_TILE - 1) / MT_TILE), (unsigned)((cols + MT_TILE - 1) / MT_TILE));
    mask_transposed_kernel<<<grid, MT_THREADS, 0, spd_cuda_stream()>>>(t, mask, o_t, rows, cols);
    CUDA_CHECK_LAUNCH();
}
