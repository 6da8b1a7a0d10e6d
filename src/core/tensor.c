#include "core/tensor.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_info[SPD_DTYPE_COUNT] = {
    [SPD_DTYPE_F32] = {"F32", 4}, [SPD_DTYPE_F64] = {"F64", 8}, [SPD_DTYPE_BF16] = {"BF16", 2},
    [SPD_DTYPE_F16] = {"F16", 2}, [SPD_DTYPE_I64] = {"I64", 8}, [SPD_DTYPE_I32] = {"I32", 4},
    [SPD_DTYPE_I16] = {"I16", 2}, [SPD_DTYPE_I8] = {"I8", 1},   [SPD_DTYPE_U8] = {"U8", 1},
    [SPD_DTYPE_BOOL] = {"BOOL", 1},
};

size_t spd_dtype_size(spd_dtype dt) { return dtype_info[dt].size; }
const char *spd_dtype_name(spd_dtype dt) { return dtype_info[dt].name; }

int spd_dtype_parse(const char *name, spd_dtype *out) {
    for (int i = 0; i < SPD_DTYPE_COUNT; i++) {
        if (strcmp(name, dtype_info[i].name) == 0) {
            *out = (spd_dtype)i;
            return 0;
        }
    }
    return -1;
}

int64_t spd_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

int64_t spd_tensor_numel(const spd_tensor *t) { return spd_numel(t->ndim, t->shape); }

const char *spd_shape_str(char *buf, size_t size, int ndim, const int64_t *shape) {
    size_t used = 0;
    buf[0] = '\0';
    used += (size_t)snprintf(buf + used, size - used, "[");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (used < size) snprintf(buf + used, size - used, "]");
    return buf;
}

bool spd_shape_equal(int ndim_a, const int64_t *a, int ndim_b, const int64_t *b) {
    if (ndim_a != ndim_b) return false;
    for (int i = 0; i < ndim_a; i++)
        if (a[i] != b[i]) return false;
    return true;
}
