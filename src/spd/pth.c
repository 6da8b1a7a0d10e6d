#include "spd/pth.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/pickle_min.h"
#include "core/zip_store.h"

static const struct {
    spd_dtype dtype;
    const char *storage;
} storage_types[] = {
    {SPD_DTYPE_F32, "FloatStorage"}, {SPD_DTYPE_F64, "DoubleStorage"}, {SPD_DTYPE_F16, "HalfStorage"},
    {SPD_DTYPE_BF16, "BFloat16Storage"}, {SPD_DTYPE_I64, "LongStorage"}, {SPD_DTYPE_I32, "IntStorage"},
    {SPD_DTYPE_I16, "ShortStorage"}, {SPD_DTYPE_I8, "CharStorage"}, {SPD_DTYPE_U8, "ByteStorage"},
    {SPD_DTYPE_BOOL, "BoolStorage"},
};
#define N_STORAGE_TYPES ((int)(sizeof storage_types / sizeof *storage_types))

const char *spd_pth_storage_name(spd_dtype dt) {
    for (int i = 0; i < N_STORAGE_TYPES; i++)
        if (storage_types[i].dtype == dt) return storage_types[i].storage;
    return NULL;
}

// ---------------------------------------------------------------- reader

enum { EXT_STORAGE = 1, EXT_TENSOR = 2 };

typedef struct {
    int index;
    spd_dtype dtype;
    uint64_t numel;
    const unsigned char *bytes;
} storage;

typedef struct {
    const storage *st;
    int64_t offset;
    int ndim;
    int64_t size[SPD_MAX_DIMS], stride[SPD_MAX_DIMS];
} tensor_view;

typedef struct {
    const char *path;
    const spd_zip *z;
    const char *prefix;
    storage **storages;  // by order of first use
    char **keys;
    int n_storages;
} read_ctx;

static int allow(void *ctx, const char *module, const char *name) {
    (void)ctx;
    if (strcmp(module, "collections") == 0) return strcmp(name, "OrderedDict") == 0;
    if (strcmp(module, "torch._utils") == 0)
        return strcmp(name, "_rebuild_tensor_v2") == 0 || strcmp(name, "_rebuild_parameter") == 0;
    if (strcmp(module, "torch") == 0)
        for (int i = 0; i < N_STORAGE_TYPES; i++)
            if (strcmp(name, storage_types[i].storage) == 0) return 1;
    return 0;
}

static int is_int(const pk_value *v) { return v->kind == PK_INT; }

