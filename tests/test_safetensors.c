// Safetensors: a round trip through the writer and reader (bytes, shapes,
// metadata, conversions, no temporary file left), then one manufactured bad
// file per malformed kind, each of which must be refused with one message
// naming the file (and the tensor) and what was wrong.
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/safetensors.h"
#include "testing.h"

static char dir[64];

static void path_in_dir(char *out, size_t size, const char *name) { snprintf(out, size, "%s/%s", dir, name); }

static int write_bytes(const char *path, const void *bytes, size_t len) {
    FILE *fp = fopen(path, "wb");
    if (!fp) return -1;
    size_t n = len ? fwrite(bytes, 1, len, fp) : 0;
    return (fclose(fp) == 0 && n == len) ? 0 : -1;
}

// 8-byte little-endian length, the header verbatim, then the data section.
static int write_st(const char *path, const char *header, size_t header_len, const void *data, size_t data_len) {
    size_t len = 8 + header_len + data_len;
    unsigned char *buf = malloc(len);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)header_len >> (8 * i));
    memcpy(buf + 8, header, header_len);
    if (data_len) memcpy(buf + 8 + header_len, data, data_len);
    int rc = write_bytes(path, buf, len);
    free(buf);
    return rc;
}

// Any temporary file of the writer left in the test directory?
static int temp_files_left(void) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strstr(de->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

// Opens path, which must be refused with a message that names the file, the
// tensor (when given) and contains `phrase`.
static void expect_refused(const char *kind, const char *path, const char *tensor, const char *phrase) {
    char name[160], quoted[128] = "";
    snprintf(name, sizeof name, "refuses %s", kind);
    if (tensor) snprintf(quoted, sizeof quoted, "'%s'", tensor);
    spd_set_error("%s", "");
    spd_st_file *f = spd_st_open(path);
    const char *msg = spd_last_error();
    int ok = f == NULL && strstr(msg, path) && (!tensor || strstr(msg, quoted)) && (!phrase || strstr(msg, phrase)) &&
             !strchr(msg, '\n');
    test_report(ok, name, "%s (message: %s; wanted path, %s, \"%s\")", f ? "opened" : "refused", msg,
                tensor ? quoted : "no tensor", phrase ? phrase : "");
    if (ok) printf("#   %s\n", msg);
    spd_st_close(f);
}

static void bad_header(const char *kind, const char *header, size_t data_len, const char *tensor, const char *phrase) {
    static int serial = 0;
    char path[256];
    snprintf(path, sizeof path, "%s/bad-%02d.safetensors", dir, ++serial);
    unsigned char data[256] = {0};
    SPD_ASSERT(data_len <= sizeof data);
    SPD_ASSERT(write_st(path, header, strlen(header), data, data_len) == 0);
    expect_refused(kind, path, tensor, phrase);
}

static void bad_raw(const char *kind, const char *file, const void *bytes, size_t len, const char *phrase) {
    char path[256];
    path_in_dir(path, sizeof path, file);
    SPD_ASSERT(write_bytes(path, bytes, len) == 0);
    expect_refused(kind, path, NULL, phrase);
}

static void test_malformed(void) {
    // The file itself.
    bad_raw("an empty file", "empty.safetensors", "", 0, "expected at least 8 bytes");
    bad_raw("a file shorter than 8 bytes", "short.safetensors", "\x02\0\0\0\0", 5, "found 5");
    {
        unsigned char b[16] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
        bad_raw("a header length past the end of the file", "hlen-past.safetensors", b, 10, "runs past the end");
        unsigned char h[16] = {0, 0, 0, 0, 0, 0, 0, 0x10, '{', '}'};
        bad_raw("an absurd header length", "hlen-huge.safetensors", h, 10, "limit");
    }
    {
        char p[256];
        path_in_dir(p, sizeof p, "does-not-exist.safetensors");
        expect_refused("a missing file", p, NULL, "No such file");
        expect_refused("a directory", dir, NULL, "regular file");
    }
    // The header as JSON.
    bad_header("a header that is not JSON", "{\"w\": {\"dtype\": ", 0, NULL, "not valid JSON");
    bad_header("an empty header", "", 0, NULL, "header is empty");
    bad_header("a header that is a JSON array", "[1, 2]", 0, NULL, "expected a JSON object, found an array");
    bad_header("trailing bytes after the header object", "{}  x     ", 0, NULL, "trailing bytes");
    {
        char p[256];
        path_in_dir(p, sizeof p, "nul.safetensors");
        SPD_ASSERT(write_st(p, "{}\0     ", 8, NULL, 0) == 0);
        expect_refused("a NUL byte in the header", p, NULL, "NUL byte");
    }
    // Entries.
    bad_header("an entry that is not an object", "{\"layer.w\": [1, 2]}", 0, "layer.w", "expected an object");
    bad_header("a missing dtype", "{\"layer.w\": {\"shape\": [2], \"data_offsets\": [0, 8]}}", 8, "layer.w",
               "missing 'dtype'");
    bad_header("a missing shape", "{\"layer.w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 8]}}", 8, "layer.w",
               "missing 'shape'");
    bad_header("missing data_offsets", "{\"layer.w\": {\"dtype\": \"F32\", \"shape\": [2]}}", 8, "layer.w",
               "missing 'data_offsets'");
    bad_header("a dtype that is not a string", "{\"layer.w\": {\"dtype\": 4, \"shape\": [2], \"data_offsets\": [0, 8]}}",
               8, "layer.w", "dtype: expected a string, found 4");
    bad_header("an unknown dtype", "{\"layer.w\": {\"dtype\": \"F33\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8,
               "layer.w", "found \"F33\"");
    bad_header("a repeated key inside an entry",
               "{\"layer.w\": {\"dtype\": \"F32\", \"dtype\": \"F64\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8,
               "layer.w", "'dtype' appears twice");
    bad_header("a shape that is not an array",
               "{\"layer.w\": {\"dtype\": \"F32\", \"shape\": \"2\", \"data_offsets\": [0, 8]}}", 8, "layer.w",
               "shape: expected an array");
    bad_header("a negative dimension",
               "{\"layer.w\": {\"dtype\": \"F32\", \"shape\": [2, -1], \"data_offsets\": [0, 8]}}", 8, "layer.w",
               "shape[1]: expected a non-negative integer, found -1");
    bad_header("a fractional dimension",
               "{\"layer.w\": {\"dtype\": \"F32\", \"shape\": [2.5], \"data_offsets\": [0, 8]}}", 8, "layer.w",
               "found 2.5");
    bad_header("a dimension that is not a number",
               "{\"layer.w\": {\"dtype\": \"F32\", \"shape\": [\"2\"], \"data_offsets\": [0, 8]}}", 8, "layer.w",
               "shape[0]");
    bad_header("a dimension beyond 2^53",
               "{\"layer.w\": {\"dtype\": \"F32\", \"shape\": [1e17], \"data_offsets\": [0, 8]}}", 8, "layer.w",
               "larger than 2^53");
    bad_header("too many dimensions",
               "{\"layer.w\": {\"dtype\": \"U8\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 1]}}", 8,
               "layer.w", "expected at most 8 dimensions, found 9");
    bad_header("data_offsets that are not an array",
               "{\"layer.w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": {}}}", 8, "layer.w",
               "data_offsets: expected an array of 2 integers");
    bad_header("data_offsets with one integer",
               "{\"layer.w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8]}}", 8, "layer.w",
               "found an array of 1 item");
    bad_header("data_offsets with three integers",
               "{\"layer.w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8, 8]}}", 8, "layer.w",
               "found an array of 3 items");
    bad_header("a negative data offset",
               "{\"layer.w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [-8, 0]}}", 8, "layer.w",
               "data_offsets[0]: expected a non-negative integer, found -8");
    bad_header("a fractional data offset",
               "{\"layer.w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 7.5]}}", 8, "layer.w",
               "data_offsets[1]");
    bad_header("a data offset that is null",
               "{\"layer.w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, null]}}", 8, "layer.w",
               "found null");
    bad_header("data_offsets with begin > end",
               "{\"layer.w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 0]}}", 8, "layer.w",
               "expected begin <= end, found [8, 0]");
    bad_header("data_offsets past the data section",
               "{\"layer.w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 4, "layer.w",
               "past the end of the data section (4 bytes)");
    bad_header("a byte size that disagrees with the shape",
               "{\"layer.w\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", 8, "layer.w",
               "needs 12 bytes");
    bad_header("an element count that overflows 64 bits",
               "{\"layer.w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 8]}}", 8,
               "layer.w", "more elements than an int64 holds");
    bad_header("a byte count that overflows 64 bits",
               "{\"layer.w\": {\"dtype\": \"F64\", \"shape\": [2147483648, 2147483648], \"data_offsets\": [0, 8]}}", 8,
               "layer.w", "overflows a byte count");
    bad_header("overlapping tensors",
               "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
               " \"layer.w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
               16, "layer.w", "overlap");
    bad_header("a duplicate tensor name",
               "{\"layer.w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
               " \"layer.w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
               8, "layer.w", "appears twice");
    // Metadata.
    bad_header("__metadata__ that is not an object", "{\"__metadata__\": [\"a\"]}", 0, NULL,
               "__metadata__: expected an object of strings, found an array");
    bad_header("a __metadata__ value that is not a string", "{\"__metadata__\": {\"format\": \"pt\", \"step\": 3}}", 0,
               NULL, "__metadata__ 'step': expected a string, found 3");
    bad_header("a __metadata__ key repeated", "{\"__metadata__\": {\"format\": \"pt\", \"format\": \"np\"}}", 0, NULL,
               "key 'format' appears twice");
    bad_header("__metadata__ twice", "{\"__metadata__\": {}, \"__metadata__\": {}}", 0, NULL,
               "__metadata__ appears twice");
}

