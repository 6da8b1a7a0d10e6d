// spd train CONFIG.yaml: SPD training (SPD_SPEC.md 5) of a toy target, CPU,
// float64 (src/spd/train.h; --precision float32 is refused: the single-
// precision trainer is not wired to the CLI yet).
//
// Tasks: tms (tied or untied target; tied components through spd/tied.h as
// SPD ties them) and resid_mlp; lm / ih are refused (LM data loading is not
// built). The target comes from pretrained_model_path when that names a
// safetensors file (state-dict names, with or without "target_model."; sizes
// read from the shapes; a TMS target is tied when linear2.weight is
// linear1.weight^T or absent), else it is random (sizes from options, note on
// stderr). Data are SPD's sparse features (models/toy_data.h).
//
// Order (SPD_SPEC.md 5.1, 5.2): target, data, run dir + final_config.yaml,
// components + CI fns (config seed), tie, faithfulness warm-up, then steps + 1
// iterations: batch, loss + gradients, log (every train_log_freq incl. 0),
// update unless step == steps. A non-finite loss term stops the run (exit 1).
// Checkpoints: model_<s> / resume_<s>.safetensors at SPD's save points (before
// the update); --resume RUN_DIR continues from the latest resume_<s> bit for bit
// (the target, components and CI fns from model_<s>, Adam moments and count from
// resume_<s>, data and masks keyed by the step); SIGINT / SIGTERM save at the end
// of the current step and exit 130 / 143; --stop-at S saves at S and exits 0.
// identity_module_info inserts identities before the matched modules (SPD_SPEC.md
// 1.3), decomposed as "<module>.pre_identity"; checkpoints hold nothing for them
// but their components (SPD's Identity has no state).
// Evaluation at eval_freq: spd/eval.h. Not yet: target files (<task>.pth, *_train_config.yaml).
// The model (target, identities, decomposed modules, trainer, ties, checkpoint tensors, data)
// is built by cli/run_model.h, shared with spd eval.
#define SPD_F64
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/run_model.h"
#include "cli/train_experiment.h"
#include "cli/train_summary.h"
#include "cli/launch.h"
#include "core/error.h"
#include "core/philox.h"
#include "core/safetensors.h"
#include "core/spec.h"
#include "models/resid_mlp.h"
#include "models/tms.h"
#include "models/toy_data.h"
#include "spd/config.h"
#include "spd/eval.h"
#include "spd/dist.h"
#include "spd/faithfulness_warmup.h"
#include "spd/schedule.h"
#include "spd/tied.h"
#include "spd/train.h"
#include "spd/train_gpu.h"
#ifdef SPD_HAVE_CUDA
#include "cuda/backend.h"
#endif

static void usage(FILE *out) {
    fputs("usage: spd train [CONFIG.yaml | --experiment NAME] [--steps N] [--precision float64] [--stop-at STEP]\n"
          "                 [random-target options]\n"
          "       spd train --resume RUN_DIR [--stop-at STEP]\n"
          "  With no CONFIG: the built-in default run, TMS 5-2 (about a minute on two CPU cores):\n"
          "    the target as --experiment tms_5-2, then SPD's tms_5-2 config with a shorter schedule\n"
          "    (" SPD_DEFAULT_SCHEDULE "); prints what it found and writes figures.\n"
          "  --experiment NAME: tms_5-2 tms_5-2-id tms_40-10 tms_40-10-id resid_mlp_1 resid_mlp_2 resid_mlp_3:\n"
          "    trains the target with SPD's settings (as spd train-target) into the config's\n"
          "    pretrained_model_path, runs/targets/NAME.safetensors, when that file is absent (an existing\n"
          "    one is reused; --retrain-target trains it again), then decomposes it with configs/NAME.yaml.\n"
          "  --steps N: train N steps instead of the config's (the lr schedule spans N).\n"
          "  A finished run ends with a summary: final losses, alive subcomponents per module (CI >\n"
          "  ci_alive_threshold on eval batches), per feature the best-matching subcomponent's cosine and\n"
          "  norm ratio (MMCS / ML2R), and figures in <run dir>/figures/.\n"
          "  --device cuda: train on the GPU in float32 (checkpoints as always; see spd/train_gpu.h)\n"
          "  --gpus N (with --device cuda): data parallel over N GPUs through NCCL, one process per GPU,\n"
          "    batch_size / N rows each (spd/dist.h; ranks started by hand: --rank R --world N, SPD_NCCL_ID)\n"
          "  SPD training (CPU, float64) of a tms or resid_mlp target: the target is read from\n"
          "  pretrained_model_path when it names a .safetensors file, else drawn at random:\n"
          "    tms:       --n-features F (5) --n-hidden H (2) --n-hidden-layers L (0) --tied\n"
          "    resid_mlp: --n-features F (5) --d-embed D (4) --d-mlp M (6) --n-layers L (1)\n"
          "    both:      --target-seed S (0); resid_mlp --act relu|gelu (relu, also for files)\n"
          "  Writes final_config.yaml and metrics.jsonl to $SPD_OUT_DIR/spd/<run_id>/\n"
          "  (default ~/spd_out), model_<step>.safetensors (SPD's state-dict names) and\n"
          "  resume_<step>.safetensors (Adam state) at save_freq and the last step.\n"
          "  --resume RUN_DIR continues from the latest resume_<step>, bit for bit as if never stopped.\n"
          "  --stop-at STEP: save a checkpoint at STEP (before its update) and exit 0.\n"
          "  SIGINT / SIGTERM: the current step ends, model_<s+1> and resume_<s+1> are saved, exit 130 / 143.\n"
          "  Exit 2: bad input; exit 1: the run diverged (non-finite loss) or a checkpoint failed.\n",
          out);
}

// ---------------------------------------------------------------- logging

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double l2(const double *g, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += g[i] * g[i];
    return sqrt(s);
}

// Name after the group prefix ("_components.linear1.V" -> "linear1.V").
static const char *after_prefix(const char *name) {
    const char *dot = strchr(name, '.');
    return dot ? dot + 1 : name;
}