// ('storage', torch.<T>Storage, key, location, numel) -> its data/<key> entry.
static pk_value *persistent_load(void *vctx, pk_reader *r, const pk_value *pid) {
    read_ctx *c = vctx;
    if (pid->kind != PK_TUPLE || pid->n != 5 || pid->items[0]->kind != PK_STR || strcmp(pid->items[0]->s, "storage") ||
        pid->items[1]->kind != PK_GLOBAL || pid->items[2]->kind != PK_STR || pid->items[3]->kind != PK_STR ||
        !is_int(pid->items[4]) || pid->items[4]->i < 0) {
        spd_set_error("%s: data.pkl: persistent id is not ('storage', type, key, location, numel)", c->path);
        return NULL;
    }
    const char *type = strchr(pid->items[1]->s, '.') + 1, *key = pid->items[2]->s;
    int ti = 0;
    while (ti < N_STORAGE_TYPES && strcmp(type, storage_types[ti].storage) != 0) ti++;
    if (ti == N_STORAGE_TYPES) {
        spd_set_error("%s: data.pkl: persistent id names '%s', not a storage type", c->path, pid->items[1]->s);
        return NULL;
    }
    spd_dtype dt = storage_types[ti].dtype;
    for (int i = 0; i < c->n_storages; i++)
        if (strcmp(c->keys[i], key) == 0) {
            if (c->storages[i]->dtype != dt || c->storages[i]->numel != (uint64_t)pid->items[4]->i) {
                spd_set_error("%s: storage '%s' is used with two types or sizes", c->path, key);
                return NULL;
            }
            pk_value *v = pk_new(r, PK_EXT);
            v->ext_kind = EXT_STORAGE;
            v->ext = c->storages[i];
            return v;
        }
    char name[512];
    snprintf(name, sizeof name, "%s/data/%s", c->prefix, key);
    const spd_zip_entry *e = spd_zip_find(c->z, name);
    if (!e) {
        spd_set_error("%s: storage '%s': no entry %s", c->path, key, name);
        return NULL;
    }
    uint64_t numel = (uint64_t)pid->items[4]->i, item = spd_dtype_size(dt);
    if (numel > UINT64_MAX / item || e->size != numel * item) {
        spd_set_error("%s: storage '%s' (%s): expected %" PRIu64 " elements of %" PRIu64 " bytes, entry %s has %" PRIu64
                      " bytes",
                      c->path, key, type, numel, item, name, e->size);
        return NULL;
    }
    storage *s = pk_alloc(r, sizeof *s);
    s->index = c->n_storages;
    s->dtype = dt;
    s->numel = numel;
    s->bytes = spd_zip_data(c->z, e);
    c->storages = realloc(c->storages, (size_t)(c->n_storages + 1) * sizeof *c->storages);
    c->keys = realloc(c->keys, (size_t)(c->n_storages + 1) * sizeof *c->keys);
    if (!c->storages || !c->keys) spd_die("out of memory");
    c->storages[c->n_storages] = s;
    c->keys[c->n_storages++] = pid->items[2]->s;  // lives in the reader's arena
    pk_value *v = pk_new(r, PK_EXT);
    v->ext_kind = EXT_STORAGE;
    v->ext = s;
    return v;
}

static int int_tuple(const pk_value *t, int64_t *out, int *n) {
    if (t->kind != PK_TUPLE || t->n > SPD_MAX_DIMS) return -1;
    for (int i = 0; i < t->n; i++) {
        if (!is_int(t->items[i]) || t->items[i]->i < 0) return -1;
        out[i] = t->items[i]->i;
    }
    *n = t->n;
    return 0;
}

// _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]): the view, checked to lie
// inside its storage.
static pk_value *rebuild_tensor(read_ctx *c, pk_reader *r, const pk_value *a) {
    int nd = 0, ns = 0;
    tensor_view *t = pk_alloc(r, sizeof *t);
    if (a->n < 6 || a->n > 7 || a->items[0]->kind != PK_EXT || a->items[0]->ext_kind != EXT_STORAGE ||
        !is_int(a->items[1]) || a->items[1]->i < 0 || int_tuple(a->items[2], t->size, &nd) ||
        int_tuple(a->items[3], t->stride, &ns) || nd != ns || a->items[4]->kind != PK_BOOL) {
        spd_set_error("%s: data.pkl: _rebuild_tensor_v2 arguments are not (storage, offset, size, stride, "
                      "requires_grad, hooks) with at most %d non-negative dimensions",
                      c->path, SPD_MAX_DIMS);
        return NULL;
    }
    t->st = a->items[0]->ext;
    t->offset = a->items[1]->i;
    t->ndim = nd;
    // The last element reached, offset + sum (size - 1) * stride, must lie in the storage (unless the view is
    // empty); numel is bounded too, since stride-0 views can be far larger than their storage.
    uint64_t last = (uint64_t)t->offset, numel = 1, term;
    int bad = (uint64_t)t->offset > t->st->numel, empty = 0;
    for (int i = 0; i < nd; i++) {
        uint64_t sz = (uint64_t)t->size[i], st = (uint64_t)t->stride[i];
        if (sz == 0) empty = 1;
        else bad |= __builtin_mul_overflow(sz - 1, st, &term) || __builtin_add_overflow(last, term, &last);
        bad |= __builtin_mul_overflow(numel, sz, &numel);
    }
    if (bad || (!empty && last >= t->st->numel)) {
        spd_set_error("%s: data.pkl: a tensor view (offset %" PRId64 ") reaches past its storage of %" PRIu64
                      " elements",
                      c->path, t->offset, t->st->numel);
        return NULL;
    }
    if (numel > ((uint64_t)1 << 36) / spd_dtype_size(t->st->dtype)) {
        spd_set_error("%s: data.pkl: a tensor view of %" PRIu64 " elements (over 64 GiB) of a %" PRIu64
                      "-element storage is refused",
                      c->path, numel, t->st->numel);
        return NULL;
    }
    pk_value *v = pk_new(r, PK_EXT);
    v->ext_kind = EXT_TENSOR;
    v->ext = t;
    return v;
}

