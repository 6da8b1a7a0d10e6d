#include "core/spec.h"

#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "core/error.h"
#include "core/philox.h"

static const char *role_names[SPD_ROLE_COUNT] = {"frozen", "trained", "activations"};

void spd_spec_init(spd_spec *spec) { memset(spec, 0, sizeof *spec); }

static size_t align_up(size_t n) { return (n + SPD_TENSOR_ALIGN - 1) / SPD_TENSOR_ALIGN * SPD_TENSOR_ALIGN; }

int spd_spec_add(spd_spec *spec, const char *name, spd_dtype dtype, int ndim, const int64_t *shape,
                 spd_role role, spd_init init, double init_std) {
    SPD_ASSERT(spec->buf[role] == NULL);  // the table is closed once allocated
    SPD_ASSERT(ndim >= 0 && ndim <= SPD_MAX_DIMS);
    SPD_ASSERT(strlen(name) < SPD_NAME_MAX);
    if (spd_spec_find(spec, name)) spd_die("spec table: tensor '%s' added twice", name);
    if (spec->count == spec->cap) {
        spec->cap = spec->cap ? 2 * spec->cap : 64;
        spec->tensors = realloc(spec->tensors, (size_t)spec->cap * sizeof *spec->tensors);
        if (!spec->tensors) spd_die("out of host memory growing the spec table");
    }
    spd_tensor *t = &spec->tensors[spec->count];
    memset(t, 0, sizeof *t);
    strcpy(t->name, name);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        SPD_ASSERT(shape[i] >= 0);
        t->shape[i] = shape[i];
    }
    t->role = role;
    t->init = init;
    t->init_std = init_std;
    t->nbytes = (size_t)spd_numel(ndim, shape) * spd_dtype_size(dtype);
    t->offset = spec->bytes[role];
    spec->bytes[role] += align_up(t->nbytes);
    return spec->count++;
}

static void format_name(char name[SPD_NAME_MAX], const char *fmt, va_list ap) {
    int n = vsnprintf(name, SPD_NAME_MAX, fmt, ap);
    SPD_ASSERT(n > 0 && n < SPD_NAME_MAX);
}

int spd_spec_vaddf(spd_spec *spec, spd_dtype dtype, int ndim, const int64_t *shape, spd_role role, spd_init init,
                   double init_std, const char *fmt, va_list ap) {
    char name[SPD_NAME_MAX];
    format_name(name, fmt, ap);
    return spd_spec_add(spec, name, dtype, ndim, shape, role, init, init_std);
}

spd_tensor *spd_spec_vgetf(const spd_spec *spec, const char *fmt, va_list ap) {
    char name[SPD_NAME_MAX];
    format_name(name, fmt, ap);
    return spd_spec_get(spec, name);
}

spd_tensor *spd_spec_getf(const spd_spec *spec, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    spd_tensor *t = spd_spec_vgetf(spec, fmt, ap);
    va_end(ap);
    return t;
}

spd_tensor *spd_spec_find(const spd_spec *spec, const char *name) {
    for (int i = 0; i < spec->count; i++)
        if (strcmp(spec->tensors[i].name, name) == 0) return &spec->tensors[i];
    return NULL;
}

spd_tensor *spd_spec_get(const spd_spec *spec, const char *name) {
    spd_tensor *t = spd_spec_find(spec, name);
    if (!t) spd_die("spec table has no tensor '%s'", name);
    return t;
}

static void *alloc_role(const spd_spec *spec, size_t bytes) {
    if (bytes == 0) return NULL;
    if (spec->on_device) {
        void *d = spd_device_malloc(bytes);
        spd_device_memset_zero(d, bytes);
        return d;
    }
    void *p = NULL;
    if (posix_memalign(&p, SPD_TENSOR_ALIGN, bytes) != 0) spd_die("out of host memory allocating %zu bytes", bytes);
    memset(p, 0, bytes);
    return p;
}

void spd_spec_alloc(spd_spec *spec) {
    for (int r = 0; r < SPD_ROLE_COUNT; r++) spec->buf[r] = alloc_role(spec, spec->bytes[r]);
    size_t trained = spec->bytes[SPD_ROLE_TRAINED];
    spec->grad = alloc_role(spec, trained);
    spec->adam_m = alloc_role(spec, trained);
    spec->adam_v = alloc_role(spec, trained);
    for (int i = 0; i < spec->count; i++) {
        spd_tensor *t = &spec->tensors[i];
        t->data = (char *)spec->buf[t->role] + t->offset;
    }
}

