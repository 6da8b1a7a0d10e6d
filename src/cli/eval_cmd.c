// spd eval CHECKPOINT: a model checkpoint (spd train's model_<s>.safetensors, or
// `spd import model_<s>.pth` of PyTorch SPD's) evaluated as the final evaluation of
// its run: one spd_evaluate (spd/eval.h) at the checkpoint's step with the slow and
// final metrics (IdentityCIError, figures, mmcs / ml2r / n_significant for TMS), one
// metrics.jsonl line, then the summary that ends `spd train`. CPU, float64.
//
// The model is rebuilt as `spd train --resume` rebuilds it (cli/run_model.h): the
// config from --config FILE when given, else the checkpoint's `config` metadata, else
// final_config.yaml beside it; the target from its target_model.* tensors; components
// and CI fns from _components.* / _ci_fns.*. The eval batches are keyed by (seed, step,
// eval index), so a run's final checkpoint gives the metrics that run logged at its
// final eval bit for bit (when that step was slow).
#define SPD_F64
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/run_model.h"
#include "cli/train_summary.h"
#include "core/error.h"
#include "core/safetensors.h"
#include "spd/config.h"
#include "spd/eval.h"

static void usage(FILE *out) {
    fputs("usage: spd eval CHECKPOINT.safetensors [--config FILE] [--out DIR] [--n-eval-steps N]\n"
          "  evaluates a model checkpoint (spd train's model_<step>.safetensors, or PyTorch SPD's\n"
          "  model_<step>.pth after `spd import`) as the final evaluation of its run: every metric of the\n"
          "  config's eval_metric_configs (slow ones included), mmcs / ml2r / n_significant for TMS, at the\n"
          "  checkpoint's step, on the run's eval batches; then the end-of-run summary of spd train.\n"
          "  The config: --config FILE, else the checkpoint's config metadata, else final_config.yaml\n"
          "  beside it. --out DIR (default: a new run directory $SPD_OUT_DIR/spd/<run_id>): metrics.jsonl\n"
          "  (one line) and figures/. --n-eval-steps N: eval batches instead of the config's n_eval_steps.\n"
          "  CPU, float64. Exit 2: bad input (missing tensor, shape mismatch, unknown config key).\n",
          out);
}

// The checkpoint's step: its metadata, else model_<s>.safetensors; -1 when neither says.
static int64_t checkpoint_step(const spd_st_file *f, const char *path) {
    const char *v = spd_st_meta(f, "step");
    if (v) {
        char *end;
        errno = 0;
        long long s = strtoll(v, &end, 10);
        if (!*v || *end || errno || s < 0) spd_die_input("eval: %s: metadata step: expected an integer >= 0, found '%s'", path, v);
        return s;
    }
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    long long s;
    int used = 0;
    if (sscanf(base, "model_%lld.safetensors%n", &s, &used) == 1 && used > 0 && base[used] == '\0' && s >= 0) return s;
    return -1;
}

// The config: --config, the checkpoint's metadata, final_config.yaml beside it (in that order).
static void load_config(spd_config *cfg, const spd_st_file *f, const char *path, const char *config_path,
                        char *label, size_t label_size) {
    char beside[4200];
    const char *slash = strrchr(path, '/');
    snprintf(beside, sizeof beside, "%.*sfinal_config.yaml", slash ? (int)(slash - path + 1) : 0, path);
    const char *text = spd_st_meta(f, "config");
    if (config_path) {
        snprintf(label, label_size, "%s", config_path);
        if (spd_config_load(cfg, config_path)) spd_die_last_error();
    } else if (text) {
        snprintf(label, label_size, "%s: metadata config", path);
        if (spd_config_load_string(cfg, text, label)) spd_die_last_error();
    } else if (access(beside, R_OK) == 0) {
        snprintf(label, label_size, "%s", beside);
        if (spd_config_load(cfg, beside)) spd_die_last_error();
    } else
        spd_die_input("eval: %s: no config: the checkpoint has no 'config' metadata, there is no %s, and no "
                      "--config FILE was given", path, beside);
}