// One metrics.jsonl line and one console line (SPD_SPEC.md 5.2 step 8, 5.7):
// raw terms, total, L0 per module, gradient norms before clipping, lr.
static void log_step(FILE *f, const spd_trainer *t, const spd_config *cfg, int64_t step, double lr, double ms,
                     double eta_s) {
    const spd_spec *spec = t->spec;
    fprintf(f, "{\"step\": %" PRId64, step);
    for (int i = 0; i < t->opt.n_terms; i++)
        fprintf(f, ", \"train/loss/%s\": %.17g", spd_term_kind_name(t->opt.terms[i].kind), t->values[i]);
    fprintf(f, ", \"train/loss/total\": %.17g", t->total);
    for (int m = 0; m < t->n_mods; m++) {
        const spd_train_module *md = &t->mods[m];
        int C = md->comp.C, N = t->target.N;
        long cnt = 0;
        for (long k = 0; k < (long)N * C; k++) cnt += md->ci_lower[k] > cfg->ci_alive_threshold;
        fprintf(f, ", \"train/l0/%s\": %.17g", t->target.sites[md->site].path, (double)cnt / N);
    }
    double ss_comp = 0, ss_ci = 0;
    for (int m = 0; m < t->n_mods; m++) {
        const spd_train_module *md = &t->mods[m];
        int idx[2] = {md->t_V, md->t_U};
        for (int k = 0; k < 2; k++) {
            const spd_tensor *tn = &spec->tensors[idx[k]];
            double n = l2(spd_spec_grad(spec, tn), spd_tensor_numel(tn));
            ss_comp += n * n;
            fprintf(f, ", \"train/grad_norms/components/%s\": %.17g", after_prefix(tn->name), n);
        }
    }
    for (int m = 0; m < t->n_mods; m++) {
        const spd_train_module *md = &t->mods[m];
        for (int k = 0; k < md->ci.arch.n_layers; k++) {
            int idx[2] = {md->t_W[k], md->t_b[k]};
            for (int j = 0; j < 2; j++) {
                if (idx[j] < 0) continue;
                const spd_tensor *tn = &spec->tensors[idx[j]];
                double n = l2(spd_spec_grad(spec, tn), spd_tensor_numel(tn));
                ss_ci += n * n;
                fprintf(f, ", \"train/grad_norms/ci_fns/%s\": %.17g", after_prefix(tn->name), n);
            }
        }
    }
    fprintf(f,
            ", \"train/grad_norms/summary/components\": %.17g, \"train/grad_norms/summary/ci_fns\": %.17g"
            ", \"train/grad_norms/summary/total\": %.17g, \"train/schedules/lr\": %.17g}\n",
            sqrt(ss_comp), sqrt(ss_ci), sqrt(ss_comp + ss_ci), lr);

    printf("step %6" PRId64 "/%" PRId64 ":", step, cfg->steps);
    for (int i = 0; i < t->opt.n_terms; i++) printf(" %s %.4e", spd_term_kind_name(t->opt.terms[i].kind), t->values[i]);
    printf(" | total %.6e  lr %.3e  %.2f ms/step  %.1f steps/s  ETA %.0f s\n", t->total, lr, ms,
           ms > 0 ? 1000.0 / ms : 0.0, eta_s);
    fflush(stdout);
}

// A non-finite loss term stops the run: one line naming the term and the step.
static void check_finite(const spd_trainer *t, int64_t step) {
    for (int i = 0; i < t->opt.n_terms; i++)
        if (!isfinite(t->values[i])) {
            fprintf(stderr, "spd: error: the run diverged: train/loss/%s is %s at step %" PRId64 "\n",
                    spd_term_kind_name(t->opt.terms[i].kind), isnan(t->values[i]) ? "nan" : "inf", step);
            exit(SPD_EXIT_INTERNAL);
        }
    if (!isfinite(t->total)) {
        fprintf(stderr, "spd: error: the run diverged: train/loss/total is %s at step %" PRId64 "\n",
                isnan(t->total) ? "nan" : "inf", step);
        exit(SPD_EXIT_INTERNAL);
    }
}

static void warmup_log(void *ctx, int64_t step, double loss) {
    int64_t steps = *(const int64_t *)ctx;
    if (!isfinite(loss)) {
        fprintf(stderr, "spd: error: the faithfulness warm-up diverged: FaithfulnessLoss is %s at warm-up step %" PRId64
                        "\n", isnan(loss) ? "nan" : "inf", step);
        exit(SPD_EXIT_INTERNAL);
    }
    printf("warm-up %6" PRId64 "/%" PRId64 ": FaithfulnessLoss %.6e\n", step, steps, loss);
}


// ---------------------------------------------------------------- checkpoints and resume
//
// model_<s>.safetensors: ComponentModel.state_dict() at step s (SPD_SPEC.md 5.8),
// i.e. the parameters after s updates: every target_model.* tensor (tied TMS
// weights under both names), _components.<dashed>.V|U (and .bias, a copy of the
// target module's bias, where it has one), _ci_fns.<dashed>.layers.<k>.W|b;
// metadata format "spd-checkpoint-v1", step, config (final_config.yaml's text),
// act_fn_name (resid_mlp).
// resume_<s>.safetensors: what exact resume adds: adam.m.<param>, adam.v.<param>
// of every trained tensor; metadata format "spd-resume-v1", step (= updates
// made = the iteration to run next), adam_t, logged ("1": iteration s already
// logged and saved, only its update remains; "0": iteration s not started),
// data_step (the toy data are keyed by the step), seed, steps, tied.
// Both go through the safetensors writer (temp file, fsync, rename), model first,
// so a resume file implies its model file is complete.

typedef struct {
    const spd_spec *spec;
    const spd_trainer *tr;
    const spd_config *cfg;
    const char *dir;
    char *config_text;
    const char *act_fn;  // resid_mlp: "relu" / "gelu"; NULL for tms
    const char *tied;    // "linear1:linear2" or "none"
    FILE *metrics;
} ckpt_ctx;

