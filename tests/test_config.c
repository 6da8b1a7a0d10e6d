// The config layer: YAML 1.1 scalar resolution, the three reference configs,
// defaults, number coercion, old-key migrations, the resolved-YAML round trip,
// and every malformed fixture (tests/configs/bad_*.yaml, each naming the
// message it must produce on its "# expect:" line).
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/yaml_tree.h"
#include "spd/config.h"
#include "testing.h"

#define CONFIG_DIR "tests/configs/"

static char tmp_path[256];

// ---------------------------------------------------------------- YAML 1.1 resolution

// What PyYAML's safe_load makes of `x: <text>` (checked against PyYAML 6).
static void check_resolve(const char *text, spd_yaml_type want) {
    char doc[256];
    snprintf(doc, sizeof doc, "x: %s\n", text);
    spd_yaml_doc *d = spd_yaml_load_string(doc, strlen(doc), "t.yaml");
    spd_yaml_type got = d ? spd_yaml_resolve(spd_yaml_map_get(d->root, "x")) : SPD_YAML_T_OTHER;
    char name[128];
    snprintf(name, sizeof name, "YAML 1.1 resolves `%s` as %d", text, want);
    test_report(got == want, name, "got %d", got);
    spd_yaml_free(d);
}

static void check_int(const char *text, int64_t want) {
    char doc[256];
    snprintf(doc, sizeof doc, "x: %s\n", text);
    spd_yaml_doc *d = spd_yaml_load_string(doc, strlen(doc), "t.yaml");
    int64_t v = -777;
    int rc = d ? spd_yaml_int(spd_yaml_map_get(d->root, "x"), &v) : -1;
    char name[128];
    snprintf(name, sizeof name, "YAML int `%s` = %lld", text, (long long)want);
    test_report(rc == 0 && v == want, name, "rc %d, got %lld", rc, (long long)v);
    spd_yaml_free(d);
}

static void check_float(const char *text, double want) {
    char doc[256];
    snprintf(doc, sizeof doc, "x: %s\n", text);
    spd_yaml_doc *d = spd_yaml_load_string(doc, strlen(doc), "t.yaml");
    double v = -777;
    int rc = d ? spd_yaml_float(spd_yaml_map_get(d->root, "x"), &v) : -1;
    char name[128];
    snprintf(name, sizeof name, "YAML float `%s` = %g", text, want);
    test_report(rc == 0 && (v == want || (isinf(v) && isinf(want) && (v > 0) == (want > 0))), name,
                "rc %d, got %.17g", rc, v);
    spd_yaml_free(d);
}

