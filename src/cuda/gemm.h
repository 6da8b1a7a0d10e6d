// Row-major matrix products with explicit leading dimensions, for the CUDA
// backend's own files (matmul_cuda is the contiguous case). In --mode fused the
// products go through cuBLASLt with an algorithm timed once per shape (outside
// graph capture) instead of cublasSgemm's first heuristic choice.
#ifndef SPD_CUDA_GEMM_H
#define SPD_CUDA_GEMM_H

#ifdef __cplusplus
extern "C" {
#endif

// C [M, N] (row stride ldc) = alpha * op(A) @ op(B) + beta * C; A stored [M, K]
// (row stride lda), or [K, M] when trans_a; B stored [K, N] (ldb), or [N, K] when trans_b.
void matmul_cuda_ld(float *C, const float *A, const float *B, int M, int N, int K, bool trans_a, bool trans_b,
                    float alpha, float beta, int lda, int ldb, int ldc);

// bf16 precision only: the same product with bf16 A and B (float32 C, float32
// accumulation). An operand flagged bf16 is a __nv_bfloat16 matrix with row stride
// lda/ldb (16-byte aligned rows for the fast kernels); a float32 one is rounded to
// a bf16 copy first.
void matmul_cuda_ld_bf16(float *C, const void *A, bool a_bf16, const void *B, bool b_bf16, int M, int N, int K,
                         bool trans_a, bool trans_b, float alpha, float beta, int lda, int ldb, int ldc);
// dst [rows, cols] (bf16, row stride ldd >= cols) = src (float32, row stride lds), rounded to
// nearest even; the pad columns cols..ldd-1 of every row are written as zeros.
void spd_to_bf16(void *dst, int ldd, const float *src, int lds, int rows, int cols);
// The row stride spd.c gives a bf16 copy of a matrix with `cols` columns (16-byte rows).
int spd_bf16_ld(int cols);

// dst [rows, cols] (row stride ldd) = beta * dst + src, where src [src_rows, src_cols]
// (row stride lds) reads as zero outside its bounds; beta == 0 overwrites (copy2d.cu).
void copy2d_cuda(float *dst, int ldd, int rows, int cols, const float *src, int lds, int src_rows, int src_cols,
                 float beta);

// Split-K (matmul.cu), for tests: S > 1 runs every cuBLASLt product over S slices
// of K (fewer when K is short), 1 never splits, 0 (the default) lets the tuner
// choose. spd_cuda_splitk_count: split products run so far.
void spd_cuda_splitk_force(int S);
// C [M, N] (row stride ldc) = alpha * sum over s < S of P_s + beta * C (beta == 0 does not
// read C), P_s [M, N] with row stride ldp at P + s * slice, added in a fixed order (the same
// bits every run): the reduction of split-K products and of other kernels' split partials.
void spd_cuda_splitk_reduce(float *C, int ldc, const float *P, int ldp, long long slice, int S, int M, int N,
                            float alpha, float beta);
long long spd_cuda_splitk_count(void);

#ifdef __cplusplus
}
#endif

#endif
