// `spd train --device cuda`: the float32 GPU twin of a host run. The CLI builds,
// initialises, loads (resume) and saves its float64 host run as always; this
// module declares the same target and trainer on the GPU (same tensor names),
// copies the host's values and Adam state up once (spd_gpu_run_upload), then
// runs the steps and updates on the device. Per step only the batch goes up and
// the loss values come back; grads, CI and parameters come down only on log and
// checkpoint steps (spd_gpu_run_download*). The faithfulness warm-up runs on the
// host before the upload (no data, cheap).
//
// Opaque to its callers, whose `real` is float64: options and configs are passed
// as the host's structs (precision-free, or with NULL draw source).
#ifndef SPD_TRAIN_GPU_H
#define SPD_TRAIN_GPU_H

#include <stdbool.h>
#include <stdint.h>

#include "core/spec.h"
#include "models/llama_config.h"
#include "models/resid_mlp.h"
#include "models/tms.h"
#include "models/toy_data.h"
#include "spd/dist.h"

typedef struct spd_gpu_run spd_gpu_run;

typedef enum { SPD_GPU_TMS, SPD_GPU_RESID_MLP, SPD_GPU_LLAMA } spd_gpu_target;

typedef struct {
    spd_gpu_target kind;
    tms_config tms;                   // TMS target sizes
    resid_mlp_config resid_mlp;       // ResidMLP target sizes
    llama_config llama;               // LlamaSimple: sizes, T positions per row, own lm_head
    int T;
    bool untied_lm_head;
    int B;                            // batch
    // The host's spd_train_options; a draw source in it (spd check) serves the
    // device through float64 host buffers, converted and uploaded.
    const void *opt;
    const int *site, *C;              // decomposed sites and their C, n of them
    int n;
    int tie_src, tie_tgt;             // tied components (module indices), -1: none
    // identity_module_info: identities inserted after declaring the target, as on the
    // host (the site indices above count them), n_identity patterns; NULL: none.
    const spd_module_pattern *identity;
    int n_identity;
    spd_dist *dist;                   // data parallel (spd/dist.h; B is then this rank's rows), or NULL
} spd_gpu_run_config;

// Declares, allocates and binds the device run; dies with a message on error.
spd_gpu_run *spd_gpu_run_create(const spd_gpu_run_config *c);
// Target and trained values, Adam moments (and the update count) from the host table.
void spd_gpu_run_upload(spd_gpu_run *g, const spd_spec *host, int64_t adam_t);
// Trained values and Adam moments (with_grads: the gradients too) into the host table.
void spd_gpu_run_download(spd_gpu_run *g, spd_spec *host, bool with_grads);
// Module l's pre_sigmoid (what 0), ci_lower (1) or ci_upper (2) [N, C] of the last step as float64.
void spd_gpu_run_ci(spd_gpu_run *g, int l, int what, double *out);
// The clean target output y_t [N, d_out] of the last step as float64.
void spd_gpu_run_target_output(spd_gpu_run *g, double *out);
// The batch x [n] (float32 host values) into the device's input.x.
void spd_gpu_run_set_input(spd_gpu_run *g, const float *x, int64_t n);
// Rows row0 .. row0 + B - 1 of the training batch of `step` drawn on the GPU straight
// into input.x (the host's floats); false when the data's kind needs the host (then
// spd_gpu_run_set_input).
bool spd_gpu_run_toy_batch(spd_gpu_run *g, const spd_toy_data *d, int64_t step, int64_t row0, int B);
// LlamaSimple: token ids [n] into input.tokens.
void spd_gpu_run_set_tokens(spd_gpu_run *g, const int32_t *tokens, int64_t n);
// The faithfulness warm-up on the device (spd/faithfulness_warmup.h, the run's ties); its final loss.
double spd_gpu_run_warmup(spd_gpu_run *g, int64_t steps, double lr, double weight_decay);
// One step: values [n_terms] (raw terms) and the total.
double spd_gpu_run_step(spd_gpu_run *g, int64_t step, double *values);
// The update after a step (ties through spd/tied.h); the group norms before clipping.
void spd_gpu_run_update(spd_gpu_run *g, int64_t step, double *norm_components, double *norm_ci_fns);
int64_t spd_gpu_run_adam_t(const spd_gpu_run *g);
// ---- data parallel (config.dist set; spd/dist.h)
// The trained values from rank 0 (DDP's broadcast at start; init is identical anyway).
void spd_gpu_run_dist_broadcast_params(spd_gpu_run *g);
// After spd_gpu_run_step, before spd_gpu_run_update: the flat gradient buffer
// averaged over ranks (one all-reduce), and values [n_terms] and *total too.
void spd_gpu_run_dist_average(spd_gpu_run *g, double *values, double *total);
// spd_gpu_run_ci over the global batch: every rank's rows all-gathered in rank
// order (out [world * N, C]); a collective: every rank calls it.
void spd_gpu_run_dist_ci(spd_gpu_run *g, int l, int what, double *out);
void spd_gpu_run_free(spd_gpu_run *g);

#endif