static void test_yaml_scalars(void) {
    check_resolve("3e-4", SPD_YAML_T_STR);  // no dot: a string to YAML 1.1
    check_resolve("1e+3", SPD_YAML_T_STR);
    check_resolve("1.5e3", SPD_YAML_T_STR);  // exponent without a sign
    check_resolve("1.0e-3", SPD_YAML_T_FLOAT);
    check_resolve("1.", SPD_YAML_T_FLOAT);
    check_resolve(".5", SPD_YAML_T_FLOAT);
    check_resolve("+.5", SPD_YAML_T_STR);
    check_resolve("-.inf", SPD_YAML_T_FLOAT);
    check_resolve(".NaN", SPD_YAML_T_FLOAT);
    check_resolve("400_000", SPD_YAML_T_INT);
    check_resolve("_1", SPD_YAML_T_STR);
    check_resolve("0o17", SPD_YAML_T_STR);
    check_resolve("08", SPD_YAML_T_STR);
    check_resolve("yes", SPD_YAML_T_BOOL);
    check_resolve("Off", SPD_YAML_T_BOOL);
    check_resolve("TRUE", SPD_YAML_T_BOOL);
    check_resolve("tRue", SPD_YAML_T_STR);
    check_resolve("~", SPD_YAML_T_NULL);
    check_resolve("", SPD_YAML_T_NULL);
    check_resolve("Null", SPD_YAML_T_NULL);
    check_resolve("nUll", SPD_YAML_T_STR);
    check_resolve("\"1.0\"", SPD_YAML_T_STR);
    check_resolve("'null'", SPD_YAML_T_STR);
    check_resolve("!!str 5", SPD_YAML_T_STR);
    check_resolve("!!float 1e-3", SPD_YAML_T_FLOAT);
    check_resolve("h.*.mlp", SPD_YAML_T_STR);
    check_int("400_000", 400000);
    check_int("-17", -17);
    check_int("017", 15);  // YAML 1.1 octal
    check_int("0x1F", 31);
    check_int("0b101", 5);
    check_int("1:30", 90);  // sexagesimal
    check_int("190:20:30", 685230);
    check_int("9223372036854775807", INT64_MAX);
    check_int("-9223372036854775808", INT64_MIN);
    check_float("1.0e-3", 1e-3);
    check_float("685.230_15e+03", 685230.15);
    check_float("1_000.5", 1000.5);
    check_float("-.inf", -INFINITY);
    check_float("!!float 1e-3", 1e-3);

    const char *alias = "a: &x [1, 2]\nb: *x\n";
    spd_yaml_doc *d = spd_yaml_load_string(alias, strlen(alias), "t.yaml");
    test_report(d && spd_yaml_map_get(d->root, "b") == spd_yaml_map_get(d->root, "a"), "an alias is its anchored node",
                "%s", d ? "" : spd_last_error());
    spd_yaml_free(d);
    const char *cycle = "a: &x [1, *x]\n";
    d = spd_yaml_load_string(cycle, strlen(cycle), "t.yaml");
    test_report(!d && strstr(spd_last_error(), "t.yaml:1:11: YAML: unknown anchor '*x'"),
                "an alias inside its own anchor is refused (no cycles)", "%s", d ? "accepted" : spd_last_error());
    spd_yaml_free(d);
    const char *two = "a: 1\n---\nb: 2\n";
    d = spd_yaml_load_string(two, strlen(two), "t.yaml");
    test_report(!d && strstr(spd_last_error(), "t.yaml:2:1: YAML: expected one document"), "a second document is refused",
                "%s", d ? "accepted" : spd_last_error());
    spd_yaml_free(d);
    const char *complex_key = "? [a]\n: 1\n";
    d = spd_yaml_load_string(complex_key, strlen(complex_key), "t.yaml");
    test_report(!d && strstr(spd_last_error(), "mapping key must be a plain value"), "a list as a key is refused", "%s",
                d ? "accepted" : spd_last_error());
    spd_yaml_free(d);
    d = spd_yaml_load_file(CONFIG_DIR "no_such_file.yaml");
    test_report(!d && strstr(spd_last_error(), "no_such_file.yaml: cannot open: No such file"),
                "a missing file is reported by name", "%s", d ? "opened" : spd_last_error());
}

// ---------------------------------------------------------------- helpers

static int load(spd_config *cfg, const char *path) {
    int rc = spd_config_load(cfg, path);
    if (rc) test_report(0, path, "load failed: %s", spd_last_error());
    return rc;
}

static const spd_metric_config *metric(const spd_metric_config_list *l, spd_metric_class c) {
    for (int i = 0; i < l->count; i++)
        if (l->items[i].classname == c) return &l->items[i];
    return NULL;
}

static bool str_is(const char *s, const char *want) { return s && strcmp(s, want) == 0; }