void spd_tensor_upload(const spd_spec *spec, spd_tensor *t, const void *host) {
    if (spec->on_device) spd_device_upload(t->data, host, t->nbytes);
    else if (t->data != host) memcpy(t->data, host, t->nbytes);
}

void spd_tensor_download(const spd_spec *spec, const spd_tensor *t, void *host) {
    if (spec->on_device) spd_device_download(host, t->data, t->nbytes);
    else if (t->data != host) memcpy(host, t->data, t->nbytes);
}

void spd_spec_init_values(spd_spec *spec, spd_role role, uint64_t seed) {
    for (int i = 0; i < spec->count; i++) {
        spd_tensor *t = &spec->tensors[i];
        if (t->role != role || (t->dtype != SPD_DTYPE_F32 && t->dtype != SPD_DTYPE_F64)) continue;
        int64_t n = spd_tensor_numel(t);
        double *values = spd_calloc((size_t)n, sizeof *values);
        if (t->init == SPD_INIT_ONES)
            for (int64_t j = 0; j < n; j++) values[j] = 1.0;
        else if (t->init == SPD_INIT_NORMAL)
            spd_philox_fill_normal_f64(seed, (uint64_t)i, (size_t)n, t->init_std, values);
        if (t->dtype == SPD_DTYPE_F32) {  // narrow in place: float32 values fit in the first half
            float *narrow = (float *)values;
            for (int64_t j = 0; j < n; j++) narrow[j] = (float)values[j];
        }
        spd_tensor_upload(spec, t, values);
        free(values);
    }
}

static void *mirror(const spd_spec *spec, void *base, const spd_tensor *t) {
    SPD_ASSERT(t->role == SPD_ROLE_TRAINED && base != NULL);
    return (char *)base + t->offset;
}

void *spd_spec_grad(const spd_spec *spec, const spd_tensor *t) { return mirror(spec, spec->grad, t); }
void *spd_spec_adam_m(const spd_spec *spec, const spd_tensor *t) { return mirror(spec, spec->adam_m, t); }
void *spd_spec_adam_v(const spd_spec *spec, const spd_tensor *t) { return mirror(spec, spec->adam_v, t); }

size_t spd_spec_trained_elems(const spd_spec *spec) {
    size_t elem = 0;
    for (int i = 0; i < spec->count; i++)
        if (spec->tensors[i].role == SPD_ROLE_TRAINED) elem = spd_dtype_size(spec->tensors[i].dtype);
    return elem ? spec->bytes[SPD_ROLE_TRAINED] / elem : 0;
}

void spd_spec_zero_grad(spd_spec *spec) {
    if (!spec->grad) return;
    if (spec->on_device) spd_device_memset_zero(spec->grad, spec->bytes[SPD_ROLE_TRAINED]);
    else memset(spec->grad, 0, spec->bytes[SPD_ROLE_TRAINED]);
}

void spd_spec_print_memory(const spd_spec *spec, FILE *out) {
    size_t total = 0;
    fprintf(out, "%-22s %14s %8s\n", "memory", "bytes", "tensors");
    for (int r = 0; r < SPD_ROLE_COUNT; r++) {
        int n = 0;
        for (int i = 0; i < spec->count; i++) n += spec->tensors[i].role == (spd_role)r;
        fprintf(out, "%-22s %14zu %8d\n", role_names[r], spec->bytes[r], n);
        total += spec->bytes[r];
    }
    size_t trained = spec->bytes[SPD_ROLE_TRAINED];
    fprintf(out, "%-22s %14zu\n", "gradients + moments", 3 * trained);
    total += 3 * trained;
    fprintf(out, "%-22s %14zu (%.1f MiB)\n", "total", total, total / 1048576.0);
}

static void free_role(const spd_spec *spec, void *p) {
    if (spec->on_device) spd_device_free(p);
    else free(p);
}

void spd_spec_free(spd_spec *spec) {
    for (int r = 0; r < SPD_ROLE_COUNT; r++) free_role(spec, spec->buf[r]);
    free_role(spec, spec->grad);
    free_role(spec, spec->adam_m);
    free_role(spec, spec->adam_v);
    free(spec->tensors);
    memset(spec, 0, sizeof *spec);
}
