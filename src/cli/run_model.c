// The model of a run (run_model.h), shared by spd train and spd eval. Float64.
#define SPD_F64
#include "cli/run_model.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/spec_io.h"
#include "models/identity_insertion.h"
#include "spd/identity_patterns.h"
#include "spd/target_resid_mlp.h"
#include "spd/target_tms.h"

// Config -> trainer options; unsupported parts are input errors.
void spd_train_options_from_config(const spd_config *cfg, spd_train_options *o) {
    spd_train_options_default(o);
    const spd_metric_config_list *l = &cfg->loss_metric_configs;
    if (l->count < 1) spd_die_input("%s: loss_metric_configs: spd train needs at least one loss", cfg->source);
    if (l->count > SPD_TRAIN_MAX_TERMS)
        spd_die_input("%s: loss_metric_configs: at most %d terms, found %d", cfg->source, SPD_TRAIN_MAX_TERMS, l->count);
    for (int i = 0; i < l->count; i++)
        if (spd_train_term_of_metric(&l->items[i], &o->terms[i]))
            spd_die_input("%s: loss_metric_configs[%d]: %s is not implemented by spd train yet", cfg->source, i,
                          spd_metric_class_name(l->items[i].classname));
    o->n_terms = l->count;
    if (spd_train_options_settings(cfg, o)) {
        char why[1024];
        snprintf(why, sizeof why, "%s", spd_last_error());
        spd_die_input("%s: %s", cfg->source, why);
    }
}