#define EXPECT(cond) \
    do {             \
        if (!(cond)) { bad = #cond; goto done; } \
    } while (0)

// ---------------------------------------------------------------- reference configs (SPD_SPEC.md 6.6)

static void test_ss_llama_simple(void) {
    spd_config c;
    if (load(&c, CONFIG_DIR "ss_llama_simple.yaml")) return;
    const char *bad = NULL;
    EXPECT(str_is(c.wandb_project, "spd") && c.wandb_run_name == NULL && str_is(c.wandb_run_name_prefix, ""));
    EXPECT(c.seed == 0 && c.n_mask_samples == 1 && c.autocast_bf16);
    EXPECT(c.ci_fn_type == SPD_CFG_CI_FN_SHARED_MLP && c.ci_fn_hidden_dims.count == 1 && c.ci_fn_hidden_dims.items[0] == 1000);
    EXPECT(c.sigmoid_type == SPD_CFG_SIGMOID_LEAKY_HARD && c.sampling == SPD_CFG_SAMPLING_CONTINUOUS);
    EXPECT(c.use_delta_component && !c.has_identity_module_info);
    EXPECT(c.module_info.count == 7);
    static const char *const patterns[] = {"h.*.mlp.gate_proj", "h.*.mlp.up_proj", "h.*.mlp.down_proj", "h.*.attn.q_proj",
                                           "h.*.attn.k_proj", "h.*.attn.v_proj", "h.*.attn.o_proj"};
    for (int i = 0; i < 7; i++)
        EXPECT(str_is(c.module_info.items[i].module_pattern, patterns[i]) && c.module_info.items[i].C == 1200);
    EXPECT(c.loss_metric_configs.count == 2);
    const spd_metric_config *imp = &c.loss_metric_configs.items[0];
    EXPECT(imp->classname == SPD_METRIC_IMPORTANCE_MINIMALITY_LOSS && imp->has_coeff && imp->coeff == 0.002);
    EXPECT(imp->importance_minimality.pnorm == 2.0 && imp->importance_minimality.beta == 0.0);
    EXPECT(imp->importance_minimality.p_anneal_start_frac == 0.0 && imp->importance_minimality.has_p_anneal_final_p &&
           imp->importance_minimality.p_anneal_final_p == 0.3 && imp->importance_minimality.p_anneal_end_frac == 1.0);
    EXPECT(imp->importance_minimality.eps == 1e-12);
    const spd_metric_config *sub = &c.loss_metric_configs.items[1];
    EXPECT(sub->classname == SPD_METRIC_STOCHASTIC_RECON_SUBSET_LOSS && sub->coeff == 1.0 &&
           sub->routing.type == SPD_CFG_ROUTER_UNIFORM_K_SUBSET);
    EXPECT(c.output_loss_type == SPD_OUTPUT_LOSS_KL);
    EXPECT(c.batch_size == 256 && c.eval_batch_size == 64 && c.steps == 200000);
    EXPECT(c.lr_schedule.start_val == 2e-4 && c.lr_schedule.fn_type == SPD_SCHEDULE_COSINE &&
           c.lr_schedule.warmup_pct == 0.0 && c.lr_schedule.final_val_frac == 0.1);
    EXPECT(c.faithfulness_warmup_steps == 0 && c.faithfulness_warmup_lr == 0.001 &&
           c.faithfulness_warmup_weight_decay == 0.0);
    EXPECT(c.train_log_freq == 200 && c.eval_freq == 1000 && c.slow_eval_freq == 2000 && c.slow_eval_on_first_step);
    EXPECT(c.n_eval_steps == 5 && !c.has_save_freq && c.ci_alive_threshold == 0.0);
    EXPECT(c.eval_metric_configs.count == 7);
    const spd_metric_config *m = metric(&c.eval_metric_configs, SPD_METRIC_CI_HISTOGRAMS);
    EXPECT(m && m->ci_histograms.has_n_batches_accum && m->ci_histograms.n_batches_accum == 5);
    EXPECT(metric(&c.eval_metric_configs, SPD_METRIC_COMPONENT_ACTIVATION_DENSITY));
    m = metric(&c.eval_metric_configs, SPD_METRIC_CI_L0);
    EXPECT(m && m->ci_l0.has_groups && m->ci_l0.groups.count == 5);
    EXPECT(str_is(m->ci_l0.groups.names[0], "total") && m->ci_l0.groups.patterns[0].count == 1 &&
           str_is(m->ci_l0.groups.patterns[0].items[0], "*"));
    EXPECT(str_is(m->ci_l0.groups.names[4], "layer_3") && str_is(m->ci_l0.groups.patterns[4].items[0], "h.3.*"));
    m = metric(&c.eval_metric_configs, SPD_METRIC_CE_AND_KL_LOSSES);
    EXPECT(m && m->ce_and_kl.rounding_threshold == 0.0);
    EXPECT(metric(&c.eval_metric_configs, SPD_METRIC_CI_MEAN_PER_COMPONENT));
    m = metric(&c.eval_metric_configs, SPD_METRIC_STOCHASTIC_HIDDEN_ACTS_RECON_LOSS);
    EXPECT(m && !m->has_coeff);
    m = metric(&c.eval_metric_configs, SPD_METRIC_PGD_RECON_SUBSET_LOSS);
    EXPECT(m && m->routing.type == SPD_CFG_ROUTER_UNIFORM_K_SUBSET && m->pgd.init == SPD_PGD_INIT_RANDOM &&
           m->pgd.step_size == 0.01 && m->pgd.n_steps == 20 && m->pgd.mask_scope == SPD_MASK_SCOPE_SHARED_ACROSS_BATCH);
    EXPECT(str_is(c.pretrained_model_class, "spd.pretrain.models.llama_simple.LlamaSimple"));
    EXPECT(str_is(c.pretrained_model_name, "wandb:goodfire/spd/runs/erq48r3w") && c.pretrained_model_path == NULL);
    EXPECT(str_is(c.pretrained_model_output_attr, "idx_0"));
    EXPECT(str_is(c.tokenizer_name, "SimpleStories/test-SimpleStories-gpt2-1.25M"));
    EXPECT(c.task_config.task_name == SPD_TASK_LM);
    const spd_lm_task_config *lm = &c.task_config.lm;
    EXPECT(lm->max_seq_len == 512 && lm->buffer_size == 1000 && str_is(lm->dataset_name, "SimpleStories/SimpleStories"));
    EXPECT(str_is(lm->column_name, "story") && str_is(lm->train_data_split, "train") && str_is(lm->eval_data_split, "test"));
    EXPECT(lm->shuffle_each_epoch && !lm->is_tokenized && !lm->streaming);
done:
    test_report(bad == NULL, "ss_llama_simple.yaml loads with the values of SPD_SPEC.md 6.6", "%s", bad);
    spd_config_free(&c);
}

static void test_tms(void) {
    spd_config c;
    if (load(&c, CONFIG_DIR "tms_5-2.yaml")) return;
    const char *bad = NULL;
    EXPECT(c.ci_fn_type == SPD_CFG_CI_FN_MLP && c.ci_fn_hidden_dims.count == 1 && c.ci_fn_hidden_dims.items[0] == 16);
    EXPECT(c.sampling == SPD_CFG_SAMPLING_CONTINUOUS);  // default
    EXPECT(c.module_info.count == 2 && str_is(c.module_info.items[1].module_pattern, "linear2") &&
           c.module_info.items[1].C == 20);
    EXPECT(c.loss_metric_configs.count == 3 && c.loss_metric_configs.items[0].coeff == 3e-3);
    EXPECT(c.loss_metric_configs.items[0].importance_minimality.pnorm == 1.0);
    EXPECT(!c.loss_metric_configs.items[0].importance_minimality.has_p_anneal_final_p);
    EXPECT(c.loss_metric_configs.items[1].classname == SPD_METRIC_STOCHASTIC_RECON_LOSS);
    EXPECT(c.loss_metric_configs.items[2].classname == SPD_METRIC_STOCHASTIC_RECON_LAYERWISE_LOSS);
    EXPECT(c.output_loss_type == SPD_OUTPUT_LOSS_MSE && c.batch_size == 4096 && c.eval_batch_size == 4096);
    EXPECT(c.steps == 10000 && c.lr_schedule.start_val == 1e-3 && c.lr_schedule.fn_type == SPD_SCHEDULE_COSINE &&
           c.lr_schedule.final_val_frac == 0.0);
    EXPECT(c.faithfulness_warmup_steps == 200 && c.faithfulness_warmup_lr == 0.01 &&
           c.faithfulness_warmup_weight_decay == 0.1);
    EXPECT(c.train_log_freq == 100 && c.eval_freq == 1000 && c.n_eval_steps == 100 && c.slow_eval_freq == 5000);
    EXPECT(c.ci_alive_threshold == 0.1 && !c.has_save_freq);
    const spd_metric_config *m = metric(&c.eval_metric_configs, SPD_METRIC_PERMUTED_CI_PLOTS);
    EXPECT(m && m->plots.has_identity_patterns && m->plots.identity_patterns.count == 2 && !m->plots.has_dense_patterns);
    m = metric(&c.eval_metric_configs, SPD_METRIC_IDENTITY_CI_ERROR);
    EXPECT(m && m->identity_ci_error.has_identity_ci && !m->identity_ci_error.has_dense_ci);
    EXPECT(m->identity_ci_error.identity_ci.count == 2 && m->identity_ci_error.identity_ci.items[1].count == 2);
    const spd_kv *kv = m->identity_ci_error.identity_ci.items[1].items;
    EXPECT(str_is(kv[0].key, "layer_pattern") && !kv[0].is_int && str_is(kv[0].str_value, "linear2"));
    EXPECT(str_is(kv[1].key, "n_features") && kv[1].is_int && kv[1].int_value == 5);
    m = metric(&c.eval_metric_configs, SPD_METRIC_CI_L0);
    EXPECT(m && !m->ci_l0.has_groups);
    EXPECT(str_is(c.pretrained_model_class, "spd.experiments.tms.models.TMSModel"));
    EXPECT(str_is(c.pretrained_model_path, "wandb:goodfire/spd-pre-Sep-2025/runs/0hsp07o4"));
    EXPECT(c.task_config.task_name == SPD_TASK_TMS && c.task_config.tms.feature_probability == 0.05 &&
           c.task_config.tms.data_generation_type == SPD_DATA_AT_LEAST_ZERO_ACTIVE);
done:
    test_report(bad == NULL, "tms_5-2.yaml loads with the values of SPD_SPEC.md 6.6", "%s", bad);
    spd_config_free(&c);
}

static void test_resid_mlp(void) {
    spd_config c;
    if (load(&c, CONFIG_DIR "resid_mlp1.yaml")) return;
    const char *bad = NULL;
    EXPECT(c.module_info.count == 2 && str_is(c.module_info.items[0].module_pattern, "layers.*.mlp_in") &&
           c.module_info.items[0].C == 100);
    EXPECT(c.loss_metric_configs.items[0].coeff == 1e-5 && c.loss_metric_configs.items[0].importance_minimality.pnorm == 2.0);
    EXPECT(c.steps == 20000 && c.lr_schedule.start_val == 2e-3 && c.lr_schedule.fn_type == SPD_SCHEDULE_CONSTANT &&
           c.lr_schedule.final_val_frac == 1.0);
    EXPECT(c.eval_freq == 500 && c.slow_eval_freq == 5000 && c.batch_size == 2048);
    const spd_metric_config *m = metric(&c.eval_metric_configs, SPD_METRIC_IDENTITY_CI_ERROR);
    EXPECT(m && m->identity_ci_error.has_dense_ci && m->identity_ci_error.dense_ci.count == 1);
    const spd_kv *kv = m->identity_ci_error.dense_ci.items[0].items;
    EXPECT(str_is(kv[1].key, "k") && kv[1].is_int && kv[1].int_value == 50);
    m = metric(&c.eval_metric_configs, SPD_METRIC_PERMUTED_CI_PLOTS);
    EXPECT(m && str_is(m->plots.dense_patterns.items[0], "layers.*.mlp_out"));
    EXPECT(c.task_config.task_name == SPD_TASK_RESID_MLP && c.task_config.resid_mlp.feature_probability == 0.01);
    EXPECT(str_is(c.pretrained_model_path, "wandb:goodfire/spd-pre-Sep-2025/runs/pziyck78"));
done:
    test_report(bad == NULL, "resid_mlp1.yaml loads with the values of SPD_SPEC.md 6.6", "%s", bad);
    spd_config_free(&c);
}

static void test_defaults(void) {
    spd_config c;
    if (load(&c, CONFIG_DIR "minimal.yaml")) return;
    const char *bad = NULL;
    EXPECT(c.wandb_project == NULL && c.wandb_run_name == NULL && str_is(c.wandb_run_name_prefix, ""));
    EXPECT(c.seed == 0 && c.autocast_bf16 && c.ci_fn_type == SPD_CFG_CI_FN_VECTOR_MLP);
    EXPECT(c.ci_fn_hidden_dims.count == 1 && c.ci_fn_hidden_dims.items[0] == 8);
    EXPECT(c.sampling == SPD_CFG_SAMPLING_CONTINUOUS && c.sigmoid_type == SPD_CFG_SIGMOID_LEAKY_HARD);
    EXPECT(!c.has_identity_module_info && c.use_delta_component && c.loss_metric_configs.count == 0);
    EXPECT(c.lr_schedule.warmup_pct == 0.0 && c.lr_schedule.final_val_frac == 1.0 &&
           c.lr_schedule.fn_type == SPD_SCHEDULE_CONSTANT);
    EXPECT(!c.has_grad_clip_norm_components && !c.has_grad_clip_norm_ci_fns);
    EXPECT(c.faithfulness_warmup_steps == 0 && c.faithfulness_warmup_lr == 0.001 &&
           c.faithfulness_warmup_weight_decay == 0.0);
    EXPECT(c.train_log_freq == 50 && c.eval_batch_size == 4 && c.slow_eval_freq == 10);  // SPD's fill-ins
    EXPECT(c.slow_eval_on_first_step && !c.has_save_freq && c.eval_metric_configs.count == 0);
    EXPECT(c.ci_alive_threshold == 0.0 && c.pretrained_model_path == NULL && c.pretrained_model_name == NULL);
    EXPECT(c.pretrained_model_output_attr == NULL && c.tokenizer_name == NULL);
    EXPECT(c.task_config.task_name == SPD_TASK_LM && c.task_config.lm.max_seq_len == 512 &&
           c.task_config.lm.buffer_size == 1000 && str_is(c.task_config.lm.dataset_name, "lennart-finke/SimpleStories"));
    EXPECT(str_is(c.task_config.lm.column_name, "story") && c.task_config.lm.shuffle_each_epoch &&
           !c.task_config.lm.is_tokenized && !c.task_config.lm.streaming);
done:
    test_report(bad == NULL, "minimal.yaml: every absent field gets SPD's default", "%s", bad);
    spd_config_free(&c);
}

static void test_numbers(void) {
    spd_config c;
    if (load(&c, CONFIG_DIR "numbers.yaml")) return;
    const char *bad = NULL;
    EXPECT(c.steps == 400000);            // 400_000
    EXPECT(c.lr_schedule.start_val == 3e-4);  // "3e-4" to YAML 1.1
    EXPECT(c.lr_schedule.warmup_pct == 0.5 && c.lr_schedule.final_val_frac == 0.1);
    EXPECT(c.n_mask_samples == 2 && c.seed == 16 && c.module_info.items[0].C == 1000);
    EXPECT(c.eval_freq == 1000 && c.slow_eval_freq == 2000 && c.n_eval_steps == 2);  // 1.0e+3, "2000", 2.0
    EXPECT(c.faithfulness_warmup_lr == 1e-2 && c.grad_clip_norm_components == 1000.5);
    EXPECT(c.has_grad_clip_norm_ci_fns && c.grad_clip_norm_ci_fns == 5.0);
    EXPECT(c.ci_alive_threshold == 0.25);
    EXPECT(!c.autocast_bf16 && c.use_delta_component && !c.slow_eval_on_first_step);  // off, "yes", 0
    EXPECT(c.loss_metric_configs.items[0].coeff == -2.5e-5);
    EXPECT(c.loss_metric_configs.items[0].importance_minimality.pnorm == 1.0);
    EXPECT(c.loss_metric_configs.items[0].importance_minimality.eps == 1e-10);
    EXPECT(c.task_config.tms.feature_probability == 5e-2);
done:
    test_report(bad == NULL, "numbers.yaml: 400_000, 3e-4, 1.0e+3, \"2000\", off and \"yes\" read as SPD reads them",
                "%s", bad);
    spd_config_free(&c);
}

static void test_migrations(void) {
    spd_config c;
    if (load(&c, CONFIG_DIR "old_keys.yaml")) return;
    const char *bad = NULL;
    EXPECT(c.module_info.count == 2 && str_is(c.module_info.items[0].module_pattern, "linear1") &&
           c.module_info.items[0].C == 10 && c.module_info.items[1].C == 10);
    EXPECT(c.has_identity_module_info && c.identity_module_info.count == 1 &&
           str_is(c.identity_module_info.items[0].module_pattern, "linear1") && c.identity_module_info.items[0].C == 10);
    EXPECT(c.lr_schedule.start_val == 1e-3 && c.lr_schedule.fn_type == SPD_SCHEDULE_COSINE &&
           c.lr_schedule.warmup_pct == 0.01 && c.lr_schedule.final_val_frac == 0.0);
    EXPECT(c.eval_freq == 100 && c.slow_eval_freq == 100 && c.train_log_freq == 50 && c.eval_batch_size == 32);
    EXPECT(c.ci_fn_type == SPD_CFG_CI_FN_VECTOR_MLP && c.ci_fn_hidden_dims.count == 2 && c.ci_fn_hidden_dims.items[1] == 4);
    EXPECT(c.has_grad_clip_norm_components && c.grad_clip_norm_components == 1.0 && c.pretrained_model_name == NULL);
    EXPECT(str_is(c.pretrained_model_class, "spd.pretrain.models.llama.Llama"));
    EXPECT(c.loss_metric_configs.count == 1);  // the one with extra_init_kwargs is dropped
    EXPECT(c.eval_metric_configs.count == 1 && c.eval_metric_configs.items[0].classname == SPD_METRIC_PERMUTED_CI_PLOTS);
done:
    test_report(bad == NULL, "old_keys.yaml: C/target_module_patterns, lr, renamed and deprecated keys migrate as in SPD",
                "%s", bad);
    spd_config_free(&c);
}

// ---------------------------------------------------------------- round trip

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = spd_malloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = '\0';
    fclose(f);
    return s;
}

