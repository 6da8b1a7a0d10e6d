// The evaluation pass (src/spd/eval.h) and the metric code it uses:
//  - against SPD's own metric classes (tests/refs/eval/eval_metrics_ref.json, written by
//    tests/refgen/make_eval_refs.py): CI_L0 with groups, ComponentActivationDensity,
//    CIMeanPerComponent, the eval ImportanceMinimalityLoss (sums over all batches, annealed
//    p, beta > 0) and IdentityCIError's compute_target_metrics (exact integers). SPD's
//    accumulators are float32 (torch's default dtype: the L0 list, the density counts, the CI
//    sums, the importance total) while ours are float64, so values compare at 1e-6 relative
//    (a few float32 roundings of values of order 1);
//  - spd_evaluate on a small TMS run against the same quantities recomputed from a separate
//    trainer of eval_batch_size rows fed the eval batches: eval losses are batch means
//    (ImportanceMinimality from the summed powers, which differs from the mean of per-batch
//    values when beta > 0), L0 from ci_lower, IdentityCIError from the CI of one-hot inputs
//    (eval_batch_size < n_features: the one-hot batch goes in chunks), eval data are the eval
//    stream (not the training batch); the training state (parameters, gradients, loss values,
//    CI) is untouched; two evaluations are identical; slow metrics and figures only at slow
//    steps; SPD's cadence.
#define SPD_F64
#include "core/real.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/spec.h"
#include "models/tms.h"
#include "models/toy_data.h"
#include "ops/importance_minimality.h"
#include "spd/config.h"
#include "spd/eval.h"
#include "spd/metrics.h"
#include "spd/target_tms.h"
#include "spd/train.h"
#include "testing.h"

static void near(const char *name, double got, double want, double rel) {
    double tol = rel * fmax(fabs(want), 1e-300);
    test_report(fabs(got - want) <= tol || (got == want), name, "got %.17g, want %.17g", got, want);
}

static double key_value(const spd_metric_list *l, const char *key) {
    const spd_metric_kv *kv = spd_metric_list_find(l, key);
    return kv ? kv->value : NAN;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
    if (s) s[n] = 0;
    fclose(f);
    return s;
}

static double *num_array(const cJSON *a, int *n) {
    int k = cJSON_GetArraySize(a);
    double *v = calloc((size_t)k + 1, sizeof *v);
    for (int i = 0; i < k; i++) v[i] = cJSON_GetArrayItem(a, i)->valuedouble;
    if (n) *n = k;
    return v;
}

// ---------------------------------------------------------------- SPD's metric classes

