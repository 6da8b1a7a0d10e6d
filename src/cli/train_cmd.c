// spd train CONFIG.yaml: SPD training of a TMS target (task_name tms), CPU,
// float64 (src/spd/train.h). For now the target is a randomly initialised,
// untied TMS of the sizes given by options (a pretrained target is not loaded
// yet); data are SPD's sparse features (models/toy_data.h). Writes
// final_config.yaml before training and one metrics.jsonl line per logged
// step into $SPD_OUT_DIR/spd/<run_id>/ (SPD_OUT_DIR defaults to ~/spd_out).
// Not yet: evaluation, checkpoints, faithfulness warm-up (skipped with a
// note), subset/PGD/hidden-acts losses (refused), other tasks (refused).
//
// The float64 API of the library: SPD_F64 before the headers (which include
// core/real.h), so this file stays a single-precision-free CLI source.
#define SPD_F64
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/philox.h"
#include "core/spec.h"
#include "models/module_select.h"
#include "models/tms.h"
#include "models/toy_data.h"
#include "spd/config.h"
#include "spd/schedule.h"
#include "spd/train.h"

static void usage(FILE *out) {
    fputs("usage: spd train CONFIG.yaml [--n-features F] [--n-hidden H] [--n-hidden-layers L] [--target-seed S]\n"
          "  SPD on a TMS target (task_name: tms) with random weights, CPU float64;\n"
          "  defaults F = 5, H = 2, L = 0, S = 0. Writes final_config.yaml and\n"
          "  metrics.jsonl to $SPD_OUT_DIR/spd/<run_id>/ (default ~/spd_out).\n",
          out);
}

static void tms_fwd(void *m) { tms_forward_f64(m); }
static void tms_bwd(void *m) { tms_backward_f64(m); }

