#include "spd/identity_patterns.h"

#include <stdlib.h>

#include "core/error.h"

spd_module_pattern *spd_identity_patterns(const spd_config *cfg, int *n) {
    *n = cfg->has_identity_module_info ? cfg->identity_module_info.count : 0;
    if (*n == 0) return NULL;
    spd_module_pattern *p = spd_calloc((size_t)*n, sizeof *p);
    for (int i = 0; i < *n; i++)
        p[i] = (spd_module_pattern){cfg->identity_module_info.items[i].module_pattern,
                                    (int)cfg->identity_module_info.items[i].C};
    return p;
}