// A valid file that is not ours: a zero-size tensor, a scalar, unaligned data,
// holes between ranges, trailing spaces in the header.
static void test_foreign_valid(void) {
    char path[256];
    path_in_dir(path, sizeof path, "foreign.safetensors");
    const char *h = "{\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[1,1]},"
                    "\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[1,9]},"
                    "\"t\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[12,20]}}   ";
    unsigned char data[20] = {0};
    double s = -3.25;
    int32_t t[2] = {7, -9};
    memcpy(data + 1, &s, 8);
    memcpy(data + 12, t, 8);
    SPD_ASSERT(write_st(path, h, strlen(h), data, sizeof data) == 0);
    spd_st_file *f = spd_st_open(path);
    double sv = 0;
    float sf = 0;
    int64_t tv[2] = {0, 0};
    int ok = f && f->count == 3 && spd_st_read(f, "s", SPD_DTYPE_F64, 0, NULL, &sv) == 0 && sv == s &&
             spd_st_read(f, "s", SPD_DTYPE_F32, -1, NULL, &sf) == 0 && sf == -3.25f &&
             spd_st_read(f, "t", SPD_DTYPE_I64, 1, (int64_t[]){2}, tv) == 0 && tv[0] == 7 && tv[1] == -9 &&
             spd_st_read(f, "e", SPD_DTYPE_F32, 2, (int64_t[]){0, 3}, &sf) == 0;
    test_report(ok, "reads a valid foreign file (scalar, empty tensor, unaligned data, holes)", "%s",
                f ? "read failed" : spd_last_error());
    spd_st_close(f);
}

