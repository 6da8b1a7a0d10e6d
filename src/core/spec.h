// The spec table: every named tensor of a model (target weights, components,
// activations) with its shape, dtype, role and init. It drives allocation
// (one buffer per role, carved in table order), safetensors I/O, the
// optimizer (one pass over the TRAINED buffer) and per-tensor reports.
#ifndef SPD_SPEC_H
#define SPD_SPEC_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include "core/tensor.h"

// Each tensor starts on this boundary inside its role's buffer: wide enough for
// 16-byte vector loads and for cudaMalloc-like alignment on the GPU later.
#define SPD_TENSOR_ALIGN 256

typedef struct {
    spd_tensor *tensors;
    int count, cap;
    void *buf[SPD_ROLE_COUNT];
    size_t bytes[SPD_ROLE_COUNT];
    // Mirrors of buf[SPD_ROLE_TRAINED], same layout.
    void *grad, *adam_m, *adam_v;
    bool on_device;  // buffers in GPU memory (set before spd_spec_alloc)
} spd_spec;

void spd_spec_init(spd_spec *spec);
// Adds a tensor (before spd_spec_alloc) and returns its index. Names are unique.
int spd_spec_add(spd_spec *spec, const char *name, spd_dtype dtype, int ndim, const int64_t *shape,
                 spd_role role, spd_init init, double init_std);
// SPD_SHAPE(a, b) expands to a shape's length and its array, so the two cannot disagree:
//   spd_spec_add(spec, name, dtype, SPD_SHAPE(N, d), role, init, std)
#define SPD_SHAPE(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__}
// spd_spec_add with the name from a printf format ("target_model.h.%d.rms_1.weight").
int spd_spec_vaddf(spd_spec *spec, spd_dtype dtype, int ndim, const int64_t *shape, spd_role role, spd_init init,
                   double init_std, const char *fmt, va_list ap);
// spd_spec_get with the name from a printf format (internal: dies if absent).
spd_tensor *spd_spec_getf(const spd_spec *spec, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
spd_tensor *spd_spec_vgetf(const spd_spec *spec, const char *fmt, va_list ap);
spd_tensor *spd_spec_find(const spd_spec *spec, const char *name);  // NULL if absent
spd_tensor *spd_spec_get(const spd_spec *spec, const char *name);   // internal: dies if absent
// One zeroed allocation per role (plus grad and Adam mirrors of TRAINED),
// in host or GPU memory, then every tensor's data pointer. Values are not drawn here.
void spd_spec_alloc(spd_spec *spec);
// Fills every tensor of `role` by its init: zeros, ones, or N(0, init_std^2)
// drawn from Philox stream (seed, tensor index), the same numbers on host and
// device. Float tensors only; others stay zero.
void spd_spec_init_values(spd_spec *spec, spd_role role, uint64_t seed);
void *spd_spec_grad(const spd_spec *spec, const spd_tensor *t);
void *spd_spec_adam_m(const spd_spec *spec, const spd_tensor *t);
void *spd_spec_adam_v(const spd_spec *spec, const spd_tensor *t);
// Copies host bytes (t->nbytes) into t / t into host memory, wherever t lives.
void spd_tensor_upload(const spd_spec *spec, spd_tensor *t, const void *host);
void spd_tensor_download(const spd_spec *spec, const spd_tensor *t, void *host);
// Number of elements the TRAINED buffer spans, padding included (padding stays 0).
size_t spd_spec_trained_elems(const spd_spec *spec);
void spd_spec_zero_grad(spd_spec *spec);
// The memory account: bytes per role, printed as a small table.
void spd_spec_print_memory(const spd_spec *spec, FILE *out);
void spd_spec_free(spd_spec *spec);

#endif