static void test_round_trip(const char *path) {
    spd_config a, b, c;
    char name[256];
    snprintf(name, sizeof name, "%s: the resolved YAML loads back to an equal config and rewrites identically", path);
    if (load(&a, path)) return;
    char path2[300];
    snprintf(path2, sizeof path2, "%s.2", tmp_path);
    const char *why = NULL;
    char *t1 = NULL, *t2 = NULL;
    if (spd_config_write_yaml(&a, tmp_path)) {
        why = spd_last_error();
    } else if (spd_config_load(&b, tmp_path)) {
        why = spd_last_error();
    } else {
        if (!spd_config_equal(&a, &b)) why = "configs differ";
        // Written from the reloaded config: the same text, apart from the source comment.
        free(b.source);
        b.source = spd_strdup(a.source);
        if (!why && spd_config_write_yaml(&b, path2)) why = spd_last_error();
        t1 = read_all(tmp_path);
        t2 = read_all(path2);
        if (!why && (!t1 || !t2 || strcmp(t1, t2) != 0)) why = "the second write differs from the first";
        // A changed field must make them unequal (the comparison is not vacuous).
        if (!why && spd_config_load(&c, tmp_path) == 0) {
            c.lr_schedule.start_val *= 2;
            if (spd_config_equal(&a, &c)) why = "spd_config_equal missed a changed start_val";
            spd_config_free(&c);
        }
        spd_config_free(&b);
    }
    test_report(why == NULL, name, "%s", why);
    free(t1);
    free(t2);
    remove(tmp_path);
    remove(path2);
    spd_config_free(&a);
}

