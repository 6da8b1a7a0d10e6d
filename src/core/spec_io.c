#include "core/spec_io.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static const char target_prefix[] = "target_model.";

int spd_spec_load_tensor(const spd_spec *spec, const spd_st_file *f, spd_tensor *t) {
    const char *name = t->name;
    size_t plen = sizeof target_prefix - 1;
    if (!spd_st_find(f, name) && strncmp(name, target_prefix, plen) == 0 && spd_st_find(f, name + plen))
        name += plen;
    if (!spec->on_device) return spd_st_read(f, name, t->dtype, t->ndim, t->shape, t->data);
    void *staging = spd_malloc(t->nbytes ? t->nbytes : 1);
    int rc = spd_st_read(f, name, t->dtype, t->ndim, t->shape, staging);
    if (rc == 0) spd_tensor_upload(spec, t, staging);
    free(staging);
    return rc;
}