static pk_value *reduce(void *vctx, pk_reader *r, const pk_value *f, const pk_value *a) {
    read_ctx *c = vctx;
    if (strcmp(f->s, "collections.OrderedDict") == 0) {
        if (a->n != 0) {
            spd_set_error("%s: data.pkl: OrderedDict with arguments is outside the state-dict subset", c->path);
            return NULL;
        }
        return pk_new(r, PK_DICT);
    }
    if (strcmp(f->s, "torch._utils._rebuild_tensor_v2") == 0) return rebuild_tensor(c, r, a);
    if (strcmp(f->s, "torch._utils._rebuild_parameter") == 0) {  // nn.Parameter(data, requires_grad, hooks)
        if (a->n != 3 || a->items[0]->kind != PK_EXT || a->items[0]->ext_kind != EXT_TENSOR) {
            spd_set_error("%s: data.pkl: _rebuild_parameter arguments are not (tensor, requires_grad, hooks)", c->path);
            return NULL;
        }
        return a->items[0];
    }
    spd_set_error("%s: data.pkl: calling '%s' is outside the state-dict subset", c->path, f->s);
    return NULL;
}

// The contiguous row-major copy of a view.
static void materialize(const tensor_view *t, spd_pth_tensor *out) {
    size_t item = spd_dtype_size(t->st->dtype), numel = 1;
    for (int i = 0; i < t->ndim; i++) numel *= (size_t)t->size[i];
    out->nbytes = numel * item;
    out->data = spd_malloc(out->nbytes ? out->nbytes : 1);
    if (!numel) return;
    int64_t idx[SPD_MAX_DIMS] = {0};
    unsigned char *dst = out->data;
    for (size_t k = 0; k < numel; k++) {
        int64_t e = t->offset;
        for (int i = 0; i < t->ndim; i++) e += idx[i] * t->stride[i];
        memcpy(dst + k * item, t->st->bytes + (size_t)e * item, item);
        for (int i = t->ndim - 1; i >= 0 && ++idx[i] == t->size[i]; i--) idx[i] = 0;
    }
}

static const spd_zip_entry *find_entry(const spd_zip *z, const char *prefix, const char *name) {
    char full[512];
    snprintf(full, sizeof full, "%s/%s", prefix, name);
    return spd_zip_find(z, full);
}