static void test_string_round_trip(void) {
    const char *text = "n_mask_samples: 1\nmodule_info: [{module_pattern: 'a.\"b\"\\c', C: 1}]\noutput_loss_type: mse\n"
                       "lr_schedule: {start_val: 0.1}\nsteps: 1\nbatch_size: 1\neval_freq: 1\nn_eval_steps: 1\n"
                       "pretrained_model_class: \"x\\ty\\nz \\u00e9 #: - [\"\nwandb_run_name: 'null'\n"
                       "wandb_project: \"\"\ntask_config: {task_name: ih, prefix_window: 7}\n"
                       "seed: -9223372036854775808\nfaithfulness_warmup_lr: 1.0e-300\n";
    spd_config a, b;
    const char *why = NULL;
    if (spd_config_load_string(&a, text, "inline.yaml")) {
        test_report(0, "awkward strings round-trip", "%s", spd_last_error());
        return;
    }
    if (!str_is(a.wandb_run_name, "null") || !str_is(a.wandb_project, "") ||
        !str_is(a.module_info.items[0].module_pattern, "a.\"b\"\\c") ||
        !str_is(a.pretrained_model_class, "x\ty\nz \xc3\xa9 #: - [") || a.task_config.task_name != SPD_TASK_IH ||
        !a.task_config.ih.has_prefix_window || a.task_config.ih.prefix_window != 7 || a.seed != INT64_MIN ||
        a.faithfulness_warmup_lr != 1e-300)
        why = "values read wrongly";
    else if (spd_config_write_yaml(&a, tmp_path) || spd_config_load(&b, tmp_path))
        why = spd_last_error();
    else {
        if (!spd_config_equal(&a, &b)) why = "configs differ after the round trip";
        spd_config_free(&b);
    }
    test_report(why == NULL, "quotes, backslashes, control characters, UTF-8, 'null' and INT64_MIN round-trip", "%s", why);
    remove(tmp_path);
    spd_config_free(&a);
}

