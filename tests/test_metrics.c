// Evaluation metrics (src/spd/metrics.h) on hand-checkable cases, and the
// figures (src/spd/figures.h): valid PNGs of the right size, read back with libpng.
// SPD_FIG_DIR=<dir> keeps the figures there (otherwise a temporary directory, removed).
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "spd/figures.h"
#include "spd/metrics.h"
#include "testing.h"

static void near(const char *name, double got, double want, double tol) {
    test_report(fabs(got - want) <= tol, name, "got %.17g, want %.17g", got, want);
}

static double key_value(const spd_metric_list *l, const char *key) {
    const spd_metric_kv *kv = spd_metric_list_find(l, key);
    return kv ? kv->value : NAN;
}

static void test_py_float(void) {
    const double v[] = {0.0, 0.1, 1e-05, 0.0001, 1.0, 0.5, 1e16, 123.456, 2.5e-07, 100.0};
    const char *want[] = {"0.0", "0.1", "1e-05", "0.0001", "1.0", "0.5", "1e+16", "123.456", "2.5e-07", "100.0"};
    int ok = 1;
    char buf[64], bad[256] = "";
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        spd_py_float_str(buf, sizeof buf, v[i]);
        if (strcmp(buf, want[i])) ok = 0, snprintf(bad, sizeof bad, "%s for %s", buf, want[i]);
    }
    test_report(ok, "py_float_str: Python's str(float)", "%s", bad);
}

static void test_patterns(void) {
    test_report(spd_l0_group_match("layers.*.mlp_in", "layers.0.mlp_in") && spd_l0_group_match("mlp", "mlp_in_x") &&
                    !spd_l0_group_match("mlp_in", "layers.0.mlp_in") && spd_l0_group_match("h.0", "hx0") &&
                    spd_l0_group_match("*attn*", "layers.1.self_attn.q_proj") && !spd_l0_group_match("a*b", "ac"),
                "l0 group match: re.match(pattern.replace('*', '.*'))", NULL);
    test_report(spd_fnmatch("layers.*.mlp_in", "layers.0.mlp_in") && !spd_fnmatch("mlp", "mlp_in") &&
                    spd_fnmatch("linear?", "linear1") && spd_fnmatch("hidden_layers.[0-2]", "hidden_layers.1") &&
                    !spd_fnmatch("hidden_layers.[!0-2]", "hidden_layers.1") && spd_fnmatch("*", ""),
                "fnmatch", NULL);
}