static int entry_is(const spd_st_file *f, const char *name, spd_dtype dt, int ndim, const int64_t *shape,
                    const void *data, size_t nbytes) {
    const spd_st_entry *e = spd_st_find(f, name);
    return e && e->dtype == dt && spd_shape_equal(e->ndim, e->shape, ndim, shape) && e->end - e->begin == nbytes &&
           (nbytes == 0 || memcmp(e->data, data, nbytes) == 0);
}

static void test_round_trip(void) {
    float w32[2][3] = {{1.5f, -2.0f, 3.25f}, {0.0f, -0.0f, 1e-30f}};
    double w64[4] = {1.0 / 3.0, -1e300, 2.5, 1e-310};
    int64_t i64[3] = {-5, 2147483647, -2147483648LL};
    int32_t i32[2][2] = {{1, -2}, {3, 2147483647}};
    uint8_t u8[3] = {1, 2, 255};
    float scalar = 42.0f;
    int64_t s_w32[2] = {2, 3}, s_w64[1] = {4}, s_i64[1] = {3}, s_i32[2] = {2, 2}, s_u8[1] = {3}, s_empty[2] = {0, 5};
    char path[256];
    path_in_dir(path, sizeof path, "round.safetensors");

    spd_st_writer *w = spd_st_writer_new();
    spd_st_writer_meta(w, "format", "pt");
    spd_st_writer_meta(w, "note", "quote \" backslash \\ newline \n tab \t end");
    spd_st_writer_add(w, "u8", SPD_DTYPE_U8, 1, s_u8, u8);  // makes every later tensor unaligned
    spd_st_writer_add(w, "layer.w32", SPD_DTYPE_F32, 2, s_w32, w32);
    spd_st_writer_add(w, "layer.w64", SPD_DTYPE_F64, 1, s_w64, w64);
    spd_st_writer_add(w, "ids.i64", SPD_DTYPE_I64, 1, s_i64, i64);
    spd_st_writer_add(w, "ids.i32", SPD_DTYPE_I32, 2, s_i32, i32);
    spd_st_writer_add(w, "scalar", SPD_DTYPE_F32, 0, NULL, &scalar);
    spd_st_writer_add(w, "empty", SPD_DTYPE_F64, 2, s_empty, NULL);
    int rc = spd_st_writer_save(w, path);
    test_report(rc == 0, "writer saves a file", "%s", spd_last_error());
    test_report(temp_files_left() == 0, "no temporary file remains after a save", NULL);
    // Saving again over an existing file replaces it.
    test_report(spd_st_writer_save(w, path) == 0 && temp_files_left() == 0, "writer replaces an existing file", "%s",
                spd_last_error());
    spd_st_writer_free(w);

    spd_st_file *f = spd_st_open(path);
    test_report(f != NULL, "reader opens the written file", "%s", spd_last_error());
    if (!f) return;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | ((const unsigned char *)f->map)[i];
    test_report(hlen % 8 == 0 && ((const char *)f->map)[8] == '{', "header is padded to a multiple of 8 bytes",
                "header length %llu", (unsigned long long)hlen);
    test_report(f->meta_count == 2 && strcmp(spd_st_meta(f, "format"), "pt") == 0 &&
                    strcmp(spd_st_meta(f, "note"), "quote \" backslash \\ newline \n tab \t end") == 0 &&
                    spd_st_meta(f, "absent") == NULL,
                "metadata round trip (with escapes)", NULL);
    test_report(memcmp((const char *)f->map + 8, "{\"__metadata__\"", 15) == 0, "__metadata__ is written first",
                NULL);
    static const char *order[7] = {"u8", "layer.w32", "layer.w64", "ids.i64", "ids.i32", "scalar", "empty"};
    int in_order = f->count == 7;
    size_t expect_begin = 0;
    for (int i = 0; in_order && i < 7; i++) {
        in_order = strcmp(f->entries[i].name, order[i]) == 0 && f->entries[i].begin == expect_begin;
        expect_begin = f->entries[i].end;
    }
    test_report(in_order && expect_begin == f->map_size - 8 - hlen,
                "tensors keep insertion order with contiguous offsets", NULL);
    test_report(entry_is(f, "u8", SPD_DTYPE_U8, 1, s_u8, u8, 3) &&
                    entry_is(f, "layer.w32", SPD_DTYPE_F32, 2, s_w32, w32, sizeof w32) &&
                    entry_is(f, "layer.w64", SPD_DTYPE_F64, 1, s_w64, w64, sizeof w64) &&
                    entry_is(f, "ids.i64", SPD_DTYPE_I64, 1, s_i64, i64, sizeof i64) &&
                    entry_is(f, "ids.i32", SPD_DTYPE_I32, 2, s_i32, i32, sizeof i32) &&
                    entry_is(f, "scalar", SPD_DTYPE_F32, 0, NULL, &scalar, 4) &&
                    entry_is(f, "empty", SPD_DTYPE_F64, 2, s_empty, NULL, 0),
                "round trip keeps dtypes, shapes and bytes", NULL);

    // spd_st_read: same dtype and conversions, from unaligned data.
    float r32[2][3];
    double r64[4];
    int64_t r64i[3];
    int32_t r32i[2][2];
    test_report(spd_st_read(f, "layer.w32", SPD_DTYPE_F32, 2, s_w32, r32) == 0 && memcmp(r32, w32, sizeof w32) == 0,
                "read F32 as F32", "%s", spd_last_error());
    double w32_as64[6];
    int ok = spd_st_read(f, "layer.w32", SPD_DTYPE_F64, -1, NULL, w32_as64) == 0;
    for (int i = 0; ok && i < 6; i++) ok = w32_as64[i] == (double)w32[i / 3][i % 3];
    test_report(ok, "read F32 as F64", "%s", spd_last_error());
    float w64_as32[4];
    double w64_small[4] = {1.0 / 3.0, -1e30, 2.5, 1e-310};
    {
        // -1e300 does not fit in F32: use a file without it for the plain conversion.
        char p2[256];
        path_in_dir(p2, sizeof p2, "f64.safetensors");
        spd_st_writer *w2 = spd_st_writer_new();
        spd_st_writer_add(w2, "x", SPD_DTYPE_F64, 1, s_w64, w64_small);
        SPD_ASSERT(spd_st_writer_save(w2, p2) == 0);
        spd_st_writer_free(w2);
        spd_st_file *f2 = spd_st_open(p2);
        ok = f2 && spd_st_read(f2, "x", SPD_DTYPE_F32, 1, s_w64, w64_as32) == 0;
        for (int i = 0; ok && i < 4; i++) ok = w64_as32[i] == (float)w64_small[i];
        test_report(ok, "read F64 as F32 (rounded to nearest)", "%s", spd_last_error());
        spd_st_close(f2);
    }
    test_report(spd_st_read(f, "layer.w64", SPD_DTYPE_F64, 1, s_w64, r64) == 0 && memcmp(r64, w64, sizeof w64) == 0,
                "read F64 as F64", "%s", spd_last_error());
    test_report(spd_st_read(f, "ids.i64", SPD_DTYPE_I64, 1, s_i64, r64i) == 0 && memcmp(r64i, i64, sizeof i64) == 0,
                "read I64 as I64", "%s", spd_last_error());
    int32_t i64_as32[3];
    test_report(spd_st_read(f, "ids.i64", SPD_DTYPE_I32, 1, s_i64, i64_as32) == 0 && i64_as32[0] == -5 &&
                    i64_as32[1] == 2147483647 && i64_as32[2] == INT32_MIN,
                "read I64 as I32 (values at the I32 limits)", "%s", spd_last_error());
    int64_t i32_as64[4];
    test_report(spd_st_read(f, "ids.i32", SPD_DTYPE_I64, 2, s_i32, i32_as64) == 0 && i32_as64[1] == -2 &&
                    i32_as64[3] == 2147483647,
                "read I32 as I64", "%s", spd_last_error());
    test_report(spd_st_read(f, "ids.i32", SPD_DTYPE_I32, 2, s_i32, r32i) == 0 && memcmp(r32i, i32, sizeof i32) == 0,
                "read I32 as I32", "%s", spd_last_error());
    int64_t u8_as64[3];
    test_report(spd_st_read(f, "u8", SPD_DTYPE_I64, 1, s_u8, u8_as64) == 0 && u8_as64[2] == 255, "read U8 as I64",
                "%s", spd_last_error());

    // Refusals, with their messages.
    char want[512];
    snprintf(want, sizeof want, "%s: tensor 'nope' is missing", path);
    test_report(spd_st_read(f, "nope", SPD_DTYPE_F32, -1, NULL, r32) == -1 && strcmp(spd_last_error(), want) == 0,
                "read of a missing tensor names file and tensor", "%s", spd_last_error());
    snprintf(want, sizeof want, "%s: tensor 'layer.w32': expected shape [3, 2], found [2, 3]", path);
    test_report(spd_st_read(f, "layer.w32", SPD_DTYPE_F32, 2, (int64_t[]){3, 2}, r32) == -1 &&
                    strcmp(spd_last_error(), want) == 0,
                "read with the wrong shape says expected and found", "%s", spd_last_error());
    snprintf(want, sizeof want, "%s: tensor 'scalar': expected shape [1], found []", path);
    test_report(spd_st_read(f, "scalar", SPD_DTYPE_F32, 1, (int64_t[]){1}, r32) == -1 &&
                    strcmp(spd_last_error(), want) == 0,
                "read with the wrong rank is refused", "%s", spd_last_error());
    test_report(spd_st_read(f, "layer.w32", SPD_DTYPE_I64, -1, NULL, r64i) == -1 &&
                    strstr(spd_last_error(), "'layer.w32': expected an integer dtype (to read as I64), found F32"),
                "float to integer conversion is refused", "%s", spd_last_error());
    test_report(spd_st_read(f, "ids.i64", SPD_DTYPE_F64, -1, NULL, r64) == -1 &&
                    strstr(spd_last_error(), "'ids.i64': expected a floating-point dtype (to read as F64), found I64"),
                "integer to float conversion is refused", "%s", spd_last_error());
    test_report(spd_st_read(f, "layer.w64", SPD_DTYPE_F32, -1, NULL, w64_as32) == -1 &&
                    strstr(spd_last_error(), "element 1 = -1.0000000000000001e+300 does not fit in F32"),
                "F64 to F32 out of range is refused", "%s", spd_last_error());
    test_report(spd_st_read(f, "layer.w64", SPD_DTYPE_BF16, -1, NULL, r64) == -1 &&
                    strstr(spd_last_error(), "cannot read into BF16"),
                "read into a storage-only dtype is refused", "%s", spd_last_error());
    spd_st_close(f);

    // I64 values beyond I32.
    {
        char p3[256];
        path_in_dir(p3, sizeof p3, "big.safetensors");
        int64_t big[2] = {1, 2147483648LL}, two[1] = {2};
        spd_st_writer *w3 = spd_st_writer_new();
        spd_st_writer_add(w3, "tok", SPD_DTYPE_I64, 1, two, big);
        SPD_ASSERT(spd_st_writer_save(w3, p3) == 0);
        spd_st_writer_free(w3);
        spd_st_file *f3 = spd_st_open(p3);
        int32_t out[2];
        test_report(f3 && spd_st_read(f3, "tok", SPD_DTYPE_I32, 1, two, out) == -1 &&
                        strstr(spd_last_error(), "'tok': element 1 = 2147483648 does not fit in I32"),
                    "I64 to I32 out of range is refused", "%s", spd_last_error());
        spd_st_close(f3);
    }
}