static char *read_text(const char *file) {
    FILE *f = fopen(file, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *s = spd_malloc(cap);
    size_t k;
    while ((k = fread(s + n, 1, cap - n - 1, f)) > 0) {
        n += k;
        if (cap - n < 2) {
            char *g = realloc(s, cap *= 2);
            if (!g) spd_die_input("out of memory reading %s", file);
            s = g;
        }
    }
    fclose(f);
    s[n] = '\0';
    return s;
}

static void save_checkpoint(const ckpt_ctx *c, int64_t step, bool logged) {
    // Every metrics line up to here reaches the disk before the files that resume from it.
    if (fflush(c->metrics) != 0 || fsync(fileno(c->metrics)) != 0)
        spd_die_input("%s/metrics.jsonl: cannot flush: %s", c->dir, strerror(errno));
    const spd_spec *spec = c->spec;
    char file[4200], val[64], name[SPD_NAME_MAX + 32];
    char (*bias_names)[SPD_NAME_MAX + 32] = spd_calloc((size_t)c->tr->n_mods + 1, sizeof *bias_names);
    spd_st_writer *w = spd_st_writer_new();
    spd_st_writer_meta(w, "format", "spd-checkpoint-v1");
    snprintf(val, sizeof val, "%" PRId64, step);
    spd_st_writer_meta(w, "step", val);
    spd_st_writer_meta(w, "config", c->config_text);
    if (c->act_fn) spd_st_writer_meta(w, "act_fn_name", c->act_fn);
    for (int i = 0; i < spec->count; i++) {  // target_model.* (frozen) in declaration order
        const spd_tensor *t = &spec->tensors[i];
        if (t->role == SPD_ROLE_FROZEN && strncmp(t->name, "target_model.", 13) == 0)
            spd_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data);
    }
    // _components.<dashed>.{V, U, bias} then _ci_fns.<dashed>.*, modules sorted by dashed name
    // (ModuleDict order); bias: a copy of the target module's bias.
    const int nm = c->tr->n_mods;
    int *ord = spd_malloc((size_t)(nm + 1) * sizeof *ord);
    for (int m = 0; m < nm; m++) ord[m] = m;
    for (int i = 1; i < nm; i++)
        for (int j = i; j > 0 && strcmp(c->tr->mods[ord[j - 1]].comp.dashed, c->tr->mods[ord[j]].comp.dashed) > 0; j--) {
            int tmp = ord[j];
            ord[j] = ord[j - 1];
            ord[j - 1] = tmp;
        }
    for (int o = 0; o < nm; o++) {
        const spd_train_module *md = &c->tr->mods[ord[o]];
        const spd_tensor *v = &spec->tensors[md->t_V], *u = &spec->tensors[md->t_U];
        spd_st_writer_add(w, v->name, v->dtype, v->ndim, v->shape, v->data);
        spd_st_writer_add(w, u->name, u->dtype, u->ndim, u->shape, u->data);
        snprintf(name, sizeof name, "target_model.%s.bias", c->tr->target.sites[md->site].path);
        const spd_tensor *b = spd_spec_find(spec, name);
        if (!b) continue;
        snprintf(bias_names[o], sizeof bias_names[o], "_components.%s.bias", md->comp.dashed);
        spd_st_writer_add(w, bias_names[o], b->dtype, b->ndim, b->shape, b->data);
    }
    for (int o = 0; o < nm; o++) {
        const spd_train_module *md = &c->tr->mods[ord[o]];
        for (int k = 0; k < md->ci.arch.n_layers; k++) {
            int idx[2] = {md->t_W[k], md->t_b[k]};
            for (int j = 0; j < 2; j++) {
                if (idx[j] < 0) continue;
                const spd_tensor *t = &spec->tensors[idx[j]];
                spd_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data);
            }
        }
    }
    free(ord);
    int n_tr = 0;  // every trained tensor must be in the file exactly once
    for (int i = 0; i < spec->count; i++) n_tr += spec->tensors[i].role == SPD_ROLE_TRAINED;
    int n_mod_tensors = 0;
    for (int m = 0; m < nm; m++) {
        n_mod_tensors += 2;
        for (int k = 0; k < c->tr->mods[m].ci.arch.n_layers; k++)
            n_mod_tensors += (c->tr->mods[m].t_W[k] >= 0) + (c->tr->mods[m].t_b[k] >= 0);
    }
    if (n_mod_tensors != n_tr) {
        fprintf(stderr, "spd: error: checkpoint: %d trained tensors, %d in the modules\n", n_tr, n_mod_tensors);
        exit(SPD_EXIT_INTERNAL);
    }
    snprintf(file, sizeof file, "%s/model_%" PRId64 ".safetensors", c->dir, step);
    if (spd_st_writer_save(w, file)) {
        fprintf(stderr, "spd: error: checkpoint: %s\n", spd_last_error());
        exit(SPD_EXIT_INTERNAL);
    }
    spd_st_writer_free(w);
    free(bias_names);

    char (*names)[SPD_NAME_MAX + 16] = spd_calloc(2 * (size_t)n_tr + 1, sizeof *names);
    w = spd_st_writer_new();
    spd_st_writer_meta(w, "format", "spd-resume-v1");
    spd_st_writer_meta(w, "step", val);
    spd_st_writer_meta(w, "data_step", val);
    snprintf(val, sizeof val, "%" PRId64, c->tr->adam_t);
    spd_st_writer_meta(w, "adam_t", val);
    spd_st_writer_meta(w, "logged", logged ? "1" : "0");
    snprintf(val, sizeof val, "%" PRId64, c->cfg->seed);
    spd_st_writer_meta(w, "seed", val);
    snprintf(val, sizeof val, "%" PRId64, c->cfg->steps);
    spd_st_writer_meta(w, "steps", val);
    spd_st_writer_meta(w, "tied", c->tied);
    size_t k = 0;
    for (int i = 0; i < spec->count; i++) {
        const spd_tensor *t = &spec->tensors[i];
        if (t->role != SPD_ROLE_TRAINED) continue;
        snprintf(names[k], sizeof names[k], "adam.m.%s", t->name);
        spd_st_writer_add(w, names[k++], t->dtype, t->ndim, t->shape, spd_spec_adam_m(spec, t));
        snprintf(names[k], sizeof names[k], "adam.v.%s", t->name);
        spd_st_writer_add(w, names[k++], t->dtype, t->ndim, t->shape, spd_spec_adam_v(spec, t));
    }
    snprintf(file, sizeof file, "%s/resume_%" PRId64 ".safetensors", c->dir, step);
    if (spd_st_writer_save(w, file)) {
        fprintf(stderr, "spd: error: checkpoint: %s\n", spd_last_error());
        exit(SPD_EXIT_INTERNAL);
    }
    spd_st_writer_free(w);
    free(names);
}

// The latest resume_<s>.safetensors of dir (largest s); -1 when there is none.
static int64_t latest_resume(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int64_t best = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        long long s;
        int used = 0;
        if (sscanf(e->d_name, "resume_%lld.safetensors%n", &s, &used) == 1 && used > 0 &&
            e->d_name[used] == '\0' && strncmp(e->d_name, "resume_", 7) == 0 && e->d_name[7] >= '0' &&
            e->d_name[7] <= '9' && s > best)
            best = s;
    }
    closedir(d);
    return best;
}

