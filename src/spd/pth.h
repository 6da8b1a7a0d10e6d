// PyTorch checkpoints (.pth, torch.save's zip format) of a state dict: what
// SPD saves as model_<step>.pth (SPD_SPEC.md 5.8) and loads with
// torch.load(weights_only=True).
//
// The file: a zip archive (core/zip_store.h) of stored entries under one
// prefix (torch uses the file's stem): <prefix>/data.pkl, the pickled dict
// (protocol 2): collections.OrderedDict() with, per name,
//   torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())
// where storage is the persistent id ('storage', torch.FloatStorage, key,
// 'cpu', numel) naming <prefix>/data/<key>, numel raw little-endian elements;
// plus <prefix>/.format_version "1", .storage_alignment "64", byteorder
// "little", version "3\n" and .data/serialization_id, as torch 2.x writes them.
// Tensors may share a storage (torch's tied weights: one is a transposed view)
// and may be non-contiguous or offset into it.
//
// The reader accepts what torch.load(weights_only=True) would for a dict of
// tensors (plus nn.Parameter values and _metadata); any other global, a
// non-tensor value or a malformed file is refused with one message naming the
// file. Each tensor comes back as a contiguous row-major copy.
#ifndef SPD_PTH_H
#define SPD_PTH_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

typedef struct {
    char *name;
    spd_dtype dtype;
    int ndim;
    int64_t shape[SPD_MAX_DIMS];
    void *data;  // contiguous copy, nbytes long
    size_t nbytes;
    int storage;  // index of its storage in the file (tensors sharing one have the same)
} spd_pth_tensor;

typedef struct {
    char *path;
    spd_pth_tensor *tensors;  // in the dict's order
    int count;
} spd_pth_file;

// NULL with spd_last_error() set on any problem.
spd_pth_file *spd_pth_read(const char *path);
void spd_pth_free(spd_pth_file *f);

typedef struct spd_pth_writer spd_pth_writer;

spd_pth_writer *spd_pth_writer_new(void);
// A tensor with its own contiguous storage. The data is referenced, not copied.
void spd_pth_writer_add(spd_pth_writer *w, const char *name, spd_dtype dtype, int ndim, const int64_t *shape,
                        const void *data);
// A 2-D tensor saved as the transposed view of the earlier tensor `base`'s
// storage (shape reversed, strides swapped), as torch saves SPD's tied weights.
// 0, or -1 with a message (no such base, or base not 2-D).
int spd_pth_writer_add_transposed(spd_pth_writer *w, const char *name, const char *base);
// A second name for the earlier tensor `base` (same storage, same view), as torch
// saves one tensor registered twice (SPD's component bias is the target's bias).
// 0, or -1 with a message (no such base).
int spd_pth_writer_add_alias(spd_pth_writer *w, const char *name, const char *base);
// Writes path (temporary file, fsync, rename). 0, or -1 with a message.
int spd_pth_writer_save(spd_pth_writer *w, const char *path);
void spd_pth_writer_free(spd_pth_writer *w);

// torch's storage class ("FloatStorage", ...) for a dtype, or NULL.
const char *spd_pth_storage_name(spd_dtype dt);

#endif
