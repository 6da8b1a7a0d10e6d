// Safetensors read/write. The reader trusts nothing in the file: every length,
// offset and shape is checked with overflow-safe arithmetic before the data is
// touched, and the first problem found is reported as one message naming the
// file, the tensor and what was expected against what was found.
#include "core/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host (the format is little-endian)"
#endif

// The reference implementation refuses headers above 100 MB; so do we.
#define ST_MAX_HEADER 100000000u
// JSON numbers are doubles: integers above 2^53 cannot be told apart.
#define ST_MAX_JSON_INT 9007199254740992.0

// ---------------------------------------------------------------------------
// Messages

// "a number (2.5)", "a string (\"F33\")", ... for "expected X, found Y".
static const char *json_desc(const cJSON *j, char *buf, size_t size) {
    if (!j) snprintf(buf, size, "nothing");
    else if (cJSON_IsNumber(j)) snprintf(buf, size, "%.17g", j->valuedouble);
    else if (cJSON_IsString(j)) snprintf(buf, size, "the string \"%.40s\"%s", j->valuestring,
                                         strlen(j->valuestring) > 40 ? "..." : "");
    else if (cJSON_IsArray(j)) snprintf(buf, size, "an array of %d item%s", cJSON_GetArraySize(j),
                                        cJSON_GetArraySize(j) == 1 ? "" : "s");
    else if (cJSON_IsObject(j)) snprintf(buf, size, "an object");
    else if (cJSON_IsBool(j)) snprintf(buf, size, "%s", cJSON_IsTrue(j) ? "true" : "false");
    else if (cJSON_IsNull(j)) snprintf(buf, size, "null");
    else snprintf(buf, size, "an unknown JSON value");
    return buf;
}

// A non-negative integer that a double holds exactly; 0 or -1 with *why set.
static int json_uint(const cJSON *j, uint64_t *out, const char **why) {
    if (!cJSON_IsNumber(j)) return *why = "not a number", -1;
    double v = j->valuedouble;
    if (!isfinite(v) || v != floor(v)) return *why = "not an integer", -1;
    if (v < 0) return *why = "negative", -1;
    if (v > ST_MAX_JSON_INT) return *why = "larger than 2^53", -1;
    *out = (uint64_t)v;
    return 0;
}

// ---------------------------------------------------------------------------
// Reader

void spd_st_close(spd_st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->count; i++) free(f->entries[i].name);
    free(f->entries);
    for (int i = 0; i < f->meta_count; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    if (f->map) munmap(f->map, f->map_size);
    free(f->path);
    free(f);
}

static int parse_metadata(spd_st_file *f, const cJSON *meta) {
    char found[128];
    if (!cJSON_IsObject(meta))
        return spd_set_error("%s: __metadata__: expected an object of strings, found %s", f->path,
                             json_desc(meta, found, sizeof found));
    int n = cJSON_GetArraySize(meta);
    f->meta_keys = spd_calloc((size_t)n, sizeof *f->meta_keys);
    f->meta_values = spd_calloc((size_t)n, sizeof *f->meta_values);
    const cJSON *kv;
    cJSON_ArrayForEach(kv, meta) {
        if (!cJSON_IsString(kv))
            return spd_set_error("%s: __metadata__ '%s': expected a string, found %s", f->path, kv->string,
                                 json_desc(kv, found, sizeof found));
        for (int i = 0; i < f->meta_count; i++)
            if (strcmp(f->meta_keys[i], kv->string) == 0)
                return spd_set_error("%s: __metadata__: key '%s' appears twice", f->path, kv->string);
        f->meta_keys[f->meta_count] = spd_strdup(kv->string);
        f->meta_values[f->meta_count] = spd_strdup(kv->valuestring);
        f->meta_count++;
    }
    return 0;
}