void spd_make_dir(const char *path) {
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

// ---------------------------------------------------------------- target files

// A state-dict entry under its bare name or with the "target_model." prefix.
static const spd_st_entry *st_find_target(const spd_st_file *f, const char *name) {
    const spd_st_entry *e = spd_st_find(f, name);
    if (e) return e;
    char buf[512];
    snprintf(buf, sizeof buf, "target_model.%s", name);
    return spd_st_find(f, buf);
}

static const spd_st_entry *st_need(const spd_st_file *f, const char *name, int ndim) {
    const spd_st_entry *e = st_find_target(f, name);
    if (!e) spd_die_input("%s: no tensor '%s' (or 'target_model.%s')", f->path, name, name);
    if (e->ndim != ndim) spd_die_input("%s: tensor '%s': expected %d dimensions, found %d", f->path, name, ndim, e->ndim);
    return e;
}

static int st_count_layers(const spd_st_file *f, const char *fmt) {
    char buf[256];
    int n = 0;
    for (;; n++) {
        snprintf(buf, sizeof buf, fmt, n);
        if (!st_find_target(f, buf)) return n;
    }
}

// Sizes (and tiedness) of a TMS state dict.
static void tms_config_from_file(const spd_st_file *f, tms_config *c) {
    const spd_st_entry *w1 = st_need(f, "linear1.weight", 2);
    *c = (tms_config){.n_features = (int)w1->shape[1], .n_hidden = (int)w1->shape[0]};
    c->n_hidden_layers = st_count_layers(f, "hidden_layers.%d.weight");
    const spd_st_entry *w2 = st_find_target(f, "linear2.weight");
    if (!w2) {
        c->tied_weights = true;
        return;
    }
    int64_t n = (int64_t)c->n_features * c->n_hidden;
    double *a = spd_malloc((size_t)n * sizeof *a), *b = spd_malloc((size_t)n * sizeof *b);
    int64_t s2[2] = {c->n_features, c->n_hidden};
    if (spd_st_read(f, w1->name, SPD_DTYPE_F64, -1, NULL, a) ||
        spd_st_read(f, w2->name, SPD_DTYPE_F64, 2, s2, b))
        spd_die_input("%s", spd_last_error());
    c->tied_weights = true;
    for (int i = 0; i < c->n_hidden && c->tied_weights; i++)  // a [H, F], b [F, H]
        for (int j = 0; j < c->n_features; j++)
            if (a[(int64_t)i * c->n_features + j] != b[(int64_t)j * c->n_hidden + i]) {
                c->tied_weights = false;
                break;
            }
    free(a);
    free(b);
}

static void resid_config_from_file(const spd_st_file *f, resid_mlp_config *c) {
    const spd_st_entry *we = st_need(f, "W_E", 2);
    c->n_features = (int)we->shape[0];
    c->d_embed = (int)we->shape[1];
    c->n_layers = st_count_layers(f, "layers.%d.mlp_in.weight");
    if (c->n_layers < 1) spd_die_input("%s: no tensor 'layers.0.mlp_in.weight'", f->path);
    c->d_mlp = (int)st_need(f, "layers.0.mlp_in.weight", 2)->shape[0];
    c->in_bias = st_find_target(f, "layers.0.mlp_in.bias") != NULL;
    c->out_bias = st_find_target(f, "layers.0.mlp_out.bias") != NULL;
}

// Every FROZEN target_model.* tensor of spec from f (skip: a name the file may lack).
static void load_target(const spd_spec *spec, const spd_st_file *f, const char *skip) {
    for (int i = 0; i < spec->count; i++) {
        spd_tensor *t = &spec->tensors[i];
        if (t->role != SPD_ROLE_FROZEN || strncmp(t->name, "target_model.", 13) != 0) continue;
        if (skip && strcmp(t->name + 13, skip) == 0 && !st_find_target(f, skip)) continue;
        if (spd_spec_load_tensor(spec, f, t)) spd_die_input("%s", spd_last_error());
    }
}

bool spd_is_safetensors(const char *p) {
    size_t n = p ? strlen(p) : 0;
    return n > 12 && strcmp(p + n - 12, ".safetensors") == 0;
}


// ---------------------------------------------------------------- the model

void spd_run_check_config(const spd_config *cfg, const char *label) {
    spd_task_name task = cfg->task_config.task_name;
    if (task == SPD_TASK_LM || task == SPD_TASK_IH)
        spd_die_input("%s: task_config.task_name: %s: LM data loading is not built yet; spd train runs tms and "
                      "resid_mlp", label, spd_task_name_name(task));
    const spd_toy_task_config *toy = task == SPD_TASK_TMS ? &cfg->task_config.tms : &cfg->task_config.resid_mlp;
    spd_toy_generation gen;
    if (spd_toy_generation_parse(spd_data_generation_type_name(toy->data_generation_type), &gen))
        spd_die_input("%s: task_config.data_generation_type: %s", label, spd_last_error());
    if (cfg->batch_size > (1 << 24)) spd_die_input("%s: batch_size: at most %d for spd train", label, 1 << 24);
    if (cfg->steps < 1) spd_die_input("%s: steps: spd train needs steps >= 1, found %" PRId64, label, cfg->steps);
}

// 1. The target (frozen): its sizes from the file when there is one.
static void declare_target(spd_run_model *m, const char *label, const spd_st_file *tf, const spd_target_args *ta,
                           int B) {
    m->tcfg = (tms_config){.n_features = ta->F, .n_hidden = ta->H, .n_hidden_layers = ta->L,
                           .tied_weights = ta->tied};
    m->rcfg = (resid_mlp_config){.n_features = ta->F, .d_embed = ta->d_embed, .d_mlp = ta->d_mlp,
                                 .n_layers = ta->n_layers, .act = ta->act, .in_bias = true, .out_bias = true};
    if (m->task == SPD_TASK_TMS) {
        if (tf) tms_config_from_file(tf, &m->tcfg);
        if (spd_tms_config_check(&m->tcfg)) spd_die_input("%s: %s", label, spd_last_error());
        tms_options topt = {.B = B, .prefix = "target_model."};
        tms_declare_f64(&m->tms, &m->spec, &m->tcfg, &topt);
        m->tg = spd_target_tms_f64(&m->tms);
        m->F = m->tcfg.n_features;
    } else {
        if (tf) {
            resid_config_from_file(tf, &m->rcfg);
            const char *act = spd_st_meta(tf, "act_fn_name");
            if (act && strcmp(act, "gelu") == 0) m->rcfg.act = RESID_MLP_GELU;
            else if (act && strcmp(act, "relu") == 0) m->rcfg.act = RESID_MLP_RELU;
        }
        if (spd_resid_mlp_config_check(&m->rcfg, RESID_EMBED_DEFAULT)) spd_die_input("%s: %s", label, spd_last_error());
        resid_mlp_options ropt = {.B = B, .prefix = "target_model."};
        resid_mlp_declare_f64(&m->rm, &m->spec, &m->rcfg, &ropt);
        m->tg = spd_target_resid_mlp_f64(&m->rm);
        m->F = m->rcfg.n_features;
    }
}

// Module patterns (SPD's all_module_info: module_info, then the identity patterns
// + ".pre_identity") -> decomposed sites, candidates in named_modules order
// (a pattern matching nothing is an error naming it).
static void select_modules(spd_run_model *m, const spd_config *cfg, const char *label) {
    const int n_model_sites = m->task == SPD_TASK_TMS ? m->tms.n_sites : m->rm.n_sites;
    const spd_target *tg = &m->tg;
    int *order = spd_malloc((size_t)tg->n_sites * sizeof *order);
    identity_named_order_f64(tg->sites, n_model_sites, tg->n_sites - n_model_sites, order);
    m->paths = spd_malloc((size_t)tg->n_sites * sizeof *m->paths);
    for (int i = 0; i < tg->n_sites; i++) m->paths[i] = tg->sites[order[i]].path;
    free(order);
    spd_module_pattern *mi_pats = spd_calloc((size_t)cfg->module_info.count + 1, sizeof *mi_pats);
    for (int i = 0; i < cfg->module_info.count; i++) {
        mi_pats[i].pattern = cfg->module_info.items[i].module_pattern;
        mi_pats[i].C = (int)cfg->module_info.items[i].C;
    }
    spd_all_module_patterns(mi_pats, cfg->module_info.count, m->id_pats, m->n_id_pats, &m->pats, &m->n_pats);
    free(mi_pats);
    if (spd_select_modules(m->paths, tg->n_sites, m->pats, m->n_pats, &m->chosen, &m->n_chosen))
        spd_die_input("%s: module_info: %s", label, spd_last_error());
    m->site = spd_malloc((size_t)m->n_chosen * sizeof *m->site);
    m->C = spd_malloc((size_t)m->n_chosen * sizeof *m->C);
    for (int i = 0; i < m->n_chosen; i++) {
        for (int k = 0; k < tg->n_sites; k++)
            if (strcmp(tg->sites[k].path, m->chosen[i].path) == 0) m->site[i] = k;
        m->C[i] = m->chosen[i].C;
    }
}

void spd_run_model_build(spd_run_model *m, const spd_config *cfg, const char *label, const spd_st_file *tf,
                         const char *tpath, const spd_target_args *ta, int B, const spd_train_options *opt) {
    memset(m, 0, sizeof *m);
    m->task = cfg->task_config.task_name;
    spd_spec_init(&m->spec);
    declare_target(m, label, tf, ta, B);

    // Identity insertion (identity_module_info, models/identity_insertion.h): the
    // identities become sites after the model's, "<module>.pre_identity".
    // Kept to the end: the GPU twin inserts the same identities.
    m->id_pats = spd_identity_patterns(cfg, &m->n_id_pats);
    if (m->n_id_pats) {
        int irc = m->task == SPD_TASK_TMS ? tms_insert_identity_f64(&m->tms, &m->spec, m->id_pats, m->n_id_pats)
                                          : resid_mlp_insert_identity_f64(&m->rm, &m->spec, m->id_pats, m->n_id_pats);
        if (irc) spd_die_input("%s: %s", label, spd_last_error());
        m->tg = m->task == SPD_TASK_TMS ? spd_target_tms_f64(&m->tms) : spd_target_resid_mlp_f64(&m->rm);
    }
    select_modules(m, cfg, label);
    if (!tf)  // after the checks above, so that an input error stays the only line on stderr
        fprintf(stderr, "note: pretrained_model_path %s%s%s: not a .safetensors file; the target is random "
                        "(--target-seed %" PRIu64 ")\n",
                tpath ? "'" : "", tpath ? tpath : "is null", tpath ? "'" : "", ta->target_seed);
    if (spd_trainer_declare_f64(&m->tr, &m->spec, opt, &m->tg, m->site, m->C, m->n_chosen))
        spd_die_input("%s: %s", label, spd_last_error());

    // Tied components (TMS with a tied target, both linear1 and linear2 decomposed).
    m->tie = (spd_tied_pair){-1, -1};
    if (m->task == SPD_TASK_TMS && m->tcfg.tied_weights) {
        for (int i = 0; i < m->n_chosen; i++) {
            if (m->site[i] == TMS_LINEAR1) m->tie.src = i;
            if (m->site[i] == TMS_LINEAR2) m->tie.tgt = i;
        }
        if (m->tie.src >= 0 && m->tie.tgt >= 0) m->n_ties = 1;
        else fprintf(stderr, "note: tied target but linear1 and linear2 are not both decomposed: components untied\n");
    }

    spd_spec_alloc(&m->spec);
    if (m->task == SPD_TASK_TMS) {
        tms_bind_f64(&m->tms, &m->spec);
        if (tf) {
            load_target(&m->spec, tf, m->tcfg.tied_weights ? "linear2.weight" : NULL);
            if (m->tcfg.tied_weights) tms_tie_weights_f64(&m->tms);
        } else tms_init_params_f64(&m->tms, ta->target_seed);
        m->tg = spd_target_tms_f64(&m->tms);
        m->x = m->tms.x;
    } else {
        resid_mlp_bind_f64(&m->rm, &m->spec);
        if (tf) load_target(&m->spec, tf, NULL);
        else resid_mlp_init_params_f64(&m->rm, ta->target_seed);
        m->tg = spd_target_resid_mlp_f64(&m->rm);
        m->x = m->rm.x;
    }
    spd_trainer_bind_f64(&m->tr, &m->tg);
    if (m->n_ties && spd_tied_check_f64(&m->tr, &m->tie, m->n_ties))
        spd_die_input("%s: tied components: %s", label, spd_last_error());
}

void spd_run_model_load_trained(spd_run_model *m, const spd_st_file *mf, const char *what) {
    for (int i = 0; i < m->spec.count; i++) {
        spd_tensor *t = &m->spec.tensors[i];
        if (t->role != SPD_ROLE_TRAINED) continue;
        if (!spd_st_find(mf, t->name)) spd_die_input("%s: %s: no tensor '%s'", what, mf->path, t->name);
        if (spd_spec_load_tensor(&m->spec, mf, t)) spd_die_input("%s: %s", what, spd_last_error());
    }
}

void spd_run_model_check_names(const spd_run_model *m, const spd_st_file *f, const char *what) {
    char buf[SPD_NAME_MAX + 32];
    for (int i = 0; i < f->count; i++) {
        const char *name = f->entries[i].name;
        if (spd_spec_find(&m->spec, name)) continue;
        snprintf(buf, sizeof buf, "target_model.%s", name);  // a bare target state-dict name
        if (strncmp(name, "_", 1) != 0 && spd_spec_find(&m->spec, buf)) continue;
        bool bias = false;  // _components.<dashed>.bias: the target module's bias, registered twice
        for (int l = 0; l < m->tr.n_mods && !bias; l++) {
            snprintf(buf, sizeof buf, "_components.%s.bias", m->tr.mods[l].comp.dashed);
            if (strcmp(buf, name) != 0) continue;
            snprintf(buf, sizeof buf, "target_model.%s.bias", m->tg.sites[m->tr.mods[l].site].path);
            bias = spd_spec_find(&m->spec, buf) != NULL;
        }
        if (!bias)
            spd_die_input("%s: %s: unexpected tensor '%s' (the model that the config builds has no such "
                          "parameter)", what, f->path, name);
    }
}

void spd_run_model_data(const spd_run_model *m, const spd_config *cfg, const char *label, spd_toy_data *data) {
    const spd_toy_task_config *toy = m->task == SPD_TASK_TMS ? &cfg->task_config.tms : &cfg->task_config.resid_mlp;
    spd_toy_generation gen;
    if (spd_toy_generation_parse(spd_data_generation_type_name(toy->data_generation_type), &gen))
        spd_die_input("%s: task_config.data_generation_type: %s", label, spd_last_error());
    int drc = m->task == SPD_TASK_TMS
                  ? spd_toy_data_init_tms(data, m->F, toy->feature_probability, gen, (uint64_t)cfg->seed)
                  : spd_toy_data_init_resid_mlp(data, m->F, toy->feature_probability, gen, (uint64_t)cfg->seed);
    if (drc) spd_die_input("%s: task_config: %s", label, spd_last_error());
}

void spd_run_model_free(spd_run_model *m) {
    spd_trainer_free_f64(&m->tr);
    if (m->task == SPD_TASK_TMS) tms_free_f64(&m->tms);
    else resid_mlp_free_f64(&m->rm);
    spd_spec_free(&m->spec);
    spd_module_choices_free(m->chosen, m->n_chosen);
    free(m->paths);
    spd_module_patterns_free(m->pats, m->n_pats);
    free(m->site);
    free(m->C);
    free(m->id_pats);
}

void spd_run_dir_path(char *dir, size_t dir_size, char *run_id, size_t id_size) {
    uint32_t rid = (uint32_t)time(NULL) ^ ((uint32_t)getpid() << 16) ^ (uint32_t)clock();
    snprintf(run_id, id_size, "s-%08x", rid);
    const char *root = getenv("SPD_OUT_DIR");
    char home_root[4096];
    if (!root || !*root) {
        const char *home = getenv("HOME");
        snprintf(home_root, sizeof home_root, "%s/spd_out", home ? home : ".");
        root = home_root;
    }
    int n = snprintf(dir, dir_size, "%s/spd/%s", root, run_id);
    if (n < 0 || n >= (int)dir_size) spd_die_input("SPD_OUT_DIR too long");
}