// ---------------------------------------------------------------- malformed configs

static int compare_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void test_bad_fixtures(void) {
    DIR *d = opendir(CONFIG_DIR);
    if (!d) {
        test_report(0, "tests/configs is readable", "cannot open " CONFIG_DIR);
        return;
    }
    char *names[256];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 256) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "bad_", 4) == 0 && len > 5 && strcmp(e->d_name + len - 5, ".yaml") == 0)
            names[n++] = spd_strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, compare_names);
    test_report(n >= 40, "at least 40 malformed-config fixtures", "found %d", n);
    for (int i = 0; i < n; i++) {
        char path[512], want[1024] = "", name[1700];
        snprintf(path, sizeof path, CONFIG_DIR "%s", names[i]);
        char *text = read_all(path);
        const char *x = text ? strstr(text, "\n# expect: ") : NULL;
        if (x) {
            x += strlen("\n# expect: ");
            size_t k = strcspn(x, "\n");
            snprintf(want, sizeof want, "%s%.*s", path, (int)k, x);
        }
        free(text);
        spd_config c;
        int rc = spd_config_load(&c, path);
        snprintf(name, sizeof name, "%s is refused: %s", names[i], want);
        test_report(rc == -1 && want[0] && strcmp(spd_last_error(), want) == 0, name, "rc %d, message: %s", rc,
                    rc ? spd_last_error() : "(none)");
        spd_config_free(&c);  // a failed load leaves a freeable, empty config
        free(names[i]);
    }
}

