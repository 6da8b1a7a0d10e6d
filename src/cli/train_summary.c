// The end-of-run summary of `spd train` (train_summary.h).
#define SPD_F64
#include "cli/train_summary.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/spec.h"
#include "spd/figures.h"
#include "spd/metrics.h"

// One module's weights seen along the feature axis: target vector w_j and
// subcomponent c's vector for feature j, both of length len.
typedef struct {
    const double *W, *V, *U;  // W [d_out, d_in], V [d_in, C], U [C, d_out]
    int d_in, d_out, C;
    bool rows;  // features are rows of W (d_out == F), else columns (d_in == F)
    int len;    // the other dimension
} feature_view;

static double target_at(const feature_view *v, int j, int k) {
    return v->rows ? v->W[(size_t)j * v->d_in + k] : v->W[(size_t)k * v->d_in + j];
}
// Subcomponent c's weight W_c[o, i] = V[i, c] U[c, o] at feature j, entry k.
static double comp_at(const feature_view *v, int c, int j, int k) {
    return v->rows ? v->V[(size_t)k * v->C + c] * v->U[(size_t)c * v->d_out + j]
                   : v->V[(size_t)j * v->C + c] * v->U[(size_t)c * v->d_out + k];
}

// Best subcomponent for feature j by cosine (torch's eps 1e-8; first on ties), its norm ratio.
static int desc(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

// The natural break of a module's subcomponent norms: sorted descending, the largest
// ratio between neighbours; k subcomponents lie above it (0 when C < 2 or a norm is 0
// above it). Thresholds like SPD's 0.017 can cut through the unused tail; the break
// shows where the used subcomponents end.
static int norm_break(double *norms, int C, double *ratio, double *lo_used, double *hi_unused) {
    qsort(norms, (size_t)C, sizeof *norms, desc);
    int k = 0;
    *ratio = 0;
    for (int i = 0; i + 1 < C; i++) {
        if (norms[i + 1] <= 0) {  // everything after is exactly zero: an infinite break
            if (norms[i] > 0) k = i + 1, *ratio = INFINITY;
            break;
        }
        const double r = norms[i] / norms[i + 1];
        if (r > *ratio) *ratio = r, k = i + 1;
    }
    *lo_used = k > 0 ? norms[k - 1] : 0;
    *hi_unused = k < C ? norms[k] : 0;
    return k;
}

static int best_match(const feature_view *v, int j, double *cos_out, double *ratio_out) {
    double wn = 0;
    for (int k = 0; k < v->len; k++) wn += target_at(v, j, k) * target_at(v, j, k);
    wn = sqrt(wn);
    int best = 0;
    double best_cos = -INFINITY, best_norm = 0;
    for (int c = 0; c < v->C; c++) {
        double dot = 0, an = 0;
        for (int k = 0; k < v->len; k++) {
            double a = comp_at(v, c, j, k);
            dot += a * target_at(v, j, k);
            an += a * a;
        }
        an = sqrt(an);
        double den = an * wn;
        double cs = dot / (den > 1e-8 ? den : 1e-8);
        if (cs > best_cos) best_cos = cs, best_norm = an, best = c;
    }
    *cos_out = best_cos;
    *ratio_out = wn > 0 ? best_norm / wn : 0;
    return best;
}

// ---------------------------------------------------------------- figures

#define INK 0x202020

// F x C heat map per module of the one-hot CI (white 0 -> red 1); columns in the
// identity permutation when F <= C (feature f's subcomponent in column f).
static int fig_ci_per_feature(const char *path, int n_mods, const char *const *names, const double *const *ci,
                              const int *C, int F) {
    int cell = 14, maxC = 0;
    for (int l = 0; l < n_mods; l++) maxC = C[l] > maxC ? C[l] : maxC;
    if ((long)maxC * cell > 1600) cell = 1600 / maxC > 2 ? 1600 / maxC : 2;
    if (F * cell > 800) cell = 800 / F > 2 ? 800 / F : 2;
    int pw = maxC * cell + 80, ph = F * cell + 50;
    const char *title = "CI per feature: rows = one-hot input 0.75 e_f, columns = subcomponents";
    int tw = spd_text_width(title, 2) + 20;
    spd_image im;
    spd_image_init(&im, pw + 20 > tw ? pw + 20 : tw, 40 + n_mods * ph);
    spd_image_text(&im, 10, 10, title, 2, INK);
    int *perm = spd_malloc((size_t)(maxC ? maxC : 1) * sizeof *perm);
    for (int l = 0; l < n_mods; l++) {
        int y0 = 40 + l * ph, x0 = 60;
        if (F <= C[l]) spd_identity_ci_permutation(ci[l], F, C[l], perm);
        else
            for (int c = 0; c < C[l]; c++) perm[c] = c;
        spd_image_text(&im, 10, y0 + 4, names[l], 2, INK);
        for (int f = 0; f < F; f++)
            for (int k = 0; k < C[l]; k++) {
                double v = ci[l][(size_t)f * C[l] + perm[k]];
                spd_image_rect(&im, x0 + k * cell, y0 + 24 + f * cell, cell, cell,
                               spd_colormap_diverging(v < 0 ? 0 : v > 1 ? 1 : v));
            }
        spd_image_frame(&im, x0 - 1, y0 + 23, C[l] * cell + 2, F * cell + 2, INK);
    }
    free(perm);
    int rc = spd_image_write_png(&im, path);
    spd_image_free(&im);
    return rc;
}

static void dot(spd_image *im, double x, double y, int r, uint32_t rgb) {
    spd_image_rect(im, (int)lround(x) - r, (int)lround(y) - r, 2 * r + 1, 2 * r + 1, rgb);
}

static void line(spd_image *im, double x0, double y0, double x1, double y1, int r, uint32_t rgb) {
    int n = (int)(fabs(x1 - x0) + fabs(y1 - y0)) + 1;
    for (int i = 0; i <= n; i++) dot(im, x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n, r, rgb);
}

// The paper's TMS picture for a 2-D hidden space: per feature its target vector
// (grey, thick) and its best subcomponent's vector (coloured, thin, dot at the tip).
static int fig_hidden_space(const char *path, const char *module, const feature_view *v, int F, const int *best) {
    static const uint32_t pal[] = {0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd,
                                   0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf};
    const int S = 420, cx = 20 + S / 2, cy = 50 + S / 2;
    double m = 1e-12;
    for (int j = 0; j < F; j++)
        for (int k = 0; k < 2; k++) {
            double a = fabs(target_at(v, j, k)), b = fabs(comp_at(v, best[j], j, k));
            m = a > m ? a : m;
            m = b > m ? b : m;
        }
    double sc = (S / 2 - 10) / m;
    char t[256];
    snprintf(t, sizeof t, "%s: features in the 2-D hidden space", module);
    int tw = spd_text_width(t, 2) + 20;
    spd_image im;
    spd_image_init(&im, S + 40 > tw ? S + 40 : tw, S + 90);
    spd_image_text(&im, 10, 10, t, 2, INK);
    spd_image_text(&im, 10, 28, "grey: target  colour: best subcomponent", 1, INK);
    spd_image_rect(&im, 20, cy, S, 1, 0xdddddd);
    spd_image_rect(&im, cx, 50, 1, S, 0xdddddd);
    for (int j = 0; j < F; j++) {
        double tx = cx + sc * target_at(v, j, 0), ty = cy - sc * target_at(v, j, 1);
        line(&im, cx, cy, tx, ty, 2, 0xb0b0b0);
    }
    for (int j = 0; j < F; j++) {
        uint32_t col = pal[j % 10];
        double sx = cx + sc * comp_at(v, best[j], j, 0), sy = cy - sc * comp_at(v, best[j], j, 1);
        line(&im, cx, cy, sx, sy, 0, col);
        dot(&im, sx, sy, 3, col);
        char lab[32];
        snprintf(lab, sizeof lab, "f%d", j);
        spd_image_text(&im, (int)sx + 5, (int)sy - 4, lab, 1, col);
    }
    int rc = spd_image_write_png(&im, path);
    spd_image_free(&im);
    return rc;
}

// ---------------------------------------------------------------- the summary

int spd_train_summary_f64(spd_trainer *tr, const spd_toy_data *data, double *x, int B, int F, int64_t step,
                          double thr, int n_eval, const double *final_values, double final_total, bool tms,
                          const char *dir, spd_train_summary_result *res) {
    const int L = tr->n_mods;
    if (L > SPD_SUMMARY_MAX_MODS) return spd_set_error("summary: at most %d modules", SPD_SUMMARY_MAX_MODS);
    memset(res, 0, sizeof *res);
    res->n_mods = L;
    const char *names[SPD_SUMMARY_MAX_MODS];
    int C[SPD_SUMMARY_MAX_MODS];
    unsigned char *alive[SPD_SUMMARY_MAX_MODS];
    double *ci1[SPD_SUMMARY_MAX_MODS];
    for (int l = 0; l < L; l++) {
        names[l] = tr->target.sites[tr->mods[l].site].path;
        C[l] = tr->mods[l].comp.C;
        alive[l] = spd_calloc((size_t)C[l], 1);
        ci1[l] = spd_calloc((size_t)F * C[l], sizeof(double));
    }
    // Alive: CI > thr at some position of the eval batches.
    for (int e = 0; e < n_eval; e++) {
        spd_toy_batch_f64(data, (uint64_t)step, e, 0, B, x, NULL);
        spd_train_step_f64(tr, step);
        for (int l = 0; l < L; l++)
            for (long k = 0; k < (long)B * C[l]; k++)
                if (tr->mods[l].ci_lower[k] > thr) alive[l][k % C[l]] = 1;
    }
    // One-hot probe: rows f < F hold 0.75 e_f (B >= F rows; the rest zero).
    const int nf = F < B ? F : B;
    memset(x, 0, (size_t)B * F * sizeof *x);
    for (int f = 0; f < nf; f++) x[(size_t)f * F + f] = 0.75;
    spd_train_step_f64(tr, step);
    for (int l = 0; l < L; l++)
        memcpy(ci1[l], tr->mods[l].ci_lower, (size_t)nf * C[l] * sizeof(double));

    printf("summary (step %lld)", (long long)step);
    if (final_values) {
        printf(": final losses");
        for (int i = 0; i < tr->opt.n_terms; i++)
            printf(" %s %.4e", spd_term_kind_name(tr->opt.terms[i].kind), final_values[i]);
        printf(" | total %.6e", final_total);
    }
    printf("\n");
    for (int l = 0; l < L; l++) {
        for (int c = 0; c < C[l]; c++) res->alive[l] += alive[l][c];
        printf("  alive %-20s %d of %d subcomponents (CI > %g on %d eval batches of %d)\n", names[l], res->alive[l],
               C[l], thr, n_eval, B);
    }
    for (int l = 0; l < L; l++) {  // the paper's counts: SPD's TMS plotting rule on the weights
        const spd_train_module *md = &tr->mods[l];
        res->n_significant[l] = -1;
        if (!tms) continue;
        spd_signif_rule rule;
        double sthr = spd_tms_significance_rule(md->d_in, md->d_out, F, &rule);
        double *norms = spd_malloc((size_t)C[l] * sizeof *norms);
        res->n_significant[l] = spd_tms_n_significant(tr->spec->tensors[md->t_V].data, tr->spec->tensors[md->t_U].data,
                                                      SPD_DTYPE_F64, md->d_in, md->d_out, C[l], rule, sthr, norms);
        printf("  significant %-14s %d of %d subcomponents (SPD's TMS plotting rule: %s > %g)\n", names[l],
               res->n_significant[l], C[l],
               rule == SPD_SIGNIF_FROBENIUS ? "Frobenius norm" : rule == SPD_SIGNIF_INPUT_FEATURES
                                                                     ? "norm per input feature, summed"
                                                                     : "norm per output feature, summed",
               sthr);
        double ratio, lo, hi;
        const int k = norm_break(norms, C[l], &ratio, &lo, &hi);
        if (k > 0 && k < C[l])
            printf("    %-24s %d above the largest break in those norms: %.3g and up, then %.3g and down (%.0fx)\n",
                   "", k, lo, hi, ratio);
        free(norms);
    }
    int rc = 0;
    char key[300], path[4400];
    for (int l = 0; l < L; l++) {
        const spd_train_module *md = &tr->mods[l];
        snprintf(key, sizeof key, "target_model.%s.weight", names[l]);
        const spd_tensor *w = spd_spec_find(tr->spec, key);
        feature_view v = {.V = tr->spec->tensors[md->t_V].data, .U = tr->spec->tensors[md->t_U].data,
                          .d_in = md->d_in, .d_out = md->d_out, .C = C[l]};
        if (w && w->ndim == 2 && w->shape[0] == md->d_out && w->shape[1] == md->d_in &&
            (md->d_in == F || md->d_out == F)) {
            v.W = w->data;
            v.rows = md->d_in != F;
            v.len = v.rows ? md->d_in : md->d_out;
        }
        // subcomponents_<module>: spd_fig_tms reads features along d_in, so a module whose
        // features are its rows is drawn transposed (W^T, V' = U^T, U' = V^T).
        double *Wt = NULL, *Vt = NULL, *Ut = NULL;
        const double *Wf = w ? w->data : NULL, *Vf = v.V, *Uf = v.U;
        int fo = md->d_out, fi = md->d_in;
        if (v.W && v.rows) {
            Wt = spd_malloc((size_t)fo * fi * sizeof(double));
            Vt = spd_malloc((size_t)fo * C[l] * sizeof(double));
            Ut = spd_malloc((size_t)C[l] * fi * sizeof(double));
            for (int o = 0; o < fo; o++)
                for (int i = 0; i < fi; i++) Wt[(size_t)i * fo + o] = Wf[(size_t)o * fi + i];
            for (int c = 0; c < C[l]; c++) {
                for (int o = 0; o < fo; o++) Vt[(size_t)o * C[l] + c] = v.U[(size_t)c * fo + o];
                for (int i = 0; i < fi; i++) Ut[(size_t)c * fi + i] = v.V[(size_t)i * C[l] + c];
            }
            Wf = Wt, Vf = Vt, Uf = Ut;
            fo = md->d_in, fi = md->d_out;
        }
        if (Wf && rc == 0) {
            char fk[300];
            snprintf(fk, sizeof fk, "subcomponents_%s", names[l]);
            int n_show = res->alive[l] + 3 < C[l] ? res->alive[l] + 3 : C[l];
            char title[300];
            snprintf(title, sizeof title, "%s%s", names[l], v.W && v.rows ? " (transposed)" : "");
            if (spd_figure_path(path, sizeof path, dir, fk, step) ||
                spd_fig_tms(path, title, Wf, Vf, Uf, v.W && fi == F ? ci1[l] : NULL, fo, fi, C[l], n_show))
                rc = -1;
        }
        free(Wt);
        free(Vt);
        free(Ut);
        if (!v.W) continue;
        res->has_features[l] = true;
        int *best = spd_malloc((size_t)F * sizeof *best);
        double sum_cos = 0, sum_ratio = 0;
        printf("  %s: best-matching subcomponent per feature (%s of W)\n", names[l], v.rows ? "rows" : "columns");
        for (int j = 0; j < F; j++) {
            double cs, ratio;
            best[j] = best_match(&v, j, &cs, &ratio);
            sum_cos += cs;
            sum_ratio += ratio;
            printf("    feature %2d: subcomponent %3d  cos %.6f  norm ratio %.4f  CI %.3f\n", j, best[j], cs, ratio,
                   ci1[l][(size_t)j * C[l] + best[j]]);
        }
        res->mmcs[l] = sum_cos / F;
        res->ml2r[l] = sum_ratio / F;
        printf("  %s: MMCS %.6f  ML2R %.4f\n", names[l], res->mmcs[l], res->ml2r[l]);
        if (v.len == 2 && rc == 0) {
            char fk[300];
            snprintf(fk, sizeof fk, "hidden_space_%s", names[l]);
            if (spd_figure_path(path, sizeof path, dir, fk, step) || fig_hidden_space(path, names[l], &v, F, best))
                rc = -1;
        }
        free(best);
    }
    if (rc == 0 && (spd_figure_path(path, sizeof path, dir, "ci_per_feature", step) ||
                    fig_ci_per_feature(path, L, names, (const double *const *)ci1, C, nf)))
        rc = -1;
    if (rc == 0) printf("  figures: %s/figures/\n", dir);
    for (int l = 0; l < L; l++) {
        free(alive[l]);
        free(ci1[l]);
    }
    fflush(stdout);
    return rc;
}
