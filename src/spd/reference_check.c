#include "core/real.h"

#include "spd/reference_check.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/spec_io.h"
#include "models/component_model.h"
#include "ops/loss.h"
#include "ops/transfer.h"

// Bound on the norm-relative error: what the arithmetic of this build allows,
// or what the stored expectations allow when they were rounded to float32.
#if defined(SPD_CUDA)
#include "cuda/backend.h"
#define COMPUTE_BOUND spd_cuda_norm_bound()
#define BF16_PRODUCTS (spd_cuda_matmul_precision() == SPD_MATMUL_BF16)
#elif defined(SPD_F64)
#define COMPUTE_BOUND 1e-10
#else
#define COMPUTE_BOUND 1e-5
#endif
#define STORED_F32_BOUND 1e-6
#ifndef BF16_PRODUCTS
#define BF16_PRODUCTS 0
#endif

typedef struct {
    double bound;
    llama_config cfg;
    spd_module_pattern *modules;
    int n_modules;
    int B, S;
} reference_header;

static void header_free(reference_header *h) {
    for (int i = 0; i < h->n_modules; i++) free(h->modules[i].pattern);
    free(h->modules);
}

static const char *require_meta(const spd_st_file *f, const char *key) {
    const char *v = spd_st_meta(f, key);
    if (!v) spd_set_error("%s: __metadata__.%s: missing (an spd-ref-v1 file needs it)", f->path, key);
    return v;
}

static int parse_modules(const spd_st_file *f, const char *json, reference_header *h) {
    cJSON *root = cJSON_Parse(json);
    if (!cJSON_IsArray(root)) {
        cJSON_Delete(root);
        return spd_set_error("%s: __metadata__.modules: expected a JSON list of {\"path\", \"C\"}", f->path);
    }
    int n = cJSON_GetArraySize(root);
    h->modules = spd_calloc((size_t)(n ? n : 1), sizeof *h->modules);
    int i = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, root) {
        const cJSON *path = cJSON_GetObjectItemCaseSensitive(item, "path");
        const cJSON *C = cJSON_GetObjectItemCaseSensitive(item, "C");
        if (!cJSON_IsString(path) || !cJSON_IsNumber(C) || C->valuedouble != floor(C->valuedouble) ||
            C->valuedouble < 1 || C->valuedouble > 1e8) {
            cJSON_Delete(root);
            return spd_set_error("%s: __metadata__.modules[%d]: expected {\"path\": string, \"C\": positive integer}",
                                 f->path, i);
        }
        h->modules[i].pattern = spd_strdup(path->valuestring);
        h->modules[i].C = (int)C->valuedouble;
        h->n_modules = ++i;
    }
    cJSON_Delete(root);
    return 0;
}

static int read_header(const spd_st_file *f, reference_header *h) {
    memset(h, 0, sizeof *h);
    const char *format = require_meta(f, "format");
    if (!format) return -1;
    if (strcmp(format, "spd-ref-v1") != 0)
        return spd_set_error("%s: __metadata__.format: expected \"spd-ref-v1\", found \"%s\"", f->path, format);
    const char *loss = require_meta(f, "loss");
    if (!loss) return -1;
    if (strcmp(loss, "mean_logits") != 0)
        return spd_set_error("%s: __metadata__.loss: expected \"mean_logits\", found \"%s\"", f->path, loss);
    const char *dtype = require_meta(f, "dtype");
    if (!dtype) return -1;
    if (strcmp(dtype, "float64") != 0 && strcmp(dtype, "float32") != 0)
        return spd_set_error("%s: __metadata__.dtype: expected \"float64\" or \"float32\", found \"%s\"", f->path,
                             dtype);
    h->bound = strcmp(dtype, "float32") == 0 && STORED_F32_BOUND > COMPUTE_BOUND ? STORED_F32_BOUND : COMPUTE_BOUND;
    const char *cfg = require_meta(f, "target_config");
    if (!cfg || llama_config_from_json(&h->cfg, cfg, f->path)) return -1;
    const char *modules = require_meta(f, "modules");
    if (!modules || parse_modules(f, modules, h)) return -1;
    const spd_st_entry *tokens = spd_st_find(f, "input.tokens");
    if (!tokens) return spd_set_error("%s: tensor 'input.tokens' is missing", f->path);
    if (tokens->ndim != 2 || tokens->shape[0] < 1 || tokens->shape[1] < 1 || tokens->shape[0] * tokens->shape[1] > (1 << 24))
        return spd_set_error("%s: tensor 'input.tokens': expected shape [B, S] with B, S >= 1", f->path);
    h->B = (int)tokens->shape[0];
    h->S = (int)tokens->shape[1];
    return 0;
}

