// The sigmoids of ops/sigmoid.h as device functions (C++ only), shared by
// sigmoid.cu and masks.cu: the same arithmetic as src/ops/sigmoid.c, piecewise
// ones in float32, smooth ones in float64 rounded once.
#ifndef SPD_CUDA_SIGMOID_DEV_H
#define SPD_CUDA_SIGMOID_DEV_H

#include "ops/sigmoid.h"

#define SW_BETA 10.0
#define SW_SCALE 0.5
#define SW_XSHIFT 0.5
#define SW_YSHIFT 0.5

static __device__ __forceinline__ double dev_logistic(double t) { return 1.0 / (1.0 + exp(-t)); }
static __device__ __forceinline__ double dev_sw(double t) { return t * dev_logistic(SW_BETA * t); }
static __device__ __forceinline__ double dev_usw(double t) { return t * dev_logistic(-SW_BETA * t); }
static __device__ __forceinline__ double dev_dsw(double t) {
    double s = dev_logistic(SW_BETA * t);
    return s + SW_BETA * t * s * (1.0 - s);
}
static __device__ __forceinline__ double dev_dusw(double t) {
    double s = dev_logistic(-SW_BETA * t);
    return s - SW_BETA * t * s * (1.0 - s);
}

static __device__ __forceinline__ float dev_clamp01(float x) { return x < 0 ? 0.0f : (x > 1 ? 1.0f : x); }

static __device__ __forceinline__ float dev_sigmoid(spd_sigmoid_fn f, float x) {
    const float alpha = (float)SPD_SIGMOID_ALPHA;
    switch (f) {
    case SPD_SIGMOID_FN_HARD:
    case SPD_SIGMOID_FN_LOWER_LEAKY_HARD: return dev_clamp01(x);
    case SPD_SIGMOID_FN_UPPER_LEAKY_HARD: return x > 1 ? __fadd_rn(1.0f, __fmul_rn(alpha, x - 1)) : dev_clamp01(x);
    case SPD_SIGMOID_FN_LEAKY_HARD: return x > 0 ? (x > 1 ? 1.0f : x) : __fmul_rn(alpha, x);
    case SPD_SIGMOID_FN_LOGISTIC: return (float)dev_logistic(x);
    case SPD_SIGMOID_FN_SWISH_HARD: {
        double z = (double)x - SW_XSHIFT;
        return (float)(SW_YSHIFT + (dev_usw(z - SW_SCALE) - dev_sw(z)) + (dev_sw(z + SW_SCALE) - dev_usw(z)));
    }
    default: return __int_as_float(0x7fc00000);  // validated on the host
    }
}

// dx for dy at the forward input x.
static __device__ __forceinline__ float dev_sigmoid_backward(spd_sigmoid_fn f, float g, float x) {
    const float alpha = (float)SPD_SIGMOID_ALPHA;
    switch (f) {
    case SPD_SIGMOID_FN_HARD: return (x >= 0 && x <= 1) ? g : 0.0f;
    case SPD_SIGMOID_FN_LOWER_LEAKY_HARD: return x <= 0 ? (g < 0 ? __fmul_rn(alpha, g) : 0.0f) : (x <= 1 ? g : 0.0f);
    case SPD_SIGMOID_FN_UPPER_LEAKY_HARD: return x > 1 ? __fmul_rn(alpha, g) : (x >= 0 ? g : 0.0f);
    case SPD_SIGMOID_FN_LEAKY_HARD: return x > 0 ? (x <= 1 ? g : 0.0f) : __fmul_rn(alpha, g);
    case SPD_SIGMOID_FN_LOGISTIC: {
        double s = dev_logistic(x);
        return (float)(g * s * (1.0 - s));
    }
    case SPD_SIGMOID_FN_SWISH_HARD: {
        double z = (double)x - SW_XSHIFT;
        return (float)(g * ((dev_dusw(z - SW_SCALE) - dev_dsw(z)) + (dev_dsw(z + SW_SCALE) - dev_dusw(z))));
    }
    default: return __int_as_float(0x7fc00000);
    }
}

#endif
