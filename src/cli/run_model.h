// The model of a run, built from its config as `spd train` builds it and shared by
// `spd train` (fresh, --resume) and `spd eval` (a checkpoint): the target (TMS or ResidMLP,
// from a safetensors state dict or random), identity insertion (identity_module_info,
// "<module>.pre_identity" sites), the decomposed modules (SPD's all_module_info), the
// float64 trainer over one spec of B rows, and tied TMS components; the trained tensors
// of a checkpoint; the toy data of the run.
// Input errors (an unsupported task or loss, a bad target file, a pattern that matches
// nothing, a missing tensor or a shape that differs) end the process with one line, exit 2.
// Float64, as the CLI trainer: include with SPD_F64 defined.
#ifndef SPD_CLI_RUN_MODEL_H
#define SPD_CLI_RUN_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/safetensors.h"
#include "core/spec.h"
#include "models/module_select.h"
#include "models/resid_mlp.h"
#include "models/tms.h"
#include "models/toy_data.h"
#include "spd/config.h"
#include "spd/tied.h"
#include "spd/train.h"

// A random target's sizes (spd train's options); a target file's sizes come from its shapes.
typedef struct {
    int F, H, L, d_embed, d_mlp, n_layers;
    bool tied;
    uint64_t target_seed;
    resid_mlp_act act;
} spd_target_args;

#define SPD_TARGET_ARGS_DEFAULT \
    ((spd_target_args){.F = 5, .H = 2, .L = 0, .d_embed = 4, .d_mlp = 6, .n_layers = 1, .act = RESID_MLP_RELU})

typedef struct {
    spd_task_name task;
    spd_spec spec;
    tms_model tms;            // task tms
    resid_mlp_model rm;       // task resid_mlp
    tms_config tcfg;
    resid_mlp_config rcfg;
    spd_target tg;
    int F;                    // n_features
    double *x;                // the target's input [B, F]
    spd_module_pattern *id_pats;  // identity_module_info patterns (models/identity_insertion.h)
    int n_id_pats;
    spd_module_pattern *pats;     // all_module_info
    int n_pats;
    spd_module_choice *chosen;    // the decomposed modules, SPD's order
    int n_chosen;
    const char **paths;
    int *site, *C;            // per decomposed module: its target site and C
    spd_trainer tr;
    spd_tied_pair tie;        // TMS linear1 -> linear2 when the target is tied and both are decomposed
    int n_ties;
} spd_run_model;

// The config's task, data generation, batch size and steps as spd train runs them (label names
// the config in messages).
void spd_run_check_config(const spd_config *cfg, const char *label);
// The trainer's options from the config (losses, CI fns, sigmoids, sampling, lr, clipping).
void spd_train_options_from_config(const spd_config *cfg, spd_train_options *o);

// Builds m from cfg: the target from tf (a state dict with or without "target_model."; NULL:
// random from ta, with a note on stderr naming tpath), B rows, the trainer with opt (copied).
// The trained tensors are allocated, not initialised.
void spd_run_model_build(spd_run_model *m, const spd_config *cfg, const char *label, const spd_st_file *tf,
                         const char *tpath, const spd_target_args *ta, int B, const spd_train_options *opt);
// Every trained tensor (components, CI fns) from a checkpoint (model_<s>.safetensors names),
// converted to float64; what names the caller in messages ("train: --resume", "eval").
void spd_run_model_load_trained(spd_run_model *m, const spd_st_file *mf, const char *what);
// Every tensor of f is one of the model's (as SPD's load_state_dict(strict=True)): a target
// tensor (with or without "target_model."), a trained tensor, or a component's bias.
void spd_run_model_check_names(const spd_run_model *m, const spd_st_file *f, const char *what);
// The run's toy data (SPD's sparse features, keyed by the config seed).
void spd_run_model_data(const spd_run_model *m, const spd_config *cfg, const char *label, spd_toy_data *data);
void spd_run_model_free(spd_run_model *m);

// A new run's directory $SPD_OUT_DIR/spd/<run_id> (default ~/spd_out; not created here),
// run_id "s-" + 8 hex digits from the time and the process id.
void spd_run_dir_path(char *dir, size_t dir_size, char *run_id, size_t id_size);
void spd_make_dir(const char *path);
bool spd_is_safetensors(const char *path);

#endif
