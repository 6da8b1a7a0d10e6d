// One source, several backends. Files that include this header (ops, models,
// the parts of spd that compute) are compiled once per backend by the Makefile:
//   float32 CPU  (functions suffixed _f32)
//   float64 CPU  (-DSPD_F64, suffixed _f64): the reference `spd check` holds to 1e-10
//   CUDA         (-DSPD_CUDA, suffixed _cuda, float32 on the GPU): the model code
//                is shared, the ops come from src/cuda/*.cu instead of src/ops/*.c.
// SPD_REAL_ON_DEVICE says whether tensors of this backend live in GPU memory.
#ifndef SPD_REAL_H
#define SPD_REAL_H

#include "core/tensor.h"

#if defined(SPD_CUDA)
typedef float real;
#define RFN(name) name##_cuda
#define SPD_REAL_DTYPE SPD_DTYPE_F32
#define SPD_REAL_NAME "cuda-f32"
#define SPD_REAL_ON_DEVICE 1
#elif defined(SPD_F64)
typedef double real;
#define RFN(name) name##_f64
#define SPD_REAL_DTYPE SPD_DTYPE_F64
#define SPD_REAL_NAME "float64"
#define SPD_REAL_ON_DEVICE 0
#else
typedef float real;
#define RFN(name) name##_f32
#define SPD_REAL_DTYPE SPD_DTYPE_F32
#define SPD_REAL_NAME "float32"
#define SPD_REAL_ON_DEVICE 0
#endif

#endif
