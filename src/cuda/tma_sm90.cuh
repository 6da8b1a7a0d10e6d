// Hopper's tensor memory accelerator (TMA) and mbarriers, shared by the *_sm90.cu
// kernels that stream their operands from producer warps: the device side (bulk
// tensor loads into 128-byte-swizzled shared memory, mbarrier waits and arrivals, a
// ring of stages handed between a producer and consumer warps) and the host side
// (the tensor maps those loads read). Device code is sm_90a only (WG_HAVE_WGMMA).
#ifndef SPD_CUDA_TMA_SM90_CUH
#define SPD_CUDA_TMA_SM90_CUH

#include <stdint.h>

#include <cuda.h>
#include <cudaTypedefs.h>

#include "cuda/cuda_common.h"
#include "cuda/wgmma_sm90.cuh"

#ifdef WG_HAVE_WGMMA
// Rounded to TF32 (not truncated, as the tensor cores read a float: a truncated operand
// is biased towards zero, and the bias adds up in sums over tokens).
static __device__ __forceinline__ float to_tf32(float x) {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
    return __uint_as_float(r);
}

// Byte offset of element (row r, column c) in tma_load boxes of [32 rows, 32 floats]
// (4096 bytes each, 128-byte swizzle) laid side by side, box b holding columns 32 b ..
// 32 b + 31.
static __device__ __forceinline__ uint32_t tma_box_offset(int r, int c) {
    return (uint32_t)((c >> 5) * 4096 + r * 128 + ((((c & 31) >> 2) ^ (r & 7)) << 4) + (c & 3) * 4);
}

static __device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count));
}

// This thread's arrival, announcing `bytes` more to come from the TMA.
static __device__ __forceinline__ void mbar_expect(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}

static __device__ __forceinline__ void mbar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}

// Until the barrier's phase with this parity has completed.
static __device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
    uint32_t done = 0;
    while (!done)
        asm volatile(
            "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(bar), "r"(parity)
            : "memory");
}

// A [rows, 32 floats] box at column c0, row r0 of the tensor map's matrix into shared
// memory at dst (1024-byte aligned), completing `bar`'s transaction bytes.
static __device__ __forceinline__ void tma_load(uint32_t dst, const CUtensorMap *map, int c0, int r0, uint32_t bar) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], "
        "[%4];\n" ::"r"(dst),
        "l"((uint64_t)map), "r"(c0), "r"(r0), "r"(bar)
        : "memory");
}

// A [rows, 128 bytes] box from shared memory at src (1024-byte aligned, swizzled as the
// loads') to column c0, row r0 of the tensor map's matrix (parts outside it are not
// written), in this thread's bulk group; then the group committed.
static __device__ __forceinline__ void tma_store(const CUtensorMap *map, uint32_t src, int c0, int r0) {
    asm volatile(
        "cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%1, %2}], [%3];\n"
        "cp.async.bulk.commit_group;\n" ::"l"((uint64_t)map),
        "r"(c0), "r"(r0), "r"(src)
        : "memory");
}

// Until this thread's bulk stores have read their shared-memory sources (the buffer may
// be written again), or, with reads_only false, have completed.
template <bool reads_only>
static __device__ __forceinline__ void tma_store_wait() {
    if constexpr (reads_only)
        asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
    else
        asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory");
}

// This thread's shared-memory writes made visible to the TMA (the async proxy).
static __device__ __forceinline__ void fence_async_shared() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// Register split of a CTA of two consumer warpgroups and one producer warpgroup (384
// threads, one CTA per SM): the producers, which only issue loads, keep 40 registers and
// the consumers take 232 (2 x 128 x 232 + 128 x 40 <= 65536); each warpgroup calls its
// side once, all of its threads together.
static __device__ __forceinline__ void producer_regs() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
}
static __device__ __forceinline__ void consumer_regs() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
}

