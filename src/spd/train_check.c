// spd check for spd-ref-train-v1 files (see spd/train_check.h). Float64 CPU
// only: the float64 API of the library (SPD_F64 before the headers), so this
// file is compiled once, like the CLI sources.
#define SPD_F64
#include "spd/train_check.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/spec.h"
#include "core/spec_io.h"
#include "models/module_select.h"
#include "models/llama_simple.h"
#include "models/resid_mlp.h"
#include "models/tms.h"
#include "spd/config.h"
#include "spd/faithfulness_warmup.h"
#include "spd/identity_patterns.h"
#include "spd/schedule.h"
#include "spd/target_llama.h"
#include "spd/target_resid_mlp.h"
#include "spd/target_tms.h"
#include "spd/tied.h"
#include "spd/train.h"
#include "spd/train_gpu.h"

#define STEP_BOUND 1e-8   // one step, float64: summation order only
#define RUN_BOUND 1e-6    // per-step losses and final parameters of a multi-step run
// --device cuda (float32 on the GPU against float64 expectations; docs/spd-ref-train-v1.md).
#define GPU_STEP_BOUND 1e-4
#define GPU_RUN_BOUND 1e-4

// The run's precision label and bounds (one file is checked at a time).
static struct {
    const char *dtype;
    double step, run;
} mode = {"float64", STEP_BOUND, RUN_BOUND};
#define NAME_CAP (SPD_NAME_MAX + 128)

// ---- what spd.c does not implement yet ------------------------------------------------

typedef struct {
    char first_term[128];  // the first loss term spd.c lacks ("" if none)
    char list[2048];       // everything missing, comma-separated
    int count;
} missing_list;

