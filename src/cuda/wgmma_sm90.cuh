// Hopper warpgroup tensor-core helpers shared by the *_sm90.cu kernels: shared-memory
// descriptors, cp.async, and the wgmma instruction forms they use. The instructions
// exist only in sm_90a code, so everything here is inside WG_HAVE_WGMMA.
#ifndef SPD_CUDA_WGMMA_SM90_CUH
#define SPD_CUDA_WGMMA_SM90_CUH

#include <stdint.h>

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define WG_HAVE_WGMMA 1
#endif

#ifdef WG_HAVE_WGMMA
// Shared-memory matrix descriptor: K-major, 128-byte swizzle, 8-row groups 1024 bytes apart.
static __device__ __forceinline__ uint64_t smem_desc(uint32_t addr) {
    return (uint64_t)((addr & 0x3FFFF) >> 4) | (uint64_t)(16 >> 4) << 16 | (uint64_t)(1024 >> 4) << 32 | 1ull << 62;
}

static __device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}

// The 64 accumulators of an m64n128 form: their place in the operand list (%0..%63)
// and their in/out constraints.
#define WG_ACC64_REGS                                                                                                \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, " \
    "%24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, "   \
    "%46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
#define WG_ACC64(d)                                                                                                   \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),       \
        "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),        \
        "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),       \
        "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]),       \
        "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]),       \
        "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),       \
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),       \
        "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])

// One wgmma m64n128 step on the 64 accumulators d, both operands from shared memory:
// `instr` and its operands after the two descriptors (%64, %65).
#define WG_WGMMA_M64N128_SS(instr, tail, d, a, b) \
    asm volatile("{\n" instr " " WG_ACC64_REGS ", %64, %65, " tail ";\n}\n" : WG_ACC64(d) : "l"(a), "l"(b))

// The same with a 32-wide accumulator (16 registers), both operands from shared memory.
#define WG_WGMMA_M64N32_SS(instr, tail, d, a, b)                                                                      \
    asm volatile("{\n" instr " "                                                                                      \
                 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, %16, %17, " tail ";\n}\n"   \
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),    \
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]),           \
                   "+f"(d[15])                                                                                        \
                 : "l"(a), "l"(b))

// m64n128 with A from registers: four 32-bit registers per thread in the m64 x k
// fragment layout (tf32: rows l/4 and l/4 + 8 of the warp's 16, columns l%4 and
// l%4 + 4 of the k8 step; bf16: pairs of columns), B from shared memory.
#define WG_WGMMA_M64N128_RS(instr, tail, d, a0, a1, a2, a3, b)                                        \
    asm volatile("{\n" instr " " WG_ACC64_REGS ", {%64, %65, %66, %67}, %68, " tail ";\n}\n" : WG_ACC64(d) \
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(b))

// m64n32 with A from registers (same fragment layout as above), B from shared memory:
// 16 accumulators; and the operand list of 32 accumulators (m64n64).
#define WG_ACC16_REGS "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}"
#define WG_ACC16(d)                                                                                               \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),   \
        "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
#define WG_WGMMA_M64N32_RS(instr, tail, d, a0, a1, a2, a3, b)                                         \
    asm volatile("{\n" instr " " WG_ACC16_REGS ", {%16, %17, %18, %19}, %20, " tail ";\n}\n" : WG_ACC16(d) \
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(b))
// d [64 x 32 per warpgroup] = a b (first: d not read, so nothing has to zero it while
// other wgmmas are in flight) or d += a b, one TF32 k8 step; a: the four fragment
// registers of the step, b: B's descriptor.
template <bool first>
static __device__ __forceinline__ void wgmma_m64n32k8_rs(float *d, const float *a, uint64_t b) {
    const uint32_t a0 = __float_as_uint(a[0]), a1 = __float_as_uint(a[1]), a2 = __float_as_uint(a[2]),
                   a3 = __float_as_uint(a[3]);
    if constexpr (first)
        WG_WGMMA_M64N32_RS("wgmma.mma_async.sync.aligned.m64n32k8.f32.tf32.tf32", "0, 1, 1", d, a0, a1, a2, a3, b);
    else
        WG_WGMMA_M64N32_RS("wgmma.mma_async.sync.aligned.m64n32k8.f32.tf32.tf32", "1, 1, 1", d, a0, a1, a2, a3, b);
}
#define WG_ACC32_REGS                                                                                                \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, " \
    "%24, %25, %26, %27, %28, %29, %30, %31}"
