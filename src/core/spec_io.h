// Moving spec-table tensors in and out of safetensors files by name.
#ifndef SPD_SPEC_IO_H
#define SPD_SPEC_IO_H

#include "core/safetensors.h"
#include "core/spec.h"

// Reads tensor t (by its name, converting dtype, checking shape). A target
// weight "target_model.X" is also found under the bare name "X", so a plain
// LlamaSimple state dict loads as well as a ComponentModel one.
// Device tensors go through a host staging copy.
// 0, or -1 with spd_last_error() naming the file and tensor.
int spd_spec_load_tensor(const spd_spec *spec, const spd_st_file *f, spd_tensor *t);

#endif
