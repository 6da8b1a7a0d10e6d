// GPU memory as the core layer sees it: just enough for the spec table to put a
// role's buffer on the device and move tensors in and out. Implemented by
// src/cuda/device.cu; builds without CUDA link src/core/device_none.c, whose
// functions report that this spd was built without CUDA.
#ifndef SPD_DEVICE_H
#define SPD_DEVICE_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

bool spd_device_available(void);  // built with CUDA and a GPU is visible
void *spd_device_malloc(size_t bytes);  // dies with a message naming the size when out of memory
void spd_device_free(void *p);
void spd_device_memset_zero(void *p, size_t bytes);
void spd_device_upload(void *dst, const void *src, size_t bytes);
void spd_device_download(void *dst, const void *src, size_t bytes);
void spd_device_synchronize(void);

#ifdef __cplusplus
}
#endif

#endif