static int term_of(const spd_metric_config *mc, spd_train_term *t) {
    static const struct {
        spd_metric_class cls;
        spd_term_kind kind;
    } map[] = {
        {SPD_METRIC_FAITHFULNESS_LOSS, SPD_TERM_FAITHFULNESS},
        {SPD_METRIC_IMPORTANCE_MINIMALITY_LOSS, SPD_TERM_IMPORTANCE_MINIMALITY},
        {SPD_METRIC_STOCHASTIC_RECON_LOSS, SPD_TERM_STOCHASTIC_RECON},
        {SPD_METRIC_STOCHASTIC_RECON_LAYERWISE_LOSS, SPD_TERM_STOCHASTIC_RECON_LAYERWISE},
        {SPD_METRIC_CI_MASKED_RECON_LOSS, SPD_TERM_CI_MASKED_RECON},
        {SPD_METRIC_CI_MASKED_RECON_LAYERWISE_LOSS, SPD_TERM_CI_MASKED_RECON_LAYERWISE},
        {SPD_METRIC_UNMASKED_RECON_LOSS, SPD_TERM_UNMASKED_RECON},
        {SPD_METRIC_STOCHASTIC_RECON_SUBSET_LOSS, SPD_TERM_STOCHASTIC_RECON_SUBSET},
        {SPD_METRIC_CI_MASKED_RECON_SUBSET_LOSS, SPD_TERM_CI_MASKED_RECON_SUBSET},
        {SPD_METRIC_STOCHASTIC_HIDDEN_ACTS_RECON_LOSS, SPD_TERM_STOCHASTIC_HIDDEN_ACTS_RECON},
        {SPD_METRIC_PGD_RECON_LOSS, SPD_TERM_PGD_RECON},
        {SPD_METRIC_PGD_RECON_SUBSET_LOSS, SPD_TERM_PGD_RECON_SUBSET},
        {SPD_METRIC_PGD_RECON_LAYERWISE_LOSS, SPD_TERM_PGD_RECON_LAYERWISE},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (map[i].cls == mc->classname) {
            t->kind = map[i].kind;
            t->coeff = mc->coeff;
            if (t->kind == SPD_TERM_IMPORTANCE_MINIMALITY) t->imp = mc->importance_minimality;
            t->router = (spd_router){.kind = mc->routing.type == SPD_CFG_ROUTER_STATIC_PROBABILITY
                                                 ? SPD_ROUTE_STATIC_PROBABILITY
                                                 : SPD_ROUTE_UNIFORM_K_SUBSET,
                                     .p = mc->routing.p};
            if (t->kind == SPD_TERM_PGD_RECON || t->kind == SPD_TERM_PGD_RECON_SUBSET ||
                t->kind == SPD_TERM_PGD_RECON_LAYERWISE)
                t->pgd = mc->pgd;
            return 0;
        }
    return -1;
}

// Config -> trainer options; unsupported parts are input errors.
static void options_from_config(const spd_config *cfg, spd_train_options *o) {
    spd_train_options_default(o);
    const spd_metric_config_list *l = &cfg->loss_metric_configs;
    if (l->count < 1) spd_die_input("%s: loss_metric_configs: spd train needs at least one loss", cfg->source);
    if (l->count > SPD_TRAIN_MAX_TERMS)
        spd_die_input("%s: loss_metric_configs: at most %d terms, found %d", cfg->source, SPD_TRAIN_MAX_TERMS, l->count);
    for (int i = 0; i < l->count; i++)
        if (term_of(&l->items[i], &o->terms[i]))
            spd_die_input("%s: loss_metric_configs[%d]: %s is not implemented by spd train yet", cfg->source, i,
                          spd_metric_class_name(l->items[i].classname));
    o->n_terms = l->count;
    o->output_loss = cfg->output_loss_type == SPD_OUTPUT_LOSS_KL ? SPD_DIVERGENCE_KL : SPD_DIVERGENCE_MSE;
    if (spd_ci_fn_kind_parse(spd_cfg_ci_fn_type_name(cfg->ci_fn_type), &o->ci_kind)) spd_die_last_error();
    if (cfg->ci_fn_hidden_dims.count > SPD_CI_FN_MAX_LAYERS - 1)
        spd_die_input("%s: ci_fn_hidden_dims: at most %d layers", cfg->source, SPD_CI_FN_MAX_LAYERS - 1);
    o->n_ci_hidden = cfg->ci_fn_hidden_dims.count;
    for (int i = 0; i < o->n_ci_hidden; i++) o->ci_hidden[i] = (int)cfg->ci_fn_hidden_dims.items[i];
    if (spd_sigmoid_pair_parse(spd_cfg_sigmoid_type_name(cfg->sigmoid_type), &o->sigmoid)) spd_die_last_error();
    if (spd_mask_sampling_parse(spd_cfg_sampling_name(cfg->sampling), &o->sampling)) spd_die_last_error();
    o->n_mask_samples = (int)cfg->n_mask_samples;
    o->use_delta = cfg->use_delta_component;
    o->seed = (uint64_t)cfg->seed;
    o->steps = cfg->steps;
    o->lr = cfg->lr_schedule;
    o->grad_clip_components = cfg->has_grad_clip_norm_components ? cfg->grad_clip_norm_components : 0;
    o->grad_clip_ci_fns = cfg->has_grad_clip_norm_ci_fns ? cfg->grad_clip_norm_ci_fns : 0;
}

static void make_dir(const char *path) {
    char buf[4096];
    int n = snprintf(buf, sizeof buf, "%s", path);
    if (n < 0 || n >= (int)sizeof buf) spd_die_input("output directory path too long: %s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0777) && errno != EEXIST) spd_die_input("cannot create %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) && errno != EEXIST) spd_die_input("cannot create %s: %s", buf, strerror(errno));
}