static int parse_shape(const char *path, const char *name, const cJSON *js, spd_st_entry *e) {
    char found[128];
    if (!cJSON_IsArray(js))
        return spd_set_error("%s: tensor '%s': shape: expected an array of non-negative integers, found %s", path,
                             name, json_desc(js, found, sizeof found));
    int n = cJSON_GetArraySize(js);
    if (n > SPD_MAX_DIMS)
        return spd_set_error("%s: tensor '%s': shape: expected at most %d dimensions, found %d", path, name,
                             SPD_MAX_DIMS, n);
    e->ndim = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, js) {
        uint64_t v;
        const char *why;
        if (json_uint(d, &v, &why) != 0)
            return spd_set_error("%s: tensor '%s': shape[%d]: expected a non-negative integer, found %s (%s)",
                                 path, name, e->ndim, json_desc(d, found, sizeof found), why);
        e->shape[e->ndim++] = (int64_t)v;
    }
    return 0;
}

// Number of bytes the entry's shape and dtype imply; -1 on overflow.
static int entry_nbytes(const char *path, const spd_st_entry *e, uint64_t *nbytes) {
    uint64_t n = 1;
    for (int i = 0; i < e->ndim; i++) {
        if (__builtin_mul_overflow(n, (uint64_t)e->shape[i], &n) || n > (uint64_t)INT64_MAX) {
            char s[256];
            return spd_set_error("%s: tensor '%s': shape %s has more elements than an int64 holds", path, e->name,
                                 spd_shape_str(s, sizeof s, e->ndim, e->shape));
        }
    }
    if (__builtin_mul_overflow(n, (uint64_t)spd_dtype_size(e->dtype), nbytes) || *nbytes > SIZE_MAX) {
        char s[256];
        return spd_set_error("%s: tensor '%s': shape %s of %s overflows a byte count", path, e->name,
                             spd_shape_str(s, sizeof s, e->ndim, e->shape), spd_dtype_name(e->dtype));
    }
    return 0;
}

static int parse_entry(const char *path, const cJSON *item, const unsigned char *data, size_t data_len,
                       spd_st_entry *e) {
    const char *name = item->string;
    char found[128];
    if (!cJSON_IsObject(item))
        return spd_set_error("%s: tensor '%s': expected an object with dtype, shape and data_offsets, found %s",
                             path, name, json_desc(item, found, sizeof found));
    // cJSON keeps repeated keys; a lookup would silently take the first.
    static const char *const keys[3] = {"dtype", "shape", "data_offsets"};
    const cJSON *val[3] = {NULL, NULL, NULL};
    const cJSON *kv;
    cJSON_ArrayForEach(kv, item) {
        for (int k = 0; k < 3; k++) {
            if (strcmp(kv->string, keys[k]) != 0) continue;
            if (val[k]) return spd_set_error("%s: tensor '%s': key '%s' appears twice", path, name, keys[k]);
            val[k] = kv;
        }
    }
    for (int k = 0; k < 3; k++)
        if (!val[k]) return spd_set_error("%s: tensor '%s': missing '%s'", path, name, keys[k]);

    if (!cJSON_IsString(val[0]))
        return spd_set_error("%s: tensor '%s': dtype: expected a string, found %s", path, name,
                             json_desc(val[0], found, sizeof found));
    if (spd_dtype_parse(val[0]->valuestring, &e->dtype) != 0)
        return spd_set_error("%s: tensor '%s': dtype: expected one of F64, F32, BF16, F16, I64, I32, I16, I8, "
                             "U8, BOOL, found \"%.40s\"",
                             path, name, val[0]->valuestring);
    if (parse_shape(path, name, val[1], e) != 0) return -1;

    const cJSON *offs = val[2];
    uint64_t range[2];
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return spd_set_error("%s: tensor '%s': data_offsets: expected an array of 2 integers [begin, end], found %s",
                             path, name, json_desc(offs, found, sizeof found));
    for (int k = 0; k < 2; k++) {
        const char *why;
        const cJSON *o = cJSON_GetArrayItem(offs, k);
        if (json_uint(o, &range[k], &why) != 0)
            return spd_set_error("%s: tensor '%s': data_offsets[%d]: expected a non-negative integer, found %s (%s)",
                                 path, name, k, json_desc(o, found, sizeof found), why);
    }
    if (range[0] > range[1])
        return spd_set_error("%s: tensor '%s': data_offsets: expected begin <= end, found [%" PRIu64 ", %" PRIu64 "]",
                             path, name, range[0], range[1]);
    if (range[1] > data_len)
        return spd_set_error("%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                             "] run past the end of the data section (%zu bytes)",
                             path, name, range[0], range[1], data_len);
    uint64_t nbytes = 0;
    if (entry_nbytes(path, e, &nbytes) != 0) return -1;
    if (range[1] - range[0] != nbytes) {
        char s[256];
        return spd_set_error("%s: tensor '%s': %s %s needs %" PRIu64 " bytes, data_offsets [%" PRIu64 ", %" PRIu64
                             "] hold %" PRIu64,
                             path, name, spd_dtype_name(e->dtype), spd_shape_str(s, sizeof s, e->ndim, e->shape),
                             nbytes, range[0], range[1], range[1] - range[0]);
    }
    e->begin = (size_t)range[0];
    e->end = (size_t)range[1];
    e->data = data + e->begin;
    return 0;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

