// Philox 4x32-10: the Random123 known-answer vectors, then the properties of
// the uniform draws built on it (range, moments, streams, fill = per element).
#include <stdint.h>
#include <string.h>

#include "core/philox.h"
#include "testing.h"

static void kat(const char *name, uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1,
                uint32_t e0, uint32_t e1, uint32_t e2, uint32_t e3) {
    const uint32_t ctr[4] = {c0, c1, c2, c3}, key[2] = {k0, k1}, want[4] = {e0, e1, e2, e3};
    uint32_t out[4];
    spd_philox4x32_10(ctr, key, out);
    test_report(memcmp(out, want, sizeof out) == 0, name, "got %08x %08x %08x %08x, expected %08x %08x %08x %08x",
                out[0], out[1], out[2], out[3], e0, e1, e2, e3);
}

static void test_kat(void) {
    // Random123 kat_vectors, philox4x32_10.
    kat("philox4x32_10 kat zero", 0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8);
    kat("philox4x32_10 kat ones", 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
        0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd);
    kat("philox4x32_10 kat pi", 0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09,
        0x94fdcceb, 0x5001e420, 0x24126ea1);
}

// The layout of philox.h: key = seed, counter = (block, stream), word = index % 4.
static void test_layout(void) {
    uint64_t seed = 0x0123456789abcdefull, stream = 0xfedcba9876543210ull, block = 0x00000001deadbeefull;
    uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)stream, (uint32_t)(stream >> 32)};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)}, a[4], b[4];
    spd_philox4x32_10(ctr, key, a);
    spd_philox_block(seed, stream, block, b);
    int ok = memcmp(a, b, sizeof a) == 0;
    for (int w = 0; w < 4; w++)
        ok = ok && spd_philox_uniform_f32(seed, stream, block * 4 + (uint64_t)w) == spd_u32_to_uniform_f32(a[w]);
    test_report(ok, "philox block and f32 draws follow the documented counter layout", NULL);
}

static void test_extremes(void) {
    float f0 = spd_u32_to_uniform_f32(0), f1 = spd_u32_to_uniform_f32(0xffffffffu);
    double d0 = spd_u32x2_to_uniform_f64(0, 0), d1 = spd_u32x2_to_uniform_f64(0xffffffffu, 0xffffffffu);
    test_report(f0 == 0.0f && f1 < 1.0f && f1 == 1.0f - 0x1p-24f, "uniform_f32 extremes are 0 and 1 - 2^-24",
                "%a %a", f0, f1);
    test_report(d0 == 0.0 && d1 < 1.0 && d1 == 1.0 - 0x1p-53, "uniform_f64 extremes are 0 and 1 - 2^-53", "%a %a",
                d0, d1);
}

enum { N_DRAWS = 1000000 };

static void test_moments(void) {
    static float f[N_DRAWS];
    static double d[N_DRAWS];
    spd_philox_fill_uniform_f32(1234, 7, 0, N_DRAWS, f);
    spd_philox_fill_uniform_f64(1234, 7, 0, N_DRAWS, d);
    int in_range32 = 1, in_range64 = 1;
    double s32 = 0, q32 = 0, s64 = 0, q64 = 0;
    for (int i = 0; i < N_DRAWS; i++) {
        in_range32 &= f[i] >= 0.0f && f[i] < 1.0f;
        in_range64 &= d[i] >= 0.0 && d[i] < 1.0;
        s32 += f[i];
        q32 += (double)f[i] * f[i];
        s64 += d[i];
        q64 += d[i] * d[i];
    }
    double m32 = s32 / N_DRAWS, v32 = q32 / N_DRAWS - m32 * m32;
    double m64 = s64 / N_DRAWS, v64 = q64 / N_DRAWS - m64 * m64;
    // Standard errors: mean sqrt(1/12/N) ~ 2.9e-4, variance sqrt(1/180/N) ~ 7.5e-5; allow 6 sigma.
    double tol_m = 6 * sqrt(1.0 / 12 / N_DRAWS), tol_v = 6 * sqrt(1.0 / 180 / N_DRAWS);
    test_report(in_range32, "uniform_f32 draws lie in [0, 1)", NULL);
    test_report(in_range64, "uniform_f64 draws lie in [0, 1)", NULL);
    test_report(fabs(m32 - 0.5) < tol_m && fabs(v32 - 1.0 / 12) < tol_v, "uniform_f32 mean 1/2 and variance 1/12",
                "mean %.6f var %.6f", m32, v32);
    test_report(fabs(m64 - 0.5) < tol_m && fabs(v64 - 1.0 / 12) < tol_v, "uniform_f64 mean 1/2 and variance 1/12",
                "mean %.6f var %.6f", m64, v64);
}

static void test_streams_and_fill(void) {
    enum { N = 1003 };  // not a multiple of 4: fill crosses block edges
    float a[N], b[N], c[N];
    double da[N], db[N];
    spd_philox_fill_uniform_f32(42, 0, 0, N, a);
    spd_philox_fill_uniform_f32(42, 1, 0, N, b);
    spd_philox_fill_uniform_f32(43, 0, 0, N, c);
    int same_ab = 0, same_ac = 0;
    for (int i = 0; i < N; i++) {
        same_ab += a[i] == b[i];
        same_ac += a[i] == c[i];
    }
    // Two independent 24-bit draws coincide with probability 2^-24.
    test_report(same_ab <= 1, "different streams give different sequences", "%d equal draws of %d", same_ab, N);
    test_report(same_ac <= 1, "different seeds give different sequences", "%d equal draws of %d", same_ac, N);

    uint64_t off = 0xfffffffffull - 5;  // crosses the low counter word
    spd_philox_fill_uniform_f32(9, 3, off, N, a);
    spd_philox_fill_uniform_f64(9, 3, off, N, da);
    int ok32 = 1, ok64 = 1;
    for (int i = 0; i < N; i++) {
        ok32 &= a[i] == spd_philox_uniform_f32(9, 3, off + (uint64_t)i);
        ok64 &= da[i] == spd_philox_uniform_f64(9, 3, off + (uint64_t)i);
    }
    test_report(ok32, "fill_uniform_f32 equals per-element draws", NULL);
    test_report(ok64, "fill_uniform_f64 equals per-element draws", NULL);

    spd_philox_fill_uniform_f64(9, 4, 0, N, db);
    int same_d = 0;
    for (int i = 0; i < N; i++) same_d += da[i] == db[i];
    test_report(same_d == 0, "different streams give different f64 sequences", "%d equal", same_d);
}

static void test_normal(void) {
    enum { N = 200001 };  // odd: the last pair is half used
    static double x[N];
    spd_philox_fill_normal_f64(5, 11, N, 2.0, x);
    double s = 0, q = 0;
    int finite = 1;
    for (int i = 0; i < N; i++) {
        finite &= isfinite(x[i]);
        s += x[i];
        q += x[i] * x[i];
    }
    double m = s / N, v = q / N - m * m;
    // std 2: mean se 2/sqrt(N) ~ 4.5e-3; variance se 4*sqrt(2/N) ~ 1.3e-2.
    test_report(finite && fabs(m) < 6 * 2 / sqrt(N) && fabs(v - 4) < 6 * 4 * sqrt(2.0 / N),
                "fill_normal_f64 has mean 0 and variance std^2", "mean %.5f var %.5f", m, v);
}

int main(void) {
    test_kat();
    test_layout();
    test_extremes();
    test_moments();
    test_streams_and_fill();
    test_normal();
    return test_exit();
}