// The prefix of the one <prefix>/data.pkl entry; byteorder and version checked.
static int find_prefix(const spd_zip *z, char *prefix, size_t cap) {
    int found = 0;
    for (int i = 0; i < z->count; i++) {
        const char *n = z->entries[i].name, *slash = strchr(n, '/');
        if (!slash || strcmp(slash, "/data.pkl") != 0) continue;
        if (found++) return spd_set_error("%s: two data.pkl entries (%s/data.pkl and %s)", z->path, prefix, n);
        if ((size_t)(slash - n) >= cap) return spd_set_error("%s: archive prefix of %s is too long", z->path, n);
        snprintf(prefix, cap, "%.*s", (int)(slash - n), n);
    }
    if (!found)
        return spd_set_error("%s: no <prefix>/data.pkl entry: not a torch.save checkpoint (a TorchScript or "
                             "other zip archive?)",
                             z->path);
    const spd_zip_entry *bo = find_entry(z, prefix, "byteorder");  // absent before torch 1.13: little
    if (bo && !(bo->size == 6 && memcmp(spd_zip_data(z, bo), "little", 6) == 0))
        return spd_set_error("%s: %s/byteorder: expected \"little\", found \"%.*s\"", z->path, prefix,
                             (int)(bo->size < 16 ? bo->size : 16), (const char *)spd_zip_data(z, bo));
    const spd_zip_entry *ve = find_entry(z, prefix, "version");
    if (!ve) ve = find_entry(z, prefix, ".data/version");
    if (!ve) return spd_set_error("%s: no %s/version entry: not a torch.save checkpoint", z->path, prefix);
    const char *vs = spd_zip_data(z, ve);
    int ok = ve->size > 0 && ve->size < 8;
    for (uint64_t i = 0; ok && i < ve->size; i++) ok = (vs[i] >= '0' && vs[i] <= '9') || (vs[i] == '\n' && i > 0);
    if (!ok) return spd_set_error("%s: %s/version: expected a number", z->path, prefix);
    return 0;
}

static int read_dict(read_ctx *c, const pk_value *top, spd_pth_file *f) {
    if (top->kind != PK_DICT)
        return spd_set_error("%s: data.pkl holds a %s, expected a dict of tensors (a state dict)", c->path,
                             pk_kind_name(top->kind));
    f->tensors = spd_calloc((size_t)top->n / 2 + 1, sizeof *f->tensors);
    for (int i = 0; i < top->n; i += 2) {
        const pk_value *k = top->items[i], *v = top->items[i + 1];
        if (k->kind != PK_STR || strlen(k->s) != k->len || k->len == 0 || k->len >= SPD_NAME_MAX)
            return spd_set_error("%s: state dict key %d is not a name of 1 to %d characters", c->path, i / 2,
                                 SPD_NAME_MAX - 1);
        if (v->kind != PK_EXT || v->ext_kind != EXT_TENSOR)
            return spd_set_error("%s: state dict entry '%s' holds a %s value, expected a tensor", c->path, k->s,
                                 v->kind == PK_EXT ? "storage" : pk_kind_name(v->kind));
        for (int j = 0; j < f->count; j++)
            if (strcmp(f->tensors[j].name, k->s) == 0)
                return spd_set_error("%s: state dict entry '%s' appears twice", c->path, k->s);
        const tensor_view *t = v->ext;
        spd_pth_tensor *o = &f->tensors[f->count++];
        o->name = spd_strdup(k->s);
        o->dtype = t->st->dtype;
        o->ndim = t->ndim;
        memcpy(o->shape, t->size, sizeof o->shape);
        o->storage = t->st->index;
        materialize(t, o);
    }
    return 0;
}

spd_pth_file *spd_pth_read(const char *path) {
    spd_pth_file *f = spd_calloc(1, sizeof *f);
    f->path = spd_strdup(path);
    spd_zip *z = spd_zip_open(path);
    pk_reader *r = NULL;
    char prefix[256], what[600];
    read_ctx c = {.path = path, .z = z, .prefix = prefix};
    if (!z || find_prefix(z, prefix, sizeof prefix)) goto fail;
    const spd_zip_entry *pkl = find_entry(z, prefix, "data.pkl");
    snprintf(what, sizeof what, "%s: %s/data.pkl", path, prefix);
    pk_callbacks cb = {.ctx = &c, .allow = allow, .reduce = reduce, .persistent_load = persistent_load};
    pk_value *top = pk_load(spd_zip_data(z, pkl), (size_t)pkl->size, what, &cb, &r);
    if (!top || read_dict(&c, top, f)) goto fail;
    pk_free(r);
    free(c.storages);
    free(c.keys);
    spd_zip_close(z);
    return f;
fail:
    pk_free(r);
    free(c.storages);
    free(c.keys);
    spd_zip_close(z);
    spd_pth_free(f);
    return NULL;
}

