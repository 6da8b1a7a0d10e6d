// spd train-target --experiment NAME: trains a toy target model as SPD's
// train_tms.py / train_resid_mlp.py do (spd/target_train.h: the presets and their
// settings) and writes it as a safetensors state dict that `spd train` reads via
// pretrained_model_path (the shipped configs/*.yaml point at the default path).
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/error.h"
#include "spd/target_train.h"

static void usage(FILE *out) {
    fputs("usage: spd train-target --experiment NAME [--out FILE] [--steps N] [--seed S] [--log-every N]\n"
          "  trains SPD's toy target NAME (CPU, float64) with SPD's target-training settings:\n"
          "    tms_5-2 tms_5-2-id tms_40-10 tms_40-10-id resid_mlp_1 resid_mlp_2 resid_mlp_3\n"
          "  and writes its state dict (float32 safetensors, SPD's names, metadata) to FILE\n"
          "  (default runs/targets/NAME.safetensors, relative to the current directory:\n"
          "  the path configs/NAME.yaml names in pretrained_model_path).\n"
          "  --steps N      train N steps instead of the preset's (the schedule spans N)\n"
          "  --seed S       init and data streams (default: the preset's, 0; 6 for tms_5-2 and tms_5-2-id)\n"
          "  --log-every N  print the loss every N steps (default 100, SPD's print_freq)\n",
          out);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// mkdir -p of path's directory part.
static void make_parent_dirs(const char *path) {
    char *p = spd_strdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) spd_die_input("train-target: cannot create directory '%s': %s", p, strerror(errno));
        *s = '/';
    }
    free(p);
}

int cmd_train_target(int argc, char **argv) {
    const char *experiment = NULL, *out = NULL;
    long long steps = -1, seed = -1;
    long log_every = 100;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        const bool has_value = i + 1 < argc;
        if (strcmp(a, "--experiment") == 0 && has_value) experiment = argv[++i];
        else if (strcmp(a, "--out") == 0 && has_value) out = argv[++i];
        else if (strcmp(a, "--steps") == 0 && has_value) steps = spd_arg_int(a, argv[++i], 1, 1000000000L);
        else if (strcmp(a, "--seed") == 0 && has_value) seed = spd_arg_int(a, argv[++i], 0, 2147483647L);
        else if (strcmp(a, "--log-every") == 0 && has_value) log_every = spd_arg_int(a, argv[++i], 1, 1000000000L);
        else if (a[0] == '-') spd_die_input("train-target: unknown option '%s'%s", a, has_value ? "" : " (or missing value)");
        else spd_die_input("train-target: unexpected argument '%s'", a);
    }
    if (!experiment) {
        usage(stderr);
        return SPD_EXIT_INPUT;
    }
    spd_target_train_config cfg;
    if (spd_target_preset(experiment, &cfg)) spd_die_input("train-target: --experiment: %s", spd_last_error());
    if (steps > 0) cfg.steps = steps;
    if (seed >= 0) cfg.seed = (uint64_t)seed;
    char def[128];
    if (!out) {
        snprintf(def, sizeof def, "runs/targets/%s.safetensors", experiment);
        out = def;
    }

    spd_target_run r;
    if (spd_target_run_init(&r, &cfg)) spd_die_input("train-target: %s", spd_last_error());
    if (cfg.task == SPD_TARGET_TMS)
        printf("train-target %s: TMS %d-%d, %d hidden layer(s)%s, %s, bias %s at init\n", experiment,
               cfg.tms.n_features, cfg.tms.n_hidden, cfg.tms.n_hidden_layers,
               cfg.tms_hidden == TMS_HIDDEN_FIXED_IDENTITY ? " (fixed identity)" : "",
               cfg.tms.tied_weights ? "tied" : "untied", cfg.tms.init_bias_to_zero ? "zeroed" : "kept");
    else
        printf("train-target %s: ResidMLP %d features, d_embed %d, d_mlp %d, %d layer(s), %s, fixed random "
               "embedding, labels relu(x) + x\n",
               experiment, cfg.resid.n_features, cfg.resid.d_embed, cfg.resid.d_mlp, cfg.resid.n_layers,
               cfg.resid.act == RESID_MLP_GELU ? "gelu" : "relu");
    printf("  feature_probability %g, %s, batch %d, steps %" PRId64 ", AdamW lr %g %s (final frac %g), wd %g, "
           "seed %" PRIu64 "\n",
           cfg.feature_probability, spd_toy_generation_name(cfg.generation), cfg.batch_size, cfg.steps, cfg.lr,
           spd_schedule_fn_name(cfg.lr_fn), cfg.lr_final_val_frac, cfg.weight_decay, cfg.seed);
    fflush(stdout);

    const double t0 = now_s();
    double last = NAN;
    for (int64_t s = 0; s < cfg.steps; s++) {
        last = spd_target_run_step(&r);
        if (!isfinite(last)) {
            fprintf(stderr, "spd: train-target: loss is %g at step %" PRId64 "\n", last, s);
            spd_target_run_free(&r);
            return SPD_EXIT_INTERNAL;
        }
        if (s % log_every == 0 || s + 1 == cfg.steps) {
            printf("step %" PRId64 " loss %.6e\n", s, last);
            fflush(stdout);
        }
    }
    const double secs = now_s() - t0;
    const double final = spd_target_run_eval(&r, cfg.n_batches_final_losses);
    printf("final loss %.6e (last step), %.6e (mean of %d fresh batch%s)\n", last, final, cfg.n_batches_final_losses,
           cfg.n_batches_final_losses == 1 ? "" : "es");
    if (cfg.task == SPD_TARGET_TMS) {  // train_tms.py's check: one-hot inputs of 0.75
        const int F = cfg.tms.n_features;
        double *x = spd_calloc((size_t)F, sizeof *x), *y = spd_malloc((size_t)F * sizeof *y);
        int well = 0, moderate = 0;
        for (int i = 0; i < F; i++) {
            x[i] = 0.75;
            spd_target_run_apply(&r, x, y);
            x[i] = 0;
            const double d = fabs(y[i] - 0.75);
            well += d < 0.1;
            moderate += d >= 0.1 && d < 0.3;
        }
        printf("one-hot 0.75 inputs: %d/%d features well preserved (|out - 0.75| < 0.1), %d moderately (< 0.3)\n",
               well, F, moderate);
        free(x);
        free(y);
    }
    printf("trained %" PRId64 " steps in %.2f s (%.3f ms/step)\n", cfg.steps, secs, 1e3 * secs / (double)cfg.steps);
    make_parent_dirs(out);
    if (spd_target_run_save(&r, out, final)) spd_die_input("train-target: %s", spd_last_error());
    printf("wrote %s\n", out);
    spd_target_run_free(&r);
    return fflush(stdout) == 0 ? 0 : SPD_EXIT_INTERNAL;
}
