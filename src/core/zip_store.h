// Zip archives of stored (uncompressed) entries, as torch.save writes them
// (https://pkware.cachefly.net/webdocs/casestudies/APPNOTE.TXT).
//
// The reader maps the file and trusts only the central directory: every
// entry's local header must agree with it (name, method, sizes), its data must
// lie inside the file before the directory, its CRC-32 must match, and names
// must be unique. Zip64 records are read (torch writes them past 4 GiB).
// Compressed, encrypted and multi-disk archives are refused with one message
// naming the file: torch never writes them.
//
// The writer writes each entry's data 64-byte aligned (padding in a local
// "FB" extra field, as torch does, so storages can be mapped in place) to
// path.tmp.<pid>, then the central directory, fsync, rename. No zip64: an
// archive past 4 GiB is refused.
#ifndef SPD_ZIP_STORE_H
#define SPD_ZIP_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *name;
    uint64_t offset;  // of the data in the file
    uint64_t size;
    uint32_t crc;
} spd_zip_entry;

typedef struct {
    char *path;
    const unsigned char *map;
    size_t map_size;
    spd_zip_entry *entries;  // in central-directory order
    int count;
} spd_zip;

// Opens and validates; NULL with spd_last_error() set on any problem.
spd_zip *spd_zip_open(const char *path);
void spd_zip_close(spd_zip *z);
const spd_zip_entry *spd_zip_find(const spd_zip *z, const char *name);  // NULL if absent
static inline const void *spd_zip_data(const spd_zip *z, const spd_zip_entry *e) { return z->map + e->offset; }

uint32_t spd_crc32(uint32_t crc, const void *data, size_t n);  // crc = 0 to start

typedef struct spd_zip_writer spd_zip_writer;

// Creates path.tmp.<pid>; NULL with a message on failure.
spd_zip_writer *spd_zip_writer_open(const char *path);
// Skips the fsync before the rename (scratch files, tests). Default: sync.
void spd_zip_writer_no_sync(spd_zip_writer *w);
// Appends one stored entry. 0, or -1 with a message (the writer is then only to be aborted).
int spd_zip_writer_add(spd_zip_writer *w, const char *name, const void *data, size_t size);
// Central directory, fsync, rename to path, free. 0, or -1 with a message (temporary file removed).
int spd_zip_writer_finish(spd_zip_writer *w);
// Removes the temporary file and frees.
void spd_zip_writer_abort(spd_zip_writer *w);

#endif