static void add_missing(missing_list *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_missing(missing_list *m, const char *fmt, ...) {
    size_t len = strlen(m->list);
    if (m->count && len + 2 < sizeof m->list) {
        strcat(m->list, ", ");
        len += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->list + len, sizeof m->list - len, fmt, ap);
    va_end(ap);
    m->count++;
}

// One line: "FILE: loss term 'X' is not implemented in spd.c yet (also missing: ...)",
// or "FILE: not implemented in spd.c yet: ..." when every term is there.
static int refuse_missing(const spd_st_file *f, const missing_list *m) {
    if (m->first_term[0]) {
        if (m->count == 1)
            return spd_set_error("%s: loss term '%s' is not implemented in spd.c yet", f->path, m->first_term);
        return spd_set_error("%s: loss term '%s' is not implemented in spd.c yet (all missing: %s)", f->path,
                             m->first_term, m->list);
    }
    return spd_set_error("%s: not implemented in spd.c yet: %s", f->path, m->list);
}

// ---- header ---------------------------------------------------------------------------

typedef struct {
    char path[SPD_NAME_MAX];
    int C;
} ref_module;

typedef struct {
    spd_config cfg;
    bool cfg_loaded;
    cJSON *target, *modules_json, *loss_terms, *tied;
    ref_module *modules;
    int n_modules;
    bool multi;
    int64_t step;       // single-step files
    int64_t steps_run;  // multi-step files
} ref_header;

static void header_free(ref_header *h) {
    if (h->cfg_loaded) spd_config_free(&h->cfg);
    cJSON_Delete(h->target);
    cJSON_Delete(h->modules_json);
    cJSON_Delete(h->loss_terms);
    cJSON_Delete(h->tied);
    free(h->modules);
    memset(h, 0, sizeof *h);
}

static const char *require_meta(const spd_st_file *f, const char *key) {
    const char *v = spd_st_meta(f, key);
    if (!v) spd_set_error("%s: __metadata__.%s: missing (an %s file needs it)", f->path, key, SPD_REF_TRAIN_FORMAT);
    return v;
}

static cJSON *parse_json_meta(const spd_st_file *f, const char *key, bool (*is)(const cJSON *), const char *what) {
    const char *v = require_meta(f, key);
    if (!v) return NULL;
    cJSON *j = cJSON_Parse(v);
    if (!j || !is(j)) {
        cJSON_Delete(j);
        spd_set_error("%s: __metadata__.%s: expected %s", f->path, key, what);
        return NULL;
    }
    return j;
}

static bool is_array(const cJSON *j) { return cJSON_IsArray(j); }
static bool is_object(const cJSON *j) { return cJSON_IsObject(j); }
static bool is_any(const cJSON *j) { return j != NULL; }

static int parse_int_meta(const spd_st_file *f, const char *key, int64_t lo, int64_t hi, int64_t *out) {
    const char *v = require_meta(f, key);
    if (!v) return -1;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return spd_set_error("%s: __metadata__.%s: expected an integer in [%" PRId64 ", %" PRId64 "], found \"%s\"",
                             f->path, key, lo, hi, v);
    *out = x;
    return 0;
}

static int read_header(const spd_st_file *f, ref_header *h) {
    memset(h, 0, sizeof *h);
    const char *format = require_meta(f, "format");
    if (!format) return -1;
    if (strcmp(format, SPD_REF_TRAIN_FORMAT) != 0)
        return spd_set_error("%s: __metadata__.format: expected \"%s\", found \"%s\"", f->path, SPD_REF_TRAIN_FORMAT,
                             format);
    const char *dtype = require_meta(f, "dtype");
    if (!dtype) return -1;
    if (strcmp(dtype, "float64") != 0)
        return spd_set_error("%s: __metadata__.dtype: expected \"float64\", found \"%s\"", f->path, dtype);
    const char *config = require_meta(f, "config");
    if (!config) return -1;
    char source[4096];
    snprintf(source, sizeof source, "%s: __metadata__.config", f->path);
    if (spd_config_load_string(&h->cfg, config, source)) return -1;
    h->cfg_loaded = true;
    if (!(h->target = parse_json_meta(f, "target_config", is_object, "a JSON object"))) return -1;
    if (!(h->modules_json = parse_json_meta(f, "modules", is_array, "a JSON list of {\"path\", \"C\"}"))) return -1;
    if (!(h->loss_terms = parse_json_meta(f, "loss_terms", is_array, "a JSON list of strings"))) return -1;
    if (!(h->tied = parse_json_meta(f, "tied_weights", is_any, "null or a JSON list of [src, tgt] pairs"))) return -1;
    int n = cJSON_GetArraySize(h->modules_json);
    if (n < 1) return spd_set_error("%s: __metadata__.modules: expected at least one module", f->path);
    h->modules = spd_calloc((size_t)n, sizeof *h->modules);
    const cJSON *item;
    cJSON_ArrayForEach(item, h->modules_json) {
        const cJSON *path = cJSON_GetObjectItemCaseSensitive(item, "path");
        const cJSON *C = cJSON_GetObjectItemCaseSensitive(item, "C");
        if (!cJSON_IsString(path) || strlen(path->valuestring) >= SPD_NAME_MAX || !cJSON_IsNumber(C) ||
            C->valuedouble != floor(C->valuedouble) || C->valuedouble < 1 || C->valuedouble > 1e8)
            return spd_set_error("%s: __metadata__.modules[%d]: expected {\"path\": string, \"C\": positive integer}",
                                 f->path, h->n_modules);
        snprintf(h->modules[h->n_modules].path, SPD_NAME_MAX, "%s", path->valuestring);
        h->modules[h->n_modules++].C = (int)C->valuedouble;
    }
    int n_terms = cJSON_GetArraySize(h->loss_terms);
    if (n_terms != h->cfg.loss_metric_configs.count)
        return spd_set_error("%s: __metadata__.loss_terms: %d keys for %d loss_metric_configs", f->path, n_terms,
                             h->cfg.loss_metric_configs.count);
    cJSON_ArrayForEach(item, h->loss_terms) {
        if (!cJSON_IsString(item) || strlen(item->valuestring) > 200)
            return spd_set_error("%s: __metadata__.loss_terms: expected a JSON list of strings", f->path);
    }
    h->multi = spd_st_meta(f, "steps_run") != NULL;
    if (h->multi) {
        if (parse_int_meta(f, "steps_run", 1, 1000000, &h->steps_run)) return -1;
    } else if (parse_int_meta(f, "step", 0, INT64_C(1) << 40, &h->step)) {
        return -1;
    }
    return 0;
}

static int json_int(const spd_st_file *f, const cJSON *obj, const char *key, int lo, int hi, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi)
        return spd_set_error("%s: __metadata__.target_config.%s: expected an integer in [%d, %d]", f->path, key, lo,
                             hi);
    *out = (int)v->valuedouble;
    return 0;
}

// ---- options from the config (as spd train does; missing pieces collected) ------------

static int options_from_config(const spd_st_file *f, const spd_config *cfg, spd_train_options *o, missing_list *miss) {
    spd_train_options_default(o);
    const spd_metric_config_list *l = &cfg->loss_metric_configs;
    if (l->count < 1) return spd_set_error("%s: config: loss_metric_configs is empty", f->path);
    if (l->count > SPD_TRAIN_MAX_TERMS)
        return spd_set_error("%s: config: loss_metric_configs: at most %d terms, found %d", f->path,
                             SPD_TRAIN_MAX_TERMS, l->count);
    for (int i = 0; i < l->count; i++) {
        const spd_metric_config *mc = &l->items[i];
        const char *cls = spd_metric_class_name(mc->classname);
        if (spd_train_term_of_metric(mc, &o->terms[i])) {
            if (!miss->first_term[0]) snprintf(miss->first_term, sizeof miss->first_term, "%s", cls);
            add_missing(miss, "loss term '%s'", cls);
        }
    }
    o->n_terms = l->count;
    if (spd_train_options_settings(cfg, o)) {
        char why[1024];
        snprintf(why, sizeof why, "%s", spd_last_error());
        return spd_set_error("%s: config: %s", f->path, why);
    }
    return 0;
}

// ---- the draw source: the file's draws.* tensors ---------------------------------------

typedef struct {
    const spd_st_file *f;
    const spd_trainer *t;
    bool multi;
    bool *used;          // [f->count]
    char error[2048];    // the first problem ("" if none)
} draw_ctx;