static void log_step(FILE *f, const spd_trainer *t, int64_t step, double lr) {
    fprintf(f, "{\"step\": %" PRId64, step);
    for (int i = 0; i < t->opt.n_terms; i++)
        fprintf(f, ", \"train/loss/%s\": %.17g", spd_term_kind_name(t->opt.terms[i].kind), t->values[i]);
    fprintf(f, ", \"train/loss/total\": %.17g, \"train/schedules/lr\": %.17g}\n", t->total, lr);
}

int cmd_train(int argc, char **argv) {
    const char *path = NULL;
    int F = 5, H = 2, L = 0;
    uint64_t target_seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        bool has_value = i + 1 < argc;
        if (strcmp(a, "--n-features") == 0 && has_value) F = (int)spd_arg_int(a, argv[++i], 1, 1 << 20);
        else if (strcmp(a, "--n-hidden") == 0 && has_value) H = (int)spd_arg_int(a, argv[++i], 1, 1 << 20);
        else if (strcmp(a, "--n-hidden-layers") == 0 && has_value) L = (int)spd_arg_int(a, argv[++i], 0, 64);
        else if (strcmp(a, "--target-seed") == 0 && has_value)
            target_seed = (uint64_t)spd_arg_int(a, argv[++i], 0, 0x7fffffffL);
        else if (a[0] == '-' && a[1] != '\0') spd_die_input("train: unknown option or missing value '%s'", a);
        else if (path) spd_die_input("train: expected one CONFIG file, found '%s' and '%s'", path, a);
        else path = a;
    }
    if (!path) {
        usage(stderr);
        return SPD_EXIT_INPUT;
    }
    spd_config cfg;
    if (spd_config_load(&cfg, path)) spd_die_last_error();
    if (cfg.task_config.task_name != SPD_TASK_TMS)
        spd_die_input("%s: task_config.task_name: spd train supports tms only for now, found %s", path,
                      spd_task_name_name(cfg.task_config.task_name));
    spd_toy_generation gen;
    if (spd_toy_generation_parse(spd_data_generation_type_name(cfg.task_config.tms.data_generation_type), &gen))
        spd_die_input("%s: task_config.data_generation_type: %s", path, spd_last_error());
    if (cfg.has_identity_module_info) spd_die_input("%s: identity_module_info: not supported by spd train yet", path);
    if (cfg.batch_size > (1 << 24)) spd_die_input("%s: batch_size: at most %d for spd train", path, 1 << 24);
    spd_train_options opt;
    options_from_config(&cfg, &opt);
    if (cfg.faithfulness_warmup_steps > 0)
        fprintf(stderr, "note: faithfulness_warmup_steps = %" PRId64 ": the warm-up is not implemented yet; skipped\n",
                cfg.faithfulness_warmup_steps);
    fprintf(stderr, "note: the target is a random untied TMS (F = %d, H = %d, L = %d, seed %" PRIu64
                    "); pretrained_model_path is not loaded\n", F, H, L, target_seed);

    // Target and components in one spec table.
    spd_spec spec;
    spd_spec_init(&spec);
    tms_model tms;
    tms_config tcfg = {.n_features = F, .n_hidden = H, .n_hidden_layers = L};
    if (spd_tms_config_check(&tcfg)) spd_die_last_error();
    tms_options topt = {.B = (int)cfg.batch_size, .prefix = "target_model."};
    tms_declare_f64(&tms, &spec, &tcfg, &topt);
    const char **paths = spd_malloc((size_t)tms.n_sites * sizeof *paths);
    for (int i = 0; i < tms.n_sites; i++) paths[i] = tms.sites[i].path;
    spd_module_pattern *pats = spd_calloc((size_t)cfg.module_info.count + 1, sizeof *pats);
    for (int i = 0; i < cfg.module_info.count; i++) {
        pats[i].pattern = cfg.module_info.items[i].module_pattern;
        pats[i].C = (int)cfg.module_info.items[i].C;
    }
    spd_module_choice *chosen = NULL;
    int n_chosen = 0;
    if (spd_select_modules(paths, tms.n_sites, pats, cfg.module_info.count, &chosen, &n_chosen))
        spd_die_input("%s: module_info: %s", path, spd_last_error());
    int *site = spd_malloc((size_t)n_chosen * sizeof *site), *C = spd_malloc((size_t)n_chosen * sizeof *C);
    for (int i = 0; i < n_chosen; i++) {
        for (int k = 0; k < tms.n_sites; k++)
            if (strcmp(tms.sites[k].path, chosen[i].path) == 0) site[i] = k;
        C[i] = chosen[i].C;
    }
    spd_target tg = {.model = &tms, .sites = tms.sites, .n_sites = tms.n_sites, .N = (int)cfg.batch_size,
                     .d_out = F, .forward = tms_fwd, .backward = tms_bwd};
    spd_trainer tr;
    if (spd_trainer_declare_f64(&tr, &spec, &opt, &tg, site, C, n_chosen)) spd_die_input("%s: %s", path, spd_last_error());
    spd_spec_alloc(&spec);
    tms_bind_f64(&tms, &spec);
    tms_init_params_f64(&tms, target_seed);
    tg.out = tms.out;
    tg.dout = tms.dout;
    spd_trainer_bind_f64(&tr, &tg);
    spd_trainer_init_params_f64(&tr, (uint64_t)cfg.seed);

    spd_toy_data data;
    if (spd_toy_data_init_tms(&data, F, cfg.task_config.tms.feature_probability,
                              gen, (uint64_t)cfg.seed))
        spd_die_input("%s: task_config: %s", path, spd_last_error());

    // Output directory and pre-run files.
    uint32_t rid = (uint32_t)time(NULL) ^ ((uint32_t)getpid() << 16) ^ (uint32_t)clock();
    char run_id[16], dir[4096];
    snprintf(run_id, sizeof run_id, "s-%08x", rid);
    const char *root = getenv("SPD_OUT_DIR");
    char home_root[4096];
    if (!root || !*root) {
        const char *home = getenv("HOME");
        snprintf(home_root, sizeof home_root, "%s/spd_out", home ? home : ".");
        root = home_root;
    }
    int n = snprintf(dir, sizeof dir, "%s/spd/%s", root, run_id);
    if (n < 0 || n >= (int)sizeof dir) spd_die_input("SPD_OUT_DIR too long");
    make_dir(dir);
    char file[4200];
    snprintf(file, sizeof file, "%s/final_config.yaml", dir);
    if (spd_config_write_yaml(&cfg, file)) spd_die_last_error();
    snprintf(file, sizeof file, "%s/metrics.jsonl", dir);
    FILE *metrics = fopen(file, "w");
    if (!metrics) spd_die_input("cannot write %s: %s", file, strerror(errno));
    printf("run %s: %s\n", run_id, dir);

    // SPD's loop: steps + 1 iterations, no update at the last.
    for (int64_t step = 0; step <= cfg.steps; step++) {
        spd_toy_batch_f64(&data, (uint64_t)step, -1, 0, (int)cfg.batch_size, tms.x, NULL);
        spd_train_step_f64(&tr, step);
        double lr = spd_schedule_value(&opt.lr, step, opt.steps);
        if (step % cfg.train_log_freq == 0 || step == cfg.steps) {
            log_step(metrics, &tr, step, lr);
            printf("step %" PRId64 ": total %.6g lr %.3g\n", step, tr.total, lr);
        }
        if (step != cfg.steps) spd_train_update_f64(&tr, step);
    }
    int rc = fclose(metrics) == 0 ? 0 : SPD_EXIT_INTERNAL;
    spd_toy_data_free(&data);
    spd_trainer_free_f64(&tr);
    tms_free_f64(&tms);
    spd_spec_free(&spec);
    spd_module_choices_free(chosen, n_chosen);
    free(paths);
    free(pats);
    free(site);
    free(C);
    spd_config_free(&cfg);
    return rc;
}