static void test_spd_refs(void) {
    char *text = slurp("tests/refs/eval/eval_metrics_ref.json");
    cJSON *r = text ? cJSON_Parse(text) : NULL;
    if (!r) {
        test_report(0, "eval refs: tests/refs/eval/eval_metrics_ref.json", "cannot read or parse");
        free(text);
        return;
    }
    const cJSON *jn = cJSON_GetObjectItem(r, "names"), *jC = cJSON_GetObjectItem(r, "C");
    const int L = cJSON_GetArraySize(jn), N = cJSON_GetObjectItem(r, "N")->valueint;
    const double thr = cJSON_GetObjectItem(r, "threshold")->valuedouble;
    const char *names[8];
    int C[8], sumC = 0;
    for (int l = 0; l < L; l++) {
        names[l] = cJSON_GetArrayItem(jn, l)->valuestring;
        C[l] = cJSON_GetArrayItem(jC, l)->valueint;
        sumC += C[l];
    }
    // Groups as the config parser gives them.
    const cJSON *jg = cJSON_GetObjectItem(r, "groups");
    spd_pattern_groups groups = {.count = cJSON_GetArraySize(jg)};
    groups.names = calloc((size_t)groups.count, sizeof(char *));
    groups.patterns = calloc((size_t)groups.count, sizeof(spd_str_list));
    int g = 0;
    for (const cJSON *it = jg->child; it; it = it->next, g++) {
        groups.names[g] = it->string;
        groups.patterns[g].count = cJSON_GetArraySize(it);
        groups.patterns[g].items = calloc((size_t)groups.patterns[g].count, sizeof(char *));
        for (int p = 0; p < groups.patterns[g].count; p++) groups.patterns[g].items[p] = cJSON_GetArrayItem(it, p)->valuestring;
    }
    const cJSON *ji = cJSON_GetObjectItem(r, "importance_minimality");
    spd_importance_minimality_config ic = {
        .pnorm = cJSON_GetObjectItem(ji, "pnorm")->valuedouble, .beta = cJSON_GetObjectItem(ji, "beta")->valuedouble,
        .p_anneal_start_frac = cJSON_GetObjectItem(ji, "p_anneal_start_frac")->valuedouble,
        .has_p_anneal_final_p = true, .p_anneal_final_p = cJSON_GetObjectItem(ji, "p_anneal_final_p")->valuedouble,
        .p_anneal_end_frac = cJSON_GetObjectItem(ji, "p_anneal_end_frac")->valuedouble, .eps = 1e-12};
    double p = importance_minimality_p(ic.pnorm, ic.p_anneal_start_frac, true, ic.p_anneal_final_p,
                                       ic.p_anneal_end_frac, cJSON_GetObjectItem(ji, "frac")->valuedouble);
    double *S = calloc((size_t)sumC, sizeof *S);

    spd_eval_acc acc;
    spd_eval_acc_init(&acc, L, names, C, thr, &groups, -1);
    const cJSON *jb = cJSON_GetObjectItem(r, "batches");
    int nb = cJSON_GetArraySize(jb);
    for (int b = 0; b < nb; b++) {
        const cJSON *bt = cJSON_GetArrayItem(jb, b);
        double *lo[8], *up[8];
        for (int l = 0, off = 0; l < L; off += C[l], l++) {
            lo[l] = num_array(cJSON_GetArrayItem(cJSON_GetObjectItem(bt, "ci_lower"), l), NULL);
            up[l] = num_array(cJSON_GetArrayItem(cJSON_GetObjectItem(bt, "ci_upper"), l), NULL);
            importance_minimality_sums_f64(S + off, up[l], N, C[l], p, ic.eps);
        }
        spd_eval_acc_update(&acc, N, (const void *const *)lo, NULL, SPD_DTYPE_F64);
        for (int l = 0; l < L; l++) free(lo[l]), free(up[l]);
    }
    spd_metric_list out = {0};
    spd_eval_acc_compute(&acc, &out);
    const cJSON *jl = cJSON_GetObjectItem(r, "l0");
    int n_l0 = 0, bad = 0;
    char key[300], why[400] = "";
    for (const cJSON *it = jl->child; it; it = it->next, n_l0++) {
        snprintf(key, sizeof key, "l0/%s", it->string);
        double got = key_value(&out, key);
        if (!(fabs(got - it->valuedouble) <= 1e-6 * fabs(it->valuedouble))) {
            bad++;
            snprintf(why, sizeof why, "%s: got %.9g, want %.9g", key, got, it->valuedouble);
        }
    }
    int n_ours = 0;
    for (int i = 0; i < out.count; i++) n_ours += strncmp(out.items[i].key, "l0/", 3) == 0;
    test_report(!bad && n_ours == n_l0, "CI_L0 with groups = SPD's CI_L0 (modules, groups; unmatched group absent)",
                "%s (%d keys, SPD %d)", why, n_ours, n_l0);
    for (int pass = 0; pass < 2; pass++) {
        const cJSON *jw = cJSON_GetObjectItem(r, pass ? "ci_mean" : "density");
        double err = 0;
        for (int l = 0; l < L; l++) {
            double got[64];
            int k;
            double *want = num_array(cJSON_GetArrayItem(jw, l), &k);
            if (pass) spd_eval_acc_ci_mean(&acc, l, got);
            else spd_eval_acc_density(&acc, l, got);
            err = fmax(err, k == C[l] ? test_rel_norm_err(got, want, k) : INFINITY);
            free(want);
        }
        test_report(err <= 1e-6, pass ? "CIMeanPerComponent = SPD's" : "ComponentActivationDensity = SPD's",
                    "rel err %.3g", err);
    }
    near("eval ImportanceMinimalityLoss (summed over batches, annealed p, beta) = SPD's",
         importance_minimality_from_sums(S, C, L, (double)nb * N, ic.beta, 1.0),
         cJSON_GetObjectItem(ji, "value")->valuedouble, 1e-6);

    // IdentityCIError.
    const cJSON *jd = cJSON_GetObjectItem(r, "identity");
    const int F = cJSON_GetObjectItem(jd, "F")->valueint;
    const cJSON *jdn = cJSON_GetObjectItem(jd, "names"), *jdc = cJSON_GetObjectItem(jd, "C");
    const int Li = cJSON_GetArraySize(jdn);
    const char *inames[8];
    int iC[8], iF[8];
    double *ici[8];
    for (int l = 0; l < Li; l++) {
        inames[l] = cJSON_GetArrayItem(jdn, l)->valuestring;
        iC[l] = cJSON_GetArrayItem(jdc, l)->valueint;
        iF[l] = F;
        ici[l] = num_array(cJSON_GetArrayItem(cJSON_GetObjectItem(jd, "ci"), l), NULL);
    }
    spd_target_ci_pattern pats[4];
    int np = 0;
    for (const cJSON *it = cJSON_GetObjectItem(jd, "patterns")->child; it; it = it->next, np++) {
        memset(&pats[np], 0, sizeof pats[np]);
        snprintf(pats[np].pattern, sizeof pats[np].pattern, "%s", cJSON_GetArrayItem(it, 0)->valuestring);
        pats[np].dense = !strcmp(cJSON_GetArrayItem(it, 1)->valuestring, "dense");
        pats[np].n = cJSON_GetArrayItem(it, 2)->valueint;
    }
    spd_metric_list tout = {0};
    int rc = spd_identity_ci_error(pats, np, Li, inames, (const double *const *)ici, iF, iC, &tout);
    bad = rc != 0;
    int n_want = 0;
    why[0] = 0;
    for (const cJSON *it = cJSON_GetObjectItem(jd, "want")->child; it; it = it->next, n_want++) {
        snprintf(key, sizeof key, "target_solution_error/%s", it->string);
        if (key_value(&tout, key) != it->valuedouble) {
            bad++;
            snprintf(why, sizeof why, "%s: got %g, want %g", key, key_value(&tout, key), it->valuedouble);
        }
    }
    test_report(!bad && tout.count == n_want, "IdentityCIError (identity + dense patterns) = SPD's compute_target_metrics",
                "%s", why);
    for (int l = 0; l < Li; l++) free(ici[l]);
    spd_metric_list_free(&tout);
    spd_metric_list_free(&out);
    spd_eval_acc_free(&acc);
    free(S);
    for (g = 0; g < groups.count; g++) free(groups.patterns[g].items);
    free(groups.names);
    free(groups.patterns);
    cJSON_Delete(r);
    free(text);
}