int cmd_eval(int argc, char **argv) {
    const char *path = NULL, *config_path = NULL, *out = NULL;
    int64_t n_eval = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        bool has_value = i + 1 < argc;
        if (strcmp(a, "--config") == 0 && has_value) config_path = argv[++i];
        else if (strcmp(a, "--out") == 0 && has_value) out = argv[++i];
        else if (strcmp(a, "--n-eval-steps") == 0 && has_value) n_eval = spd_arg_int(a, argv[++i], 1, 0x7fffffffL);
        else if (a[0] == '-' && a[1] != '\0') spd_die_input("eval: unknown option or missing value '%s'", a);
        else if (path) spd_die_input("eval: expected one CHECKPOINT, found '%s' and '%s'", path, a);
        else path = a;
    }
    if (!path) {
        usage(stderr);
        return SPD_EXIT_INPUT;
    }
    size_t pl = strlen(path);
    if (pl > 4 && strcmp(path + pl - 4, ".pth") == 0)
        spd_die_input("eval: %s: a .pth checkpoint: convert it first with `spd import %s` (writes .safetensors)", path,
                      path);
    spd_st_file *f = spd_st_open(path);
    if (!f) spd_die_input("eval: %s", spd_last_error());
    spd_config cfg;
    char label[4300];
    load_config(&cfg, f, path, config_path, label, sizeof label);
    if (n_eval > 0) cfg.n_eval_steps = n_eval;
    int64_t step = checkpoint_step(f, path);
    if (step < 0) {
        step = cfg.steps;
        fprintf(stderr, "note: %s: no step in its metadata or name; evaluating as step %" PRId64 " (steps)\n", path, step);
    }
    spd_run_check_config(&cfg, label);
    spd_train_options opt;
    spd_train_options_from_config(&cfg, &opt);
    const int B = (int)cfg.batch_size;

    // The model as the run built it, its target from the checkpoint, then the trained tensors.
    spd_run_model m;
    spd_target_args ta = SPD_TARGET_ARGS_DEFAULT;
    spd_run_model_build(&m, &cfg, label, f, path, &ta, B, &opt);
    spd_run_model_check_names(&m, f, "eval");
    spd_run_model_load_trained(&m, f, "eval");
    spd_st_close(f);
    spd_toy_data data;
    spd_run_model_data(&m, &cfg, label, &data);

    char dir[4096], run_id[16] = "";
    if (out) {
        int n = snprintf(dir, sizeof dir, "%s", out);
        if (n < 0 || n >= (int)sizeof dir) spd_die_input("eval: --out: path too long");
    } else spd_run_dir_path(dir, sizeof dir, run_id, sizeof run_id);
    char file[4200];
    snprintf(file, sizeof file, "%s/metrics.jsonl", dir);
    if (access(file, F_OK) == 0)
        spd_die_input("eval: %s exists: spd eval writes a new metrics.jsonl (choose another --out)", file);
    spd_make_dir(dir);

    spd_evaluator *ev = spd_evaluator_new(&(spd_eval_setup){.cfg = &cfg, .trainer = &m.tr, .task = m.task,
                                                            .model = m.task == SPD_TASK_TMS ? (void *)&m.tms
                                                                                           : (void *)&m.rm,
                                                            .data = &data, .out_dir = dir});
    if (!ev) spd_die_input("%s: %s", label, spd_last_error());
    spd_evaluator_mark_final(ev, step);
    printf("spd eval %s\n", path);
    printf("  %-26s %s\n", "config", label);
    printf("  %-26s %" PRId64 "\n", "step", step);
    printf("  %-26s %s\n", "output", dir);
    printf("  %-26s %" PRId64 " batches of %" PRId64 " (eval), 5 batches of %d (summary)\n", "eval data",
           cfg.n_eval_steps, cfg.eval_batch_size, B);
    fflush(stdout);
    FILE *metrics = fopen(file, "w");
    if (!metrics) spd_die_input("eval: cannot write %s: %s", file, strerror(errno));
    int rc = 0;
    if (spd_eval_log(ev, step, metrics)) {
        fprintf(stderr, "spd: error: eval: %s\n", spd_last_error());
        rc = SPD_EXIT_INTERNAL;
    }
    if (fclose(metrics) != 0) rc = SPD_EXIT_INTERNAL;
    spd_train_summary_result sum;
    if (rc == 0 && spd_train_summary_f64(&m.tr, &data, m.x, B, m.F, step, cfg.ci_alive_threshold, 5, NULL, 0,
                                         m.task == SPD_TASK_TMS, dir, &sum)) {
        fprintf(stderr, "spd: error: summary: %s\n", spd_last_error());
        rc = SPD_EXIT_INTERNAL;
    }
    spd_evaluator_free(ev);
    spd_toy_data_free(&data);
    spd_run_model_free(&m);
    spd_config_free(&cfg);
    return rc;
}