static int64_t meta_int(const spd_st_file *f, const char *key) {
    const char *v = spd_st_meta(f, key);
    char *end;
    errno = 0;
    long long x = v ? strtoll(v, &end, 10) : 0;
    if (!v || !*v || *end || errno || x < 0) spd_die_input("%s: metadata '%s': expected an integer >= 0", f->path, key);
    return x;
}

// metrics.jsonl of a resumed run: the complete lines of steps < keep_below, the rest dropped.
static FILE *metrics_for_resume(const char *dir, int64_t keep_below) {
    char file[4200], tmpf[4300];
    snprintf(file, sizeof file, "%s/metrics.jsonl", dir);
    snprintf(tmpf, sizeof tmpf, "%s.tmp.%ld", file, (long)getpid());
    char *old = read_text(file);
    FILE *out = fopen(tmpf, "w");
    if (!out) spd_die_input("cannot write %s: %s", tmpf, strerror(errno));
    for (char *l = old; l && *l;) {
        char *nl = strchr(l, '\n');
        if (!nl) break;  // an incomplete last line
        long long s;
        if (sscanf(l, "{\"step\": %lld", &s) == 1 && s < keep_below) fwrite(l, 1, (size_t)(nl - l + 1), out);
        l = nl + 1;
    }
    free(old);
    if (fflush(out) != 0 || fsync(fileno(out)) != 0 || rename(tmpf, file) != 0)
        spd_die_input("cannot write %s: %s", file, strerror(errno));
    return out;  // positioned at its end, now named metrics.jsonl
}

static volatile sig_atomic_t stop_signal = 0;
// The open resume file, reachable from here while an input error (spd_die_input:
// exit 2) may end the run with it open, so that LeakSanitizer does not count it.
// volatile: the pointer is only ever stored, and a plain static's stores may be
// optimised away (then the sanitizer build exited 1 or 2 by chance).
static spd_st_file *volatile open_resume_file;
static void on_stop_signal(int sig) { stop_signal = sig; }

// ---------------------------------------------------------------- the command


// ---------------------------------------------------------------- --device cuda (spd/train_gpu.h)

// The host trainer's logged and saved state from the GPU run: values, Adam
// moments, gradients, ci_lower and the update count (log and checkpoint steps only).
// Data parallel (dist): ci_lower of every rank's rows (a collective: every rank calls it
// at the same step), or none (the SIGINT checkpoint, rank 0 alone: the checkpoint needs no CI).
static void gpu_sync(spd_gpu_run *g, spd_trainer *tr, spd_spec *spec, spd_dist *dist, bool ci) {
#ifdef SPD_HAVE_CUDA
    spd_gpu_run_download(g, spec, true);
    for (int m = 0; ci && m < tr->n_mods; m++) {
        if (dist) spd_gpu_run_dist_ci(g, m, 1, tr->mods[m].ci_lower);  // the host trainer holds the global batch
        else spd_gpu_run_ci(g, m, 1, tr->mods[m].ci_lower);
    }
    tr->adam_t = spd_gpu_run_adam_t(g);
#endif
}

// One step on the GPU: the batch (float32, the same draws: on the GPU, or the host's uploaded), the
// loss values into the host trainer.
// Data parallel (dist): this rank's rows row0 .. row0 + B - 1 of the global batch, then the
// gradients and loss values averaged over the ranks.
static void gpu_step(spd_gpu_run *g, spd_trainer *tr, const spd_toy_data *data, float *xf, int64_t step, int B,
                     int F, int64_t row0, spd_dist *dist) {
#ifdef SPD_HAVE_CUDA
    if (!spd_gpu_run_toy_batch(g, data, step, row0, B)) {  // this kind of data is drawn on the host
        spd_toy_batch_f32(data, (uint64_t)step, -1, row0, B, xf, NULL);
        spd_gpu_run_set_input(g, xf, (int64_t)B * F);
    }
    tr->total = spd_gpu_run_step(g, step, tr->values);
    if (dist) spd_gpu_run_dist_average(g, tr->values, &tr->total);
#endif
}

static void gpu_update(spd_gpu_run *g, spd_trainer *tr, int64_t step) {
#ifdef SPD_HAVE_CUDA
    spd_gpu_run_update(g, step, &tr->grad_norm_components, &tr->grad_norm_ci_fns);
    tr->adam_t = spd_gpu_run_adam_t(g);
#endif
}

