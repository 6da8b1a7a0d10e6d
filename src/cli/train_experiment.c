// `spd train --experiment NAME` and the built-in default run (train_experiment.h).
#include "cli/train_experiment.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/commands.h"
#include "core/error.h"
#include "spd/target_train.h"

// configs/tms_5-2.yaml (SPD's tms_5-2_config.yaml) with the schedule cut to fit
// about a minute on two CPU cores, evaluated and summarised once at the end.
static const char default_config[] =
    "# spd.c's built-in default run: SPD's TMS 5-2 decomposition config\n"
    "# (configs/tms_5-2.yaml) with a shorter schedule: " SPD_DEFAULT_STEPS " steps at batch " SPD_DEFAULT_BATCH "\n"
    "# instead of 10000 at 4096 (same losses, coefficients, C, CI function, lr).\n"
    "seed: 0\n"
    "n_mask_samples: 1\n"
    "ci_fn_type: mlp\n"
    "ci_fn_hidden_dims: [16]\n"
    "sigmoid_type: leaky_hard\n"
    "module_info:\n"
    "  - module_pattern: \"linear1\"\n"
    "    C: 20\n"
    "  - module_pattern: \"linear2\"\n"
    "    C: 20\n"
    "identity_module_info: null\n"
    "use_delta_component: true\n"
    "loss_metric_configs:\n"
    "  - classname: ImportanceMinimalityLoss\n"
    "    coeff: 3e-3\n"
    "    pnorm: 1.0\n"
    "    beta: 0\n"
    "  - classname: StochasticReconLoss\n"
    "    coeff: 1.0\n"
    "  - classname: StochasticReconLayerwiseLoss\n"
    "    coeff: 1.0\n"
    "output_loss_type: mse\n"
    "batch_size: " SPD_DEFAULT_BATCH "\n"
    "eval_batch_size: " SPD_DEFAULT_BATCH "\n"
    "steps: " SPD_DEFAULT_STEPS "\n"
    "lr_schedule:\n"
    "  start_val: 1e-3\n"
    "  fn_type: cosine\n"
    "  warmup_pct: 0.0\n"
    "  final_val_frac: 0.0\n"
    "faithfulness_warmup_steps: 200\n"
    "faithfulness_warmup_lr: 0.01\n"
    "faithfulness_warmup_weight_decay: 0.1\n"
    "train_log_freq: 100\n"
    "eval_freq: " SPD_DEFAULT_STEPS "\n"
    "n_eval_steps: 5\n"
    "slow_eval_freq: " SPD_DEFAULT_STEPS "\n"
    "save_freq: null\n"
    "ci_alive_threshold: 0.1\n"
    "eval_metric_configs:\n"
    "  - classname: CI_L0\n"
    "    groups: null\n"
    "  - classname: IdentityCIError\n"
    "    identity_ci:\n"
    "      - layer_pattern: \"linear1\"\n"
    "        n_features: 5\n"
    "      - layer_pattern: \"linear2\"\n"
    "        n_features: 5\n"
    "    dense_ci: null\n"
    "pretrained_model_class: spd.experiments.tms.models.TMSModel\n"
    "pretrained_model_path: runs/targets/tms_5-2.safetensors\n"
    "task_config:\n"
    "  task_name: tms\n"
    "  feature_probability: 0.05\n"
    "  data_generation_type: at_least_zero_active\n";

const char *spd_default_config_text(void) { return default_config; }

static bool is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static void die_not_preset(const char *name) {
    char list[256] = "";
    for (int i = 0; spd_target_presets[i]; i++) {
        strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
        strncat(list, spd_target_presets[i], sizeof list - strlen(list) - 1);
    }
    spd_die_input("train: --experiment: expected one of %s, found '%s'", list, name);
}

void spd_experiment_config_path(const char *name, char *buf, size_t size) {
    bool known = false;
    for (int i = 0; spd_target_presets[i]; i++) known |= strcmp(spd_target_presets[i], name) == 0;
    if (!known) die_not_preset(name);
    snprintf(buf, size, "configs/%s.yaml", name);
    if (is_file(buf)) return;
    char exe[PATH_MAX];  // an installed binary: <prefix>/bin/spd -> <prefix>/configs; build/spd -> configs
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(buf, size, "%s/../configs/%s.yaml", exe, name);
            if (is_file(buf)) return;
        }
    }
    spd_die_input("train: --experiment %s: no configs/%s.yaml in the current directory or next to the binary "
                  "(run from the repository root)", name, name);
}

static void make_parent_dirs(const char *path) {
    char *p = spd_strdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) spd_die_input("train: cannot create directory '%s': %s", p, strerror(errno));
        *s = '/';
    }
    free(p);
}

void spd_experiment_ensure_target(const char *name, const char *path, bool retrain) {
    if (!path || !*path) spd_die_input("train: --experiment %s: the config names no pretrained_model_path", name);
    if (!retrain && is_file(path)) {
        printf("target: %s (exists; --retrain-target trains it again)\n", path);
        fflush(stdout);
        return;
    }
    spd_target_train_config cfg;
    if (spd_target_preset(name, &cfg)) die_not_preset(name);
    spd_target_run r;
    if (spd_target_run_init(&r, &cfg)) spd_die_input("train: target %s: %s", name, spd_last_error());
    printf("target: training %s (SPD's settings: batch %d, %" PRId64 " steps, seed %" PRIu64 ") -> %s\n", name,
           cfg.batch_size, cfg.steps, cfg.seed, path);
    fflush(stdout);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int64_t s = 0; s < cfg.steps; s++) {
        double loss = spd_target_run_step(&r);
        if (!isfinite(loss)) {
            fprintf(stderr, "spd: error: target %s: loss is %g at step %" PRId64 "\n", name, loss, s);
            exit(SPD_EXIT_INTERNAL);
        }
    }
    const double final = spd_target_run_eval(&r, cfg.n_batches_final_losses);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    make_parent_dirs(path);
    if (spd_target_run_save(&r, path, final)) spd_die_input("train: target %s: %s", name, spd_last_error());
    printf("target: final loss %.6e, %.2f s\n", final,
           (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    fflush(stdout);
    spd_target_run_free(&r);
}