static void draw_fill(void *vctx, real *out, long n, spd_rng_purpose purpose, int64_t step, int term, int sample,
                      int module) {
    draw_ctx *d = vctx;
    memset(out, 0, (size_t)n * sizeof *out);
    if (d->error[0]) return;
    char prefix[64], name[NAME_CAP];
    if (d->multi) snprintf(prefix, sizeof prefix, "draws.step%" PRId64 ".", step);
    else snprintf(prefix, sizeof prefix, "draws.");
    if (purpose == SPD_RNG_ROUTING && module == SPD_DRAW_ROUTING_K) {  // uniform_k_subset's k, stored as I64
        snprintf(name, sizeof name, "%s%d.%d.routing.k", prefix, term, sample);
        const spd_st_entry *e = spd_st_find(d->f, name);
        if (!e || spd_numel(e->ndim, e->shape) != n) {
            snprintf(d->error, sizeof d->error, "%s: the step asked for draw '%s' (%ld values), which the file %s",
                     d->f->path, name, n, e ? "has in another size" : "does not have");
            return;
        }
        int64_t *k = spd_malloc((size_t)(n ? n : 1) * sizeof *k);
        if (spd_st_read(d->f, name, SPD_DTYPE_I64, -1, NULL, k)) snprintf(d->error, sizeof d->error, "%s", spd_last_error());
        else
            for (long i = 0; i < n; i++) out[i] = (double)k[i];
        free(k);
        d->used[e - d->f->entries] = true;
        return;
    }
    if (module < 0 || module >= d->t->n_mods) {
        snprintf(d->error, sizeof d->error, "%s: the step asked for a draw of module %d (%d modules)", d->f->path,
                 module, d->t->n_mods);
        return;
    }
    const char *dashed = d->t->mods[module].comp.dashed;
    const char *what = NULL;
    switch (purpose) {
    case SPD_RNG_CI_JITTER: snprintf(name, sizeof name, "%sci_jitter.%s", prefix, dashed); break;
    case SPD_RNG_MASK: what = "r"; break;
    case SPD_RNG_DELTA_MASK: what = "delta"; break;
    case SPD_RNG_PGD_INIT: what = "pgd_init"; break;
    case SPD_RNG_ROUTING:  // uniform_k_subset's rank noise, or static_probability's u
        snprintf(name, sizeof name, "%s%d.%d.%s.route_noise", prefix, term, sample, dashed);
        what = spd_st_find(d->f, name) ? "route_noise" : "route_u";
        break;
    default:
        snprintf(d->error, sizeof d->error,
                 "%s: the step asked for a draw of purpose %d (term %d, sample %d, module %s), which spd check "
                 "cannot serve from an %s file yet",
                 d->f->path, (int)purpose, term, sample, dashed, SPD_REF_TRAIN_FORMAT);
        return;
    }
    if (what) snprintf(name, sizeof name, "%s%d.%d.%s.%s", prefix, term, sample, dashed, what);
    const spd_st_entry *e = spd_st_find(d->f, name);
    if (!e) {
        snprintf(d->error, sizeof d->error, "%s: the step asked for draw '%s' (%ld values), which the file does not have",
                 d->f->path, name, n);
        return;
    }
    int64_t numel = spd_numel(e->ndim, e->shape);
    if (numel != n) {
        snprintf(d->error, sizeof d->error, "%s: tensor '%s': the step asked for %ld values, the file has %" PRId64,
                 d->f->path, name, n, numel);
        return;
    }
    if (spd_st_read(d->f, name, SPD_DTYPE_F64, -1, NULL, out)) {
        snprintf(d->error, sizeof d->error, "%s", spd_last_error());
        return;
    }
    d->used[e - d->f->entries] = true;
}

// ---- comparison -------------------------------------------------------------------------

// Compares n values with the stored expectation `name`; prints one row; returns 1 on
// failure. A missing or misshapen expectation sets *input_error.
static int compare(const spd_st_file *f, FILE *out, double bound, const char *name, const double *got, int64_t n,
                   int *input_error) {
    if (*input_error) return 0;
    const spd_st_entry *e = spd_st_find(f, name);
    if (!e) {
        spd_set_error("%s: tensor '%s' is missing", f->path, name);
        *input_error = 1;
        return 0;
    }
    if (spd_numel(e->ndim, e->shape) != n) {
        spd_set_error("%s: tensor '%s': expected %" PRId64 " values, found %" PRId64, f->path, name, n,
                      spd_numel(e->ndim, e->shape));
        *input_error = 1;
        return 0;
    }
    double *want = spd_malloc((size_t)(n ? n : 1) * sizeof *want);
    if (spd_st_read(f, name, SPD_DTYPE_F64, -1, NULL, want)) {
        free(want);
        *input_error = 1;
        return 0;
    }
    double max_diff = 0, max_ref = 0, num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double dd = fabs(got[i] - want[i]);
        if (!(dd <= max_diff)) max_diff = dd;  // NaN propagates
        if (fabs(want[i]) > max_ref) max_ref = fabs(want[i]);
        num += dd * dd;
        den += want[i] * want[i];
    }
    free(want);
    double max_rel = max_diff / fmax(max_ref, 1e-300);
    double norm_rel = den > 0 ? sqrt(num / den) : sqrt(num);
    int fail = !(norm_rel <= bound);
    fprintf(out, "%-8s %-52s %12.3e %12.3e %8.0e  %s\n", mode.dtype, name, max_rel, norm_rel, bound,
            fail ? "FAIL" : "ok");
    return fail;
}