int cmd_train(int argc, char **argv) {
    const char *path = NULL, *resume_dir = NULL, *experiment = NULL;
    bool retrain_target = false, cuda = false;
    int64_t stop_at = -1, steps_override = -1;
    int gpus = 0, rank = -1, world = 0;  // --gpus N (launcher); --rank R --world N (a rank)
    spd_target_args ta = SPD_TARGET_ARGS_DEFAULT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        bool has_value = i + 1 < argc;
        if (strcmp(a, "--n-features") == 0 && has_value) ta.F = (int)spd_arg_int(a, argv[++i], 1, 1 << 20);
        else if (strcmp(a, "--n-hidden") == 0 && has_value) ta.H = (int)spd_arg_int(a, argv[++i], 1, 1 << 20);
        else if (strcmp(a, "--n-hidden-layers") == 0 && has_value) ta.L = (int)spd_arg_int(a, argv[++i], 0, 64);
        else if (strcmp(a, "--d-embed") == 0 && has_value) ta.d_embed = (int)spd_arg_int(a, argv[++i], 1, 1 << 20);
        else if (strcmp(a, "--d-mlp") == 0 && has_value) ta.d_mlp = (int)spd_arg_int(a, argv[++i], 1, 1 << 20);
        else if (strcmp(a, "--n-layers") == 0 && has_value) ta.n_layers = (int)spd_arg_int(a, argv[++i], 1, 64);
        else if (strcmp(a, "--tied") == 0) ta.tied = true;
        else if (strcmp(a, "--resume") == 0 && has_value) resume_dir = argv[++i];
        else if (strcmp(a, "--experiment") == 0 && has_value) experiment = argv[++i];
        else if (strcmp(a, "--retrain-target") == 0) retrain_target = true;
        else if (strcmp(a, "--steps") == 0 && has_value) steps_override = spd_arg_int(a, argv[++i], 1, 0x7fffffffL);
        else if (strcmp(a, "--stop-at") == 0 && has_value) stop_at = spd_arg_int(a, argv[++i], 0, 0x7fffffffL);
        else if (strcmp(a, "--gpus") == 0 && has_value) gpus = (int)spd_arg_int(a, argv[++i], 1, SPD_DIST_MAX_WORLD);
        else if (strcmp(a, "--rank") == 0 && has_value) rank = (int)spd_arg_int(a, argv[++i], 0, SPD_DIST_MAX_WORLD - 1);
        else if (strcmp(a, "--world") == 0 && has_value) world = (int)spd_arg_int(a, argv[++i], 1, SPD_DIST_MAX_WORLD);
        else if (strcmp(a, "--device") == 0 && has_value) {
            const char *v = argv[++i];
            if (strcmp(v, "cuda") == 0) cuda = true;
            else if (strcmp(v, "cpu") != 0) spd_die_input("train: --device: expected cpu or cuda, found '%s'", v);
#ifndef SPD_HAVE_CUDA
            if (cuda) spd_die_input("train: --device cuda: this spd was built without CUDA (nvcc not found at build time)");
#endif
        }
        else if (strcmp(a, "--act") == 0 && has_value) {
            const char *v = argv[++i];
            if (strcmp(v, "relu") == 0) ta.act = RESID_MLP_RELU;
            else if (strcmp(v, "gelu") == 0) ta.act = RESID_MLP_GELU;
            else spd_die_input("train: --act: expected relu or gelu, found '%s'", v);
        } else if (strcmp(a, "--target-seed") == 0 && has_value)
            ta.target_seed = (uint64_t)spd_arg_int(a, argv[++i], 0, 0x7fffffffL);
        else if (strcmp(a, "--precision") == 0 && has_value) {
            const char *v = argv[++i];
            if (strcmp(v, "float32") == 0)
                spd_die_input("train: --precision float32: the float32 trainer is not wired to spd train yet; use float64");
            if (strcmp(v, "float64") != 0) spd_die_input("train: --precision: expected float64, found '%s'", v);
        } else if (a[0] == '-' && a[1] != '\0') spd_die_input("train: unknown option or missing value '%s'", a);
        else if (path) spd_die_input("train: expected one CONFIG file, found '%s' and '%s'", path, a);
        else path = a;
    }
    // --resume RUN_DIR: its final_config.yaml, its latest resume_<s> and model_<s>.
    char resume_cfg[4200], model_file[4200], resume_file[4200];
    spd_st_file *rf = NULL;
    int64_t r_step = 0;
    bool r_logged = false;
    if (resume_dir) {
        if (path) spd_die_input("train: --resume takes the run directory, not a CONFIG file ('%s')", path);
        struct stat st;
        if (stat(resume_dir, &st) != 0 || !S_ISDIR(st.st_mode))
            spd_die_input("train: --resume %s: not a run directory", resume_dir);
        snprintf(resume_cfg, sizeof resume_cfg, "%s/final_config.yaml", resume_dir);
        if (access(resume_cfg, R_OK) != 0) spd_die_input("train: --resume %s: no final_config.yaml", resume_dir);
        r_step = latest_resume(resume_dir);
        if (r_step < 0) spd_die_input("train: --resume %s: no resume_<step>.safetensors checkpoint", resume_dir);
        snprintf(resume_file, sizeof resume_file, "%s/resume_%" PRId64 ".safetensors", resume_dir, r_step);
        snprintf(model_file, sizeof model_file, "%s/model_%" PRId64 ".safetensors", resume_dir, r_step);
        rf = open_resume_file = spd_st_open(resume_file);
        if (!rf) spd_die_input("train: --resume: %s", spd_last_error());
        const char *fmt = spd_st_meta(rf, "format");
        if (!fmt || strcmp(fmt, "spd-resume-v1") != 0)
            spd_die_input("train: --resume: %s: metadata format: expected spd-resume-v1", resume_file);
        if (meta_int(rf, "step") != r_step)
            spd_die_input("train: --resume: %s: metadata step %s does not match the file name", resume_file,
                          spd_st_meta(rf, "step"));
        r_logged = meta_int(rf, "logged") != 0;
        spd_st_file *mf = spd_st_open(model_file);
        if (!mf) spd_die_input("train: --resume: %s", spd_last_error());
        fmt = spd_st_meta(mf, "format");
        if (!fmt || strcmp(fmt, "spd-checkpoint-v1") != 0)
            spd_die_input("train: --resume: %s: metadata format: expected spd-checkpoint-v1", model_file);
        spd_st_close(mf);
        path = resume_cfg;
    }
    // No CONFIG: the built-in default run (train_experiment.h); --experiment: configs/NAME.yaml.
    char exp_cfg[4200];
    const bool default_run = !path && !experiment && !resume_dir;
    if (experiment && (path || resume_dir))
        spd_die_input("train: --experiment %s: takes no CONFIG file or --resume", experiment);
    if (retrain_target && !experiment && !default_run)
        spd_die_input("train: --retrain-target: only with --experiment or the default run");
    if (steps_override > 0 && resume_dir) spd_die_input("train: --steps: not with --resume (the run keeps its steps)");
    if (default_run) experiment = SPD_DEFAULT_EXPERIMENT;
    else if (experiment) {
        spd_experiment_config_path(experiment, exp_cfg, sizeof exp_cfg);
        path = exp_cfg;
    }
    spd_config cfg;
    if (default_run) {
        path = "<built-in default>";
        if (spd_config_load_string(&cfg, spd_default_config_text(), path)) spd_die_last_error();
    } else if (spd_config_load(&cfg, path)) spd_die_last_error();
    if (steps_override > 0) cfg.steps = steps_override;
    if (rf && (meta_int(rf, "steps") != cfg.steps || meta_int(rf, "seed") != (int64_t)cfg.seed))
        spd_die_input("train: --resume: %s: steps/seed differ from %s", resume_file, path);
    if (rf && r_step > cfg.steps) spd_die_input("train: --resume: %s: step beyond steps %" PRId64, resume_file, cfg.steps);
    spd_task_name task = cfg.task_config.task_name;
    spd_run_check_config(&cfg, path);
    const spd_toy_task_config *toy = task == SPD_TASK_TMS ? &cfg.task_config.tms : &cfg.task_config.resid_mlp;
    if (experiment) spd_experiment_ensure_target(experiment, cfg.pretrained_model_path, retrain_target);
    spd_train_options opt;
    spd_train_options_from_config(&cfg, &opt);
    const int B = (int)cfg.batch_size;

    // ---- data parallel (spd/dist.h, cli/launch.h): the launcher starts the ranks and waits;
    // a rank joins the communicator before anything touches the GPU.
    spd_dist *dist = NULL;
    int64_t row0 = 0, rows = B;
    bool writer = true;  // rank 0 (or a single process) prints, logs and checkpoints
    if (gpus || rank >= 0 || world) {
        if (!cuda) spd_die_input("train: --gpus: data parallel training needs --device cuda");
        if ((rank >= 0) != (world > 0)) spd_die_input("train: --rank and --world go together");
        if (rank >= 0 && gpus && gpus != world)
            spd_die_input("train: --gpus %d and --world %d differ", gpus, world);
        if (spd_dist_rows(B, rank >= 0 ? world : gpus, rank >= 0 ? rank : 0, "batch_size", &row0, &rows))
            spd_die_input("%s: %s", path, spd_last_error());
        if (!spd_dist_built()) spd_dist_init(0, 1, NULL);  // dies: built without NCCL
        if (rank < 0) {
            spd_config_free(&cfg);
            if (rf) spd_st_close(rf);
            return spd_launch_ranks(gpus, argc, argv);
        }
        spd_dist_id id;
        if (spd_dist_id_from_hex(&id, getenv("SPD_NCCL_ID"))) spd_die_input("train --rank %d: %s", rank, spd_last_error());
        dist = spd_dist_init(rank, world, &id);
        opt.seed = spd_dist_rank_seed((uint64_t)cfg.seed, world, rank);  // SPD's seed_per_rank
        writer = rank == 0;
    }

    // 1. The target (frozen): its sizes from the file when there is one.
    spd_st_file *tf = NULL;
    const char *tpath = rf ? model_file : cfg.pretrained_model_path;  // resume: the target saved with the run
    if (spd_is_safetensors(tpath)) {
        tf = spd_st_open(tpath);
        if (!tf) spd_die_input("%s: pretrained_model_path: %s", path, spd_last_error());
    }
    spd_run_model rmodel;
    spd_run_model_build(&rmodel, &cfg, path, tf, tpath, &ta, B, &opt);
    if (tf) spd_st_close(tf);
    // Short names for the parts of the model used below.
    spd_spec *const spec = &rmodel.spec;
    spd_trainer *const tr = &rmodel.tr;
    const tms_config tcfg = rmodel.tcfg;
    const resid_mlp_config rcfg = rmodel.rcfg;
    const int F = rmodel.F, n_chosen = rmodel.n_chosen, n_ties = rmodel.n_ties, n_id_pats = rmodel.n_id_pats;
    const spd_module_choice *chosen = rmodel.chosen;
    const int *site = rmodel.site, *C = rmodel.C;
    const spd_tied_pair tie = rmodel.tie;
    const spd_module_pattern *id_pats = rmodel.id_pats;
    if (rf) {  // the trained tensors from model_<s>, their Adam moments and count from resume_<s>
        const char *tied = spd_st_meta(rf, "tied");
        if (!tied || strcmp(tied, n_ties ? "linear1:linear2" : "none") != 0)
            spd_die_input("train: --resume: %s: tied pairs '%s' differ from the rebuilt model's", resume_file,
                          tied ? tied : "(missing)");
        spd_st_file *mf = spd_st_open(model_file);
        if (!mf) spd_die_input("train: --resume: %s", spd_last_error());
        spd_run_model_load_trained(&rmodel, mf, "train: --resume");
        char nm[SPD_NAME_MAX + 16];
        for (int i = 0; i < spec->count; i++) {
            spd_tensor *t = &spec->tensors[i];
            if (t->role != SPD_ROLE_TRAINED) continue;
            snprintf(nm, sizeof nm, "adam.m.%s", t->name);
            if (spd_st_read(rf, nm, t->dtype, t->ndim, t->shape, spd_spec_adam_m(spec, t)))
                spd_die_input("train: --resume: %s", spd_last_error());
            snprintf(nm, sizeof nm, "adam.v.%s", t->name);
            if (spd_st_read(rf, nm, t->dtype, t->ndim, t->shape, spd_spec_adam_v(spec, t)))
                spd_die_input("train: --resume: %s", spd_last_error());
        }
        spd_st_close(mf);
        tr->adam_t = meta_int(rf, "adam_t");
        if (tr->adam_t != r_step || meta_int(rf, "data_step") != r_step)
            spd_die_input("train: --resume: %s: adam_t / data_step differ from step", resume_file);
    }

    spd_toy_data data;
    spd_run_model_data(&rmodel, &cfg, path, &data);
    real *x = rmodel.x;

    // 2. Run id, output directory, final_config.yaml (before training).
    char run_id[16], dir[4096];
    if (resume_dir) {
        int n = snprintf(dir, sizeof dir, "%s", resume_dir);
        if (n < 0 || n >= (int)sizeof dir) spd_die_input("train: --resume: path too long");
        const char *b = strrchr(dir, '/');
        snprintf(run_id, sizeof run_id, "%.15s", b && b[1] ? b + 1 : dir);
    } else spd_run_dir_path(dir, sizeof dir, run_id, sizeof run_id);
    char file[4200];
    FILE *metrics;
    if (!writer) {  // data parallel rank > 0: no files (its stdout is /dev/null)
        metrics = fopen("/dev/null", "w");
        if (!metrics) spd_die("cannot open /dev/null: %s", strerror(errno));
    } else if (resume_dir) metrics = metrics_for_resume(dir, r_logged ? r_step + 1 : r_step);
    else {
        spd_make_dir(dir);
        snprintf(file, sizeof file, "%s/final_config.yaml", dir);
        if (spd_config_write_yaml(&cfg, file)) spd_die_last_error();
        snprintf(file, sizeof file, "%s/metrics.jsonl", dir);
        metrics = fopen(file, "w");
        if (!metrics) spd_die_input("cannot write %s: %s", file, strerror(errno));
    }
    snprintf(file, sizeof file, "%s/final_config.yaml", dir);
    ckpt_ctx ck = {.spec = spec, .tr = tr, .cfg = &cfg, .dir = dir,
                   .config_text = writer ? read_text(file) : spd_calloc(1, 1),
                   .act_fn = task == SPD_TASK_TMS ? NULL : rcfg.act == RESID_MLP_GELU ? "gelu" : "relu",
                   .tied = n_ties ? "linear1:linear2" : "none", .metrics = metrics};
    if (!ck.config_text) spd_die_input("cannot read %s: %s", file, strerror(errno));

    // 3. Components and CI fns from the config seed; ties (src wins, as SPD ties after the init).
    if (!rf) {
        spd_trainer_init_params_f64(tr, (uint64_t)cfg.seed);
        if (n_ties) spd_tied_sync_f64(tr, &tie, n_ties);
    }

    // Start-up table.
    printf("spd train %s\n", path);
    if (default_run)
        printf("  %-26s TMS 5-2: SPD's tms_5-2 config, schedule cut to %s\n", "default run", SPD_DEFAULT_SCHEDULE);
    printf("  %-26s %s\n", "run", run_id);
    printf("  %-26s %s\n", "output", dir);
    printf("  %-26s %s\n", "task", spd_task_name_name(task));
    if (task == SPD_TASK_TMS)
        printf("  %-26s TMS n_features %d, n_hidden %d, n_hidden_layers %d, %s, %s\n", "target", tcfg.n_features,
               tcfg.n_hidden, tcfg.n_hidden_layers, tcfg.tied_weights ? "tied" : "untied",
               tf || spd_is_safetensors(tpath) ? tpath : "random");
    else
        printf("  %-26s ResidMLP n_features %d, d_embed %d, d_mlp %d, n_layers %d, %s, %s\n", "target",
               rcfg.n_features, rcfg.d_embed, rcfg.d_mlp, rcfg.n_layers, rcfg.act == RESID_MLP_GELU ? "gelu" : "relu",
               spd_is_safetensors(tpath) ? tpath : "random");
    if (cuda) printf("  %-26s float32 (GPU; host copy float64)\n", "precision");
    else printf("  %-26s %s (CPU)\n", "precision", SPD_REAL_NAME);
    printf("  %-26s %s, %d, p %.6g\n", "data", spd_toy_generation_name(data.generation), F, toy->feature_probability);
    for (int i = 0; i < n_chosen; i++)
        printf("  %-26s %s C %d%s\n", i ? "" : "modules", chosen[i].path, C[i],
               n_ties && (i == tie.src || i == tie.tgt) ? " (tied)" : "");
    for (int i = 0; i < opt.n_terms; i++)
        printf("  %-26s %s coeff %.6g\n", i ? "" : "losses", spd_term_kind_name(opt.terms[i].kind), opt.terms[i].coeff);
    printf("  %-26s %s\n", "output_loss_type", spd_output_loss_type_name(cfg.output_loss_type));
    printf("  %-26s %s, hidden [", "ci_fn", spd_cfg_ci_fn_type_name(cfg.ci_fn_type));
    for (int i = 0; i < opt.n_ci_hidden; i++) printf("%s%d", i ? ", " : "", opt.ci_hidden[i]);
    printf("], sigmoid %s, sampling %s, n_mask_samples %d, delta %s\n", spd_cfg_sigmoid_type_name(cfg.sigmoid_type),
           spd_cfg_sampling_name(cfg.sampling), opt.n_mask_samples, opt.use_delta ? "on" : "off");
    printf("  %-26s %" PRId64 " (+1 final log-only iteration), batch %d, seed %" PRId64 "\n", "steps", cfg.steps, B,
           cfg.seed);
    printf("  %-26s %s, start %.6g, warmup_pct %.6g, final_val_frac %.6g\n", "lr_schedule",
           spd_schedule_fn_name(cfg.lr_schedule.fn_type), cfg.lr_schedule.start_val, cfg.lr_schedule.warmup_pct,
           cfg.lr_schedule.final_val_frac);
    printf("  %-26s components %s, ci_fns %s\n", "grad_clip_norm",
           cfg.has_grad_clip_norm_components ? "on" : "off", cfg.has_grad_clip_norm_ci_fns ? "on" : "off");
    if (cfg.has_grad_clip_norm_components) printf("  %-26s %.6g\n", "grad_clip_norm_components", cfg.grad_clip_norm_components);
    if (cfg.has_grad_clip_norm_ci_fns) printf("  %-26s %.6g\n", "grad_clip_norm_ci_fns", cfg.grad_clip_norm_ci_fns);
    printf("  %-26s %" PRId64 " steps, lr %.6g, weight decay %.6g\n", "faithfulness warm-up",
           cfg.faithfulness_warmup_steps, cfg.faithfulness_warmup_lr, cfg.faithfulness_warmup_weight_decay);
    printf("  %-26s %" PRId64 " (ci_alive_threshold %.6g)\n", "train_log_freq", cfg.train_log_freq,
           cfg.ci_alive_threshold);
    spd_spec_print_memory(spec, stdout);
    fflush(stdout);
    if (cfg.has_save_freq) printf("  %-26s %" PRId64 " (+ the final step)\n", "save_freq", cfg.save_freq);
    if (rf) printf("resuming from %s (step %" PRId64 ", adam_t %" PRId64 ")\n", resume_file, r_step, tr->adam_t);
    fflush(stdout);
    // ---- eval (spd/eval.h): its own target instance and buffers; reads the trained tensors.
    // Data parallel: rank 0 (the writer) evaluates on its own; the other ranks wait at the
    // next collective (within its timeout).
    spd_evaluator *ev = NULL;
    if (writer) {
        ev = spd_evaluator_new(&(spd_eval_setup){.cfg = &cfg, .trainer = tr, .task = task,
                                                 .model = task == SPD_TASK_TMS ? (void *)&rmodel.tms : (void *)&rmodel.rm,
                                                 .data = &data, .out_dir = dir});
        if (!ev) spd_die_input("%s: %s", path, spd_last_error());
    }

    // 4. Faithfulness warm-up (its own AdamW, discarded); not again on resume.
    if (cfg.faithfulness_warmup_steps > 0 && !rf) {
        spd_faithfulness_warmup_options wo = {.steps = cfg.faithfulness_warmup_steps,
                                              .lr = cfg.faithfulness_warmup_lr,
                                              .weight_decay = cfg.faithfulness_warmup_weight_decay,
                                              .log = warmup_log,
                                              .log_ctx = &cfg.faithfulness_warmup_steps,
                                              .ties = n_ties ? &tie : NULL,
                                              .n_ties = n_ties};
        double f = spd_faithfulness_warmup_f64(tr, &wo);
        if (!isfinite(f)) warmup_log(&cfg.faithfulness_warmup_steps, cfg.faithfulness_warmup_steps, f);
        printf("warm-up done: FaithfulnessLoss %.6e\n", f);
    }

    // 5. SPD's loop: steps + 1 iterations, no update at the last.
    // Logged every train_log_freq steps from 0 (SPD: step % train_log_freq == 0
    // only, so the final iteration logs when steps is a multiple of it).
    // Checkpoints (SPD): (save_freq set and step % save_freq == 0 and step > 0) or
    // step == steps, before the update. SIGINT / SIGTERM set a flag: at the end of the
    // current iteration (after its update) model_<s+1> and resume_<s+1> are saved
    // and the run exits 130 / 143. --stop-at S: at iteration S, after its log and
    // checkpoint (saved then whatever save_freq says), exit 0.
    if (rf) spd_st_close(rf);
    spd_gpu_run *gpu = NULL;
    float *xf = NULL;