// Coercions that need no fixture of their own.
static void check_inline(const char *extra, const char *want_error, const char *what) {
    char text[2048];
    snprintf(text, sizeof text,
             "n_mask_samples: 1\nmodule_info: [{module_pattern: a, C: 1}]\noutput_loss_type: mse\n"
             "lr_schedule: {start_val: 0.1}\nsteps: 10\nbatch_size: 1\neval_freq: 1\nn_eval_steps: 1\n"
             "pretrained_model_class: x\ntask_config: {task_name: tms, feature_probability: 0.5}\n%s",
             extra);
    spd_config c;
    int rc = spd_config_load_string(&c, text, "inline.yaml");
    bool pass = want_error ? rc == -1 && strstr(spd_last_error(), want_error) : rc == 0;
    test_report(pass, what, "rc %d: %s", rc, rc ? spd_last_error() : "(loaded)");
    spd_config_free(&c);
}

static void test_inline(void) {
    check_inline("seed: \"12\"\n", NULL, "an int field takes a numeric string");
    check_inline("seed: \" 1_2 \"\n", NULL, "an int field takes \" 1_2 \" as pydantic does");
    check_inline("seed: 1.5e3\n", "seed: expected an integer, found \"1.5e3\"", "an int field refuses the string 1.5e3");
    check_inline("seed: 3.0\n", NULL, "an int field takes 3.0");
    check_inline("seed: \"9007199254740993\"\n", NULL, "an int field reads a numeric string exactly");
    check_inline("seed: \"99999999999999999999\"\n", "seed: expected an integer that fits in 64 bits",
                 "an int field refuses a string beyond 64 bits");
    check_inline("seed: true\n", "seed: expected an integer, found true", "an int field refuses a boolean");
    check_inline("faithfulness_warmup_lr: \"1__0\"\n", "expected a number, found \"1__0\"", "double underscores are no number");
    check_inline("faithfulness_warmup_lr: 0x10\n", NULL, "a float field takes a YAML int (0x10)");
    check_inline("faithfulness_warmup_lr: \"0x10\"\n", "expected a number, found \"0x10\"",
                 "a float field refuses the string 0x10 (Python's float() does)");
    check_inline("faithfulness_warmup_lr: nan\n", "expected a finite number", "nan is refused");
    check_inline("autocast_bf16: \"T\"\n", NULL, "a bool field takes \"T\"");
    check_inline("autocast_bf16: 2\n", "expected a boolean (true or false), found 2", "a bool field refuses 2");
    check_inline("wandb_project: 1e3\n", NULL, "a string field takes 1e3 (a string to YAML 1.1)");
    check_inline("wandb_project: 1.5\n", "wandb_project: expected a string, found 1.5", "a string field refuses a float");
    check_inline("wandb_project: 1.0e3\n", NULL, "a string field takes 1.0e3 (a string to YAML 1.1: no exponent sign)");
    check_inline("wandb_project: yes\n", "expected a string, found yes", "a string field refuses yes (a bool)");
    check_inline("output_loss_type: \"kl\"\n", "duplicate key 'output_loss_type'", "duplicate keys are refused");
    check_inline("eval_metric_configs: [{classname: CIHistograms, n_batches_accum: null, coeff: 1}]\n",
                 "eval_metric_configs[0].coeff: unknown key (expected one of: classname, n_batches_accum)",
                 "eval-only metrics take no coeff");
    check_inline("loss_metric_configs: [{classname: FaithfulnessLoss, coeff: 0}]\n", NULL, "a coeff of 0 is a coeff");
    check_inline("loss_metric_configs: [{classname: ImportanceMinimalityLoss, coeff: 1, pnorm: 1}]\n", NULL,
                 "ImportanceMinimalityLoss without beta defaults it (with a note)");
    check_inline("eval_metric_configs: [{classname: PGDMultiBatchReconSubsetLoss, init: ones, step_size: 0.1, "
                 "n_steps: 0, gradient_accumulation_steps: 2, routing: {type: static_probability, p: 0.25}}]\n",
                 NULL, "PGDMultiBatchReconSubsetLoss with a static_probability router");
    check_inline("loss_metric_configs: [{classname: PGDReconLoss, coeff: 1, init: ones, step_size: 0.1, n_steps: 1, "
                 "mask_scope: shared_across_batch, routing: {type: uniform_k_subset}}]\n",
                 "loss_metric_configs[0].routing: unknown key", "PGDReconLoss (not Subset) takes no routing");
    check_inline("module_info: [{module_pattern: b, C: 1}]\n", "duplicate key", "module_info twice is refused");
    check_inline("a: &anchor 5\nsave_freq: *anchor\n", "a: unknown key", "an anchor under an unknown key is still unknown");
    check_inline("save_freq: &s 5\nfaithfulness_warmup_steps: *s\n", NULL, "aliases are followed");
    check_inline("task_config: {task_name: lm, streaming: 1}\n", "duplicate key", "task_config twice is refused");
}

int main(void) {
    snprintf(tmp_path, sizeof tmp_path, "%s/spd_test_config_%ld.yaml", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (long)getpid());
    test_yaml_scalars();
    test_ss_llama_simple();
    test_tms();
    test_resid_mlp();
    test_defaults();
    test_numbers();
    test_migrations();
    static const char *const good[] = {CONFIG_DIR "ss_llama_simple.yaml", CONFIG_DIR "tms_5-2.yaml", CONFIG_DIR "resid_mlp1.yaml",
                                       CONFIG_DIR "minimal.yaml",         CONFIG_DIR "numbers.yaml", CONFIG_DIR "old_keys.yaml"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) test_round_trip(good[i]);
    test_string_round_trip();
    test_bad_fixtures();
    test_inline();
    return test_exit();
}