// ---------------------------------------------------------------- spd_evaluate on a TMS run

enum { F = 5, H = 2, B = 8, E = 3, NB = 2, CC = 6 };
static const int64_t STEPS = 10;

static const char *CONFIG =
    "seed: 5\n"
    "n_mask_samples: 1\n"
    "ci_fn_type: mlp\n"
    "ci_fn_hidden_dims: [3]\n"
    "module_info:\n"
    "  - module_pattern: \"linear*\"\n"
    "    C: 6\n"
    "loss_metric_configs:\n"
    "  - classname: ImportanceMinimalityLoss\n"
    "    coeff: 1e-3\n"
    "    pnorm: 1.0\n"
    "    beta: 0.0\n"
    "  - classname: StochasticReconLoss\n"
    "    coeff: 1.0\n"
    "output_loss_type: mse\n"
    "batch_size: 8\n"
    "eval_batch_size: 3\n"
    "steps: 10\n"
    "lr_schedule:\n"
    "  start_val: 1e-2\n"
    "train_log_freq: 5\n"
    "eval_freq: 2\n"
    "slow_eval_freq: 4\n"
    "slow_eval_on_first_step: false\n"
    "n_eval_steps: 2\n"
    "ci_alive_threshold: 0.05\n"
    "eval_metric_configs:\n"
    "  - classname: CI_L0\n"
    "    groups: {all: [\"*\"]}\n"
    "  - classname: CIHistograms\n"
    "    n_batches_accum: 1\n"
    "  - classname: ComponentActivationDensity\n"
    "  - classname: CIMeanPerComponent\n"
    "  - classname: IdentityCIError\n"
    "    identity_ci: [{layer_pattern: linear1, n_features: 5}]\n"
    "    dense_ci: null\n"
    "  - classname: CIMaskedReconLoss\n"
    "  - classname: PermutedCIPlots\n"
    "    identity_patterns: [linear1]\n"
    "    dense_patterns: [linear2]\n"
    "  - classname: UVPlots\n"
    "    identity_patterns: null\n"
    "    dense_patterns: null\n"
    "  - classname: FaithfulnessLoss\n"
    "  - classname: ImportanceMinimalityLoss\n"
    "    pnorm: 2.0\n"
    "    beta: 0.8\n"
    "pretrained_model_class: spd.experiments.tms.models.TMSModel\n"
    "task_config:\n"
    "  task_name: tms\n"
    "  feature_probability: 0.4\n";