// ---- the check --------------------------------------------------------------------------

// The target model of a file: TMS, ResidMLP or LlamaSimple.
typedef enum { TARGET_NONE, TARGET_TMS, TARGET_RESID_MLP, TARGET_LLAMA } target_kind;

typedef struct {
    target_kind kind;
    tms_model tms;
    resid_mlp_model rm;
    llama_model ll;
    int B, T;          // batch rows; positions per row (LlamaSimple; 1 otherwise)
    int n_features;    // toy models' input width
    linear_site *sites;
    int n_sites;
} target_holder;

static int config_error(const spd_st_file *f, const char *what) {
    char why[1024];
    snprintf(why, sizeof why, "%s", spd_last_error());
    return spd_set_error("%s: %s: %s", f->path, what, why);
}

// SPD's identity insertion (config.identity_module_info) into the declared target;
// th->sites then ends with the inserted identities.
static int insert_identities(const spd_st_file *f, const ref_header *h, target_holder *th, spd_spec *spec) {
    int n;
    spd_module_pattern *p = spd_identity_patterns(&h->cfg, &n);
    if (n == 0) return 0;
    int rc;
    switch (th->kind) {
    case TARGET_TMS:
        rc = tms_insert_identity_f64(&th->tms, spec, p, n);
        th->sites = th->tms.sites;
        th->n_sites = th->tms.n_sites + th->tms.n_identity;
        break;
    case TARGET_RESID_MLP:
        rc = resid_mlp_insert_identity_f64(&th->rm, spec, p, n);
        th->sites = th->rm.sites;
        th->n_sites = th->rm.n_sites + th->rm.n_identity;
        break;
    default:
        rc = llama_insert_identity_f64(&th->ll, spec, p, n);
        th->sites = th->ll.sites;
        th->n_sites = th->ll.n_sites + th->ll.n_identity;
        break;
    }
    free(p);
    return rc ? config_error(f, "config") : 0;
}

// Declares the target's tensors (FROZEN, "target_model.*") into spec, and
// inserts the configured identities.
static int target_declare(const spd_st_file *f, const ref_header *h, target_holder *th, spd_spec *spec,
                          const char *batch_name) {
    const char *mt = cJSON_GetObjectItemCaseSensitive(h->target, "model_type")->valuestring;
    const spd_st_entry *batch = spd_st_find(f, batch_name);
    if (!batch) return spd_set_error("%s: tensor '%s' is missing", f->path, batch_name);
    th->B = (int)h->cfg.batch_size;
    th->T = 1;
    if (strcmp(mt, "TMSModel") == 0) {
        tms_config c = {0};
        if (json_int(f, h->target, "n_features", 1, 1 << 20, &c.n_features) ||
            json_int(f, h->target, "n_hidden", 1, 1 << 20, &c.n_hidden) ||
            json_int(f, h->target, "n_hidden_layers", 0, 64, &c.n_hidden_layers))
            return -1;
        c.tied_weights = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(h->target, "tied_weights"));
        if (spd_tms_config_check(&c)) return config_error(f, "__metadata__.target_config");
        tms_options o = {.B = th->B, .prefix = "target_model."};
        tms_declare_f64(&th->tms, spec, &c, &o);
        th->kind = TARGET_TMS;
        th->n_features = c.n_features;
        th->sites = th->tms.sites;
        th->n_sites = th->tms.n_sites;
    } else if (strcmp(mt, "ResidMLP") == 0) {
        resid_mlp_config c = {0};
        if (json_int(f, h->target, "n_features", 1, 1 << 20, &c.n_features) ||
            json_int(f, h->target, "d_embed", 1, 1 << 20, &c.d_embed) ||
            json_int(f, h->target, "d_mlp", 1, 1 << 20, &c.d_mlp) ||
            json_int(f, h->target, "n_layers", 1, 64, &c.n_layers))
            return -1;
        const cJSON *act = cJSON_GetObjectItemCaseSensitive(h->target, "act_fn_name");
        if (!cJSON_IsString(act) || (strcmp(act->valuestring, "relu") && strcmp(act->valuestring, "gelu")))
            return spd_set_error("%s: __metadata__.target_config.act_fn_name: expected \"relu\" or \"gelu\"", f->path);
        c.act = strcmp(act->valuestring, "relu") == 0 ? RESID_MLP_RELU : RESID_MLP_GELU;
        c.in_bias = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(h->target, "in_bias"));
        c.out_bias = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(h->target, "out_bias"));
        if (spd_resid_mlp_config_check(&c, RESID_EMBED_DEFAULT)) return config_error(f, "__metadata__.target_config");
        resid_mlp_options o = {.B = th->B, .prefix = "target_model."};
        resid_mlp_declare_f64(&th->rm, spec, &c, &o);
        th->kind = TARGET_RESID_MLP;
        th->n_features = c.n_features;
        th->sites = th->rm.sites;
        th->n_sites = th->rm.n_sites;
    } else if (strcmp(mt, "LlamaSimple") == 0) {
        llama_config c;
        char *json = cJSON_PrintUnformatted(h->target);
        char source[4096];
        snprintf(source, sizeof source, "%s: __metadata__", f->path);
        int rc = llama_config_from_json(&c, json, source);
        free(json);
        if (rc) return -1;
        if (batch->ndim != 2 || batch->shape[0] != th->B || batch->shape[1] < 1 || batch->shape[1] > c.n_ctx)
            return spd_set_error("%s: tensor '%s': expected token ids [batch_size %d, T] with 1 <= T <= n_ctx %d",
                                 f->path, batch_name, th->B, c.n_ctx);
        th->T = (int)batch->shape[1];
        llama_declare_f64(&th->ll, spec, &c, th->B, th->T, spd_st_find(f, "target_model.lm_head.weight") != NULL);
        th->kind = TARGET_LLAMA;
        th->sites = th->ll.sites;
        th->n_sites = th->ll.n_sites;
    } else {
        return spd_set_error("%s: __metadata__.target_config.model_type: expected \"TMSModel\", \"ResidMLP\" or "
                             "\"LlamaSimple\", found \"%s\"", f->path, mt);
    }
    return insert_identities(f, h, th, spec);
}