void spd_pth_free(spd_pth_file *f) {
    if (!f) return;
    for (int i = 0; i < f->count; i++) {
        free(f->tensors[i].name);
        free(f->tensors[i].data);
    }
    free(f->tensors);
    free(f->path);
    free(f);
}

// ---------------------------------------------------------------- writer

typedef struct {
    char *name;
    spd_dtype dtype;
    int ndim;
    int64_t shape[SPD_MAX_DIMS], stride[SPD_MAX_DIMS];
    const void *data;  // own storage's data, or NULL for a view
    int storage;       // storage index
} writer_entry;

struct spd_pth_writer {
    writer_entry *e;
    int count, cap, n_storages;
};

spd_pth_writer *spd_pth_writer_new(void) { return spd_calloc(1, sizeof(spd_pth_writer)); }

static writer_entry *new_entry(spd_pth_writer *w, const char *name) {
    if (w->count == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 32;
        writer_entry *g = realloc(w->e, (size_t)w->cap * sizeof *g);
        if (!g) spd_die("out of memory");
        w->e = g;
    }
    writer_entry *e = &w->e[w->count++];
    memset(e, 0, sizeof *e);
    e->name = spd_strdup(name);
    return e;
}

void spd_pth_writer_add(spd_pth_writer *w, const char *name, spd_dtype dtype, int ndim, const int64_t *shape,
                        const void *data) {
    SPD_ASSERT(ndim >= 0 && ndim <= SPD_MAX_DIMS && spd_pth_storage_name(dtype));
    writer_entry *e = new_entry(w, name);
    e->dtype = dtype;
    e->ndim = ndim;
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        e->shape[i] = shape[i];
        e->stride[i] = s;
        s *= shape[i];
    }
    e->data = data;
    e->storage = w->n_storages++;
}

int spd_pth_writer_add_transposed(spd_pth_writer *w, const char *name, const char *base) {
    int b = -1;
    for (int i = 0; i < w->count; i++)
        if (strcmp(w->e[i].name, base) == 0) b = i;
    if (b < 0 || w->e[b].ndim != 2 || !w->e[b].data)
        return spd_set_error("pth writer: '%s' cannot be a transposed view of '%s' (not an earlier 2-D tensor)", name,
                             base);
    writer_entry *e = new_entry(w, name), *s = &w->e[b];  // new_entry may move w->e: s after it
    e->dtype = s->dtype;
    e->ndim = 2;
    e->shape[0] = s->shape[1];
    e->shape[1] = s->shape[0];
    e->stride[0] = s->stride[1];
    e->stride[1] = s->stride[0];
    e->storage = s->storage;
    return 0;
}

int spd_pth_writer_add_alias(spd_pth_writer *w, const char *name, const char *base) {
    int b = -1;
    for (int i = 0; i < w->count; i++)
        if (strcmp(w->e[i].name, base) == 0) b = i;
    if (b < 0) return spd_set_error("pth writer: '%s' cannot be an alias of '%s' (no earlier tensor)", name, base);
    writer_entry *e = new_entry(w, name), *s = &w->e[b];  // new_entry may move w->e: s after it
    char *n = e->name;
    *e = *s;
    e->name = n;
    e->data = NULL;  // the base writes the storage
    return 0;
}

