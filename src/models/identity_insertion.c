#include "core/real.h"

#include "models/identity_insertion.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static void add(spd_spec *spec, int64_t rows, int64_t cols, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    spd_spec_vaddf(spec, SPD_REAL_DTYPE, SPD_SHAPE(rows, cols), SPD_ROLE_ACT, SPD_INIT_ZERO, 0, fmt, ap);
    va_end(ap);
}

int RFN(identity_insert)(linear_site **sites, int n_sites, int *n_identity, spd_spec *spec, int N,
                         const spd_module_pattern *patterns, int n_patterns) {
    const char **paths = spd_malloc((size_t)(n_sites ? n_sites : 1) * sizeof *paths);
    for (int i = 0; i < n_sites; i++) paths[i] = (*sites)[i].path;
    int *owners = NULL, n_owners = 0;
    int rc = spd_select_identity_owners(paths, n_sites, patterns, n_patterns, &owners, &n_owners);
    free(paths);
    if (rc) return -1;
    for (int i = 0; i < n_owners && !rc; i++) {
        const linear_site *o = &(*sites)[owners[i]];
        if (o->kind != SITE_LINEAR)
            rc = spd_set_error("identity_module_info: '%s' is an embedding; SPD inserts identities before linear "
                               "modules only", o->path);
        else if (strlen(o->path) + sizeof SPD_PRE_IDENTITY_SUFFIX > SPD_NAME_MAX)
            rc = spd_set_error("identity_module_info: module path '%s' is too long", o->path);
        for (int k = 0; k < *n_identity && !rc; k++)
            if (strncmp((*sites)[n_sites + k].path, o->path, strlen(o->path)) == 0 &&
                strcmp((*sites)[n_sites + k].path + strlen(o->path), SPD_PRE_IDENTITY_SUFFIX) == 0)
                rc = spd_set_error("identity_module_info: '%s' has an inserted identity already", o->path);
    }
    if (rc) {
        free(owners);
        return -1;
    }
    const int total = n_sites + *n_identity + n_owners;
    linear_site *grown = realloc(*sites, (size_t)(total ? total : 1) * sizeof *grown);
    if (!grown) spd_die("out of memory growing the sites for identity insertion");
    *sites = grown;
    for (int i = 0; i < n_owners; i++) {
        const linear_site *o = &grown[owners[i]];
        linear_site *s = &grown[n_sites + *n_identity + i];
        memset(s, 0, sizeof *s);
        const size_t len = strlen(o->path);  // checked above: the suffix fits
        memcpy(s->path, o->path, len);
        memcpy(s->path + len, SPD_PRE_IDENTITY_SUFFIX, sizeof SPD_PRE_IDENTITY_SUFFIX);
        s->kind = SITE_IDENTITY;
        s->d_in = s->d_out = o->d_in;
        add(spec, o->d_in, o->d_in, "act.%s.eye", s->path);
        add(spec, N, o->d_in, "act.%s.out", s->path);
        add(spec, N, o->d_in, "grad.%s.out", s->path);
    }
    free(owners);
    *n_identity += n_owners;
    return 0;
}

void RFN(identity_named_order)(const linear_site *sites, int n_sites, int n_identity, int *order) {
    int n = 0;
    for (int i = 0; i < n_sites; i++) {
        order[n++] = i;
        const size_t len = strlen(sites[i].path);
        for (int k = 0; k < n_identity; k++) {
            const char *p = sites[n_sites + k].path;
            if (strncmp(p, sites[i].path, len) == 0 && strcmp(p + len, SPD_PRE_IDENTITY_SUFFIX) == 0)
                order[n++] = n_sites + k;
        }
    }
    SPD_ASSERT(n == n_sites + n_identity);
}

// The owner of identity site s: the model site whose path is s's without the suffix.
static linear_site *owner_of(linear_site *sites, int n_sites, const linear_site *s) {
    size_t len = strlen(s->path) - (sizeof SPD_PRE_IDENTITY_SUFFIX - 1);
    for (int i = 0; i < n_sites; i++)
        if (strlen(sites[i].path) == len && strncmp(sites[i].path, s->path, len) == 0) return &sites[i];
    SPD_ASSERT(!"an inserted identity without its module");
    return NULL;
}

void RFN(identity_bind)(linear_site *sites, int n_sites, int n_identity, const spd_spec *spec) {
    for (int k = 0; k < n_identity; k++) {
        linear_site *s = &sites[n_sites + k];
        linear_site *o = owner_of(sites, n_sites, s);
        spd_tensor *eye = spd_spec_getf(spec, "act.%s.eye", s->path);
        const int64_t d = s->d_in;
        real *host = spd_calloc((size_t)(d * d), sizeof *host);
        for (int64_t i = 0; i < d; i++) host[i * d + i] = 1;
        spd_tensor_upload(spec, eye, host);  // wherever the spec lives: host or GPU
        free(host);
        s->W = (const real *)eye->data;
        o->pre = s;
        o->pre_out = (real *)spd_spec_getf(spec, "act.%s.out", s->path)->data;
        o->pre_dout = (real *)spd_spec_getf(spec, "grad.%s.out", s->path)->data;
    }
}
