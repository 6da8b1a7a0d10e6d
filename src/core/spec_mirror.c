// See spec_mirror.h.
#include "core/spec_mirror.h"

#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "core/error.h"

static void *part_ptr(const spd_spec *spec, const spd_tensor *t, spd_mirror_part part) {
    switch (part) {
    case SPD_MIRROR_VALUES: return t->data;
    case SPD_MIRROR_GRAD: return spd_spec_grad(spec, t);
    case SPD_MIRROR_ADAM_M: return spd_spec_adam_m(spec, t);
    case SPD_MIRROR_ADAM_V: return spd_spec_adam_v(spec, t);
    }
    spd_die("spec_mirror: bad part %d", (int)part);
}

static bool is_float(const spd_tensor *t) { return t->dtype == SPD_DTYPE_F32 || t->dtype == SPD_DTYPE_F64; }

void spd_tensor_read_f64(const spd_spec *spec, const spd_tensor *t, spd_mirror_part part, double *out) {
    SPD_ASSERT(is_float(t));
    const int64_t n = spd_tensor_numel(t);
    void *p = part_ptr(spec, t, part);
    void *host = spec->on_device ? spd_malloc(t->nbytes ? t->nbytes : 1) : p;
    if (spec->on_device) spd_device_download(host, p, t->nbytes);
    if (t->dtype == SPD_DTYPE_F64) memcpy(out, host, (size_t)n * sizeof(double));
    else
        for (int64_t i = 0; i < n; i++) out[i] = ((const float *)host)[i];
    if (spec->on_device) free(host);
}

void spd_tensor_write_f64(spd_spec *spec, const spd_tensor *t, spd_mirror_part part, const double *in) {
    SPD_ASSERT(is_float(t));
    const int64_t n = spd_tensor_numel(t);
    void *p = part_ptr(spec, t, part);
    void *host = spec->on_device ? spd_malloc(t->nbytes ? t->nbytes : 1) : p;
    if (t->dtype == SPD_DTYPE_F64) memcpy(host, in, (size_t)n * sizeof(double));
    else
        for (int64_t i = 0; i < n; i++) ((float *)host)[i] = (float)in[i];
    if (spec->on_device) {
        spd_device_upload(p, host, t->nbytes);
        free(host);
    }
}

int spd_spec_copy_role(spd_spec *dst, const spd_spec *src, spd_role role, spd_mirror_part part) {
    SPD_ASSERT(part == SPD_MIRROR_VALUES || role == SPD_ROLE_TRAINED);
    for (int i = 0; i < src->count; i++) {
        const spd_tensor *s = &src->tensors[i];
        if (s->role != role || !is_float(s)) continue;
        spd_tensor *d = spd_spec_find(dst, s->name);
        if (!d) return spd_set_error("spec mirror: no tensor '%s' in the destination table", s->name);
        int64_t n = spd_tensor_numel(s);
        if (spd_tensor_numel(d) != n || !is_float(d) || d->role != role)
            return spd_set_error("spec mirror: '%s': expected %lld float elements of the same role, found %lld",
                                 s->name, (long long)n, (long long)spd_tensor_numel(d));
        double *tmp = spd_malloc((size_t)(n ? n : 1) * sizeof(double));
        spd_tensor_read_f64(src, s, part, tmp);
        spd_tensor_write_f64(dst, d, part, tmp);
        free(tmp);
    }
    return 0;
}
