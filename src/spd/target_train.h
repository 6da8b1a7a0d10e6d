// Training the toy TARGET models as SPD trains them (SPD_SPEC.md 7.2-7.4;
// spd/experiments/tms/train_tms.py, spd/experiments/resid_mlp/train_resid_mlp.py),
// CPU, float64, and writing them as safetensors state dicts that `spd train`
// loads through pretrained_model_path.
//
// The presets (spd_target_preset) are SPD's target-training settings:
//
//   experiment    model                                     data                 batch  steps  lr schedule
//   tms_5-2       TMS 5 -> 2, tied, bias kept (init)        p 0.05, x in [0,1)   1024   10000  5e-3 constant
//   tms_5-2-id    same + hidden_layers.0 fixed identity      "                    1024   10000  5e-3 constant
//   tms_40-10     TMS 40 -> 10, tied, bias zeroed at init   "                    8192   10000  5e-3 constant
//   tms_40-10-id  same + hidden_layers.0 fixed identity      "                    8192   10000  5e-3 constant
//   resid_mlp_1   100 features, d_embed 1000, d_mlp 50, 1L  p 0.01, x in [-1,1)  2048    1000  3e-3 cosine -> 0
//   resid_mlp_2   100 features, d_embed 1000, d_mlp 25, 2L  "                    2048    1000  3e-3 cosine -> 0
//   resid_mlp_3   102 features, d_embed 1000, d_mlp 17, 3L  "                    2048   10000  3e-3 cosine -> 0
//
// All: data_generation_type at_least_zero_active; optimizer torch AdamW with its
// defaults (betas 0.9/0.999, eps 1e-8) and weight_decay 0.01 over the trainable
// parameters; lr set per step by SPD's get_scheduled_value(step, steps) (warmup 0);
// `steps` iterations (no extra final one). Importance weighting: both scripts pass
// importance 1 (TMS train(importance=1.0); ResidMLP importance_val=1), so the loss
// is a plain mean; importance_val != 1 weights feature f by importance_val^f
// (SPD's compute_feature_importances).
//   TMS loss:      mean((|x| - out)^2)            (labels = inputs)
//   ResidMLP loss: mean((out - y)^2), y = relu(x) + x   ("readoff", act_plus_resid,
//                  use_trivial_label_coeffs: coefficients 1)
// TMS: nn.Linear default init; the tied pair linear1.weight / linear2.weight^T is
// stepped as torch's for-loop AdamW steps two aliased Parameters (two Adam states,
// both updates and both weight decays land on the one matrix: models/tms.h); the
// "-id" hidden layer is the identity and frozen. ResidMLP: fixed random embedding
// (W_E rows N(0,1) normalised, W_U = W_E^T, both frozen), relu, no biases; only
// the MLP weights train. Parameter order for AdamW = SPD's model.parameters().
//
// Randomness: SPD seeds torch's global RNG (seed 0) and draws the init and then
// every batch from it; here the init is Philox (seed, SPD_RNG_INIT streams:
// models/tms.h, models/resid_mlp.h) and the batches are Philox (seed, step) data
// streams (models/toy_data.h), so a run is a pure function of (preset, seed, steps):
// the same file bit for bit. The numbers differ from torch's; the distributions
// are SPD's. Default seeds: 0, except tms_5-2 / tms_5-2-id: 6 (the first Philox seed
// whose 5-2 target represents all five features; seeds 0-5 leave 1-3 of them out,
// TMS training being as finicky as train_tms.py warns).
//
// Files: float32 (SPD's targets are float32 torch state dicts) under SPD's
// state-dict names (TMS: linear1.weight, linear2.weight (= linear1.weight^T when
// tied), linear2.bias, hidden_layers.<i>.weight; ResidMLP: W_E, W_U,
// layers.<i>.mlp_in.weight, layers.<i>.mlp_out.weight), with __metadata__: format
// "spd-target-v1", experiment, task (tms|resid_mlp), sizes (n_features, n_hidden,
// n_hidden_layers | d_embed, d_mlp, n_layers), tied ("true"/"false"),
// init_bias_to_zero, fixed_identity_hidden_layers, act_fn_name, in_bias, out_bias,
// fixed_random_embedding, label_type, feature_probability, data_generation_type,
// batch_size, steps, lr settings, weight_decay, seed, final_loss.
#ifndef SPD_TARGET_TRAIN_H
#define SPD_TARGET_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "core/spec.h"
#include "models/resid_mlp.h"
#include "models/tms.h"
#include "models/toy_data.h"
#include "spd/config.h"

typedef enum { SPD_TARGET_TMS, SPD_TARGET_RESID_MLP } spd_target_task;

typedef struct {
    char experiment[32];  // preset name ("tms_5-2", ...), metadata only
    spd_target_task task;
    tms_config tms;                 // task tms
    tms_hidden_init tms_hidden;     // TMS_HIDDEN_FIXED_IDENTITY for the "-id" targets
    resid_mlp_config resid;         // task resid_mlp
    resid_mlp_embedding embedding;  // RESID_EMBED_FIXED_RANDOM for every reference target
    double feature_probability;
    spd_toy_generation generation;
    int batch_size;
    int64_t steps;
    spd_schedule_fn lr_fn;
    double lr, lr_warmup_pct, lr_final_val_frac;
    double weight_decay;            // AdamW (betas 0.9/0.999, eps 1e-8)
    double importance_val;          // feature f weighted importance_val^f; 1: plain mean
    int n_batches_final_losses;     // ResidMLP's final average (10); TMS 1
    uint64_t seed;                  // init and data streams
} spd_target_train_config;

// Preset names, NULL-terminated, in the order of the table above.
extern const char *const spd_target_presets[];
// SPD's settings for `experiment` (seed 0); -1 with a message naming the presets.
int spd_target_preset(const char *experiment, spd_target_train_config *out);

// A target being trained: the model (TRAINED parameters, bare state-dict names),
// its data and optimizer state. Float64, CPU.
typedef struct {
    spd_target_train_config cfg;
    spd_spec spec;
    tms_model_f64 tms;
    resid_mlp_model_f64 rm;
    spd_toy_data data;
    double *labels;   // [B, n_features]
    double *weights;  // [n_features] importance weights
    double *out, *dout, *x;  // the model's output / its gradient / input (views)
    int n_features;
    int64_t step;     // training steps done
} spd_target_run;

// Validates cfg (sizes, batch >= 1, steps >= 1, probability, lr > 0) and builds
// the model with SPD's init; 0, or -1 with a message.
int spd_target_run_init(spd_target_run *r, const spd_target_train_config *cfg);
// One training step (SPD's loop body at r->step: lr from the schedule, batch,
// forward, loss, backward, AdamW). Returns the step's loss (before the update).
double spd_target_run_step(spd_target_run *r);
// The loss of the current parameters, averaged over n batches drawn from the
// eval streams at the current step (no update): SPD's final-loss average.
double spd_target_run_eval(spd_target_run *r, int n_batches);
// The model's output for one input row x [n_features] into out [n_features].
void spd_target_run_apply(spd_target_run *r, const double *x, double *out);
// Writes the state dict (float32) and metadata; final_loss goes into the metadata
// (NaN: omitted). 0, or -1 with a message.
int spd_target_run_save(const spd_target_run *r, const char *path, double final_loss);
void spd_target_run_free(spd_target_run *r);

#endif
