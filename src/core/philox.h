// Philox 4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC 2011), the counter-based generator behind every random draw in spd.c.
// A draw is a pure function of (seed, stream, index), so the CPU and the GPU
// produce the same masks element by element, and any element can be generated
// where it is used (in registers inside a fused kernel) without state.
//
// Layout: key = (seed lo, seed hi); counter = (block lo, block hi, stream lo,
// stream hi) with block = index / 4; the draw is output word index % 4.
// Uniform floats take the top 24 bits (float32) or two words' top 53 bits
// (float64), so they lie in [0, 1) and never round up to 1.
//
// The round function is static inline here, an exception to "no definitions
// in headers", so that the CUDA kernels compile the very same code.
#ifndef SPD_PHILOX_H
#define SPD_PHILOX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __CUDACC__
#define SPD_HOST_DEVICE __host__ __device__
#else
#define SPD_HOST_DEVICE
#endif

#define SPD_PHILOX_M0 0xD2511F53u
#define SPD_PHILOX_M1 0xCD9E8D57u
#define SPD_PHILOX_W0 0x9E3779B9u
#define SPD_PHILOX_W1 0xBB67AE85u

static inline SPD_HOST_DEVICE void spd_philox4x32_10(const uint32_t ctr_in[4], const uint32_t key_in[2],
                                                     uint32_t out[4]) {
    uint32_t c0 = ctr_in[0], c1 = ctr_in[1], c2 = ctr_in[2], c3 = ctr_in[3];
    uint32_t k0 = key_in[0], k1 = key_in[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)SPD_PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)SPD_PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
        k0 += SPD_PHILOX_W0;
        k1 += SPD_PHILOX_W1;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

// The four 32-bit words of block `block` of stream `stream`.
static inline SPD_HOST_DEVICE void spd_philox_block(uint64_t seed, uint64_t stream, uint64_t block,
                                                    uint32_t out[4]) {
    uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)stream, (uint32_t)(stream >> 32)};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    spd_philox4x32_10(ctr, key, out);
}

static inline SPD_HOST_DEVICE float spd_u32_to_uniform_f32(uint32_t x) { return (float)(x >> 8) * 0x1p-24f; }

static inline SPD_HOST_DEVICE double spd_u32x2_to_uniform_f64(uint32_t a, uint32_t b) {
    uint64_t bits = ((uint64_t)(a >> 5) << 26) | (uint64_t)(b >> 6);  // 27 + 26 = 53 bits
    return (double)bits * 0x1p-53;
}

// Element `index` of stream `stream`, uniform in [0, 1).
float spd_philox_uniform_f32(uint64_t seed, uint64_t stream, uint64_t index);
// float64 draws use two words: element `index` reads words 2*index and 2*index+1.
double spd_philox_uniform_f64(uint64_t seed, uint64_t stream, uint64_t index);
// out[i] = draw(offset + i) for i < n.
void spd_philox_fill_uniform_f32(uint64_t seed, uint64_t stream, uint64_t offset, size_t n, float *out);
void spd_philox_fill_uniform_f64(uint64_t seed, uint64_t stream, uint64_t offset, size_t n, double *out);
// Standard normals by Box-Muller over pairs of uniforms (for parameter init).
void spd_philox_fill_normal_f64(uint64_t seed, uint64_t stream, size_t n, double std, double *out);

#endif