typedef struct {
    spd_spec spec;
    tms_model tms;
    spd_trainer tr;
} fixture;

// A TMS target of `rows` rows with CI functions and components, same values whatever rows.
static void build(fixture *fx, int rows, const spd_train_term *terms, int n_terms) {
    memset(fx, 0, sizeof *fx);
    spd_spec_init(&fx->spec);
    tms_config cfg = {.n_features = F, .n_hidden = H};
    tms_options topt = {.B = rows, .prefix = "target_model."};
    tms_declare_f64(&fx->tms, &fx->spec, &cfg, &topt);
    spd_target tg = spd_target_tms_f64(&fx->tms);
    spd_train_options o;
    spd_train_options_default(&o);
    memcpy(o.terms, terms, (size_t)n_terms * sizeof *terms);
    o.n_terms = n_terms;
    o.ci_kind = SPD_CI_MLP;
    o.ci_hidden[0] = 3;
    o.n_ci_hidden = 1;
    o.seed = 5;
    o.steps = STEPS;
    int sites[2] = {TMS_LINEAR1, TMS_LINEAR2}, Cs[2] = {CC, CC};
    SPD_ASSERT(!spd_trainer_declare_f64(&fx->tr, &fx->spec, &o, &tg, sites, Cs, 2));
    spd_spec_alloc(&fx->spec);
    tms_bind_f64(&fx->tms, &fx->spec);
    tms_init_params_f64(&fx->tms, 3);
    tg = spd_target_tms_f64(&fx->tms);
    spd_trainer_bind_f64(&fx->tr, &tg);
    spd_trainer_init_params_f64(&fx->tr, 5);
}

static void fixture_free(fixture *fx) {
    spd_trainer_free_f64(&fx->tr);
    tms_free_f64(&fx->tms);
    spd_spec_free(&fx->spec);
}

// Snapshot of everything the training step left for the update and the log.
static double *train_state(const fixture *fx, size_t *n) {
    size_t nt = spd_spec_trained_elems(&fx->spec), k = 0;
    size_t tot = 2 * nt + SPD_TRAIN_MAX_TERMS + 1 + (size_t)2 * B * CC;
    double *s = calloc(tot, sizeof *s);
    memcpy(s + k, fx->spec.buf[SPD_ROLE_TRAINED], nt * sizeof *s), k += nt;
    memcpy(s + k, fx->spec.grad, nt * sizeof *s), k += nt;
    memcpy(s + k, fx->tr.values, sizeof fx->tr.values), k += SPD_TRAIN_MAX_TERMS;
    s[k++] = fx->tr.total;
    for (int l = 0; l < 2; l++) memcpy(s + k, fx->tr.mods[l].ci_lower, (size_t)B * CC * sizeof *s), k += (size_t)B * CC;
    *n = tot;
    return s;
}