// The dict as torch pickles a state dict (without the _metadata attribute, which load_state_dict does not need).
static void pickle_dict(const spd_pth_writer *w, pk_buf *b) {
    pk_put_proto(b);
    pk_put_global(b, "collections", "OrderedDict");
    pk_put_op(b, ')');
    pk_put_op(b, 'R');
    pk_put_op(b, '(');
    for (int i = 0; i < w->count; i++) {
        const writer_entry *e = &w->e[i];
        int64_t numel = 1;
        for (int d = 0; d < e->ndim; d++) numel *= e->shape[d];
        char key[32];
        snprintf(key, sizeof key, "%d", e->storage);
        pk_put_str(b, e->name);
        pk_put_global(b, "torch._utils", "_rebuild_tensor_v2");
        pk_put_op(b, '(');
        pk_put_op(b, '(');  // the persistent id
        pk_put_str(b, "storage");
        pk_put_global(b, "torch", spd_pth_storage_name(e->dtype));
        pk_put_str(b, key);
        pk_put_str(b, "cpu");
        pk_put_int(b, numel);  // a transposed view has its base's numel
        pk_put_op(b, 't');
        pk_put_op(b, 'Q');
        pk_put_int(b, 0);
        pk_put_int_tuple(b, e->shape, e->ndim);
        pk_put_int_tuple(b, e->stride, e->ndim);
        pk_put_op(b, 0x89);  // requires_grad False
        pk_put_global(b, "collections", "OrderedDict");
        pk_put_op(b, ')');
        pk_put_op(b, 'R');
        pk_put_op(b, 't');
        pk_put_op(b, 'R');
    }
    pk_put_op(b, 'u');
    pk_put_stop(b);
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *q = p;
    for (size_t i = 0; i < n; i++) h = (h ^ q[i]) * 0x100000001b3ull;
    return h;
}

int spd_pth_writer_save(spd_pth_writer *w, const char *path) {
    for (int i = 0; i < w->count; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(w->e[i].name, w->e[j].name) == 0)
                return spd_set_error("%s: tensor '%s' was added twice", path, w->e[i].name);
    // The archive prefix: the file's stem, as torch names it.
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    char prefix[256], name[320];
    snprintf(prefix, sizeof prefix, "%.*s", (int)strcspn(base, "."), base);
    if (!prefix[0]) snprintf(prefix, sizeof prefix, "archive");
    pk_buf pkl = {0};
    pickle_dict(w, &pkl);
    spd_zip_writer *z = spd_zip_writer_open(path);
    if (!z) {
        free(pkl.b);
        return -1;
    }
    uint64_t h1 = 0xcbf29ce484222325ull, h2 = 0x84222325cbf29ce4ull;  // serialization id: of the contents
    h1 = fnv1a(h1, pkl.b, pkl.len);
#define ADD(rec, data, n)                                             \
    do {                                                              \
        snprintf(name, sizeof name, "%s/%s", prefix, rec);            \
        if (spd_zip_writer_add(z, name, data, n)) goto fail;          \
    } while (0)
    ADD("data.pkl", pkl.b, pkl.len);
    ADD(".format_version", "1", 1);
    ADD(".storage_alignment", "64", 2);
    ADD("byteorder", "little", 6);
    for (int i = 0; i < w->count; i++) {
        const writer_entry *e = &w->e[i];
        if (!e->data) continue;  // a view: its base wrote the storage
        size_t n = spd_dtype_size(e->dtype);
        for (int d = 0; d < e->ndim; d++) n *= (size_t)e->shape[d];
        char rec[48];
        snprintf(rec, sizeof rec, "data/%d", e->storage);
        h2 = fnv1a(h2, e->data, n);
        ADD(rec, e->data, n);
    }
    ADD("version", "3\n", 2);
    char sid[48];
    snprintf(sid, sizeof sid, "%019" PRIu64 "%021" PRIu64, (uint64_t)(h1 % 10000000000000000000ull), h2);
    ADD(".data/serialization_id", sid, 40);
#undef ADD
    free(pkl.b);
    return spd_zip_writer_finish(z);
fail:
    free(pkl.b);
    spd_zip_writer_abort(z);
    return -1;
}

void spd_pth_writer_free(spd_pth_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->count; i++) free(w->e[i].name);
    free(w->e);
    free(w);
}
