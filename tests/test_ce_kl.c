// CEandKLLosses (src/spd/ce_kl.h) on a small random LlamaSimple component model:
//  - against SPD's own CEandKLLosses._calc_ce_and_kl_losses with its recorded draws
//    (tests/refs/eval/ce_kl_ref.safetensors, tests/refgen/make_ce_kl_refs.py), all 16 values
//    and the target's CE, float64: bound 1e-10 norm-relative (the same forwards as spd check's);
//  - hand cases: uniform logits give CE = log V; with Philox draws the metric is
//    reproducible; accumulating two batches weights by positions; the modules' delta masks
//    and `replaced` flags are restored.
#define SPD_F64
#include "core/real.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/safetensors.h"
#include "core/spec_io.h"
#include "models/component_model.h"
#include "models/llama_config.h"
#include "spd/ce_kl.h"
#include "testing.h"

#define REF "tests/refs/eval/ce_kl_ref.safetensors"

static double *read_f64(const spd_st_file *f, const char *name, long n) {
    double *v = calloc((size_t)n, sizeof *v);
    const spd_st_entry *e = spd_st_find(f, name);
    if (!e || spd_st_read(f, name, SPD_DTYPE_F64, e->ndim, e->shape, v)) {
        free(v);
        return NULL;
    }
    return v;
}

static void test_hand(void) {
    enum { B = 2, S = 3, V = 7 };
    double logits[B * S * V];
    int32_t tok[B * S] = {1, 2, 3, 4, 5, 6};
    for (int i = 0; i < B * S * V; i++) logits[i] = 0.25;
    double ce = spd_lm_next_token_ce_f64(logits, tok, B, S, V);
    test_report(fabs(ce - log(7.0)) < 1e-15, "CE of uniform logits = log V", "%.17g", ce);
    // One confident correct prediction per sequence, the rest uniform: the last position's
    // logits (predicting across the sequence boundary) must not count.
    logits[0 * V + 2] = 50;  // (b 0, t 0) -> token 2
    logits[2 * V + 4] = 50;  // (b 0, t 2): no target
    double want = (log(exp(50.0) + 6) - 50 + 3 * log(7.0)) / 4;
    ce = spd_lm_next_token_ce_f64(logits, tok, B, S, V);
    test_report(fabs(ce - want) < 1e-14, "CE: B (S - 1) next-token predictions, none across sequences", "%.17g vs %.17g",
                ce, want);
}

static int load_model(const spd_st_file *f, component_model *cm, char **modules_json) {
    llama_config cfg;
    const char *tc = spd_st_meta(f, "target_config"), *mods = spd_st_meta(f, "modules");
    if (!tc || !mods || llama_config_from_json(&cfg, tc, f->path)) return -1;
    cJSON *m = cJSON_Parse(mods);
    int n = cJSON_GetArraySize(m);
    spd_module_pattern *pats = calloc((size_t)n, sizeof *pats);
    for (int i = 0; i < n; i++) {
        pats[i].pattern = cJSON_GetObjectItem(cJSON_GetArrayItem(m, i), "path")->valuestring;
        pats[i].C = cJSON_GetObjectItem(cJSON_GetArrayItem(m, i), "C")->valueint;
    }
    const spd_st_entry *tok = spd_st_find(f, "input.tokens");
    component_model_options o = {.B = (int)tok->shape[0], .S = (int)tok->shape[1], .use_delta = true};
    int rc = component_model_build_f64(cm, &cfg, pats, n, &o);
    for (int i = 0; rc == 0 && i < cm->spec.count; i++) {
        spd_tensor *t = &cm->spec.tensors[i];
        if (!spd_st_find(f, t->name)) continue;  // masks, activations
        rc = spd_spec_load_tensor(&cm->spec, f, t);
    }
    free(pats);
    *modules_json = mods ? strdup(mods) : NULL;
    cJSON_Delete(m);
    return rc;
}