#define WG_ACC32(d)                                                                                                \
    WG_ACC16(d), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]),         \
        "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]),    \
        "+f"(d[31])
// m64n64 with A from registers (same fragment layout), B from shared memory: 32 accumulators.
#define WG_WGMMA_M64N64_RS(instr, tail, d, a0, a1, a2, a3, b)                                         \
    asm volatile("{\n" instr " " WG_ACC32_REGS ", {%32, %33, %34, %35}, %36, " tail ";\n}\n" : WG_ACC32(d) \
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(b))

// m64n176 with A from registers (same fragment layout), B from shared memory: 88
// accumulators (the back-to-back kernel's wide column tile).
#define WG_ACC88_REGS                                                                                            \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, " \
    "%23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, "  \
    "%44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, "  \
    "%65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, "  \
    "%86, %87}"
#define WG_ACC88(d)                                                                                             \
    WG_ACC64(d), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]),     \
        "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), \
        "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), \
        "+f"(d[87])
#define WG_WGMMA_M64N176_RS(instr, tail, d, a0, a1, a2, a3, b)                                        \
    asm volatile("{\n" instr " " WG_ACC88_REGS ", {%88, %89, %90, %91}, %92, " tail ";\n}\n" : WG_ACC88(d) \
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(b))

// d [64, N] = a b + (accumulate ? d : 0), TF32, N = 64, 128 or 176, a from registers in
// the fragment order (a0, a1, a2, a3), b B's descriptor: a first step starts the sums
// without an instruction zeroing d (which would serialize the wgmmas, C7515).
template <int N>
static __device__ __forceinline__ void wgmma_acc_rs(float *d, float a0, float a1, float a2, float a3, uint64_t b,
                                                    int accumulate) {
    const uint32_t r0 = __float_as_uint(a0), r1 = __float_as_uint(a1), r2 = __float_as_uint(a2),
                   r3 = __float_as_uint(a3);
    static_assert(N == 64 || N == 128 || N == 176, "wgmma_acc_rs: N is 64, 128 or 176");
    if constexpr (N == 64)
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n64k8.f32.tf32.tf32 " WG_ACC32_REGS
                     ", {%32, %33, %34, %35}, %36, p, 1, 1;\n}\n"
                     : WG_ACC32(d)
                     : "r"(r0), "r"(r1), "r"(r2), "r"(r3), "l"(b), "r"(accumulate));
    else if constexpr (N == 128)
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n128k8.f32.tf32.tf32 " WG_ACC64_REGS
                     ", {%64, %65, %66, %67}, %68, p, 1, 1;\n}\n"
                     : WG_ACC64(d)
                     : "r"(r0), "r"(r1), "r"(r2), "r"(r3), "l"(b), "r"(accumulate));
    else
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %93, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n176k8.f32.tf32.tf32 " WG_ACC88_REGS
                     ", {%88, %89, %90, %91}, %92, p, 1, 1;\n}\n"
                     : WG_ACC88(d)
                     : "r"(r0), "r"(r1), "r"(r2), "r"(r3), "l"(b), "r"(accumulate));
}

// After a wait for the wgmmas that write r: r counts as rewritten here, so the compiler
// cannot move a read of it above the wait (ptxas would then serialize the wgmmas, C7514).
template <int n>
static __device__ __forceinline__ void fence_regs(float *r) {
#pragma unroll
    for (int i = 0; i < n; i++) asm volatile("" : "+f"(r[i])::"memory");
}

#endif  // WG_HAVE_WGMMA
#endif