#ifdef SPD_HAVE_CUDA
    if (cuda) {  // the GPU twin of this run, from the host's state after init / resume / warm-up
        spd_gpu_run_config gc = {.kind = task == SPD_TASK_TMS ? SPD_GPU_TMS : SPD_GPU_RESID_MLP, .tms = tcfg, .resid_mlp = rcfg, .B = (int)rows, .opt = &opt,
                                 .site = site, .C = C, .n = n_chosen, .tie_src = n_ties ? tie.src : -1,
                                 .tie_tgt = n_ties ? tie.tgt : -1, .dist = dist};
        gc.identity = id_pats;
        gc.n_identity = n_id_pats;
        gpu = spd_gpu_run_create(&gc);
        spd_gpu_run_upload(gpu, spec, tr->adam_t);
        if (dist) {
            spd_gpu_run_dist_broadcast_params(gpu);
            printf("  %-26s %d ranks (NCCL), %" PRId64 " rows each, seed per rank seed * %d + rank\n", "data parallel",
                   world, rows, world);
        }
        xf = spd_malloc((size_t)B * F * sizeof *xf);
        printf("device: %s\n", spd_cuda_device_name());
    }
#endif
    open_resume_file = NULL;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = writer ? on_stop_signal : SIG_IGN;  // rank > 0: the launcher stops it after rank 0
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    const int64_t start = r_step;
    double t0 = now_s(), t_last = t0;
    int64_t last_step = start - 1;
    for (int64_t step = start; step <= cfg.steps; step++) {
        if (gpu) gpu_step(gpu, tr, &data, xf, step, (int)rows, F, row0, dist);
        else {
            spd_toy_batch_f64(&data, (uint64_t)step, -1, 0, B, x, NULL);
            spd_train_step_f64(tr, step);
        }
        check_finite(tr, step);
        bool done_before = rf && step == start && r_logged;  // logged and saved before the resume
        bool due = (cfg.has_save_freq && step % cfg.save_freq == 0 && step > 0) || step == cfg.steps;
        bool synced = gpu && !done_before && (step % cfg.train_log_freq == 0 || due || step == stop_at);
        if (synced) gpu_sync(gpu, tr, spec, dist, true);
        if (!done_before && step % cfg.train_log_freq == 0) {
            double lr = spd_schedule_value(&opt.lr, step, opt.steps);
            double t = now_s();
            double ms = 1000.0 * (t - t_last) / (double)(step - last_step);  // iterations since the last log
            double per = (t - t0) / (double)(step - start + 1);
            log_step(metrics, tr, &cfg, step, lr, ms, per * (double)(cfg.steps - step));
            t_last = t;
            last_step = step;
        }
        // ---- eval (spd/eval.h): after the log, before the checkpoint and the update (SPD's order).
        if (writer && !done_before && spd_eval_due(&cfg, step)) {
            // The eval reads the host copy of the trained tensors (no collective: rank 0 alone).
            if (gpu && !synced) gpu_sync(gpu, tr, spec, dist, false);
            if (spd_eval_log(ev, step, metrics)) spd_die_last_error();
        }
        if (writer && !done_before && (due || step == stop_at)) save_checkpoint(&ck, step, true);
        if (step == stop_at && step != cfg.steps) {
            printf("stopped at step %" PRId64 " (--stop-at): resume with spd train --resume %s\n", step, dir);
            break;
        }
        if (step != cfg.steps) {
            if (gpu) gpu_update(gpu, tr, step);
            else if (n_ties) spd_tied_update_f64(tr, &tie, n_ties, step);
            else spd_train_update_f64(tr, step);
            if (stop_signal) {
                if (gpu) gpu_sync(gpu, tr, spec, dist, !dist);
                save_checkpoint(&ck, step + 1, false);
                printf("interrupted by %s after step %" PRId64 ": saved model_%" PRId64 " and resume_%" PRId64
                       "; resume with spd train --resume %s\n", stop_signal == SIGINT ? "SIGINT" : "SIGTERM", step,
                       step + 1, step + 1, dir);
                fflush(stdout);
                fclose(metrics);
                exit(128 + stop_signal);
            }
        }
    }
    double wall = now_s() - t0;
    if (stop_at >= start && stop_at < cfg.steps) printf("stopped: %" PRId64 " iterations in %.2f s\n", stop_at - start + 1, wall);
    else printf("done: %" PRId64 " steps (+1 log-only) in %.2f s (%.1f steps/s); final total %.6e\n", cfg.steps, wall,
                wall > 0 ? (double)(cfg.steps - start + 1) / wall : 0.0, tr->total);
    int rc = fclose(metrics) == 0 ? 0 : SPD_EXIT_INTERNAL;
    if (!(stop_at >= start && stop_at < cfg.steps)) {  // finished: what the run found
        double final_values[SPD_TRAIN_MAX_TERMS], final_total = tr->total;
        memcpy(final_values, tr->values, sizeof final_values);
        spd_train_summary_result sum;
        if (spd_train_summary_f64(tr, &data, x, B, F, cfg.steps, cfg.ci_alive_threshold, 5, final_values,
                                  final_total, task == SPD_TASK_TMS, dir, &sum)) {
            fprintf(stderr, "spd: error: summary: %s\n", spd_last_error());
            rc = SPD_EXIT_INTERNAL;
        }
    }
    free(ck.config_text);
    spd_evaluator_free(ev);  // eval (spd/eval.h)
    spd_toy_data_free(&data);
#ifdef SPD_HAVE_CUDA
    spd_gpu_run_free(gpu);
#endif
    spd_dist_free(dist);
    free(xf);
    spd_run_model_free(&rmodel);
    spd_config_free(&cfg);
    return rc;
}
