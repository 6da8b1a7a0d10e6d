#include "core/zip_store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

enum {
    SIG_LOCAL = 0x04034b50,
    SIG_CENTRAL = 0x02014b50,
    SIG_EOCD = 0x06054b50,
    SIG_EOCD64 = 0x06064b50,
    SIG_EOCD64_LOC = 0x07064b50,
    LOCAL_SIZE = 30,
    CENTRAL_SIZE = 46,
    EOCD_SIZE = 22,
    ALIGN = 64,  // torch's .storage_alignment
};

uint32_t spd_crc32(uint32_t crc, const void *data, size_t n) {
    static uint32_t table[256];
    if (!table[1])  // racy only in writing the same values twice
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
    const unsigned char *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static uint32_t rd16(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t rd32(const unsigned char *p) { return rd16(p) | rd16(p + 2) << 16; }
static uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

// ---------------------------------------------------------------- reader

// The end-of-central-directory record (zip64 when marked): where the directory is and how many entries.
static int find_directory(const spd_zip *z, uint64_t *cd_off, uint64_t *cd_size, uint64_t *count) {
    const unsigned char *m = z->map;
    size_t n = z->map_size, eocd = SIZE_MAX;
    if (n < EOCD_SIZE) return spd_set_error("%s: %zu bytes is too short for a zip archive (not a torch .pth?)", z->path, n);
    size_t lo = n - EOCD_SIZE > 65535 ? n - EOCD_SIZE - 65535 : 0;
    for (size_t i = n - EOCD_SIZE + 1; i-- > lo;)
        if (rd32(m + i) == SIG_EOCD && i + EOCD_SIZE + rd16(m + i + 20) == n) {
            eocd = i;
            break;
        }
    if (eocd == SIZE_MAX)
        return spd_set_error("%s: no end-of-central-directory record: not a zip archive, or truncated "
                             "(torch.save's legacy format is not read)",
                             z->path);
    const unsigned char *e = m + eocd;
    if (rd16(e + 4) != 0 || rd16(e + 6) != 0 || rd16(e + 8) != rd16(e + 10))
        return spd_set_error("%s: multi-disk zip archives are not supported", z->path);
    *count = rd16(e + 10);
    *cd_size = rd32(e + 12);
    *cd_off = rd32(e + 16);
    if (*count == 0xFFFF || *cd_size == 0xFFFFFFFFu || *cd_off == 0xFFFFFFFFu) {
        if (eocd < 20 || rd32(e - 20) != SIG_EOCD64_LOC)
            return spd_set_error("%s: zip64 end record marked but its locator is missing", z->path);
        uint64_t off = rd64(e - 20 + 8);
        if (off > eocd - 20 || eocd - 20 - off < 56 || rd32(m + off) != SIG_EOCD64)
            return spd_set_error("%s: zip64 end-of-central-directory record not found at offset %" PRIu64, z->path, off);
        const unsigned char *e64 = m + off;
        *count = rd64(e64 + 32);
        *cd_size = rd64(e64 + 40);
        *cd_off = rd64(e64 + 48);
        eocd = (size_t)off;
    }
    if (*cd_off > eocd || *cd_size > eocd - *cd_off)
        return spd_set_error("%s: central directory (offset %" PRIu64 ", %" PRIu64 " bytes) runs past its end record",
                             z->path, *cd_off, *cd_size);
    if (*count > *cd_size / CENTRAL_SIZE)
        return spd_set_error("%s: %" PRIu64 " entries cannot fit a %" PRIu64 "-byte central directory", z->path, *count,
                             *cd_size);
    return 0;
}

// Sizes and offset from the zip64 extra field, for those marked 0xFFFFFFFF.
static int zip64_fields(const spd_zip *z, const char *name, const unsigned char *x, size_t xlen, uint64_t *usize,
                        uint64_t *csize, uint64_t *loff) {
    uint64_t *want[3] = {*usize == 0xFFFFFFFFu ? usize : NULL, *csize == 0xFFFFFFFFu ? csize : NULL,
                         *loff == 0xFFFFFFFFu ? loff : NULL};
    if (!want[0] && !want[1] && !want[2]) return 0;
    for (size_t i = 0; i + 4 <= xlen;) {
        size_t id = rd16(x + i), len = rd16(x + i + 2);
        if (i + 4 + len > xlen) break;
        if (id == 1) {
            size_t k = i + 4;
            for (int j = 0; j < 3; j++) {
                if (!want[j]) continue;
                if (k + 8 > i + 4 + len) break;
                *want[j] = rd64(x + k);
                k += 8;
                want[j] = NULL;
            }
            if (!want[0] && !want[1] && !want[2]) return 0;
            break;
        }
        i += 4 + len;
    }
    return spd_set_error("%s: entry '%s': sizes marked zip64 but its zip64 extra field is missing or short", z->path,
                         name);
}

// One central-directory record at *pos: validated against its local header; fills e.
static int read_entry(spd_zip *z, size_t *pos, uint64_t cd_end, uint64_t cd_off, spd_zip_entry *e) {
    const unsigned char *m = z->map, *c = m + *pos;
    if (cd_end - *pos < CENTRAL_SIZE || rd32(c) != SIG_CENTRAL)
        return spd_set_error("%s: central directory entry %d: bad signature or truncated", z->path, z->count);
    size_t nlen = rd16(c + 28), xlen = rd16(c + 30), clen = rd16(c + 32);
    if (cd_end - *pos - CENTRAL_SIZE < nlen + xlen + clen)
        return spd_set_error("%s: central directory entry %d runs past the directory", z->path, z->count);
    e->name = spd_malloc(nlen + 1);
    memcpy(e->name, c + CENTRAL_SIZE, nlen);
    e->name[nlen] = '\0';
    if (strlen(e->name) != nlen) return spd_set_error("%s: entry %d: name contains a NUL byte", z->path, z->count);
    unsigned flags = rd16(c + 8), method = rd16(c + 10);
    uint64_t csize = rd32(c + 20), usize = rd32(c + 24), loff = rd32(c + 42);
    e->crc = rd32(c + 16);
    if (zip64_fields(z, e->name, c + CENTRAL_SIZE + nlen, xlen, &usize, &csize, &loff)) return -1;
    *pos += CENTRAL_SIZE + nlen + xlen + clen;
    if (flags & 1) return spd_set_error("%s: entry '%s' is encrypted", z->path, e->name);
    if (method != 0)
        return spd_set_error("%s: entry '%s' is compressed (method %u); only stored entries are read, "
                             "as torch.save writes them",
                             z->path, e->name, method);
    if (csize != usize)
        return spd_set_error("%s: entry '%s': stored entry with compressed size %" PRIu64 " != size %" PRIu64,
                             z->path, e->name, csize, usize);
    if (loff > cd_off || cd_off - loff < LOCAL_SIZE)
        return spd_set_error("%s: entry '%s': local header offset %" PRIu64 " is not before the directory", z->path,
                             e->name, loff);
    const unsigned char *l = m + loff;
    size_t lnlen = rd16(l + 26), lxlen = rd16(l + 28);
    if (rd32(l) != SIG_LOCAL || lnlen != nlen || cd_off - loff - LOCAL_SIZE < lnlen + lxlen ||
        memcmp(l + LOCAL_SIZE, e->name, nlen) != 0 || rd16(l + 8) != method)
        return spd_set_error("%s: entry '%s': local header does not match the central directory", z->path, e->name);
    e->offset = loff + LOCAL_SIZE + lnlen + lxlen;
    e->size = usize;
    if (e->size > cd_off - e->offset)
        return spd_set_error("%s: entry '%s': %" PRIu64 " bytes at offset %" PRIu64 " run past the data (truncated?)",
                             z->path, e->name, e->size, e->offset);
    uint32_t crc = spd_crc32(0, m + e->offset, (size_t)e->size);
    if (crc != e->crc)
        return spd_set_error("%s: entry '%s': CRC-32 %08x, expected %08x (corrupted)", z->path, e->name, crc, e->crc);
    return 0;
}

spd_zip *spd_zip_open(const char *path) {
    spd_zip *z = spd_calloc(1, sizeof *z);
    z->path = spd_strdup(path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        spd_set_error("%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        spd_set_error("%s: expected a regular file", path);
        goto fail;
    }
    if (st.st_size < EOCD_SIZE || (uint64_t)st.st_size > SIZE_MAX) {
        spd_set_error("%s: %lld bytes is not a zip archive", path, (long long)st.st_size);
        goto fail;
    }
    z->map_size = (size_t)st.st_size;
    void *map = mmap(NULL, z->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        z->map_size = 0;
        spd_set_error("%s: cannot map %lld bytes: %s", path, (long long)st.st_size, strerror(errno));
        goto fail;
    }
    z->map = map;
    close(fd);
    fd = -1;
    uint64_t cd_off = 0, cd_size = 0, count = 0;
    if (find_directory(z, &cd_off, &cd_size, &count)) goto fail;
    z->entries = spd_calloc((size_t)count + 1, sizeof *z->entries);
    size_t pos = (size_t)cd_off;
    for (uint64_t i = 0; i < count; i++) {
        int rc = read_entry(z, &pos, cd_off + cd_size, cd_off, &z->entries[z->count]);
        z->count++;  // its name is freed with the rest
        if (rc) goto fail;
        for (int j = 0; j + 1 < z->count; j++)
            if (strcmp(z->entries[j].name, z->entries[z->count - 1].name) == 0) {
                spd_set_error("%s: entry '%s' appears twice", path, z->entries[j].name);
                goto fail;
            }
    }
    return z;
fail:
    if (fd >= 0) close(fd);
    spd_zip_close(z);
    return NULL;
}

void spd_zip_close(spd_zip *z) {
    if (!z) return;
    if (z->map) munmap((void *)z->map, z->map_size);
    for (int i = 0; i < z->count; i++) free(z->entries[i].name);
    free(z->entries);
    free(z->path);
    free(z);
}

const spd_zip_entry *spd_zip_find(const spd_zip *z, const char *name) {
    for (int i = 0; i < z->count; i++)
        if (strcmp(z->entries[i].name, name) == 0) return &z->entries[i];
    return NULL;
}

// ---------------------------------------------------------------- writer

typedef struct {
    char *name;
    uint32_t crc, size, local_offset;
} written_entry;

struct spd_zip_writer {
    char *path, *tmp;
    FILE *fp;
    uint64_t pos;
    written_entry *entries;
    int count, cap;
    int no_sync;
};

void spd_zip_writer_no_sync(spd_zip_writer *w) { w->no_sync = 1; }

static void put16(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}
static void put32(unsigned char *p, uint32_t v) {
    put16(p, v & 0xffff);
    put16(p + 2, v >> 16);
}

spd_zip_writer *spd_zip_writer_open(const char *path) {
    spd_zip_writer *w = spd_calloc(1, sizeof *w);
    w->path = spd_strdup(path);
    size_t n = strlen(path) + 32;
    w->tmp = spd_malloc(n);
    snprintf(w->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    w->fp = fopen(w->tmp, "wb");
    if (!w->fp) {
        spd_set_error("%s: cannot create temporary file (%s): %s", path, w->tmp, strerror(errno));
        spd_zip_writer_abort(w);
        return NULL;
    }
    return w;
}

static int write_all(spd_zip_writer *w, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, w->fp) != n)
        return spd_set_error("%s: cannot write (%s): %s", w->path, w->tmp, strerror(errno));
    w->pos += n;
    return 0;
}

int spd_zip_writer_add(spd_zip_writer *w, const char *name, const void *data, size_t size) {
    size_t nlen = strlen(name);
    // Local header, name, an "FB" extra field padding the data to ALIGN bytes.
    uint64_t base = w->pos + LOCAL_SIZE + nlen + 4;
    size_t pad = (size_t)((ALIGN - base % ALIGN) % ALIGN);
    if (nlen > 0xFFFF || w->pos + LOCAL_SIZE + nlen + 4 + pad + size >= 0xFFFFFFFFu)
        return spd_set_error("%s: entry '%s': archive past 4 GiB (zip64) is not written", w->path, name);
    if (w->count == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 16;
        written_entry *g = realloc(w->entries, (size_t)w->cap * sizeof *g);
        if (!g) spd_die("out of memory");
        w->entries = g;
    }
    written_entry *e = &w->entries[w->count++];
    e->name = spd_strdup(name);
    e->crc = spd_crc32(0, data, size);
    e->size = (uint32_t)size;
    e->local_offset = (uint32_t)w->pos;
    unsigned char h[LOCAL_SIZE + 4] = {0}, zz[ALIGN];
    put32(h, SIG_LOCAL);
    put16(h + 4, 20);  // version needed: 2.0
    // flags 0, method 0 (stored), time and date 0 (reproducible files)
    put32(h + 14, e->crc);
    put32(h + 18, e->size);
    put32(h + 22, e->size);
    put16(h + 26, (uint32_t)nlen);
    put16(h + 28, (uint32_t)(4 + pad));
    put16(h + LOCAL_SIZE, 0x4246);  // "FB"
    put16(h + LOCAL_SIZE + 2, (uint32_t)pad);
    memset(zz, 'Z', sizeof zz);
    if (write_all(w, h, LOCAL_SIZE) || write_all(w, name, nlen) || write_all(w, h + LOCAL_SIZE, 4) ||
        write_all(w, zz, pad) || write_all(w, data, size))
        return -1;
    return 0;
}

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

int spd_zip_writer_finish(spd_zip_writer *w) {
    uint64_t cd_off = w->pos;
    for (int i = 0; i < w->count; i++) {
        const written_entry *e = &w->entries[i];
        unsigned char c[CENTRAL_SIZE] = {0};
        put32(c, SIG_CENTRAL);
        put16(c + 4, 20);  // made by 2.0 (MS-DOS attributes)
        put16(c + 6, 20);
        put32(c + 16, e->crc);
        put32(c + 20, e->size);
        put32(c + 24, e->size);
        put16(c + 28, (uint32_t)strlen(e->name));
        put32(c + 42, e->local_offset);
        if (write_all(w, c, sizeof c) || write_all(w, e->name, strlen(e->name))) goto fail;
    }
    uint64_t cd_size = w->pos - cd_off;
    if (w->count > 0xFFFE || w->pos >= 0xFFFFFFFFu) {
        spd_set_error("%s: archive past 4 GiB or 65535 entries (zip64) is not written", w->path);
        goto fail;
    }
    unsigned char r[EOCD_SIZE] = {0};
    put32(r, SIG_EOCD);
    put16(r + 8, (uint32_t)w->count);
    put16(r + 10, (uint32_t)w->count);
    put32(r + 12, (uint32_t)cd_size);
    put32(r + 16, (uint32_t)cd_off);
    if (write_all(w, r, sizeof r)) goto fail;
    const char *what = "cannot write";
    if (fflush(w->fp) != 0) goto fail_errno;
    what = "cannot sync";
    if (!w->no_sync && fsync(fileno(w->fp)) != 0) goto fail_errno;
    what = "cannot close";
    int rc = fclose(w->fp);
    w->fp = NULL;
    if (rc != 0) goto fail_errno;
    what = "cannot rename the temporary file into place";
    if (rename(w->tmp, w->path) != 0) goto fail_errno;
    if (!w->no_sync) fsync_parent_dir(w->path);
    free(w->tmp);
    w->tmp = NULL;
    spd_zip_writer_abort(w);  // frees; nothing left to remove
    return 0;
fail_errno:
    spd_set_error("%s: %s (%s): %s", w->path, what, w->tmp, strerror(errno));
fail:
    spd_zip_writer_abort(w);
    return -1;
}

void spd_zip_writer_abort(spd_zip_writer *w) {
    if (!w) return;
    if (w->fp) fclose(w->fp);
    if (w->tmp) unlink(w->tmp);
    for (int i = 0; i < w->count; i++) free(w->entries[i].name);
    free(w->entries);
    free(w->tmp);
    free(w->path);
    free(w);
}