// BF16 and F16 (stored by other tools) read as F32 and F64.
static void test_half_types(void) {
    char path[256];
    path_in_dir(path, sizeof path, "half.safetensors");
    uint16_t bf[4] = {0x3f80, 0xc020, 0x0000, 0x7f80};                // 1, -2.5, 0, inf
    uint16_t hf[6] = {0x3c00, 0xc100, 0x7bff, 0x0001, 0x7c00, 0x8000};  // 1, -2.5, 65504, 2^-24, inf, -0
    int64_t s4[1] = {4}, s6[1] = {6};
    spd_st_writer *w = spd_st_writer_new();
    spd_st_writer_add(w, "bf", SPD_DTYPE_BF16, 1, s4, bf);
    spd_st_writer_add(w, "hf", SPD_DTYPE_F16, 1, s6, hf);
    SPD_ASSERT(spd_st_writer_save(w, path) == 0);
    spd_st_writer_free(w);
    spd_st_file *f = spd_st_open(path);
    float b32[4];
    double h64[6];
    float h32[6];
    int ok = f && spd_st_read(f, "bf", SPD_DTYPE_F32, 1, s4, b32) == 0;
    ok = ok && b32[0] == 1.0f && b32[1] == -2.5f && b32[2] == 0.0f && isinf(b32[3]) && b32[3] > 0;
    test_report(ok, "read BF16 as F32", "%s", spd_last_error());
    ok = f && spd_st_read(f, "hf", SPD_DTYPE_F64, 1, s6, h64) == 0 && spd_st_read(f, "hf", SPD_DTYPE_F32, 1, s6, h32) == 0;
    ok = ok && h64[0] == 1.0 && h64[1] == -2.5 && h64[2] == 65504.0 && h64[3] == 0x1p-24 && isinf(h64[4]) &&
         h64[5] == 0.0 && signbit(h64[5]);
    for (int i = 0; ok && i < 6; i++) ok = (double)h32[i] == h64[i];
    test_report(ok, "read F16 (normal, subnormal, inf, -0) as F64 and F32", "%s", spd_last_error());
    spd_st_close(f);
}

