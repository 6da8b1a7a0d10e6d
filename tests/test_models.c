// Models layer: SPD's module selection rules, LlamaSimple config parsing, and
// the identity of SPD_SPEC.md 1.7: with every component mask and every delta
// mask equal to one, the component model reproduces the target exactly.
#define SPD_F64
#include "core/real.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/spec.h"
#include "models/component_model.h"
#include "models/llama_config.h"
#include "models/module_select.h"
#include "ops/fill.h"
#include "ops/loss.h"
#include "testing.h"

static const char *paths[] = {"wte", "h.0.attn.q_proj", "h.0.mlp.up_proj", "h.1.attn.q_proj", "h.1.mlp.up_proj",
                              "lm_head"};

static void test_selection(void) {
    spd_module_choice *out = NULL;
    int n = 0;
    spd_module_pattern p1[] = {{"h.*.mlp.*", 3}, {"h.0.attn.q_proj", 5}};
    int rc = spd_select_modules(paths, 6, p1, 2, &out, &n);
    test_report(rc == 0 && n == 3 && strcmp(out[0].path, "h.0.mlp.up_proj") == 0 &&
                    strcmp(out[1].path, "h.1.mlp.up_proj") == 0 && strcmp(out[2].path, "h.0.attn.q_proj") == 0 &&
                    out[0].C == 3 && out[2].C == 5,
                "selection order: patterns in config order, target order inside a pattern", NULL);
    spd_module_choices_free(out, n);

    spd_module_pattern p2[] = {{"h.*.attn.k_proj", 3}};
    rc = spd_select_modules(paths, 6, p2, 1, &out, &n);
    test_report(rc == -1 && strstr(spd_last_error(), "'h.*.attn.k_proj' matches no decomposable module"),
                "a pattern matching nothing is an error", "%s", spd_last_error());

    spd_module_pattern p3[] = {{"h.*", 3}, {"h.1.mlp.up_proj", 4}};
    rc = spd_select_modules(paths, 6, p3, 2, &out, &n);
    test_report(rc == -1 && strstr(spd_last_error(), "module 'h.1.mlp.up_proj' is matched by two patterns"),
                "a module matched by two patterns is an error", "%s", spd_last_error());

    spd_module_pattern p4[] = {{"lm_head", 0}};
    rc = spd_select_modules(paths, 6, p4, 1, &out, &n);
    test_report(rc == -1 && strstr(spd_last_error(), "C must be at least 1"), "C = 0 is an error", "%s",
                spd_last_error());

    spd_module_pattern p5[] = {{"*", 2}};
    rc = spd_select_modules(paths, 6, p5, 1, &out, &n);
    test_report(rc == 0 && n == 6, "'*' matches every module, dots included", NULL);
    spd_module_choices_free(out, n);

    char dashed[64];
    spd_dashed_name(dashed, sizeof dashed, "h.12.mlp.gate_proj");
    test_report(strcmp(dashed, "h-12-mlp-gate_proj") == 0, "dashed names", "%s", dashed);
}

