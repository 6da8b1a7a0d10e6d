// ResidMLP as an SPD training target (spd/train.h spd_target): input features
// x [B, n_features] (input.x), output out = r_L W_U [B, n_features] -- the
// target model's own output, which is what SPD's ComponentModel compares
// (SPD_SPEC.md 7.3: the target output is the label). Sites in SPD's module
// order: layers.<i>.mlp_in, layers.<i>.mlp_out (RESID_MLP_IN / RESID_MLP_OUT).
//
// Use: resid_mlp_declare (FROZEN, prefix "target_model.") into the caller's
// spec, spd_trainer_declare with spd_target_resid_mlp(&m), spd_spec_alloc,
// resid_mlp_bind, then spd_trainer_bind with spd_target_resid_mlp(&m) again.
//
// Every backend (the CUDA build: a model on the GPU).
#ifndef SPD_TARGET_RESID_MLP_H
#define SPD_TARGET_RESID_MLP_H

#include "core/real.h"
#include "models/resid_mlp.h"
#include "spd/train.h"

spd_target RFN(spd_target_resid_mlp)(resid_mlp_model *m);

#endif