static bool is_input(const spd_tensor *t) {
    return strncmp(t->name, "input.", 6) == 0;
}

// Loads target weights, components and inputs; modules whose delta mask is absent run without delta.
static int load_state(const spd_st_file *f, component_model *cm) {
    for (int i = 0; i < cm->n_modules; i++) {
        char name[SPD_NAME_MAX + 32];
        snprintf(name, sizeof name, "input.delta_masks.%s", cm->modules[i].dashed);
        if (cm->use_delta && !spd_st_find(f, name)) RFN(component_model_disable_delta)(cm, i);
    }
    for (int i = 0; i < cm->spec.count; i++) {
        spd_tensor *t = &cm->spec.tensors[i];
        if (t->role == SPD_ROLE_ACT && !is_input(t)) continue;
        if (strncmp(t->name, "input.delta_masks.", 18) == 0 && !spd_st_find(f, t->name)) continue;
        if (spd_spec_load_tensor(&cm->spec, f, t)) return -1;
    }
    // Token ids index the embedding: validate them (from the file, wherever the model lives).
    const llama_model *m = &cm->target;
    int32_t *tokens = spd_malloc((size_t)m->N * sizeof *tokens);
    int rc = spd_st_read(f, "input.tokens", SPD_DTYPE_I32, 2, (int64_t[]){m->B, m->S}, tokens);
    for (int n = 0; n < m->N && rc == 0; n++)
        if (tokens[n] < 0 || tokens[n] >= m->cfg.vocab_size)
            rc = spd_set_error("%s: tensor 'input.tokens': element %d is %d, outside [0, vocab_size %d)", f->path, n,
                               tokens[n], m->cfg.vocab_size);
    free(tokens);
    return rc;
}

// Compares n values with the stored expectation; prints one row; returns 1 on failure.
// scale > 0: the error is measured as ||a - b|| / (scale sqrt(n)) instead (its row is named name/rms).
static int compare(const spd_st_file *f, FILE *out, double bound, const char *name, const real *got, int ndim,
                   const int64_t *shape, int *input_error, double scale) {
    int64_t n = spd_numel(ndim, shape);
    double *want = spd_malloc((size_t)(n ? n : 1) * sizeof *want);
    double *have = spd_malloc((size_t)(n ? n : 1) * sizeof *have);
    if (spd_st_read(f, name, SPD_DTYPE_F64, ndim, shape, want)) {
        free(want);
        free(have);
        *input_error = 1;
        return 1;
    }
    RFN(copy_to_host_f64)(have, got, n);
    double max_diff = 0, max_ref = 0, num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(have[i] - want[i]);
        if (!(d <= max_diff)) max_diff = d;  // NaN propagates
        if (fabs(want[i]) > max_ref) max_ref = fabs(want[i]);
        num += d * d;
        den += want[i] * want[i];
    }
    free(want);
    free(have);
    double max_rel = max_diff / fmax(scale > 0 ? scale : max_ref, 1e-12);
    double norm_rel = scale > 0 ? sqrt(num / (double)(n ? n : 1)) / scale : den > 0 ? sqrt(num / den) : sqrt(num);
    int fail = !(norm_rel <= bound);
    char label[SPD_NAME_MAX + 64];
    snprintf(label, sizeof label, "%s%s", name, scale > 0 ? "/rms(logits)" : "");
    fprintf(out, "%-8s %-52s %12.3e %12.3e %8.0e  %s\n", SPD_REAL_NAME, label, max_rel, norm_rel, bound,
            fail ? "FAIL" : "ok");
    return fail;
}