static void test_spd_ref(void) {
    spd_st_file *f = spd_st_open(REF);
    if (!f) {
        test_report(0, "ce_kl reference", "%s", spd_last_error());
        return;
    }
    component_model cm;
    char *mods = NULL;
    if (load_model(f, &cm, &mods)) {
        test_report(0, "ce_kl reference model", "%s", spd_last_error());
        spd_st_close(f);
        return;
    }
    const int L = cm.n_modules, N = cm.target.N;
    double *ci[8], *r[8], *dl[8], *rm[8];
    char name[256];
    bool ok = true;
    for (int l = 0; l < L; l++) {
        long n = (long)N * cm.modules[l].C;
        snprintf(name, sizeof name, "input.ci.%s", cm.modules[l].dashed);
        ok &= (ci[l] = read_f64(f, name, n)) != NULL;
        snprintf(name, sizeof name, "draws.stoch.%s", cm.modules[l].dashed);
        ok &= (r[l] = read_f64(f, name, n)) != NULL;
        snprintf(name, sizeof name, "draws.delta.%s", cm.modules[l].dashed);
        ok &= (dl[l] = read_f64(f, name, N)) != NULL;
        snprintf(name, sizeof name, "draws.random.%s", cm.modules[l].dashed);
        ok &= (rm[l] = read_f64(f, name, n)) != NULL;
    }
    double *want = read_f64(f, "expected.ce_kl", SPD_CE_KL_N_KEYS);
    if (!ok || !want) {
        test_report(0, "ce_kl reference tensors", "%s", spd_last_error());
        return;
    }
    spd_ce_kl_draws d = {.stoch_r = (const real *const *)r, .delta = (const real *const *)dl,
                         .random = (const real *const *)rm};
    spd_ce_kl_options o = {.rounding_threshold = atof(spd_st_meta(f, "rounding_threshold")),
                           .sampling = SPD_MASK_CONTINUOUS, .draws = &d};
    real *delta_before[8];
    for (int l = 0; l < L; l++) delta_before[l] = cm.modules[l].delta_mask;
    double got[SPD_CE_KL_N_KEYS];
    spd_ce_kl_batch_f64(&cm, (const real *const *)ci, &o, got, NULL);
    double worst = 0;
    int worst_k = 0;
    for (int k = 0; k < SPD_CE_KL_N_KEYS; k++) {
        double e = fabs(got[k] - want[k]) / fmax(fabs(want[k]), 1e-3);
        if (e > worst) worst = e, worst_k = k;
    }
    char title[160];
    snprintf(title, sizeof title, "CEandKLLosses: the 16 values = SPD's (its draws, float64, two modules; worst rel %.1e)",
             worst);
    test_report(worst <= 1e-10, title,
                "%s: got %.17g, want %.17g (rel %.3g)", spd_ce_kl_keys[worst_k], got[worst_k], want[worst_k], worst);
    bool restored = true;
    for (int l = 0; l < L; l++) restored &= cm.modules[l].delta_mask == delta_before[l] && cm.modules[l].replaced;
    test_report(restored, "delta masks and replaced flags restored", NULL);

    // Philox draws: reproducible; two batches accumulate with weight B*S each.
    spd_ce_kl_options p = {.rounding_threshold = o.rounding_threshold, .sampling = SPD_MASK_CONTINUOUS, .seed = 9,
                           .step = 3, .term = SPD_RNG_EVAL_TERM};
    double a[SPD_CE_KL_N_KEYS], b[SPD_CE_KL_N_KEYS];
    spd_ce_kl_acc acc = {0};
    spd_ce_kl_batch_f64(&cm, (const real *const *)ci, &p, a, &acc);
    spd_ce_kl_batch_f64(&cm, (const real *const *)ci, &p, b, &acc);
    bool same = memcmp(a, b, sizeof a) == 0;
    // The deterministic variants do not depend on the draws.
    same &= a[0] == got[0] && a[1] == got[1] && a[4] == got[4] && a[5] == got[5];
    test_report(same && a[2] != got[2], "Philox draws: reproducible; deterministic variants as with SPD's draws", NULL);
    spd_metric_list out = {0};
    spd_ce_kl_compute(&acc, &out);
    const spd_metric_kv *kv = spd_metric_list_find(&out, "ce_kl/ce_unrecovered_rounded_masked");
    test_report(out.count == SPD_CE_KL_N_KEYS && kv && kv->value == a[15] && acc.n_positions == 2.0 * N,
                "spd_ce_kl_compute: ce_kl/<key> in SPD's order, position-weighted", NULL);
    spd_metric_list_free(&out);
    for (int l = 0; l < L; l++) free(ci[l]), free(r[l]), free(dl[l]), free(rm[l]);
    free(want);
    free(mods);
    component_model_free_f64(&cm);
    spd_st_close(f);
}

int main(void) {
    test_hand();
    test_spd_ref();
    return test_exit();
}