static void test_l0_and_acc(void) {
    // Module a: C = 3, two batches of N = 2; module b: C = 2.
    const double a1[] = {0.0, 0.5, 1.0,   // 2 above 0.1
                         0.1, 0.2, 0.0};  // 1 (0.1 is not > 0.1)
    const double a2[] = {0.0, 0.0, 0.0, 0.9, 0.9, 0.9};  // 0 and 3
    const double b1[] = {1, 1, 1, 1};                     // 2, 2
    const double b2[] = {0, 0, 0, 0.3};                   // 0, 1
    near("ci_l0: mean_n #{c: ci > thr} (strict)", spd_ci_l0(a1, SPD_DTYPE_F64, 2, 3, 0.1), 1.5, 0);
    float a1f[6];
    for (int i = 0; i < 6; i++) a1f[i] = (float)a1[i];
    // torch compares float32 CI with the threshold in float32: 0.1f > 0.1 is false there too.
    near("ci_l0: float32 input (threshold in float32)", spd_ci_l0(a1f, SPD_DTYPE_F32, 2, 3, 0.1), 1.5, 0);

    const char *names[] = {"layers.0.mlp_in", "layers.0.mlp_out"};
    const int C[] = {3, 2};
    char *gn[] = {"mlp_in", "all", "none"};
    char *p_in[] = {"layers.*.mlp_in"}, *p_all[] = {"layers.*"}, *p_none[] = {"attn"};
    spd_str_list pl[] = {{p_in, 1}, {p_all, 1}, {p_none, 1}};
    spd_pattern_groups groups = {gn, pl, 3};
    spd_eval_acc acc;
    spd_eval_acc_init(&acc, 2, names, C, 0.1, &groups, 1);
    const void *ci1[] = {a1, b1}, *ci2[] = {a2, b2};
    const double pre_a[] = {-1, 0, 1, 2, 3, 4}, pre_b[] = {5, 6, 7, 8};
    const void *pre1[] = {pre_a, pre_b};
    spd_eval_acc_update(&acc, 2, ci1, pre1, SPD_DTYPE_F64);
    spd_eval_acc_update(&acc, 2, ci2, pre1, SPD_DTYPE_F64);
    spd_metric_list out = {0};
    spd_eval_acc_compute(&acc, &out);
    // batch L0s: a 1.5, 1.5; b 2, 0.5 -> a 1.5, b 1.25; groups: mlp_in 1.5, all (3.5 + 2)/2 = 2.75
    near("CI_L0: l0/0.1_<module> (a)", key_value(&out, "l0/0.1_layers.0.mlp_in"), 1.5, 1e-15);
    near("CI_L0: l0/0.1_<module> (b)", key_value(&out, "l0/0.1_layers.0.mlp_out"), 1.25, 1e-15);
    near("CI_L0: group = batch sum over its modules, averaged", key_value(&out, "l0/0.1_all"), 2.75, 1e-15);
    near("CI_L0: group of one module", key_value(&out, "l0/0.1_mlp_in"), 1.5, 1e-15);
    test_report(!spd_metric_list_find(&out, "l0/0.1_none"), "CI_L0: a group matching no module has no key", NULL);
    // alive: a: c0 (0.9 in batch 2), c1, c2 -> 3; b: both -> 2
    near("n_alive/t0.1_<module>", key_value(&out, "n_alive/t0.1_layers.0.mlp_in"), 3, 0);
    double d[3], m[3];
    spd_eval_acc_density(&acc, 0, d);
    spd_eval_acc_ci_mean(&acc, 0, m);
    // a over 4 positions: c0 (0, 0.1, 0, 0.9): 1/4; c1 (0.5, 0.2, 0, 0.9): 3/4; c2 (1, 0, 0, 0.9): 2/4
    test_report(d[0] == 0.25 && d[1] == 0.75 && d[2] == 0.5, "ComponentActivationDensity: #{n: ci > thr} / N",
                "%g %g %g", d[0], d[1], d[2]);
    test_report(fabs(m[0] - 0.25) < 1e-15 && fabs(m[1] - 0.4) < 1e-15 && fabs(m[2] - 0.475) < 1e-15,
                "CIMeanPerComponent: mean ci over positions", "%g %g %g", m[0], m[1], m[2]);
    test_report(acc.hist_len[0] == 6 && acc.hist_pre_len[1] == 4 && acc.hist_ci[0][2] == 1.0,
                "CIHistograms: keeps the first n_batches_accum batches", NULL);
    char line[1024];
    FILE *f = fmemopen(line, sizeof line, "w");
    spd_metric_list_write_json(&out, f);
    fclose(f);
    test_report(strstr(line, ", \"l0/0.1_layers.0.mlp_in\": 1.5") && strstr(line, "\"n_alive/t0.1_layers.0.mlp_in\": 3,"),
                "metric list: JSON pairs", "%s", line);
    spd_metric_list_free(&out);
    spd_eval_acc_free(&acc);

    // Threshold 0.0 -> "l0/0.0_<module>"; no groups.
    spd_eval_acc_init(&acc, 1, names, C, 0.0, NULL, -1);
    spd_eval_acc_update(&acc, 2, ci1, NULL, SPD_DTYPE_F64);
    spd_eval_acc_compute(&acc, &out);
    near("CI_L0: key with threshold 0.0", key_value(&out, "l0/0.0_layers.0.mlp_in"), 2.0, 0);
    spd_metric_list_free(&out);
    spd_eval_acc_free(&acc);
}