// Root mean square of a stored float tensor of n elements (0 when it cannot be read:
// the logits row has reported that already).
static double expected_rms(const spd_st_file *f, const char *name, int ndim, const int64_t *shape) {
    const int64_t n = spd_numel(ndim, shape);
    double *v = spd_malloc((size_t)(n ? n : 1) * sizeof *v), s = 0;
    if (spd_st_read(f, name, SPD_DTYPE_F64, ndim, shape, v) == 0)
        for (int64_t i = 0; i < n; i++) s += v[i] * v[i];
    free(v);
    return n ? sqrt(s / (double)n) : 0;
}

int RFN(reference_check)(const spd_st_file *f, FILE *out) {
    reference_header h;
    if (read_header(f, &h)) {
        header_free(&h);
        return -1;
    }
    component_model cm;
    component_model_options opt = {.B = h.B, .S = h.S,
                                   .untied_lm_head = spd_st_find(f, "target_model.lm_head.weight") != NULL,
                                   .use_delta = false};
    for (int i = 0; i < f->count; i++)
        if (strncmp(f->entries[i].name, "input.delta_masks.", 18) == 0) opt.use_delta = true;
    if (RFN(component_model_build)(&cm, &h.cfg, h.modules, h.n_modules, &opt)) {
        char why[1024];
        snprintf(why, sizeof why, "%s", spd_last_error());  // spd_set_error overwrites it
        spd_set_error("%s: __metadata__.modules: %s", f->path, why);
        header_free(&h);
        return -1;
    }
    double bound = h.bound;
    header_free(&h);
    if (load_state(f, &cm)) {
        RFN(component_model_free)(&cm);
        return -1;
    }

    llama_model *m = &cm.target;
    int64_t n_logits = (int64_t)m->N * m->cfg.vocab_size;
    spd_spec_zero_grad(&cm.spec);
    RFN(component_model_forward)(&cm);
    RFN(mean_loss_forward)(m->loss, m->logits, n_logits);
    RFN(mean_loss_backward)(m->dlogits, n_logits);
    RFN(component_model_backward)(&cm);

    int failures = 0, input_error = 0;
    const int64_t logits_shape[3] = {m->B, m->S, m->cfg.vocab_size};
    failures += compare(f, out, bound, "expected.logits", m->logits, 3, logits_shape, &input_error, 0);
    // With bf16 products the loss (a mean of logits that cancels: ref_lm_head's is 1/55
    // of their rms) is measured against the rms of the expected logits: a mean's error
    // is at most the rms of its terms' errors, so this asks of it what the logits row asks.
    const double loss_scale = BF16_PRODUCTS ? expected_rms(f, "expected.logits", 3, logits_shape) : 0;
    failures += compare(f, out, bound, "expected.loss", m->loss, 0, NULL, &input_error, loss_scale);
    for (int i = 0; i < cm.n_modules && !input_error; i++) {
        const component_module *c = &cm.modules[i];
        char name[SPD_NAME_MAX + 32];
        snprintf(name, sizeof name, "expected.grad._components.%s.V", c->dashed);
        failures += compare(f, out, bound, name, c->dV, 2, (int64_t[]){c->site->d_in, c->C}, &input_error, 0);
        snprintf(name, sizeof name, "expected.grad._components.%s.U", c->dashed);
        failures += compare(f, out, bound, name, c->dU, 2, (int64_t[]){c->C, c->site->d_out}, &input_error, 0);
    }
    RFN(component_model_free)(&cm);
    return input_error ? -1 : failures;
}