static spd_target target_of(target_holder *th) {
    switch (th->kind) {
    case TARGET_TMS: return spd_target_tms_f64(&th->tms);
    case TARGET_RESID_MLP: return spd_target_resid_mlp_f64(&th->rm);
    default: return spd_target_llama_f64(&th->ll);
    }
}

static void target_bind(target_holder *th, const spd_spec *spec) {
    switch (th->kind) {
    case TARGET_TMS: tms_bind_f64(&th->tms, spec); break;
    case TARGET_RESID_MLP: resid_mlp_bind_f64(&th->rm, spec); break;
    case TARGET_LLAMA: llama_bind_f64(&th->ll, spec); break;
    default: break;
    }
}

static void target_free(target_holder *th) {
    switch (th->kind) {
    case TARGET_TMS: tms_free_f64(&th->tms); break;
    case TARGET_RESID_MLP: resid_mlp_free_f64(&th->rm); break;
    case TARGET_LLAMA: llama_free_f64(&th->ll); break;
    default: break;
    }
}

// The batch into the target's input (features, or token ids checked against the vocabulary).
static int target_load_batch(const spd_st_file *f, target_holder *th, const char *name) {
    if (th->kind != TARGET_LLAMA) {
        double *x = th->kind == TARGET_TMS ? th->tms.x : th->rm.x;
        return spd_st_read(f, name, SPD_DTYPE_F64, 2, (int64_t[]){th->B, th->n_features}, x);
    }
    llama_model *m = &th->ll;
    if (spd_st_read(f, name, SPD_DTYPE_I32, 2, (int64_t[]){th->B, th->T}, m->tokens)) return -1;
    for (int n = 0; n < m->N; n++)
        if (m->tokens[n] < 0 || m->tokens[n] >= m->cfg.vocab_size)
            return spd_set_error("%s: tensor '%s': element %d is %d, outside [0, vocab_size %d)", f->path, name, n,
                                 m->tokens[n], m->cfg.vocab_size);
    return 0;
}