static void test_identity_ci_error(void) {
    // 3 features, 5 components: a permuted identity with the extra columns zero.
    double ci[15] = {0};
    ci[0 * 5 + 3] = 1, ci[1 * 5 + 0] = 0.95, ci[2 * 5 + 4] = 1;
    test_report(spd_identity_ci_distance(ci, 3, 5, 3, 0.1) == 0, "IdentityCIError: permuted identity -> 0", NULL);
    ci[1 * 5 + 0] = 0.85;  // diagonal < 0.9: one error at tol 0.1, none at 0.2
    ci[2 * 5 + 1] = 0.15;  // off-diagonal > 0.1: one error at 0.1, none at 0.2
    test_report(spd_identity_ci_distance(ci, 3, 5, 3, 0.1) == 2 && spd_identity_ci_distance(ci, 3, 5, 3, 0.2) == 0,
                "IdentityCIError: diagonal < 1 - tol and off-diagonal > tol counted", NULL);
    // The assignment must maximise the diagonal sum: rows prefer column 0 greedily.
    const double tr[] = {0.9, 0.8,  //
                         0.9, 0.0};
    int perm[2];
    spd_identity_ci_permutation(tr, 2, 2, perm);
    test_report(perm[0] == 1 && perm[1] == 0, "IdentityCIError: Hungarian assignment (not greedy)", "%d %d", perm[0],
                perm[1]);
    // Brute force on a random 5 x 6 matrix.
    double r[30];
    uint64_t s = 12345;
    for (int i = 0; i < 30; i++) s = s * 6364136223846793005ULL + 1442695040888963407ULL, r[i] = (double)(s >> 11) / 9007199254740992.0;
    int p6[6];
    spd_identity_ci_permutation(r, 5, 6, p6);
    double got = 0, best = -1;
    for (int i = 0; i < 5; i++) got += r[i * 6 + p6[i]];
    int idx[5];
    for (idx[0] = 0; idx[0] < 6; idx[0]++)
        for (idx[1] = 0; idx[1] < 6; idx[1]++)
            for (idx[2] = 0; idx[2] < 6; idx[2]++)
                for (idx[3] = 0; idx[3] < 6; idx[3]++)
                    for (idx[4] = 0; idx[4] < 6; idx[4]++) {
                        int used = 0, okp = 1;
                        double sum = 0;
                        for (int i = 0; i < 5; i++) {
                            if (used >> idx[i] & 1) okp = 0;
                            used |= 1 << idx[i];
                            sum += r[i * 6 + idx[i]];
                        }
                        if (okp && sum > best) best = sum;
                    }
    near("IdentityCIError: Hungarian optimum = brute force (5 x 6)", got, best, 1e-12);
    // Dense: columns 1, 3 dense (strong entries), column 0 weak noise 0.2, column 2 zero; by sum: 1, 3, 0, 2.
    // k = 2: column 0's 0.2 > 0.1 (not > 0.2); k = 3: column 0 lacks a strong entry; k = 4: columns 0 and 2 do.
    const double dn[] = {0.2, 1, 0, 0.95,  //
                         0.0, 1, 0, 1.0,   //
                         0.0, 1, 0, 0.0};
    test_report(spd_dense_ci_distance(dn, 3, 4, 2, 0.1) == 1 && spd_dense_ci_distance(dn, 3, 4, 2, 0.2) == 0 &&
                    spd_dense_ci_distance(dn, 3, 4, 3, 0.1) == 1 && spd_dense_ci_distance(dn, 3, 4, 4, 0.1) == 2,
                "IdentityCIError: dense pattern (k)", "%d %d %d %d", spd_dense_ci_distance(dn, 3, 4, 2, 0.1),
                spd_dense_ci_distance(dn, 3, 4, 2, 0.2), spd_dense_ci_distance(dn, 3, 4, 3, 0.1),
                spd_dense_ci_distance(dn, 3, 4, 4, 0.1));
    // compute_target_metrics keys.
    spd_target_ci_pattern pats[2] = {{"linear*", false, 3}, {"hidden_layers.0", true, 2}};
    const char *names[] = {"linear1", "linear2", "hidden_layers.0", "other"};
    const double *cis[] = {ci, ci, dn, dn};
    const int F[] = {3, 3, 3, 3}, C[] = {5, 5, 4, 4};
    spd_metric_list out = {0};
    int rc = spd_identity_ci_error(pats, 2, 4, names, cis, F, C, &out);
    test_report(rc == 0 && key_value(&out, "target_solution_error/total") == 5 &&
                    key_value(&out, "target_solution_error/total_0p2") == 0 &&
                    key_value(&out, "target_solution_error/linear1") == 2 &&
                    key_value(&out, "target_solution_error/hidden_layers.0") == 1 &&
                    !spd_metric_list_find(&out, "target_solution_error/other") && out.count == 5,
                "IdentityCIError: target_solution_error/{total,total_0p2,<module>}", NULL);
    spd_metric_list_free(&out);
    // From the config's dict lists.
    spd_kv e1[] = {{"layer_pattern", false, 0, "linear1"}, {"n_features", true, 5, NULL}};
    spd_kv e2[] = {{"layer_pattern", false, 0, "hidden_layers.0"}, {"k", true, 2, NULL}};
    spd_kv_dict d1 = {e1, 2}, d2 = {e2, 2};
    spd_kv_dict_list il = {&d1, 1}, dl = {&d2, 1};
    spd_target_ci_pattern cp[4];
    int n = spd_target_ci_patterns_from_config(cp, 4, &il, true, &dl, true);
    test_report(n == 2 && !strcmp(cp[0].pattern, "linear1") && !cp[0].dense && cp[0].n == 5 && cp[1].dense &&
                    cp[1].n == 2,
                "IdentityCIError: patterns from the config", NULL);
    test_report(spd_identity_ci_distance(ci, 3, 2, 3, 0.1) == -1, "IdentityCIError: C < n_features is an error", NULL);
}