static void test_write_failures(void) {
    char path[256];
    path_in_dir(path, sizeof path, "no/such/dir/x.safetensors");
    float x = 1;
    spd_st_writer *w = spd_st_writer_new();
    spd_st_writer_add(w, "x", SPD_DTYPE_F32, 0, NULL, &x);
    int rc = spd_st_writer_save(w, path);
    const char *msg = spd_last_error();
    test_report(rc == -1 && strstr(msg, path) && strstr(msg, strerror(ENOENT)) && !strchr(msg, '\n'),
                "save into a missing directory fails with path and reason", "%s", msg);
    printf("#   %s\n", msg);
    test_report(access(path, F_OK) != 0 && temp_files_left() == 0, "failed save leaves no file behind", NULL);

    char p2[256];
    path_in_dir(p2, sizeof p2, "dup.safetensors");
    spd_st_writer_add(w, "x", SPD_DTYPE_F32, 0, NULL, &x);
    rc = spd_st_writer_save(w, p2);
    test_report(rc == -1 && strstr(spd_last_error(), "'x' was added twice") && access(p2, F_OK) != 0,
                "save with a tensor added twice is refused", "%s", spd_last_error());
    spd_st_writer_free(w);
}

// Removes the test directory (flat: only files).
static void cleanup(void) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char p[512];
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/spd-st-XXXXXX", tmp && strlen(tmp) < 40 ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        printf("not ok - mkdtemp %s: %s\n", dir, strerror(errno));
        return 1;
    }
    test_round_trip();
    test_half_types();
    test_foreign_valid();
    test_write_failures();
    test_malformed();
    cleanup();
    return test_exit();
}
