// TMS as an SPD training target (spd/train.h spd_target): input features
// x [B, n_features] (input.x), output out = ReLU(linear2(...)) [B, n_features].
// Sites in SPD's module order: linear1, linear2, hidden_layers.<i>
// (TMS_LINEAR1, TMS_LINEAR2, TMS_HIDDEN0 + i). With a tied target
// (tied_weights) SPD ties the components of (linear1, linear2): spd/tied.h.
//
// Use: tms_declare (FROZEN, prefix "target_model.") into the caller's spec,
// spd_trainer_declare with spd_target_tms(&m), spd_spec_alloc, tms_bind, then
// spd_trainer_bind with spd_target_tms(&m) again (now with the buffers).
//
// Every backend (the CUDA build: a model on the GPU).
#ifndef SPD_TARGET_TMS_H
#define SPD_TARGET_TMS_H

#include "core/real.h"
#include "models/tms.h"
#include "spd/train.h"

spd_target RFN(spd_target_tms)(tms_model *m);

#endif
