// Safetensors files (https://github.com/huggingface/safetensors): an 8-byte
// little-endian header length, a JSON header naming each tensor's dtype, shape
// and [begin, end) byte range in the data section, then the data.
//
// The reader maps the file and validates the whole header before anything is
// used: every malformed file is refused with one message naming the file (and
// the tensor) and what was expected. The writer writes a temporary file beside
// the target and renames it into place, so a finished file is never lost.
#ifndef SPD_SAFETENSORS_H
#define SPD_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

typedef struct {
    char *name;
    spd_dtype dtype;
    int ndim;
    int64_t shape[SPD_MAX_DIMS];
    size_t begin, end;  // byte range within the data section
    const void *data;   // points into the mapping (may be unaligned)
} spd_st_entry;

typedef struct {
    char *path;
    void *map;
    size_t map_size;
    spd_st_entry *entries;  // in header order
    int count;
    char **meta_keys, **meta_values;  // __metadata__ (string -> string)
    int meta_count;
} spd_st_file;

// Opens and validates; NULL with spd_last_error() set on any problem.
spd_st_file *spd_st_open(const char *path);
void spd_st_close(spd_st_file *f);
const spd_st_entry *spd_st_find(const spd_st_file *f, const char *name);  // NULL if absent
const char *spd_st_meta(const spd_st_file *f, const char *key);         // NULL if absent

// Copies tensor `name` into out, converting to out_dtype: any float dtype
// (F64, F32, BF16, F16) to F64 or F32; any integer dtype to I64 or I32 (values
// checked to fit). When ndim >= 0 the stored shape must equal shape. Returns
// 0, or -1 with a message such as
//   "ref.safetensors: tensor 'input.tokens': expected shape [3, 11], found [3, 12]".
int spd_st_read(const spd_st_file *f, const char *name, spd_dtype out_dtype, int ndim, const int64_t *shape,
                void *out);

typedef struct spd_st_writer spd_st_writer;

spd_st_writer *spd_st_writer_new(void);
void spd_st_writer_meta(spd_st_writer *w, const char *key, const char *value);
// The data is referenced, not copied: keep it alive until save.
void spd_st_writer_add(spd_st_writer *w, const char *name, spd_dtype dtype, int ndim, const int64_t *shape,
                       const void *data);
// Writes path.tmp.<pid>, fsyncs it and renames it to path. 0, or -1 with a message.
int spd_st_writer_save(spd_st_writer *w, const char *path);
void spd_st_writer_free(spd_st_writer *w);

#endif