static int cmp_range(const void *a, const void *b) {
    const spd_st_entry *x = *(const spd_st_entry *const *)a, *y = *(const spd_st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

// Top-level keys are unique (cJSON keeps duplicates as separate items).
static int check_unique_keys(const char *path, const cJSON *root) {
    int n = cJSON_GetArraySize(root);
    const cJSON **items = spd_calloc((size_t)n, sizeof *items);
    int i = 0, rc = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, root) items[i++] = it;
    qsort(items, (size_t)n, sizeof *items, cmp_name);
    for (i = 1; i < n; i++) {
        if (strcmp(items[i - 1]->string, items[i]->string) == 0) {
            if (strcmp(items[i]->string, "__metadata__") == 0)
                rc = spd_set_error("%s: __metadata__ appears twice in the header", path);
            else
                rc = spd_set_error("%s: tensor '%s' appears twice in the header", path, items[i]->string);
            break;
        }
    }
    free(items);
    return rc;
}

// No two non-empty byte ranges share a byte.
static int check_overlaps(const spd_st_file *f) {
    const spd_st_entry **by = spd_calloc((size_t)f->count, sizeof *by);
    int n = 0, rc = 0;
    for (int i = 0; i < f->count; i++)
        if (f->entries[i].end > f->entries[i].begin) by[n++] = &f->entries[i];
    qsort(by, (size_t)n, sizeof *by, cmp_range);
    for (int i = 1; i < n; i++) {
        const spd_st_entry *a = by[i - 1], *b = by[i];
        if (b->begin < a->end) {
            rc = spd_set_error("%s: tensors '%s' [%zu, %zu) and '%s' [%zu, %zu) overlap in the data section", f->path,
                               a->name, a->begin, a->end, b->name, b->begin, b->end);
            break;
        }
    }
    free(by);
    return rc;
}

static int parse_header(spd_st_file *f, const char *text, size_t len, const unsigned char *data, size_t data_len) {
    if (len == 0) return spd_set_error("%s: header is empty (expected a JSON object)", f->path);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t at = end && end >= text ? (size_t)(end - text) : 0;
        return spd_set_error("%s: header is not valid JSON (error near byte %zu of the %zu-byte header)", f->path, at,
                             len);
    }
    int rc = -1;
    char found[128];
    for (const char *p = end; p < text + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            spd_set_error("%s: header has trailing bytes after the JSON object at byte %zu (expected only spaces)",
                          f->path, (size_t)(p - text));
            goto done;
        }
    }
    if (!cJSON_IsObject(root)) {
        spd_set_error("%s: header: expected a JSON object, found %s", f->path, json_desc(root, found, sizeof found));
        goto done;
    }
    if (check_unique_keys(f->path, root) != 0) goto done;
    int n = cJSON_GetArraySize(root);
    f->entries = spd_calloc((size_t)n, sizeof *f->entries);
    const cJSON *item;
    cJSON_ArrayForEach(item, root) {
        if (strcmp(item->string, "__metadata__") == 0) {
            if (parse_metadata(f, item) != 0) goto done;
            continue;
        }
        spd_st_entry *e = &f->entries[f->count];
        e->name = spd_strdup(item->string);
        f->count++;  // counted now so that close frees the name
        if (parse_entry(f->path, item, data, data_len, e) != 0) goto done;
    }
    rc = check_overlaps(f);