// TMS 5-2-like W [2, 5]: columns on a pentagon.
static void pentagon(double *W) {
    for (int j = 0; j < 5; j++) {
        W[0 * 5 + j] = cos(2 * M_PI * j / 5) * (1 + 0.1 * j);
        W[1 * 5 + j] = sin(2 * M_PI * j / 5) * (1 + 0.1 * j);
    }
}

// Components: c < 5 equal column c of W (V[j,c] = sign delta_jc, U[c,:] = sign W[:,c]), the rest small noise.
static void exact_components(const double *W, double *V, double *U, int C, double scale) {
    uint64_t s = 99;
    for (int c = 0; c < C; c++) {
        for (int j = 0; j < 5; j++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            V[j * C + c] = c < 5 ? (j == c ? (c % 2 ? -1.0 : 1.0) : 0.0) : 1e-3 * ((double)(s >> 11) / 9.007e15 - 0.5);
        }
        for (int o = 0; o < 2; o++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            U[c * 2 + o] = c < 5 ? scale * (c % 2 ? -1.0 : 1.0) * W[o * 5 + c] : (double)(s >> 11) / 9.007e15 - 0.5;
        }
    }
}

static void test_mmcs(void) {
    double W[10], V[5 * 20], U[20 * 2];
    pentagon(W);
    exact_components(W, V, U, 20, 1.0);
    double mmcs, ml2r;
    spd_mmcs_ml2r(W, V, U, SPD_DTYPE_F64, 2, 5, 20, &mmcs, &ml2r);
    near("MMCS: components equal to W's columns -> 1", mmcs, 1, 1e-12);
    near("ML2R: components equal to W's columns -> 1", ml2r, 1, 1e-12);
    exact_components(W, V, U, 20, 2.0);
    spd_mmcs_ml2r(W, V, U, SPD_DTYPE_F64, 2, 5, 20, &mmcs, &ml2r);
    near("ML2R: components twice W's columns -> 2 (MMCS 1)", ml2r + (mmcs - 1), 2, 1e-12);
    float Wf[10], Vf[100], Uf[40];
    for (int i = 0; i < 10; i++) Wf[i] = (float)W[i];
    for (int i = 0; i < 100; i++) Vf[i] = (float)V[i];
    for (int i = 0; i < 40; i++) Uf[i] = (float)U[i];
    spd_mmcs_ml2r(Wf, Vf, Uf, SPD_DTYPE_F32, 2, 5, 20, &mmcs, &ml2r);
    near("MMCS/ML2R: float32 input", mmcs + ml2r, 3, 1e-6);
    // W = I_2, one component V = [1, 1]^T, U = [1, 1]: every column (1, 1): cos 1/sqrt2, ratio sqrt2.
    const double I2[] = {1, 0, 0, 1}, v1[] = {1, 1}, u1[] = {1, 1};
    spd_mmcs_ml2r(I2, v1, u1, SPD_DTYPE_F64, 2, 2, 1, &mmcs, &ml2r);
    near("MMCS: hand case 1/sqrt(2)", mmcs, 1 / sqrt(2), 1e-15);
    near("ML2R: hand case sqrt(2)", ml2r, sqrt(2), 1e-15);
    // A negative V entry flips the column: cos -1/sqrt2 for column 1.
    const double v2[] = {1, -1};
    spd_mmcs_ml2r(I2, v2, u1, SPD_DTYPE_F64, 2, 2, 1, &mmcs, &ml2r);
    near("MMCS: sign of V[j,c] counts", mmcs, 0, 1e-15);
    double norms[20];
    exact_components(W, V, U, 20, 1.0);
    spd_component_norms(V, U, SPD_DTYPE_F64, 5, 2, 20, norms);
    near("component norms: |V[:,c]| |U[c,:]| = |W[:,c]|", norms[3], hypot(W[3], W[8]), 1e-15);
    test_report(spd_count_nonnegligible(norms, 20, 1e-2) == 5, "non-negligible components: 5 of 20", NULL);
}