// A ring of shared-memory stages, each with a full barrier (one producer arrival plus
// the TMA's bytes) and an empty one (one arrival per consumer warp), the barriers of
// stage s at bars + 16 s and bars + 16 s + 8. Item ch (a chunk, a tile) lives in stage
// ch % stages, its (ch / stages)-th use of that stage.
struct ring {
    uint32_t base, bytes, bars;
    int stages;
    __device__ uint32_t stage(int ch) const { return base + (uint32_t)(ch % stages) * bytes; }
    __device__ uint32_t full(int ch) const { return bars + 16 * (uint32_t)(ch % stages); }
    __device__ uint32_t empty(int ch) const { return full(ch) + 8; }
    __device__ uint32_t parity(int ch) const { return (uint32_t)(ch / stages) & 1; }
    __device__ void init(uint32_t consumer_warps) const {
        for (int s = 0; s < stages; s++) mbar_init(full(s), 1), mbar_init(empty(s), consumer_warps);
    }
    // Producer: once item ch's stage is free (its previous item released), announce
    // `tx` bytes to come; returns the stage's address.
    __device__ uint32_t acquire(int ch, uint32_t tx) const {
        if (ch >= stages) mbar_wait(empty(ch), parity(ch) ^ 1);
        mbar_expect(full(ch), tx);
        return stage(ch);
    }
    __device__ void wait(int ch) const { mbar_wait(full(ch), parity(ch)); }
    // Consumer warp: done with item ch's stage (every lane's reads before lane 0's arrival).
    __device__ void release(int ch, int lane) const {
        __syncwarp();
        if (lane == 0) mbar_arrive(empty(ch));
    }
    // The same for a stage that the threads read with ordinary loads (not only through
    // wgmma): each thread's loads are ordered before the TMA's next write into the stage
    // (a write of the async proxy) by a proxy fence. Without it ptxas issued the arrival
    // while the loads were still outstanding, their values used only later, and the TMA's
    // next chunk could land first: masked_b2b_sm90's output varied from run to run with
    // its C split (session 18).
    __device__ void release_after_loads(int ch, int lane) const {
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        release(ch, lane);
    }
};
#endif

// The driver's cuTensorMapEncodeTiled, through the runtime (no link against libcuda).
static inline PFN_cuTensorMapEncodeTiled_v12000 tma_encode_tiled(void) {
    static PFN_cuTensorMapEncodeTiled_v12000 fn;
    if (!fn) {
        cudaDriverEntryPointQueryResult q;
        void *p = NULL;
        CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q));
        if (q != cudaDriverEntryPointSuccess || !p)
            spd_die("TMA tensor map: the CUDA driver has no cuTensorMapEncodeTiled (needs CUDA 12 or newer)");
        fn = (PFN_cuTensorMapEncodeTiled_v12000)p;
    }
    return fn;
}

// The TMA's view of a row-major matrix [rows, cols] of `type` (elements of `size` bytes)
// with row stride ld elements (ld * size a multiple of 16; base 16-byte aligned): boxes
// of 128 bytes' width (32 floats, 64 bf16) x box_rows rows, stored with the 128-byte
// swizzle (16-byte piece c of row r at c ^ r % 8); reads past the matrix are zeros.
static inline CUtensorMap tma_tensor_map_of(const void *base, CUtensorMapDataType type, int size, int rows, int cols,
                                            int ld, int box_rows) {
    CUtensorMap map;
    const cuuint64_t dims[2] = {(cuuint64_t)cols, (cuuint64_t)rows}, strides[1] = {(cuuint64_t)ld * size};
    const cuuint32_t box[2] = {(cuuint32_t)(128 / size), (cuuint32_t)box_rows}, step[2] = {1, 1};
    const CUresult r = tma_encode_tiled()(&map, type, 2, (void *)base, dims, strides, box, step,
                                          CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                          CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS)
        spd_die("TMA tensor map: cuTensorMapEncodeTiled failed (error %d) for [%d, %d] with row stride %d", (int)r,
                rows, cols, ld);
    return map;
}

// A float matrix (ld a multiple of 4) in boxes of 32 columns.
static inline CUtensorMap tma_tensor_map(const float *base, int rows, int cols, int ld, int box_rows) {
    return tma_tensor_map_of(base, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 4, rows, cols, ld, box_rows);
}

// A bf16 matrix (ld a multiple of 8) in boxes of 64 columns.
static inline CUtensorMap tma_tensor_map_bf16(const void *base, int rows, int cols, int ld, int box_rows) {
    return tma_tensor_map_of(base, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, rows, cols, ld, box_rows);
}

#endif
