// The device interface of a build without CUDA: nothing is available, and any
// attempt to use the GPU stops with a clear message.
#include "core/device.h"

#include "core/error.h"

static _Noreturn void no_cuda(void) {
    spd_die_input("this spd was built without CUDA (nvcc was not found at build time): use --device cpu");
}

bool spd_device_available(void) { return false; }
void *spd_device_malloc(size_t bytes) { no_cuda(); }
void spd_device_free(void *p) { (void)p; }
void spd_device_memset_zero(void *p, size_t bytes) { no_cuda(); }
void spd_device_upload(void *dst, const void *src, size_t bytes) { no_cuda(); }
void spd_device_download(void *dst, const void *src, size_t bytes) { no_cuda(); }
void spd_device_synchronize(void) {}
