// PyTorch .pth state dicts (spd/pth.h): the writer -> reader round trip is
// bit-exact (dtypes, 0-d and empty tensors, a transposed view sharing its
// base's storage); files written by torch itself (tests/refs/pth, from
// tests/refgen/make_pth_fixtures.py) read back as torch's contiguous tensors,
// with a non-contiguous view at an offset and shared storages, also in zip64
// form; what
// torch.load(weights_only=True) would refuse, compressed and legacy files are
// refused with one line naming the file; and every truncation of a good file,
// every flipped byte of it and every flipped byte or truncation of its pickle
// (re-zipped with correct CRCs, so the pickle reader sees it) is either read
// or refused cleanly -- never a crash (the suite runs under ASan/UBSan in CI).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/pickle_min.h"
#include "core/safetensors.h"
#include "core/zip_store.h"
#include "spd/pth.h"
#include "testing.h"

#define REFS "tests/refs/pth"

static char dir[64];

static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, f);
    fclose(f);
    return b;
}

static int spit(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t k = n ? fwrite(b, 1, n, f) : 0;
    return fclose(f) == 0 && k == n ? 0 : -1;
}

static const spd_pth_tensor *find(const spd_pth_file *f, const char *name) {
    for (int i = 0; i < f->count; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

static void test_round_trip(void) {
    float a[6] = {1.5f, -0.f, 3e-38f, 1e38f, -7.25f, 0.1f};
    double d[3] = {1.0 / 3, -1e-300, 2.5};
    int64_t i64[2] = {-(1LL << 40), INT64_MAX};
    float s = 42.f;
    int64_t sa[2] = {2, 3}, sd[1] = {3}, si[1] = {2}, se[2] = {0, 4};
    char path[128];
    snprintf(path, sizeof path, "%s/rt.pth", dir);
    spd_pth_writer *w = spd_pth_writer_new();
    spd_pth_writer_add(w, "layer.a", SPD_DTYPE_F32, 2, sa, a);
    spd_pth_writer_add(w, "layer.d", SPD_DTYPE_F64, 1, sd, d);
    int rc = spd_pth_writer_add_transposed(w, "layer.a_t", "layer.a");
    spd_pth_writer_add(w, "layer.i", SPD_DTYPE_I64, 1, si, i64);
    spd_pth_writer_add(w, "scalar", SPD_DTYPE_F32, 0, NULL, &s);
    spd_pth_writer_add(w, "empty", SPD_DTYPE_F32, 2, se, a);
    rc |= spd_pth_writer_add_alias(w, "layer.d_alias", "layer.d");
    int bad = spd_pth_writer_add_transposed(w, "x", "layer.d");  // 1-D: refused
    rc |= spd_pth_writer_save(w, path);
    spd_pth_writer_free(w);
    spd_pth_file *f = rc ? NULL : spd_pth_read(path);
    test_report(f && bad == -1, "round trip: write and read", "%s", spd_last_error());
    if (!f) return;
    int ok = f->count == 7 && strcmp(f->tensors[0].name, "layer.a") == 0 && strcmp(f->tensors[2].name, "layer.a_t") == 0;
    const spd_pth_tensor *ta = find(f, "layer.a"), *tt = find(f, "layer.a_t"), *td = find(f, "layer.d"),
                         *ti = find(f, "layer.i"), *ts = find(f, "scalar"), *te = find(f, "empty"),
                         *tl = find(f, "layer.d_alias");
    ok = ok && ta && tt && td && ti && ts && te && tl;
    ok = ok && tl->storage == td->storage && tl->nbytes == sizeof d && memcmp(tl->data, d, sizeof d) == 0;
    ok = ok && ta->dtype == SPD_DTYPE_F32 && ta->ndim == 2 && ta->shape[0] == 2 && ta->shape[1] == 3 &&
         memcmp(ta->data, a, sizeof a) == 0;
    ok = ok && td->dtype == SPD_DTYPE_F64 && memcmp(td->data, d, sizeof d) == 0;
    ok = ok && ti->dtype == SPD_DTYPE_I64 && memcmp(ti->data, i64, sizeof i64) == 0;
    ok = ok && ts->ndim == 0 && ts->nbytes == 4 && memcmp(ts->data, &s, 4) == 0;
    ok = ok && te->ndim == 2 && te->shape[0] == 0 && te->shape[1] == 4 && te->nbytes == 0;
    if (ok) {  // the view: a^T, sharing a's storage
        const float *t = tt->data;
        ok = tt->shape[0] == 3 && tt->shape[1] == 2 && tt->storage == ta->storage && td->storage != ta->storage;
        for (int r = 0; r < 3 && ok; r++)
            for (int c = 0; c < 2; c++) ok = ok && memcmp(&t[r * 2 + c], &a[c * 3 + r], 4) == 0;
    }
    test_report(ok, "round trip: bit-exact, a transposed view and an alias share their base's storage", NULL);
    spd_pth_free(f);
    // No temporary file left behind.
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s/rt.pth.tmp.%ld", dir, (long)getpid());
    test_report(access(tmp, F_OK) != 0, "round trip: no temporary file left", NULL);
}

// torch's own file: every tensor as torch's .contiguous() gives it (safetensors written by torch).
static void test_torch_file(const char *path, const char *what) {
    char name[256];
    spd_pth_file *f = spd_pth_read(path);
    spd_st_file *e = spd_st_open(REFS "/state.expected.safetensors");
    snprintf(name, sizeof name, "%s: reads", what);
    test_report(f && e, name, "%s", spd_last_error());
    if (!f || !e) {
        spd_pth_free(f);
        spd_st_close(e);
        return;
    }
    // The dict's order (safetensors sorts its header, so the order is checked against the generator's).
    static const char *order[] = {"linear1.weight", "linear2.weight", "linear2.bias", "extra.strided",
                                  "extra.strided_t", "extra.f64", "extra.i64", "extra.scalar", "extra.empty",
                                  "extra.param"};
    int ok = f->count == e->count && f->count == (int)(sizeof order / sizeof *order);
    for (int i = 0; ok && i < f->count; i++) {
        const spd_pth_tensor *t = &f->tensors[i];
        const spd_st_entry *x = spd_st_find(e, order[i]);
        ok = x && strcmp(t->name, x->name) == 0 && t->dtype == x->dtype && t->ndim == x->ndim &&
             memcmp(t->shape, x->shape, (size_t)t->ndim * sizeof *t->shape) == 0 && t->nbytes == x->end - x->begin &&
             memcmp(t->data, x->data, t->nbytes) == 0;
        if (!ok) printf("#   mismatch at tensor %d '%s'\n", i, t->name);
    }
    snprintf(name, sizeof name, "%s: every tensor bit-exact, in order (strided view at an offset, 0-d, empty, f64, i64, Parameter)", what);
    test_report(ok, name, NULL);
    const spd_pth_tensor *l1 = find(f, "linear1.weight"), *l2 = find(f, "linear2.weight"), *s1 = find(f, "extra.strided"),
                         *s2 = find(f, "extra.strided_t"), *b = find(f, "linear2.bias");
    snprintf(name, sizeof name, "%s: tied weights and the two views share their storages", what);
    test_report(l1 && l2 && s1 && s2 && b && l1->storage == l2->storage && s1->storage == s2->storage &&
                    b->storage != l1->storage && s1->storage != l1->storage,
                name, NULL);
    spd_pth_free(f);
    spd_st_close(e);
}

// A .pth of one float32 view "w" (offset, size, stride) into a storage 0, 1, ..., numel - 1.
static void write_view(const char *d, const char *file, int64_t offset, int nd, const int64_t *size,
                       const int64_t *stride, int numel) {
    pk_buf b = {0};
    pk_put_proto(&b);
    pk_put_op(&b, '}');
    pk_put_str(&b, "w");
    pk_put_global(&b, "torch._utils", "_rebuild_tensor_v2");
    pk_put_op(&b, '(');
    pk_put_op(&b, '(');
    pk_put_str(&b, "storage");
    pk_put_global(&b, "torch", "FloatStorage");
    pk_put_str(&b, "0");
    pk_put_str(&b, "cpu");
    pk_put_int(&b, numel);
    pk_put_op(&b, 't');
    pk_put_op(&b, 'Q');
    pk_put_int(&b, offset);
    pk_put_int_tuple(&b, size, nd);
    pk_put_int_tuple(&b, stride, nd);
    pk_put_op(&b, 0x89);
    pk_put_op(&b, '}');
    pk_put_op(&b, 't');
    pk_put_op(&b, 'R');
    pk_put_op(&b, 's');
    pk_put_stop(&b);
    float data[64];
    for (int i = 0; i < numel && i < 64; i++) data[i] = (float)i;
    char p[128];
    snprintf(p, sizeof p, "%s/%s", d, file);
    spd_zip_writer *z = spd_zip_writer_open(p);
    spd_zip_writer_add(z, "a/data.pkl", b.b, b.len);
    spd_zip_writer_add(z, "a/data/0", data, (size_t)numel * sizeof(float));
    spd_zip_writer_add(z, "a/version", "3\n", 2);
    spd_zip_writer_finish(z);
    free(b.b);
}

static void expect_refused(const char *name, const char *path, const char *phrase) {
    spd_set_error("%s", "");
    spd_pth_file *f = spd_pth_read(path);
    const char *msg = spd_last_error();
    int ok = !f && strstr(msg, path) && strstr(msg, phrase) && !strchr(msg, '\n');
    test_report(ok, name, "%s (message: %s; wanted \"%s\")", f ? "read" : "refused", msg, phrase);
    if (ok) printf("#   %s\n", msg);
    spd_pth_free(f);
}

static void test_refused_files(void) {
    expect_refused("refuses a global outside the subset (weights_only)", REFS "/bad_global.pth", "'posix.system' is not allowed");
    expect_refused("refuses a non-tensor value", REFS "/non_tensor.pth", "entry 'n' holds a int");
    expect_refused("refuses a nested dict", REFS "/nested.pth", "entry 'model' holds a dict");
    expect_refused("refuses compressed entries", REFS "/compressed.pth", "compressed (method 8)");
    expect_refused("refuses torch's legacy format", REFS "/legacy.pth", "legacy format");
    expect_refused("refuses a missing file", REFS "/missing.pth", "cannot open");
    char p[128];
    snprintf(p, sizeof p, "%s/empty.pth", dir);
    spit(p, "", 0);
    expect_refused("refuses an empty file", p, "not a zip archive");
    snprintf(p, sizeof p, "%s/noversion.pth", dir);
    spd_zip_writer *z = spd_zip_writer_open(p);
    spd_zip_writer_add(z, "a/data.pkl", "\x80\x02}.", 4);
    spd_zip_writer_finish(z);
    expect_refused("refuses a missing version record", p, "no a/version entry");
    snprintf(p, sizeof p, "%s/bigendian.pth", dir);
    z = spd_zip_writer_open(p);
    spd_zip_writer_add(z, "a/data.pkl", "\x80\x02}.", 4);
    spd_zip_writer_add(z, "a/byteorder", "big", 3);
    spd_zip_writer_add(z, "a/version", "3\n", 2);
    spd_zip_writer_finish(z);
    expect_refused("refuses a big-endian file", p, "byteorder: expected \"little\"");
    snprintf(p, sizeof p, "%s/nopkl.pth", dir);
    z = spd_zip_writer_open(p);
    spd_zip_writer_add(z, "a/version", "3\n", 2);
    spd_zip_writer_finish(z);
    expect_refused("refuses a zip without data.pkl", p, "no <prefix>/data.pkl");
    // Views that do not fit their storage, or are absurdly large (stride 0), or overflow 64 bits.
    int64_t sz1[1] = {3}, st1[1] = {1};
    write_view(dir, "short_storage.pth", 0, 1, sz1, st1, 2);
    snprintf(p, sizeof p, "%s/short_storage.pth", dir);
    expect_refused("refuses a view past its storage", p, "reaches past its storage");
    int64_t sz2[1] = {(int64_t)1 << 40}, st2[1] = {0};
    write_view(dir, "stride0.pth", 0, 1, sz2, st2, 2);
    snprintf(p, sizeof p, "%s/stride0.pth", dir);
    expect_refused("refuses a huge stride-0 view", p, "over 64 GiB");
    int64_t sz3[2] = {(int64_t)1 << 62, 4}, st3[2] = {(int64_t)1 << 62, 1};
    write_view(dir, "overflow.pth", 0, 2, sz3, st3, 2);
    snprintf(p, sizeof p, "%s/overflow.pth", dir);
    expect_refused("refuses a view whose extent overflows 64 bits", p, "reaches past its storage");
    int64_t sz4[2] = {2, 2}, st4[2] = {1, 2};
    write_view(dir, "offset.pth", 5, 2, sz4, st4, 8);
    snprintf(p, sizeof p, "%s/offset.pth", dir);
    expect_refused("refuses an offset view one past its storage", p, "reaches past its storage");
    write_view(dir, "offset_ok.pth", 4, 2, sz4, st4, 8);
    snprintf(p, sizeof p, "%s/offset_ok.pth", dir);
    spd_pth_file *f = spd_pth_read(p);
    const float *v = f ? f->tensors[0].data : NULL;  // storage 0..7: rows (4, 6), (5, 7)
    test_report(f && v[0] == 4 && v[1] == 6 && v[2] == 5 && v[3] == 7, "reads an offset transposed view ending at its storage's end",
                "%s", spd_last_error());
    spd_pth_free(f);
}

// Every prefix of a good file is refused; every flipped byte is read or refused, never a crash.
static void test_damaged(const char *path) {
    size_t n = 0;
    unsigned char *good = slurp(path, &n), *buf = malloc(n + 1);
    char name[256];
    char p[128];
    snprintf(p, sizeof p, "%s/damaged.pth", dir);
    int refused = 0, clean = 1, tried = 0;
    // Every length near the ends (headers, central directory), every 5th between.
    for (size_t len = 0; len < n; len += len < 256 || len + 256 > n ? 1 : 5) {
        tried++;
        spit(p, good, len);
        spd_pth_file *f = spd_pth_read(p);
        if (!f && strstr(spd_last_error(), p) && !strchr(spd_last_error(), '\n')) refused++;
        spd_pth_free(f);
    }
    snprintf(name, sizeof name, "every truncation of %s is refused with one line", path);
    test_report(refused == tried, name, "%d of %d", refused, tried);
    for (size_t i = 0; i < n; i++) {
        memcpy(buf, good, n);
        buf[i] ^= 0x5a;
        spit(p, buf, n);
        spd_pth_file *f = spd_pth_read(p);
        if (!f && (!strstr(spd_last_error(), p) || strchr(spd_last_error(), '\n'))) clean = 0;
        spd_pth_free(f);
    }
    snprintf(name, sizeof name, "every flipped byte of %s is read or refused with one line", path);
    test_report(clean, name, NULL);
    free(good);
    free(buf);
}

// The pickle itself damaged, in a valid zip: the pickle reader meets every kind of garbage.
static void test_damaged_pickle(void) {
    spd_zip *z = spd_zip_open(REFS "/state.pth");
    if (!z) {
        test_report(0, "damaged pickles: open state.pth", "%s", spd_last_error());
        return;
    }
    const spd_zip_entry *pe = spd_zip_find(z, "state/data.pkl");
    size_t n = (size_t)pe->size;
    unsigned char *pkl = malloc(n);
    memcpy(pkl, spd_zip_data(z, pe), n);
    char p[128];
    snprintf(p, sizeof p, "%s/pickle.pth", dir);
    int clean = 1, refused_trunc = 0, n_read = 0;
    for (size_t k = 0; k < 2 * n; k++) {  // k < n: truncated at k; else byte k - n flipped
        unsigned char *q = malloc(n);
        memcpy(q, pkl, n);
        size_t len = k < n ? k : n;
        if (k >= n) q[k - n] ^= k % 2 ? 0x01 : 0xff;
        spd_zip_writer *w = spd_zip_writer_open(p);
        spd_zip_writer_no_sync(w);
        for (int i = 0; i < z->count; i++) {
            const spd_zip_entry *e = &z->entries[i];
            if (e == pe) spd_zip_writer_add(w, e->name, q, len);
            else spd_zip_writer_add(w, e->name, spd_zip_data(z, e), (size_t)e->size);
        }
        spd_zip_writer_finish(w);
        spd_pth_file *f = spd_pth_read(p);
        if (!f && (!strstr(spd_last_error(), p) || strchr(spd_last_error(), '\n'))) clean = 0;
        if (!f && k < n) refused_trunc++;
        n_read += f != NULL;
        spd_pth_free(f);
        free(q);
    }
    test_report(refused_trunc == (int)n, "every truncated pickle is refused", "%d of %zu", refused_trunc, n);
    test_report(clean, "every damaged pickle is read or refused with one line", NULL);
    printf("#   %zu-byte pickle: %d of %zu flipped variants still read (names, values)\n", n, n_read, n);
    free(pkl);
    spd_zip_close(z);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/spd-test-pth-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_round_trip();
    test_torch_file(REFS "/state.pth", "torch file");
    test_torch_file(REFS "/state_p4.pth", "pickle protocol 4");
    test_torch_file(REFS "/zip64.pth", "zip64 local headers, unaligned data (Python zipfile)");
    test_torch_file(REFS "/zip64_cd.pth", "zip64 central directory and end records");
    test_refused_files();
    test_damaged(REFS "/state.pth");
    test_damaged(REFS "/zip64_cd.pth");
    test_damaged_pickle();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) return 1;
    return testing_failures ? 1 : 0;
}
