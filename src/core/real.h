// One source, two precisions. Files that include this header (ops, models, the
// parts of spd and cli that compute) are compiled twice by the Makefile: once as
// float32 (functions suffixed _f32) and once with SPD_F64 defined as float64
// (suffixed _f64). The float64 build is the reference that `spd check` holds to
// 1e-10; the float32 build is what the benchmarks and the GPU are compared with.
#ifndef SPD_REAL_H
#define SPD_REAL_H

#include "core/tensor.h"

#ifdef SPD_F64
typedef double real;
#define RFN(name) name##_f64
#define SPD_REAL_DTYPE SPD_DTYPE_F64
#define SPD_REAL_NAME "float64"
#else
typedef float real;
#define RFN(name) name##_f32
#define SPD_REAL_DTYPE SPD_DTYPE_F32
#define SPD_REAL_NAME "float32"
#endif

#endif