static bool file_exists(const char *dir, const char *name) {
    char p[4300];
    snprintf(p, sizeof p, "%s/figures/%s", dir, name);
    struct stat st;
    return stat(p, &st) == 0 && st.st_size > 0;
}

// PNG width and height from the IHDR chunk; 0 when not a PNG.
static void png_size(const char *dir, const char *name, int *w, int *h) {
    char p[4300];
    snprintf(p, sizeof p, "%s/figures/%s", dir, name);
    unsigned char b[24] = {0};
    FILE *f = fopen(p, "rb");
    *w = *h = 0;
    if (!f) return;
    if (fread(b, 1, 24, f) == 24 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8)) {
        *w = b[16] << 24 | b[17] << 16 | b[18] << 8 | b[19];
        *h = b[20] << 24 | b[21] << 16 | b[22] << 8 | b[23];
    }
    fclose(f);
}

static void test_evaluate(void) {
    spd_config cfg;
    if (spd_config_load_string(&cfg, CONFIG, "test_eval.yaml")) {
        test_report(0, "eval config", "%s", spd_last_error());
        return;
    }
    // The training fixture: terms as the loss list (values only matter for the state check).
    spd_train_term tt[2] = {{.kind = SPD_TERM_IMPORTANCE_MINIMALITY, .coeff = 1e-3,
                             .imp = {.pnorm = 1, .p_anneal_start_frac = 1, .p_anneal_end_frac = 1, .eps = 1e-12}},
                            {.kind = SPD_TERM_STOCHASTIC_RECON, .coeff = 1}};
    fixture fx;
    build(&fx, B, tt, 2);
    spd_toy_data data;
    SPD_ASSERT(!spd_toy_data_init_tms(&data, F, 0.4, SPD_TOY_AT_LEAST_ZERO_ACTIVE, 5));
    char dir[] = "/tmp/spd_test_eval_XXXXXX";
    SPD_ASSERT(mkdtemp(dir));
    const int64_t step = 4;  // slow (4 % slow_eval_freq == 0)
    spd_toy_batch_f64(&data, (uint64_t)step, -1, 0, B, fx.tms.x, NULL);
    spd_train_step_f64(&fx.tr, step);

    spd_evaluator *ev = spd_evaluator_new(&(spd_eval_setup){.cfg = &cfg, .trainer = &fx.tr, .task = SPD_TASK_TMS,
                                                            .model = &fx.tms, .data = &data, .out_dir = dir});
    if (!ev) {
        test_report(0, "spd_evaluator_new", "%s", spd_last_error());
        return;
    }
    size_t ns;
    double *before = train_state(&fx, &ns);
    spd_metric_list out = {0}, again = {0};
    int rc = spd_evaluate(ev, step, &out);
    double *after = train_state(&fx, &ns);
    test_report(rc == 0 && memcmp(before, after, ns * sizeof(double)) == 0,
                "spd_evaluate leaves the training state alone (parameters, gradients, loss values, CI)", "rc %d", rc);
    rc = spd_evaluate(ev, step, &again);
    bool same = rc == 0 && again.count == out.count;
    for (int i = 0; same && i < out.count; i++)
        same = !strcmp(out.items[i].key, again.items[i].key) && out.items[i].value == again.items[i].value;
    test_report(same, "two evaluations at one step are identical", NULL);

    // The reference: a trainer of E rows with the eval list's deterministic terms, fed the eval batches.
    spd_train_term rt[2] = {{.kind = SPD_TERM_CI_MASKED_RECON, .coeff = 1}, {.kind = SPD_TERM_FAITHFULNESS, .coeff = 1}};
    fixture ref;
    build(&ref, E, rt, 2);
    memcpy(ref.spec.buf[SPD_ROLE_TRAINED], fx.spec.buf[SPD_ROLE_TRAINED], fx.spec.bytes[SPD_ROLE_TRAINED]);
    double cim = 0, faith = 0, l0[2] = {0}, S[2 * CC] = {0}, cim_train;
    int Cs[2] = {CC, CC};
    for (int b = 0; b < NB; b++) {
        spd_toy_batch_f64(&data, (uint64_t)step, b, 0, E, ref.tms.x, NULL);
        spd_train_step_f64(&ref.tr, step);
        cim += ref.tr.values[0] / NB;
        faith += ref.tr.values[1] / NB;
        for (int l = 0; l < 2; l++) {
            int cnt = 0;
            for (int i = 0; i < E * CC; i++) cnt += ref.tr.mods[l].ci_lower[i] > 0.05;
            l0[l] += (double)cnt / E / NB;
            // p = 2 (no annealing), eps 1e-12, beta 0.8: SPD's formula written out here.
            for (int n = 0; n < E; n++)
                for (int c = 0; c < CC; c++) S[l * CC + c] += pow(ref.tr.mods[l].ci_upper[n * CC + c] + 1e-12, 2.0);
        }
    }
    double imp = 0, imp_batch_mean = 0;
    for (int j = 0; j < 2 * CC; j++) {
        double mu = S[j] / (NB * E);
        imp += mu + 0.8 * mu * log2(1 + S[j]);
    }
    for (int b = 0; b < NB; b++) {  // the mean of per-batch values, which eval must not report
        double Sb[2 * CC] = {0};
        spd_toy_batch_f64(&data, (uint64_t)step, b, 0, E, ref.tms.x, NULL);
        spd_train_step_f64(&ref.tr, step);
        for (int l = 0; l < 2; l++) {
            for (int i = 0; i < E * CC; i++) Sb[l * CC + i % CC] += pow(ref.tr.mods[l].ci_upper[i] + 1e-12, 2.0);
        }
        imp_batch_mean += importance_minimality_from_sums(Sb, Cs, 2, E, 0.8, 1.0) / NB;
    }
    near("loss/CIMaskedReconLoss = mean over the eval batches (eval stream, eval_batch_size rows)",
         key_value(&out, "loss/CIMaskedReconLoss"), cim, 1e-12);
    near("loss/FaithfulnessLoss", key_value(&out, "loss/FaithfulnessLoss"), faith, 1e-12);
    near("loss/ImportanceMinimalityLoss from the eval entry (pnorm 2, beta 0.8), summed over batches",
         key_value(&out, "loss/ImportanceMinimalityLoss"), imp, 1e-12);
    test_report(fabs(imp - imp_batch_mean) > 1e-6 * imp, "(the batch-summed importance differs from the batch mean)",
                "%g vs %g", imp, imp_batch_mean);
    near("l0/0.05_linear1", key_value(&out, "l0/0.05_linear1"), l0[0], 1e-12);
    near("l0/0.05_linear2", key_value(&out, "l0/0.05_linear2"), l0[1], 1e-12);
    near("l0/0.05_all (group)", key_value(&out, "l0/0.05_all"), l0[0] + l0[1], 1e-12);
    spd_toy_batch_f64(&data, (uint64_t)step, -1, 0, E, ref.tms.x, NULL);  // the training batch's first rows
    spd_train_step_f64(&ref.tr, step);
    cim_train = ref.tr.values[0];
    spd_toy_batch_f64(&data, (uint64_t)step, 0, 0, E, ref.tms.x, NULL);
    spd_train_step_f64(&ref.tr, step);
    test_report(cim_train != ref.tr.values[0], "(eval batches are not the training batch)", NULL);
    bool has_stoch = !isnan(key_value(&out, "loss/StochasticReconLoss"));
    test_report(has_stoch && isnan(key_value(&out, "loss/StochasticHiddenActsReconLoss")),
                "loss configs not in the eval list are evaluated too (StochasticReconLoss), nothing else", NULL);

    // IdentityCIError from one-hot inputs 0.75 e_f, E = 3 rows < F = 5: two chunks.
    double oh[F * CC];
    for (int f0 = 0; f0 < F; f0 += E) {
        memset(ref.tms.x, 0, sizeof(double) * E * F);
        for (int r = 0; r < E && f0 + r < F; r++) ref.tms.x[r * F + f0 + r] = 0.75;
        spd_train_step_f64(&ref.tr, step);
        for (int r = 0; r < E && f0 + r < F; r++)
            memcpy(oh + (f0 + r) * CC, ref.tr.mods[0].ci_lower + r * CC, CC * sizeof(double));
    }
    spd_target_ci_pattern pat = {.pattern = "linear1", .dense = false, .n = F};
    spd_metric_list tse = {0};
    const char *n1[] = {"linear1"};
    const double *ohp[] = {oh};
    int Fs[] = {F}, C1[] = {CC};
    rc = spd_identity_ci_error(&pat, 1, 1, n1, ohp, Fs, C1, &tse);
    bool eq = rc == 0 && tse.count == 3;
    for (int i = 0; eq && i < tse.count; i++) eq = key_value(&out, tse.items[i].key) == tse.items[i].value;
    test_report(eq && isnan(key_value(&out, "target_solution_error/linear2")),
                "target_solution_error/{total, total_0p2, linear1} from the CI of one-hot inputs (in chunks of "
                "eval_batch_size rows)", "rc %d, total %g vs %g", rc, key_value(&out, "target_solution_error/total"),
                key_value(&tse, "target_solution_error/total"));
    spd_metric_list_free(&tse);

    // Figures at the slow step; none and no slow keys at a fast one.
    bool figs = file_exists(dir, "figures_causal_importance_values_4.png") &&
                file_exists(dir, "figures_causal_importance_values_pre_sigmoid_4.png") &&
                file_exists(dir, "figures_component_activation_density_4.png") &&
                file_exists(dir, "figures_ci_mean_per_component_4.png") &&
                file_exists(dir, "figures_ci_mean_per_component_log_4.png") && file_exists(dir, "l0_bar_chart_4.json");
    int w1, h1, w2, h2, w3, h3;
    png_size(dir, "figures_causal_importances_4.png", &w1, &h1);
    png_size(dir, "figures_causal_importances_upper_leaky_4.png", &w2, &h2);
    png_size(dir, "figures_uv_matrices_4.png", &w3, &h3);
    figs &= w1 == 420 && h1 == 2 * 300 && w2 == w1 && h2 == h1 && w3 == 2 * 420 && h3 == 2 * 300;
    test_report(figs, "slow step: CIHistograms, density, CI-mean, permuted-CI (2 modules stacked) and UV (V | U per "
                "module) PNGs and the L0 bar-chart JSON in figures/", "%dx%d %dx%d", w1, h1, w3, h3);
    spd_metric_list fast = {0};
    rc = spd_evaluate(ev, 2, &fast);
    test_report(rc == 0 && !file_exists(dir, "figures_causal_importance_values_2.png") &&
                    file_exists(dir, "l0_bar_chart_2.json") && !isnan(key_value(&fast, "l0/0.05_linear1")),
                "fast step: L0 and losses, no figures", NULL);
    test_report(isnan(key_value(&out, "mmcs/linear1")) && !spd_evaluate(ev, STEPS, &fast) &&
                    !isnan(key_value(&fast, "mmcs/linear1")) && !isnan(key_value(&fast, "ml2r/linear2")),
                "mmcs/ml2r only at the final evaluation (TMS)", NULL);

    test_report(spd_eval_due(&cfg, 0) && spd_eval_due(&cfg, 4) && !spd_eval_due(&cfg, 3) && !spd_eval_slow(&cfg, 0) &&
                    spd_eval_slow(&cfg, 8) && !spd_eval_slow(&cfg, 6),
                "cadence: eval_freq, slow_eval_freq, slow_eval_on_first_step false", NULL);

    spd_metric_list_free(&out);
    spd_metric_list_free(&again);
    spd_metric_list_free(&fast);
    free(before);
    free(after);
    spd_evaluator_free(ev);
    fixture_free(&ref);
    fixture_free(&fx);
    spd_toy_data_free(&data);
    spd_config_free(&cfg);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

int main(void) {
    test_spd_refs();
    test_evaluate();
    return test_exit();
}