// SPD's plotting rule for significant TMS subcomponents, on a hand-built V [3, 4], U [4, 2]:
//   c0: V e_0, U (0.017, 0)          row norms sum 0.017 exactly (the threshold: not counted)
//   c1: V e_0, U (0.017 + ulp, 0)    just above it
//   c2: V (0.5, -0.5, 0.25), U (0.03, 0.04): row norms 0.025 + 0.025 + 0.0125 = 0.0625, Frobenius 0.0375
//   c3: V (0.0065, 0.0065, 0), U (0.6, 0.8): row norms 0.013 (< 0.017), Frobenius 0.0091924 (> 0.009)
static void test_n_significant(void) {
    const double t = SPD_TMS_SUBNET_NORM_THRESHOLD, up = nextafter(t, 1);
    const double V[3 * 4] = {1, 1, 0.5, 0.0065, 0, 0, -0.5, 0.0065, 0, 0, 0.25, 0};
    const double U[4 * 2] = {t, 0, up, 0, 0.03, 0.04, 0.6, 0.8};
    double n[4];
    int k = spd_tms_n_significant(V, U, SPD_DTYPE_F64, 3, 2, 4, SPD_SIGNIF_INPUT_FEATURES, t, n);
    test_report(k == 2 && n[0] == t && n[1] == up && fabs(n[2] - 0.0625) < 1e-16 && fabs(n[3] - 0.013) < 1e-16,
                "n_significant (input features): row norms summed; a norm equal to the threshold is not counted",
                "%d: %.17g %.17g %.17g %.17g", k, n[0], n[1], n[2], n[3]);
    k = spd_tms_n_significant(V, U, SPD_DTYPE_F64, 3, 2, 4, SPD_SIGNIF_OUTPUT_FEATURES, t, n);
    test_report(k == 2 && n[0] == t && fabs(n[2] - 0.07 * 0.75) < 1e-16 && fabs(n[3] - 1.4 * 0.0065 * sqrt(2)) < 1e-16,
                "n_significant (output features): |U[c,o]| |V[:,c]| summed over o", "%d: %.17g %.17g", k, n[2], n[3]);
    k = spd_tms_n_significant(V, U, SPD_DTYPE_F64, 3, 2, 4, SPD_SIGNIF_FROBENIUS, SPD_TMS_HIDDEN_LAYER_THRESHOLD, n);
    test_report(k == 4 && fabs(n[2] - 0.0375) < 1e-16 && fabs(n[3] - 0.0065 * sqrt(2)) < 1e-16,
                "n_significant (Frobenius, 0.009): c3 counts here but not by the feature rule", "%d: %.17g", k, n[3]);
    k = spd_tms_n_significant(V, U, SPD_DTYPE_F64, 3, 2, 4, SPD_SIGNIF_FROBENIUS, t, n);
    test_report(k == 2 && n[0] == t, "n_significant (Frobenius at 0.017): c1, c2; c0 (norm = the threshold) not", "%d", k);
    float Vf[12], Uf[8];
    for (int i = 0; i < 12; i++) Vf[i] = (float)V[i];
    for (int i = 0; i < 8; i++) Uf[i] = (float)U[i];
    k = spd_tms_n_significant(Vf, Uf, SPD_DTYPE_F32, 3, 2, 4, SPD_SIGNIF_INPUT_FEATURES, 0.05, n);
    test_report(k == 1 && fabs(n[2] - 0.0625) < 1e-8, "n_significant: float32 input", "%d %.17g", k, n[2]);
}

