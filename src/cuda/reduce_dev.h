// Block-wide float64 sum for the column reductions of the training ops (C++
// only): a kernel launched with REDUCE_THREADS threads per block has each
// thread add a strided share of the rows, then this fixed tree adds the
// threads, so results are deterministic (though not the CPU's serial order).
#ifndef SPD_CUDA_REDUCE_DEV_H
#define SPD_CUDA_REDUCE_DEV_H

#define REDUCE_THREADS 256

// The sum of x over the block; valid in thread 0. Every thread must call it.
static __device__ __forceinline__ double block_sum_f64(double x) {
    __shared__ double s[REDUCE_THREADS];
    s[threadIdx.x] = x;
    __syncthreads();
    for (int w = REDUCE_THREADS / 2; w > 0; w /= 2) {
        if ((int)threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
        __syncthreads();
    }
    double r = s[0];
    __syncthreads();  // s may be reused by a second call
    return r;
}

#endif
