// `spd train --experiment NAME` and `spd train` with no argument (the built-in
// default run): where the decomposition config comes from and how the target gets
// there.
//
//   --experiment NAME  configs/NAME.yaml (from the current directory, else next to
//                      the binary: <exe>/../configs), whose pretrained_model_path
//                      (runs/targets/NAME.safetensors) is trained first with SPD's
//                      target settings (spd/target_train.h, as `spd train-target`)
//                      when the file is absent or --retrain-target is given; an
//                      existing file is reused, so several decompositions share one target.
//   no argument        TMS 5-2: the same target, then the built-in config below:
//                      configs/tms_5-2.yaml with a schedule cut to fit about a minute
//                      on two CPU cores (SPD_DEFAULT_STEPS steps at batch
//                      SPD_DEFAULT_BATCH instead of 10000 at 4096; losses,
//                      coefficients, C, CI function and lr unchanged).
#ifndef SPD_CLI_TRAIN_EXPERIMENT_H
#define SPD_CLI_TRAIN_EXPERIMENT_H

#include <stdbool.h>
#include <stddef.h>

#define SPD_DEFAULT_EXPERIMENT "tms_5-2"
#define SPD_DEFAULT_STEPS "2000"
#define SPD_DEFAULT_BATCH "1024"
#define SPD_DEFAULT_SCHEDULE SPD_DEFAULT_STEPS " steps at batch " SPD_DEFAULT_BATCH " instead of SPD's 10000 at 4096"

// The built-in default config (YAML, SPD's schema).
const char *spd_default_config_text(void);
// The path of configs/<name>.yaml (cwd first, then next to the binary) into buf;
// exits 2 with a message naming the presets when name is not one, or the file is missing.
void spd_experiment_config_path(const char *name, char *buf, size_t size);
// Trains the preset target `name` into `path` unless it exists (and !retrain);
// prints what it did. Exits 2 on bad input, 1 when training diverged.
void spd_experiment_ensure_target(const char *name, const char *path, bool retrain);

#endif
