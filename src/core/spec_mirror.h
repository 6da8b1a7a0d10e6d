// Copying values between two spec tables that declare the same tensors (by
// name and element count) in possibly different dtypes and places: a float64
// host table and its float32 GPU mirror. `spd train --device cuda` builds,
// initialises, loads and saves the host table as always and trains on the
// mirror, copying the trained tensors and their Adam moments across only at
// start, resume and checkpoints (never per step).
#ifndef SPD_SPEC_MIRROR_H
#define SPD_SPEC_MIRROR_H

#include "core/spec.h"

typedef enum {
    SPD_MIRROR_VALUES,  // the tensors' data
    SPD_MIRROR_GRAD,    // the gradient mirror (TRAINED only)
    SPD_MIRROR_ADAM_M,  // AdamW's first moments (TRAINED only)
    SPD_MIRROR_ADAM_V   // AdamW's second moments (TRAINED only)
} spd_mirror_part;

// Every float tensor of `role` in src -> the same-named tensor of dst, converted
// to dst's dtype (float32/float64). 0, or -1 with a message naming the tensor
// when dst lacks it or its element count differs.
int spd_spec_copy_role(spd_spec *dst, const spd_spec *src, spd_role role, spd_mirror_part part);

// One float tensor's `part` as float64 host values (n = its element count) / from them.
void spd_tensor_read_f64(const spd_spec *spec, const spd_tensor *t, spd_mirror_part part, double *out);
void spd_tensor_write_f64(spd_spec *spec, const spd_tensor *t, spd_mirror_part part, const double *in);

#endif