done:
    cJSON_Delete(root);
    return rc;
}

spd_st_file *spd_st_open(const char *path) {
    spd_st_file *f = spd_calloc(1, sizeof *f);
    f->path = spd_strdup(path);
    char *text = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        spd_set_error("%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        spd_set_error("%s: cannot stat: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        spd_set_error("%s: expected a regular file", path);
        goto fail;
    }
    if (st.st_size < 8) {
        spd_set_error("%s: expected at least 8 bytes (the header length), found %lld", path, (long long)st.st_size);
        goto fail;
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        spd_set_error("%s: file of %lld bytes is too large to map", path, (long long)st.st_size);
        goto fail;
    }
    f->map_size = (size_t)st.st_size;
    void *map = mmap(NULL, f->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        spd_set_error("%s: cannot map %zu bytes: %s", path, f->map_size, strerror(errno));
        goto fail;
    }
    f->map = map;
    close(fd);
    fd = -1;

    const unsigned char *bytes = f->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | bytes[i];
    if (hlen > ST_MAX_HEADER) {
        spd_set_error("%s: header length %" PRIu64 " is larger than the %u-byte limit (not a safetensors file?)", path,
                      hlen, ST_MAX_HEADER);
        goto fail;
    }
    if (hlen > f->map_size - 8) {
        spd_set_error("%s: header length %" PRIu64 " runs past the end of the file (%zu bytes after the length)", path,
                      hlen, f->map_size - 8);
        goto fail;
    }
    const void *nul = memchr(bytes + 8, '\0', (size_t)hlen);
    if (nul) {
        spd_set_error("%s: header contains a NUL byte at byte %zu (expected JSON text)", path,
                      (size_t)((const unsigned char *)nul - (bytes + 8)));
        goto fail;
    }
    // A terminated copy: cJSON then never reads past the header, whatever it holds.
    text = spd_malloc((size_t)hlen + 1);
    memcpy(text, bytes + 8, (size_t)hlen);
    text[hlen] = '\0';
    size_t data_off = 8 + (size_t)hlen;
    if (parse_header(f, text, (size_t)hlen, bytes + data_off, f->map_size - data_off) != 0) goto fail;
    free(text);
    return f;
fail:
    if (fd >= 0) close(fd);
    free(text);
    spd_st_close(f);
    return NULL;
}

const spd_st_entry *spd_st_find(const spd_st_file *f, const char *name) {
    for (int i = 0; i < f->count; i++)
        if (strcmp(f->entries[i].name, name) == 0) return &f->entries[i];
    return NULL;
}