static bool starts_with(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

static bool tied_pairs(const cJSON *tied) { return cJSON_IsArray(tied) && cJSON_GetArraySize(tied) > 0; }

// The single step's or step k's rows (prefix "expected." or "expected.step<k>.").
static int compare_step(const spd_st_file *f, FILE *out, const ref_header *h, spd_trainer *tr, int64_t step,
                        bool multi, int *input_error) {
    char prefix[64], name[NAME_CAP];
    if (multi) snprintf(prefix, sizeof prefix, "expected.step%" PRId64 ".", step);
    else snprintf(prefix, sizeof prefix, "expected.");
    const double loss_bound = multi ? mode.run : mode.step;
    const bool grads = !multi || step == 0;
    const int N = tr->target.N;
    int failures = 0;
    if (!multi) {
        failures += compare(f, out, mode.step, "expected.target_output", tr->y_t, (int64_t)N * tr->target.d_out,
                            input_error);
        for (int l = 0; l < tr->n_mods; l++) {
            const spd_train_module *m = &tr->mods[l];
            const int64_t NC = (int64_t)N * m->comp.C;
            const struct {
                const char *what;
                const double *v;
            } ci[3] = {{"pre_sigmoid", m->pre}, {"ci_lower", m->ci_lower}, {"ci_upper", m->ci_upper}};
            for (int k = 0; k < 3; k++) {
                snprintf(name, sizeof name, "expected.%s.%s", ci[k].what, m->comp.dashed);
                failures += compare(f, out, mode.step, name, ci[k].v, NC, input_error);
            }
        }
    }
    int i = 0;
    const cJSON *key;
    cJSON_ArrayForEach(key, h->loss_terms) {
        snprintf(name, sizeof name, "%sloss.%s", prefix, key->valuestring);
        failures += compare(f, out, loss_bound, name, &tr->values[i++], 1, input_error);
    }
    snprintf(name, sizeof name, "%sloss.total", prefix);
    failures += compare(f, out, loss_bound, name, &tr->total, 1, input_error);
    if (grads) {
        // Every trained tensor has its expected gradient, and every expected gradient a tensor.
        const spd_spec *spec = tr->spec;
        for (int k = 0; k < spec->count; k++) {
            const spd_tensor *t = &spec->tensors[k];
            if (t->role != SPD_ROLE_TRAINED) continue;
            snprintf(name, sizeof name, "%sgrad.%s", prefix, t->name);
            failures += compare(f, out, mode.step, name, spd_spec_grad(spec, t), spd_tensor_numel(t), input_error);
        }
        snprintf(name, sizeof name, "%sgrad.", prefix);
        for (int k = 0; k < f->count && !*input_error; k++) {
            const char *en = f->entries[k].name;
            if (!starts_with(en, name)) continue;
            const spd_tensor *t = spd_spec_find(spec, en + strlen(name));
            if (!t || t->role != SPD_ROLE_TRAINED) {
                spd_set_error("%s: tensor '%s' names no trained parameter of the C trainer", f->path, en);
                *input_error = 1;
            }
        }
    }
    return failures;
}

// Rows after spd_train_update of `step`: group norms (before clipping) and the lr.
static int compare_update(const spd_st_file *f, FILE *out, spd_trainer *tr, int64_t step, bool multi,
                          int *input_error) {
    char prefix[64], name[NAME_CAP];
    if (multi) snprintf(prefix, sizeof prefix, "expected.step%" PRId64 ".", step);
    else snprintf(prefix, sizeof prefix, "expected.");
    const double bound = multi ? mode.run : mode.step;
    int failures = 0;
    snprintf(name, sizeof name, "%sgrad_norm.components", prefix);
    failures += compare(f, out, bound, name, &tr->grad_norm_components, 1, input_error);
    snprintf(name, sizeof name, "%sgrad_norm.ci_fns", prefix);
    failures += compare(f, out, bound, name, &tr->grad_norm_ci_fns, 1, input_error);
    double lr = spd_schedule_value(&tr->opt.lr, step, tr->opt.steps);
    snprintf(name, sizeof name, "%slr", prefix);
    failures += compare(f, out, bound, name, &lr, 1, input_error);
    return failures;
}

static int check_run(const spd_st_file *f, FILE *out, bool cuda);

int train_check_f64(const spd_st_file *f, FILE *out) { return check_run(f, out, false); }

#ifdef SPD_HAVE_CUDA
int train_check_cuda(const spd_st_file *f, FILE *out) { return check_run(f, out, true); }

// The device run's state of the last step into the host trainer, for the rows.
static void gpu_pull_step(spd_gpu_run *g, spd_trainer *tr, spd_spec *spec) {
    spd_gpu_run_target_output(g, tr->y_t);
    for (int l = 0; l < tr->n_mods; l++) {
        spd_gpu_run_ci(g, l, 0, tr->mods[l].pre);
        spd_gpu_run_ci(g, l, 1, tr->mods[l].ci_lower);
        spd_gpu_run_ci(g, l, 2, tr->mods[l].ci_upper);
    }
    spd_gpu_run_download(g, spec, true);
}

// The host's batch (features or token ids) onto the device.
static void gpu_push_batch(spd_gpu_run *g, const target_holder *th) {
    if (th->kind == TARGET_LLAMA) {
        spd_gpu_run_set_tokens(g, th->ll.tokens, th->ll.N);
        return;
    }
    const double *x = th->kind == TARGET_TMS ? th->tms.x : th->rm.x;
    int64_t n = (int64_t)th->B * th->n_features;
    float *xf = spd_malloc((size_t)n * sizeof *xf);
    for (int64_t i = 0; i < n; i++) xf[i] = (float)x[i];
    spd_gpu_run_set_input(g, xf, n);
    free(xf);
}
#endif

static int check_run(const spd_st_file *f, FILE *out, bool cuda) {
    ref_header h;
    if (cuda) mode.dtype = "cuda-f32", mode.step = GPU_STEP_BOUND, mode.run = GPU_RUN_BOUND;
    else mode.dtype = "float64", mode.step = STEP_BOUND, mode.run = RUN_BOUND;
    int rc = -1;
    if (read_header(f, &h)) {
        header_free(&h);
        return -1;
    }
    const spd_config *cfg = &h.cfg;

    // What spd.c cannot run yet: refused before anything is built.
    missing_list miss = {0};
    spd_train_options opt;
    if (options_from_config(f, cfg, &opt, &miss)) {
        header_free(&h);
        return -1;
    }
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(h.target, "model_type");
    if (!cJSON_IsString(mt)) {
        header_free(&h);
        return spd_set_error("%s: __metadata__.target_config.model_type: expected a string", f->path);
    }
    if (miss.count) {
        refuse_missing(f, &miss);
        header_free(&h);
        return -1;
    }

    // The target (frozen) and the trainer's parameters in one spec table.
    spd_spec spec;
    spd_spec_init(&spec);
    target_holder th;
    memset(&th, 0, sizeof th);
    spd_trainer tr;
    memset(&tr, 0, sizeof tr);
    int *site = spd_malloc((size_t)h.n_modules * sizeof *site), *C = spd_malloc((size_t)h.n_modules * sizeof *C);
    bool *used = spd_calloc((size_t)(f->count ? f->count : 1), sizeof *used);
    spd_tied_pair *ties = NULL;
    int n_ties = 0;
    spd_gpu_run *gpu = NULL;
    draw_ctx dctx = {.f = f, .t = &tr, .multi = h.multi, .used = used};
    spd_draw_source draws = {.fill = draw_fill, .ctx = &dctx};
    opt.draws = &draws;
    if (cfg->batch_size > (1 << 24)) {
        spd_set_error("%s: config: batch_size: at most %d", f->path, 1 << 24);
        goto done;
    }
    if (target_declare(f, &h, &th, &spec, h.multi ? "input.step0.batch" : "input.batch")) goto done;
    for (int i = 0; i < h.n_modules; i++) {
        site[i] = -1;
        for (int k = 0; k < th.n_sites; k++)
            if (strcmp(th.sites[k].path, h.modules[i].path) == 0) site[i] = k;
        if (site[i] < 0) {
            spd_set_error("%s: __metadata__.modules[%d]: '%s' is not a decomposable module of the %s target", f->path,
                          i, h.modules[i].path, mt->valuestring);
            goto done;
        }
        for (int j = 0; j < i; j++)
            if (site[j] == site[i]) {
                spd_set_error("%s: __metadata__.modules: '%s' is listed twice", f->path, h.modules[i].path);
                goto done;
            }
        C[i] = h.modules[i].C;
    }
    // Tied components (TMS with a tied target): [[src, tgt], ...] by module path.
    n_ties = tied_pairs(h.tied) ? cJSON_GetArraySize(h.tied) : 0;
    ties = spd_calloc((size_t)(n_ties ? n_ties : 1), sizeof *ties);
    for (int i = 0; i < n_ties; i++) {
        const cJSON *pair = cJSON_GetArrayItem(h.tied, i);
        int idx[2] = {-1, -1};
        for (int j = 0; j < 2 && cJSON_IsArray(pair) && cJSON_GetArraySize(pair) == 2; j++) {
            const cJSON *pj = cJSON_GetArrayItem(pair, j);
            for (int l = 0; l < h.n_modules && cJSON_IsString(pj); l++)
                if (strcmp(h.modules[l].path, pj->valuestring) == 0) idx[j] = l;
        }
        if (idx[0] < 0 || idx[1] < 0) {
            spd_set_error("%s: __metadata__.tied_weights[%d]: expected [src, tgt], two paths of __metadata__.modules",
                          f->path, i);
            goto done;
        }
        ties[i] = (spd_tied_pair){.src = idx[0], .tgt = idx[1]};
    }
    spd_target tg = target_of(&th);
    if (spd_trainer_declare_f64(&tr, &spec, &opt, &tg, site, C, h.n_modules)) {
        config_error(f, "the C trainer");
        goto done;
    }
    spd_spec_alloc(&spec);
    target_bind(&th, &spec);
    tg = target_of(&th);
    spd_trainer_bind_f64(&tr, &tg);
    for (int i = 0; i < spec.count; i++) {  // target weights, V, U, CI-fn parameters
        spd_tensor *t = &spec.tensors[i];
        if (t->role != SPD_ROLE_FROZEN && t->role != SPD_ROLE_TRAINED) continue;
        if (spd_spec_load_tensor(&spec, f, t)) goto done;
    }
    if (n_ties && spd_tied_check_f64(&tr, ties, n_ties)) {
        config_error(f, "__metadata__.tied_weights");
        goto done;
    }

#ifdef SPD_HAVE_CUDA
    if (cuda) {  // the float32 device twin of this trainer, from the file's values
        if (n_ties > 1) {
            spd_set_error("%s: --device cuda: at most one tied pair", f->path);
            goto done;
        }
        spd_gpu_run_config gc = {.kind = th.kind == TARGET_TMS ? SPD_GPU_TMS
                                         : th.kind == TARGET_RESID_MLP ? SPD_GPU_RESID_MLP : SPD_GPU_LLAMA,
                                 .B = th.B, .T = th.T, .opt = &opt, .site = site, .C = C, .n = h.n_modules,
                                 .tie_src = n_ties ? ties[0].src : -1, .tie_tgt = n_ties ? ties[0].tgt : -1};
        if (th.kind == TARGET_TMS) gc.tms = th.tms.cfg;
        else if (th.kind == TARGET_RESID_MLP) gc.resid_mlp = th.rm.cfg;
        else {
            gc.llama = th.ll.cfg;
            gc.untied_lm_head = spd_st_find(f, "target_model.lm_head.weight") != NULL;
        }
        gc.identity = spd_identity_patterns(&h.cfg, &gc.n_identity);
        gpu = spd_gpu_run_create(&gc);
        free((void *)gc.identity);
        spd_gpu_run_upload(gpu, &spec, 0);
    }
#endif
    int failures = 0, input_error = 0;
    fprintf(out, "# %s: %s target, %d modules, %d loss terms, %s%s\n", SPD_REF_TRAIN_FORMAT, mt->valuestring,
            h.n_modules, opt.n_terms,
            h.multi ? "multi-step run" : "one step", cuda ? ", float32 on the GPU" : "");
    if (h.multi && cfg->faithfulness_warmup_steps > 0) {  // V, U after the warm-up
        spd_faithfulness_warmup_options wo = {.steps = cfg->faithfulness_warmup_steps,
                                              .lr = cfg->faithfulness_warmup_lr,
                                              .weight_decay = cfg->faithfulness_warmup_weight_decay,
                                              .ties = ties,
                                              .n_ties = n_ties};
#ifdef SPD_HAVE_CUDA
        if (gpu) {
            spd_gpu_run_warmup(gpu, wo.steps, wo.lr, wo.weight_decay);
            spd_gpu_run_download(gpu, &spec, false);
        } else
#endif
            spd_faithfulness_warmup_f64(&tr, &wo);
        for (int i = 0; i < spec.count && !input_error; i++) {
            const spd_tensor *t = &spec.tensors[i];
            if (t->role != SPD_ROLE_TRAINED || !starts_with(t->name, "_components.")) continue;
            char name[NAME_CAP];
            snprintf(name, sizeof name, "expected.warmup.%s", t->name);
            failures += compare(f, out, mode.run, name, t->data, spd_tensor_numel(t), &input_error);
        }
    }
    const int64_t n_steps = h.multi ? h.steps_run : 1;
    for (int64_t k = 0; k < n_steps && !input_error; k++) {
        const int64_t step = h.multi ? k : h.step;
        char name[NAME_CAP];
        if (h.multi) snprintf(name, sizeof name, "input.step%" PRId64 ".batch", k);
        else snprintf(name, sizeof name, "input.batch");
        if (target_load_batch(f, &th, name)) goto done;
#ifdef SPD_HAVE_CUDA
        if (gpu) {
            gpu_push_batch(gpu, &th);
            tr.total = spd_gpu_run_step(gpu, step, tr.values);
            if (!dctx.error[0]) gpu_pull_step(gpu, &tr, &spec);
        } else
#endif
            spd_train_step_f64(&tr, step);
        if (dctx.error[0]) {
            spd_set_error("%s", dctx.error);
            goto done;
        }
        failures += compare_step(f, out, &h, &tr, step, h.multi, &input_error);
#ifdef SPD_HAVE_CUDA
        if (gpu) spd_gpu_run_update(gpu, step, &tr.grad_norm_components, &tr.grad_norm_ci_fns);
        else
#endif
        if (n_ties) spd_tied_update_f64(&tr, ties, n_ties, step);
        else spd_train_update_f64(&tr, step);
        failures += compare_update(f, out, &tr, step, h.multi, &input_error);
    }
    if (h.multi && !input_error) {  // every parameter after the run
#ifdef SPD_HAVE_CUDA
        if (gpu) spd_gpu_run_download(gpu, &spec, false);
#endif
        for (int i = 0; i < spec.count; i++) {
            const spd_tensor *t = &spec.tensors[i];
            if (t->role != SPD_ROLE_TRAINED) continue;
            char name[NAME_CAP];
            snprintf(name, sizeof name, "expected.final.%s", t->name);
            failures += compare(f, out, mode.run, name, t->data, spd_tensor_numel(t), &input_error);
        }
    }
    if (input_error) goto done;
    // Every stored draw was consumed (`routed` tensors are derived, not draws).
    int n_draws = 0, n_used = 0;
    const char *unused = NULL;
    for (int i = 0; i < f->count; i++) {
        const char *en = f->entries[i].name;
        size_t len = strlen(en);
        if (!starts_with(en, "draws.") || (len > 7 && strcmp(en + len - 7, ".routed") == 0)) continue;
        n_draws++;
        if (used[i]) n_used++;
        else if (!unused) unused = en;
    }
    char row[96];
    snprintf(row, sizeof row, "draws consumed: %d of %d", n_used, n_draws);
    fprintf(out, "%-8s %-52s %12s %12s %8s  %s\n", mode.dtype, row, "-", "-", "all", unused ? "FAIL" : "ok");
    if (unused) {
        fprintf(out, "         (not consumed by the step: %s)\n", unused);
        failures++;
    }
    rc = failures;

done:
#ifdef SPD_HAVE_CUDA
    spd_gpu_run_free(gpu);
#endif
    (void)gpu;
    spd_trainer_free_f64(&tr);  // safe after a failed or skipped declare (tr zeroed)
    target_free(&th);
    spd_spec_free(&spec);
    free(site);
    free(C);
    free(used);
    free(ties);
    header_free(&h);
    return rc;
}