static void test_config(void) {
    llama_config c;
    const char *good = "{\"model_type\": \"LlamaSimple\", \"vocab_size\": 97, \"n_layer\": 2, \"n_head\": 4, "
                       "\"n_key_value_heads\": 2, \"n_embd\": 32, \"n_intermediate\": 48, \"n_ctx\": 64, "
                       "\"rotary_base\": 10000, \"rms_norm_eps\": 1e-06, \"rotary_adjacent_pairs\": true}";
    test_report(llama_config_from_json(&c, good, "t") == 0 && c.vocab_size == 97 && c.n_kv_heads == 2 &&
                    c.rotary_adjacent_pairs && c.rms_norm_eps == 1e-6,
                "config JSON parses", "%s", spd_last_error());
    struct {
        const char *json, *want, *name;
    } bad[] = {
        {"{\"vocab_size\": 97}", "target_config.n_layer: missing", "missing key"},
        {"[1, 2]", "expected a JSON object", "not an object"},
        {"{\"model_type\": \"GPT2\"}", "model_type: expected \"LlamaSimple\"", "other model type"},
        {"{\"vocab_size\": \"97\", \"n_layer\": 2}", "vocab_size: expected a positive integer", "string for integer"},
        {"{\"vocab_size\": 9.5}", "vocab_size: expected a positive integer", "fraction for integer"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = llama_config_from_json(&c, bad[i].json, "t");
        char name[128];
        snprintf(name, sizeof name, "config error: %s", bad[i].name);
        test_report(rc == -1 && strstr(spd_last_error(), bad[i].want), name, "%s", spd_last_error());
    }
}

// With masks = 1 and delta masks = 1, (x V) U + x (W - (V U)^T)^T = x W^T at every module.
static void test_identity(void) {
    llama_config cfg = {.vocab_size = 23, .n_layer = 2, .n_head = 4, .n_kv_heads = 2, .n_embd = 16,
                        .n_intermediate = 24, .n_ctx = 8, .rotary_base = 10000, .rms_norm_eps = 1e-6};
    component_model_options opt = {.B = 2, .S = 5, .use_delta = true};
    spd_module_pattern all[] = {{"*", 3}};
    component_model cm, plain;
    SPD_ASSERT(component_model_build_f64(&cm, &cfg, all, 1, &opt) == 0);
    opt.use_delta = false;
    SPD_ASSERT(component_model_build_f64(&plain, &cfg, NULL, 0, &opt) == 0);
    test_report(cm.n_modules == 2 + 7 * 2, "'*' decomposes wte, every linear and lm_head", "%d", cm.n_modules);
    spd_spec_init_values(&cm.spec, SPD_ROLE_FROZEN, 11);
    spd_spec_init_values(&plain.spec, SPD_ROLE_FROZEN, 11);  // same table order: same weights
    spd_spec_init_values(&cm.spec, SPD_ROLE_TRAINED, 12);
    for (int n = 0; n < 10; n++) cm.target.tokens[n] = plain.target.tokens[n] = (n * 7) % 23;
    component_model_forward_f64(&cm);
    component_model_forward_f64(&plain);
    long n = 10 * 23;
    double err = test_rel_norm_err(cm.target.logits, plain.target.logits, n);
    test_report(err < 1e-13, "masks 1 and delta masks 1 reproduce the target", "rel err %.2e", err);
    // and without the delta the output differs: the test above is not vacuous
    for (int i = 0; i < cm.n_modules; i++) component_model_disable_delta_f64(&cm, i);
    component_model_forward_f64(&cm);
    err = test_rel_norm_err(cm.target.logits, plain.target.logits, n);
    test_report(err > 1e-3, "without the delta the components alone differ from the target", "rel err %.2e", err);
    component_model_free_f64(&cm);
    component_model_free_f64(&plain);
}

// The per-forward mask info (docs/training.md): one module replaced (layerwise),
// the mask gradient, and the clean-input cache.
static void test_mask_info(void) {
    llama_config cfg = {.vocab_size = 19, .n_layer = 2, .n_head = 2, .n_kv_heads = 1, .n_embd = 8,
                        .n_intermediate = 12, .n_ctx = 8, .rotary_base = 10000, .rms_norm_eps = 1e-6};
    component_model_options opt = {.B = 2, .S = 4, .use_delta = true};
    spd_module_pattern all[] = {{"h.*", 3}};
    component_model a, b;
    SPD_ASSERT(component_model_build_f64(&a, &cfg, all, 1, &opt) == 0);
    SPD_ASSERT(component_model_build_f64(&b, &cfg, all, 1, &opt) == 0);
    spd_spec *specs[] = {&a.spec, &b.spec};
    for (int k = 0; k < 2; k++) {
        spd_spec_init_values(specs[k], SPD_ROLE_FROZEN, 21);
        spd_spec_init_values(specs[k], SPD_ROLE_TRAINED, 22);
    }
    const int N = 8, L = a.n_modules, l = 5;  // module 5: h.0.mlp.up_proj
    for (int n = 0; n < N; n++) a.target.tokens[n] = b.target.tokens[n] = (n * 5) % 19;
    component_module *ml = &a.modules[l];
    fill_uniform_f64(ml->mask, (int64_t)N * ml->C, 23, 1, 0);
    memcpy(b.modules[l].mask, ml->mask, (size_t)N * ml->C * sizeof(double));
    // a: every other module is an exact identity (masks 1 with their delta), module l has no delta.
    // b: every other module runs its target weight. Both are "only module l replaced".
    component_model_disable_delta_f64(&a, l);
    for (int i = 0; i < L; i++) {
        component_model_disable_delta_f64(&b, i);
        b.modules[i].replaced = i == l;
    }
    component_model_forward_f64(&a);
    component_model_forward_f64(&b);
    double err = test_rel_norm_err(b.target.logits, a.target.logits, (long)N * 19);
    test_report(err < 1e-12, "only one module replaced equals the others on their identity", "rel err %.2e", err);

    // dmask against central differences of the mean of the logits.
    double *dmask = calloc((size_t)N * ml->C, sizeof(double));
    b.modules[l].dmask = dmask;
    spd_spec_zero_grad(&b.spec);
    mean_loss_backward_f64(b.target.dlogits, (int64_t)N * 19);
    component_model_backward_f64(&b);
    double worst = 0;
    for (int i = 0; i < N * ml->C; i += 3) {
        double saved = b.modules[l].mask[i], lp, lm;
        b.modules[l].mask[i] = saved + 1e-6;
        component_model_forward_f64(&b);
        mean_loss_forward_f64(&lp, b.target.logits, (int64_t)N * 19);
        b.modules[l].mask[i] = saved - 1e-6;
        component_model_forward_f64(&b);
        mean_loss_forward_f64(&lm, b.target.logits, (int64_t)N * 19);
        b.modules[l].mask[i] = saved;
        double fd = (lp - lm) / 2e-6, e = fabs(fd - dmask[i]) / fmax(fabs(fd), 1e-3);
        if (!(e <= worst)) worst = e;
    }
    test_report(worst < 1e-6, "dmask matches finite differences", "worst rel err %.2e", worst);
    double *dV_other = spd_spec_grad(&b.spec, spd_spec_get(&b.spec, "_components.h-1-mlp-up_proj.V"));
    double other = 0;
    for (int i = 0; i < 8 * 3; i++) other += fabs(dV_other[i]);
    test_report(other == 0, "a module not replaced gets no component gradient", "sum |dV| %.2e", other);

    // The clean-input cache of h.0.mlp.down_proj holds the SwiGLU output it was fed.
    component_module *down = &b.modules[6];
    double *cache = calloc((size_t)N * 12, sizeof(double));
    down->x_cache = cache;
    component_model_forward_f64(&b);
    test_report(memcmp(cache, b.target.layers[0].hidden, (size_t)N * 12 * sizeof(double)) == 0 &&
                    strcmp(down->site->path, "h.0.mlp.down_proj") == 0,
                "the input cache holds the module's input", NULL);
    free(dmask);
    free(cache);
    component_model_free_f64(&a);
    component_model_free_f64(&b);
}

int main(void) {
    test_selection();
    test_config();
    test_identity();
    test_mask_info();
    return test_exit();
}