const char *spd_st_meta(const spd_st_file *f, const char *key) {
    for (int i = 0; i < f->meta_count; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

// ---------------------------------------------------------------------------
// Conversions (element by element through memcpy: the mapping is unaligned)

static bool is_float(spd_dtype dt) {
    return dt == SPD_DTYPE_F64 || dt == SPD_DTYPE_F32 || dt == SPD_DTYPE_BF16 || dt == SPD_DTYPE_F16;
}

static double half_to_double(uint16_t h) {
    int exp = (h >> 10) & 0x1f;
    int mant = h & 0x3ff;
    double v;
    if (exp == 0) v = ldexp((double)mant, -24);  // zero or subnormal
    else if (exp == 31) v = mant ? NAN : INFINITY;
    else v = ldexp((double)(mant | 0x400), exp - 25);
    return (h & 0x8000) ? -v : v;
}

static double load_float(const unsigned char *p, spd_dtype dt) {
    switch (dt) {
    case SPD_DTYPE_F64: {
        double v;
        memcpy(&v, p, 8);
        return v;
    }
    case SPD_DTYPE_F32: {
        float v;
        memcpy(&v, p, 4);
        return v;
    }
    case SPD_DTYPE_BF16: {
        uint16_t h;
        memcpy(&h, p, 2);
        uint32_t bits = (uint32_t)h << 16;
        float v;
        memcpy(&v, &bits, 4);
        return v;
    }
    case SPD_DTYPE_F16: {
        uint16_t h;
        memcpy(&h, p, 2);
        return half_to_double(h);
    }
    default: SPD_ASSERT(!"not a float dtype");
    }
    return 0;
}

static int64_t load_int(const unsigned char *p, spd_dtype dt) {
    switch (dt) {
    case SPD_DTYPE_I64: {
        int64_t v;
        memcpy(&v, p, 8);
        return v;
    }
    case SPD_DTYPE_I32: {
        int32_t v;
        memcpy(&v, p, 4);
        return v;
    }
    case SPD_DTYPE_I16: {
        int16_t v;
        memcpy(&v, p, 2);
        return v;
    }
    case SPD_DTYPE_I8: return (int8_t)p[0];
    case SPD_DTYPE_U8:
    case SPD_DTYPE_BOOL: return p[0];
    default: SPD_ASSERT(!"not an integer dtype");
    }
    return 0;
}

int spd_st_read(const spd_st_file *f, const char *name, spd_dtype out_dtype, int ndim, const int64_t *shape,
                void *out) {
    const spd_st_entry *e = spd_st_find(f, name);
    if (!e) return spd_set_error("%s: tensor '%s' is missing", f->path, name);
    if (ndim >= 0 && !spd_shape_equal(ndim, shape, e->ndim, e->shape)) {
        char want[256], have[256];
        return spd_set_error("%s: tensor '%s': expected shape %s, found %s", f->path, name,
                             spd_shape_str(want, sizeof want, ndim, shape),
                             spd_shape_str(have, sizeof have, e->ndim, e->shape));
    }
    bool want_float = out_dtype == SPD_DTYPE_F64 || out_dtype == SPD_DTYPE_F32;
    bool want_int = out_dtype == SPD_DTYPE_I64 || out_dtype == SPD_DTYPE_I32;
    if (!want_float && !want_int)
        return spd_set_error("%s: tensor '%s': cannot read into %s (expected F64, F32, I64 or I32)", f->path, name,
                             spd_dtype_name(out_dtype));
    if (want_float != is_float(e->dtype))
        return spd_set_error("%s: tensor '%s': expected a%s dtype (to read as %s), found %s", f->path, name,
                             want_float ? " floating-point" : "n integer", spd_dtype_name(out_dtype),
                             spd_dtype_name(e->dtype));
    size_t n = (size_t)spd_numel(e->ndim, e->shape);  // validated by open
    const unsigned char *src = e->data;
    size_t in_size = spd_dtype_size(e->dtype);
    if (e->dtype == out_dtype) {
        if (n) memcpy(out, src, e->end - e->begin);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = src + i * in_size;
        if (out_dtype == SPD_DTYPE_F64) {
            ((double *)out)[i] = load_float(p, e->dtype);
        } else if (out_dtype == SPD_DTYPE_F32) {
            double v = load_float(p, e->dtype);
            if (isfinite(v) && fabs(v) > FLT_MAX)
                return spd_set_error("%s: tensor '%s': element %zu = %.17g does not fit in F32", f->path, name, i, v);
            ((float *)out)[i] = (float)v;
        } else if (out_dtype == SPD_DTYPE_I64) {
            ((int64_t *)out)[i] = load_int(p, e->dtype);
        } else {
            int64_t v = load_int(p, e->dtype);
            if (v < INT32_MIN || v > INT32_MAX)
                return spd_set_error("%s: tensor '%s': element %zu = %" PRId64 " does not fit in I32", f->path, name,
                                     i, v);
            ((int32_t *)out)[i] = (int32_t)v;
        }
    }
    return 0;
}

// ---------------------------------------------------------------------------
// Writer

typedef struct {
    char *name;
    spd_dtype dtype;
    int ndim;
    int64_t shape[SPD_MAX_DIMS];
    size_t nbytes;
    const void *data;
} writer_entry;

struct spd_st_writer {
    char **meta_keys, **meta_values;
    int meta_count, meta_cap;
    writer_entry *entries;
    int count, cap;
};

spd_st_writer *spd_st_writer_new(void) { return spd_calloc(1, sizeof(spd_st_writer)); }

void spd_st_writer_free(spd_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->meta_count; i++) {
        free(w->meta_keys[i]);
        free(w->meta_values[i]);
    }
    free(w->meta_keys);
    free(w->meta_values);
    for (int i = 0; i < w->count; i++) free(w->entries[i].name);
    free(w->entries);
    free(w);
}

static void *grow(void *p, int *cap, size_t elem) {
    *cap = *cap ? *cap * 2 : 16;
    void *q = realloc(p, (size_t)*cap * elem);
    if (!q) spd_die("out of host memory growing a safetensors writer to %d entries", *cap);
    return q;
}

// A repeated key replaces the earlier value, as in a dictionary.
void spd_st_writer_meta(spd_st_writer *w, const char *key, const char *value) {
    for (int i = 0; i < w->meta_count; i++) {
        if (strcmp(w->meta_keys[i], key) == 0) {
            free(w->meta_values[i]);
            w->meta_values[i] = spd_strdup(value);
            return;
        }
    }
    if (w->meta_count == w->meta_cap) {
        int cap = w->meta_cap;  // both arrays grow to the same capacity
        w->meta_keys = grow(w->meta_keys, &cap, sizeof *w->meta_keys);
        w->meta_values = grow(w->meta_values, &w->meta_cap, sizeof *w->meta_values);
    }
    w->meta_keys[w->meta_count] = spd_strdup(key);
    w->meta_values[w->meta_count] = spd_strdup(value);
    w->meta_count++;
}

void spd_st_writer_add(spd_st_writer *w, const char *name, spd_dtype dtype, int ndim, const int64_t *shape,
                       const void *data) {
    SPD_ASSERT(dtype >= 0 && dtype < SPD_DTYPE_COUNT);
    SPD_ASSERT(ndim >= 0 && ndim <= SPD_MAX_DIMS);
    if (w->count == w->cap) w->entries = grow(w->entries, &w->cap, sizeof *w->entries);
    writer_entry *e = &w->entries[w->count++];
    e->name = spd_strdup(name);
    e->dtype = dtype;
    e->ndim = ndim;
    size_t nbytes = spd_dtype_size(dtype);
    for (int i = 0; i < ndim; i++) {
        SPD_ASSERT(shape[i] >= 0);
        e->shape[i] = shape[i];
        SPD_ASSERT(!__builtin_mul_overflow(nbytes, (size_t)shape[i], &nbytes));
    }
    e->nbytes = nbytes;
    e->data = data;
    SPD_ASSERT(data || nbytes == 0);
}

typedef struct {
    char *s;
    size_t len, cap;
} strbuf;

static void sb_put(strbuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        while (b->len + n + 1 > b->cap) b->cap = b->cap ? b->cap * 2 : 4096;
        char *p = realloc(b->s, b->cap);
        if (!p) spd_die("out of host memory building a safetensors header of %zu bytes", b->cap);
        b->s = p;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_puts(strbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_json_string(strbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            sb_put(b, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            sb_put(b, esc, 6);
        } else {
            sb_put(b, (const char *)p, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static void build_header(const spd_st_writer *w, strbuf *b) {
    char num[64];
    sb_puts(b, "{");
    if (w->meta_count) {
        sb_puts(b, "\"__metadata__\":{");
        for (int i = 0; i < w->meta_count; i++) {
            if (i) sb_puts(b, ",");
            sb_json_string(b, w->meta_keys[i]);
            sb_puts(b, ":");
            sb_json_string(b, w->meta_values[i]);
        }
        sb_puts(b, "}");
    }
    size_t offset = 0;
    for (int i = 0; i < w->count; i++) {
        const writer_entry *e = &w->entries[i];
        if (i || w->meta_count) sb_puts(b, ",");
        sb_json_string(b, e->name);
        sb_puts(b, ":{\"dtype\":\"");
        sb_puts(b, spd_dtype_name(e->dtype));
        sb_puts(b, "\",\"shape\":[");
        for (int d = 0; d < e->ndim; d++) {
            snprintf(num, sizeof num, d ? ",%lld" : "%lld", (long long)e->shape[d]);
            sb_puts(b, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%zu,%zu]}", offset, offset + e->nbytes);
        sb_puts(b, num);
        offset += e->nbytes;
    }
    sb_puts(b, "}");
    while (b->len % 8) sb_put(b, " ", 1);  // data then starts 8-aligned
}

static int check_writer_names(const spd_st_writer *w, const char *path) {
    for (int i = 0; i < w->count; i++) {
        if (strcmp(w->entries[i].name, "__metadata__") == 0)
            return spd_set_error("%s: cannot write a tensor named '__metadata__'", path);
        for (int j = 0; j < i; j++)
            if (strcmp(w->entries[i].name, w->entries[j].name) == 0)
                return spd_set_error("%s: tensor '%s' was added twice", path, w->entries[i].name);
    }
    return 0;
}

// Makes the rename durable; best effort (some filesystems refuse).
static void fsync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
    if (!dir) return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

int spd_st_writer_save(spd_st_writer *w, const char *path) {
    if (check_writer_names(w, path) != 0) return -1;
    strbuf hdr = {0};
    build_header(w, &hdr);
    size_t tmp_size = strlen(path) + 32;
    char *tmp = spd_malloc(tmp_size);
    snprintf(tmp, tmp_size, "%s.tmp.%ld", path, (long)getpid());

    const char *what = "cannot create temporary file";
    FILE *fp = fopen(tmp, "wb");
    if (!fp) goto fail;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hdr.len >> (8 * i));
    what = "cannot write";
    if (fwrite(len8, 1, 8, fp) != 8 || fwrite(hdr.s, 1, hdr.len, fp) != hdr.len) goto fail;
    for (int i = 0; i < w->count; i++) {
        const writer_entry *e = &w->entries[i];
        if (e->nbytes && fwrite(e->data, 1, e->nbytes, fp) != e->nbytes) goto fail;
    }
    if (fflush(fp) != 0) goto fail;
    what = "cannot sync";
    if (fsync(fileno(fp)) != 0) goto fail;
    what = "cannot close";
    int rc = fclose(fp);
    fp = NULL;
    if (rc != 0) goto fail;
    {  // Test hook: a crash between the temporary file and the rename (tests/cli_resume.sh).
        const char *hook = getenv("SPD_TEST_FAIL_SAVE");
        if (hook && *hook && strstr(path, hook)) raise(SIGKILL);
    }
    what = "cannot rename the temporary file into place";
    if (rename(tmp, path) != 0) goto fail;
    fsync_parent_dir(path);
    free(tmp);
    free(hdr.s);
    return 0;
fail:;
    int err = errno;
    if (fp) fclose(fp);
    unlink(tmp);  // may not exist: nothing to report then
    spd_set_error("%s: %s (%s): %s", path, what, tmp, strerror(err));
    free(tmp);
    free(hdr.s);
    return -1;
}