static int png_dims(const char *path, int *w, int *h, uint8_t **pix) {
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&im, path)) return -1;
    im.format = PNG_FORMAT_RGB;
    *pix = malloc(PNG_IMAGE_SIZE(im));
    if (!png_image_finish_read(&im, NULL, *pix, 0, NULL)) {
        free(*pix);
        return -1;
    }
    *w = (int)im.width, *h = (int)im.height;
    return 0;
}

static void test_figures(void) {
    char dir[512];
    const char *keep = getenv("SPD_FIG_DIR");
    if (keep) snprintf(dir, sizeof dir, "%s", keep);
    else {
        snprintf(dir, sizeof dir, "/tmp/spd_test_metrics_XXXXXX");
        if (!mkdtemp(dir)) {
            test_report(0, "figures: temporary directory", NULL);
            return;
        }
    }
    char path[1024];
    int w, h;
    uint8_t *pix;
    // Raster + PNG round trip.
    spd_image im;
    spd_image_init(&im, 7, 3);
    spd_image_rect(&im, 1, 1, 2, 1, 0x102030);
    snprintf(path, sizeof path, "%s/raw.png", dir);
    int rc = spd_image_write_png(&im, path);
    spd_image_free(&im);
    int ok = rc == 0 && png_dims(path, &w, &h, &pix) == 0;
    if (ok) {
        ok = w == 7 && h == 3 && pix[(1 * 7 + 1) * 3] == 0x10 && pix[(1 * 7 + 2) * 3 + 2] == 0x30 && pix[0] == 255;
        free(pix);
    }
    test_report(ok, "png: written image reads back (size, pixels)", NULL);
    unlink(path);

    // CI histograms of two modules.
    int64_t n = 4000;
    double *v0 = malloc(n * sizeof(double)), *v1 = malloc(n * sizeof(double));
    for (int64_t i = 0; i < n; i++) {
        v0[i] = i % 10 == 0 ? (double)(i % 997) / 997 : 0;  // mostly zeros, some spread
        v1[i] = i % 3 == 0 ? 1.0 : (double)(i % 101) / 2000;
    }
    const char *names[] = {"linear1", "hidden_layers.0"};
    const double *vals[] = {v0, v1};
    const int64_t counts[] = {n, n};
    rc = spd_figure_path(path, sizeof path, dir, "figures/causal_importance_values", 0);
    rc = rc ? rc : spd_fig_histograms(path, 2, names, vals, counts, 100, 1, "Causal importances for", "Causal importance value");
    ok = rc == 0 && png_dims(path, &w, &h, &pix) == 0;
    if (ok) free(pix);
    test_report(ok && w == 420 && h == 2 * 260 && strstr(path, "/figures/figures_causal_importance_values_0.png"),
                "figures: CI histograms PNG (one panel per module)", "%s %d x %d", path, w, h);
    if (!keep) unlink(path);
    // 8 modules: 6 rows, 2 columns.
    const char *n8[8] = {"a", "b", "c", "d", "e", "f", "g", "h"};
    const double *v8[8] = {v0, v1, v0, v1, v0, v1, v0, v1};
    const int64_t c8[8] = {n, n, n, n, n, n, n, n};
    snprintf(path, sizeof path, "%s/hist8.png", dir);
    rc = spd_fig_histograms(path, 8, n8, v8, c8, 100, 1, "Causal importances for", NULL);
    ok = rc == 0 && png_dims(path, &w, &h, &pix) == 0;
    if (ok) free(pix);
    test_report(ok && w == 2 * 420 && h == 6 * 260, "figures: histogram grid of 8 modules is 6 x 2", NULL);
    unlink(path);
    // Mean CI per component.
    double means[20];
    for (int c = 0; c < 20; c++) means[c] = c < 5 ? 0.2 + 0.05 * c : 1e-3 * (c - 4);
    const double *mv[] = {means};
    const int Cm[] = {20};
    snprintf(path, sizeof path, "%s/ci_mean_per_component_log.png", dir);
    rc = spd_fig_ci_mean(path, 1, names, mv, Cm, 1);
    ok = rc == 0 && png_dims(path, &w, &h, &pix) == 0;
    if (ok) free(pix);
    test_report(ok && w == 420 && h == 260, "figures: CI mean per component PNG", NULL);
    if (!keep) unlink(path);
    // TMS: exact components plus noise, CI identity on the first 5.
    double W[10], V[100], U[40], ci[5 * 20] = {0};
    pentagon(W);
    exact_components(W, V, U, 20, 1.0);
    for (int j = 0; j < 5; j++) ci[j * 20 + j] = 1.0, ci[j * 20 + 7] = 0.05;
    snprintf(path, sizeof path, "%s/tms_linear1.png", dir);
    rc = spd_fig_tms(path, "linear1", W, V, U, ci, 2, 5, 20, 7);
    ok = rc == 0 && png_dims(path, &w, &h, &pix) == 0;
    if (ok) {
        // The target panel's first cell is W[0][0] > 0 at full scale? W[0][0] = 1 (scale max 1.4): reddish.
        int cell = 24, x = 10 + 2, y = 40 + 14 + 2;
        uint8_t *p = pix + ((size_t)y * w + x) * 3;
        ok = p[0] > p[2];
        (void)cell;
        free(pix);
    }
    test_report(ok && w == 8 * 150 + 20, "figures: TMS subcomponent figure", "%d x %d", w, h);
    if (!keep) {
        unlink(path);
        rmdir(strcat(dir, "/figures")), dir[strlen(dir) - 8] = 0;
        rmdir(dir);
    } else {
        printf("# figures in %s\n", dir);
    }
    free(v0), free(v1);
}

int main(void) {
    test_py_float();
    test_patterns();
    test_l0_and_acc();
    test_identity_ci_error();
    test_mmcs();
    test_n_significant();
    test_figures();
    return test_exit();
}
