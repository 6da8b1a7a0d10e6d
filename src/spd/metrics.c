// SPD's evaluation metrics (metrics.h).
#include "spd/metrics.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

// ------------------------------------------------------------ key/value list

void spd_metric_list_add(spd_metric_list *l, const char *key, double value, bool is_int) {
    if (l->count == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        spd_metric_kv *p = realloc(l->items, (size_t)l->cap * sizeof *p);
        SPD_ASSERT(p);
        l->items = p;
    }
    spd_metric_kv *kv = &l->items[l->count++];
    snprintf(kv->key, sizeof kv->key, "%s", key);
    kv->value = value;
    kv->is_int = is_int;
}

const spd_metric_kv *spd_metric_list_find(const spd_metric_list *l, const char *key) {
    for (int i = 0; i < l->count; i++)
        if (!strcmp(l->items[i].key, key)) return &l->items[i];
    return NULL;
}

void spd_metric_list_write_json(const spd_metric_list *l, FILE *f) {
    for (int i = 0; i < l->count; i++) {
        const spd_metric_kv *kv = &l->items[i];
        fputs(", \"", f);
        for (const char *s = kv->key; *s; s++) {
            if (*s == '"' || *s == '\\') fputc('\\', f);
            fputc(*s, f);
        }
        fputs("\": ", f);
        if (kv->is_int) fprintf(f, "%lld", (long long)kv->value);
        else if (isnan(kv->value)) fputs("NaN", f);
        else if (isinf(kv->value)) fputs(kv->value > 0 ? "Infinity" : "-Infinity", f);
        else fprintf(f, "%.17g", kv->value);
    }
}

void spd_metric_list_free(spd_metric_list *l) {
    free(l->items);
    l->items = NULL;
    l->count = l->cap = 0;
}

void spd_py_float_str(char *buf, size_t size, double v) {
    if (isnan(v)) { snprintf(buf, size, "nan"); return; }
    if (isinf(v)) { snprintf(buf, size, v > 0 ? "inf" : "-inf"); return; }
    // Shortest %.*e that round-trips, then Python's layout: positional for
    // -4 <= exponent < 16, else d.ddde-XX.
    char e[64];
    int prec;
    for (prec = 0; prec < 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec, v);
        if (strtod(e, NULL) == v) break;
    }
    snprintf(e, sizeof e, "%.*e", prec, v);
    char *ep = strchr(e, 'e');
    int exp10 = atoi(ep + 1);
    *ep = 0;
    char digits[32];
    int nd = 0;
    bool neg = e[0] == '-';
    for (const char *s = e; *s; s++)
        if (*s >= '0' && *s <= '9') digits[nd++] = *s;
    digits[nd] = 0;
    char out[96];
    int o = 0;
    if (neg) out[o++] = '-';
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 < 0) {
            out[o++] = '0';
            out[o++] = '.';
            for (int i = 0; i < -exp10 - 1; i++) out[o++] = '0';
            for (int i = 0; i < nd; i++) out[o++] = digits[i];
        } else {
            for (int i = 0; i <= exp10; i++) out[o++] = i < nd ? digits[i] : '0';
            out[o++] = '.';
            if (nd > exp10 + 1)
                for (int i = exp10 + 1; i < nd; i++) out[o++] = digits[i];
            else
                out[o++] = '0';
        }
        out[o] = 0;
    } else {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            for (int i = 1; i < nd; i++) out[o++] = digits[i];
        }
        snprintf(out + o, sizeof out - (size_t)o, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
    }
    snprintf(buf, size, "%s", out);
}

// Regex subset after "*" -> ".*": '.' any char, 'x*' zero or more x, literals.
static bool re_here(const char *re, const char *s) {
    if (!*re) return true;  // re.match: anchored at the start only
    if (re[1] == '*') {
        do {
            if (re_here(re + 2, s)) return true;
        } while (*s && (re[0] == '.' || *s == re[0]) && s++);
        return false;
    }
    if (*s && (re[0] == '.' || re[0] == *s)) return re_here(re + 1, s + 1);
    return false;
}

bool spd_l0_group_match(const char *pattern, const char *name) {
    size_t n = strlen(pattern);
    char *re = spd_malloc(2 * n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (pattern[i] == '*') re[o++] = '.';
        re[o++] = pattern[i];
    }
    re[o] = 0;
    bool m = re_here(re, name);
    free(re);
    return m;
}

bool spd_fnmatch(const char *p, const char *s) {
    for (; *p; p++, s++) {
        if (*p == '*') {
            while (p[1] == '*') p++;
            for (const char *t = s;; t++) {
                if (spd_fnmatch(p + 1, t)) return true;
                if (!*t) return false;
            }
        }
        if (!*s) return false;
        if (*p == '?') continue;
        if (*p == '[') {
            const char *q = p + 1;
            bool negate = *q == '!';
            if (negate) q++;
            const char *start = q;
            bool hit = false;
            while (*q && (*q != ']' || q == start)) {
                if (q[1] == '-' && q[2] && q[2] != ']') {
                    if (*s >= q[0] && *s <= q[2]) hit = true;
                    q += 3;
                } else {
                    if (*s == *q) hit = true;
                    q++;
                }
            }
            if (*q == ']') {
                if (hit == negate) return false;
                p = q;
                continue;
            }
            // no closing ']': '[' is literal
        }
        if (*p != *s) return false;
    }
    return !*s;
}

// ------------------------------------------------------------ per batch

double spd_ci_l0(const void *ci, spd_dtype dtype, int64_t N, int C, double thr) {
    if (N <= 0) return NAN;
    thr = spd_metric_threshold(thr, dtype);
    int64_t cnt = 0;
    for (int64_t i = 0; i < N * C; i++) cnt += spd_metric_at(ci, dtype, i) > thr;
    return (double)cnt / (double)N;
}

// ------------------------------------------------------------ accumulator

static char *dupstr(const char *s) {
    char *d = spd_malloc(strlen(s) + 1);
    strcpy(d, s);
    return d;
}

void spd_eval_acc_init(spd_eval_acc *a, int n_mods, const char *const *names, const int *C, double thr,
                       const spd_pattern_groups *groups, int64_t hist_batches_max) {
    memset(a, 0, sizeof *a);
    a->n_mods = n_mods;
    a->thr = thr;
    a->names = spd_calloc((size_t)n_mods, sizeof(char *));
    a->C = spd_calloc((size_t)n_mods, sizeof(int));
    a->active_count = spd_calloc((size_t)n_mods, sizeof(double *));
    a->ci_sum = spd_calloc((size_t)n_mods, sizeof(double *));
    a->ci_max = spd_calloc((size_t)n_mods, sizeof(double *));
    a->hist_ci = spd_calloc((size_t)n_mods, sizeof(double *));
    a->hist_pre = spd_calloc((size_t)n_mods, sizeof(double *));
    a->hist_len = spd_calloc((size_t)n_mods, sizeof(int64_t));
    a->hist_pre_len = spd_calloc((size_t)n_mods, sizeof(int64_t));
    a->hist_cap = spd_calloc((size_t)n_mods, sizeof(int64_t));
    a->hist_pre_cap = spd_calloc((size_t)n_mods, sizeof(int64_t));
    for (int l = 0; l < n_mods; l++) {
        a->names[l] = dupstr(names[l]);
        a->C[l] = C[l];
        a->active_count[l] = spd_calloc((size_t)C[l], sizeof(double));
        a->ci_sum[l] = spd_calloc((size_t)C[l], sizeof(double));
        a->ci_max[l] = spd_calloc((size_t)C[l], sizeof(double));
        for (int c = 0; c < C[l]; c++) a->ci_max[l][c] = -INFINITY;
    }
    a->n_groups = groups ? groups->count : 0;
    a->group_names = spd_calloc((size_t)a->n_groups + 1, sizeof(char *));
    a->group_has = spd_calloc((size_t)a->n_groups * (size_t)n_mods + 1, sizeof(bool));
    for (int g = 0; g < a->n_groups; g++) {
        a->group_names[g] = dupstr(groups->names[g]);
        for (int l = 0; l < n_mods; l++)
            for (int p = 0; p < groups->patterns[g].count; p++)
                if (spd_l0_group_match(groups->patterns[g].items[p], names[l])) {
                    a->group_has[(size_t)g * n_mods + l] = true;
                    break;
                }
    }
    a->l0_sum = spd_calloc((size_t)(n_mods + a->n_groups), sizeof(double));
    a->hist_batches_max = hist_batches_max;
}

static void append(double **buf, int64_t *len, int64_t *cap, const void *src, spd_dtype dtype, int64_t n) {
    if (*len + n > *cap) {
        int64_t nc = *cap ? *cap : 1024;
        while (nc < *len + n) nc *= 2;
        double *p = realloc(*buf, (size_t)nc * sizeof(double));
        SPD_ASSERT(p);
        *buf = p;
        *cap = nc;
    }
    for (int64_t i = 0; i < n; i++) (*buf)[*len + i] = spd_metric_at(src, dtype, i);
    *len += n;
}

void spd_eval_acc_update(spd_eval_acc *a, int64_t N, const void *const *ci_lower, const void *const *pre_sigmoid,
                         spd_dtype dtype) {
    double *group_sum = a->n_groups ? spd_calloc((size_t)a->n_groups, sizeof(double)) : NULL;
    bool keep_hist = a->hist_batches_max < 0 || a->hist_batches < a->hist_batches_max;
    double thr = spd_metric_threshold(a->thr, dtype);
    for (int l = 0; l < a->n_mods; l++) {
        int C = a->C[l];
        const void *ci = ci_lower[l];
        int64_t cnt = 0;
        for (int64_t n = 0; n < N; n++)
            for (int c = 0; c < C; c++) {
                double v = spd_metric_at(ci, dtype, n * C + c);
                if (v > thr) {
                    cnt++;
                    a->active_count[l][c] += 1;
                }
                a->ci_sum[l][c] += v;
                if (v > a->ci_max[l][c]) a->ci_max[l][c] = v;
            }
        double l0 = N > 0 ? (double)cnt / (double)N : 0;
        a->l0_sum[l] += l0;
        for (int g = 0; g < a->n_groups; g++)
            if (a->group_has[(size_t)g * a->n_mods + l]) group_sum[g] += l0;
        if (keep_hist) {
            append(&a->hist_ci[l], &a->hist_len[l], &a->hist_cap[l], ci, dtype, N * C);
            if (pre_sigmoid && pre_sigmoid[l])
                append(&a->hist_pre[l], &a->hist_pre_len[l], &a->hist_pre_cap[l], pre_sigmoid[l], dtype, N * C);
        }
    }
    for (int g = 0; g < a->n_groups; g++) a->l0_sum[a->n_mods + g] += group_sum[g];
    free(group_sum);
    if (keep_hist) a->hist_batches++;
    a->n_batches++;
    a->n_pos += N;
}

void spd_eval_acc_compute(const spd_eval_acc *a, spd_metric_list *out) {
    char thr[48], key[256];
    spd_py_float_str(thr, sizeof thr, a->thr);
    double nb = a->n_batches > 0 ? (double)a->n_batches : NAN;
    for (int l = 0; l < a->n_mods; l++) {
        snprintf(key, sizeof key, "l0/%s_%s", thr, a->names[l]);
        spd_metric_list_add(out, key, a->l0_sum[l] / nb, false);
    }
    // SPD creates a group's entry only when some module matched it.
    for (int g = 0; g < a->n_groups; g++) {
        bool any = false;
        for (int l = 0; l < a->n_mods; l++) any |= a->group_has[(size_t)g * a->n_mods + l];
        if (!any) continue;
        snprintf(key, sizeof key, "l0/%s_%s", thr, a->group_names[g]);
        spd_metric_list_add(out, key, a->l0_sum[a->n_mods + g] / nb, false);
    }
    for (int l = 0; l < a->n_mods; l++) {
        snprintf(key, sizeof key, "n_alive/t%s_%s", thr, a->names[l]);
        spd_metric_list_add(out, key, spd_eval_acc_n_alive(a, l), true);
    }
}

void spd_eval_acc_density(const spd_eval_acc *a, int l, double *out) {
    for (int c = 0; c < a->C[l]; c++) out[c] = a->active_count[l][c] / (double)a->n_pos;
}

void spd_eval_acc_ci_mean(const spd_eval_acc *a, int l, double *out) {
    for (int c = 0; c < a->C[l]; c++) out[c] = a->ci_sum[l][c] / (double)a->n_pos;
}

int spd_eval_acc_n_alive(const spd_eval_acc *a, int l) {
    int n = 0;
    for (int c = 0; c < a->C[l]; c++) n += a->active_count[l][c] > 0;
    return n;
}

void spd_eval_acc_free(spd_eval_acc *a) {
    for (int l = 0; l < a->n_mods; l++) {
        free(a->names[l]);
        free(a->active_count[l]);
        free(a->ci_sum[l]);
        free(a->ci_max[l]);
        free(a->hist_ci[l]);
        free(a->hist_pre[l]);
    }
    for (int g = 0; g < a->n_groups; g++) free(a->group_names[g]);
    free(a->names);
    free(a->C);
    free(a->active_count);
    free(a->ci_sum);
    free(a->ci_max);
    free(a->hist_ci);
    free(a->hist_pre);
    free(a->hist_len);
    free(a->hist_pre_len);
    free(a->hist_cap);
    free(a->hist_pre_cap);
    free(a->group_names);
    free(a->group_has);
    free(a->l0_sum);
    memset(a, 0, sizeof *a);
}

// ------------------------------------------------------------ IdentityCIError

// Minimum-cost assignment of n rows to distinct columns of cost [n, m], n <= m
// (Hungarian with potentials, O(n^2 m)). col_of_row[n].
static void hungarian(const double *cost, int n, int m, int *col_of_row) {
    double *u = spd_calloc((size_t)n + 1, sizeof(double));
    double *v = spd_calloc((size_t)m + 1, sizeof(double));
    int *p = spd_calloc((size_t)m + 1, sizeof(int));    // p[j]: row (1-based) assigned to column j
    int *way = spd_calloc((size_t)m + 1, sizeof(int));
    double *minv = spd_malloc(((size_t)m + 1) * sizeof(double));
    bool *used = spd_malloc(((size_t)m + 1) * sizeof(bool));
    for (int i = 1; i <= n; i++) {
        p[0] = i;
        int j0 = 0;
        for (int j = 0; j <= m; j++) minv[j] = INFINITY, used[j] = false;
        do {
            used[j0] = true;
            int i0 = p[j0], j1 = 0;
            double delta = INFINITY;
            for (int j = 1; j <= m; j++)
                if (!used[j]) {
                    double cur = cost[(size_t)(i0 - 1) * m + (j - 1)] - u[i0] - v[j];
                    if (cur < minv[j]) minv[j] = cur, way[j] = j0;
                    if (minv[j] < delta) delta = minv[j], j1 = j;
                }
            for (int j = 0; j <= m; j++)
                if (used[j]) u[p[j]] += delta, v[j] -= delta;
                else minv[j] -= delta;
            j0 = j1;
        } while (p[j0] != 0);
        do {
            int j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
        } while (j0);
    }
    for (int j = 1; j <= m; j++)
        if (p[j]) col_of_row[p[j] - 1] = j - 1;
    free(u), free(v), free(p), free(way), free(minv), free(used);
}

void spd_identity_ci_permutation(const double *ci, int F, int C, int *perm) {
    int rows = F < C ? F : C;
    bool *used = spd_calloc((size_t)C, sizeof(bool));
    if ((F < C ? F : C) < 500) {
        double *cost = spd_malloc((size_t)rows * C * sizeof(double));
        for (size_t i = 0; i < (size_t)rows * C; i++) cost[i] = -ci[i];
        hungarian(cost, rows, C, perm);
        free(cost);
    } else {
        // Greedy: each row takes its largest unused column (lowest index on ties).
        for (int i = 0; i < rows; i++) {
            int best = -1;
            for (int c = 0; c < C; c++)
                if (!used[c] && (best < 0 || ci[(size_t)i * C + c] > ci[(size_t)i * C + best])) best = c;
            perm[i] = best;
            used[best] = true;
        }
    }
    for (int i = 0; i < rows; i++) used[perm[i]] = true;
    int k = rows;
    for (int c = 0; c < C; c++)
        if (!used[c]) perm[k++] = c;
    free(used);
}

int spd_identity_ci_distance(const double *ci, int F, int C, int n_features, double tol) {
    if (F != n_features) return spd_set_error("IdentityCIError: expected %d features, got %d", n_features, F);
    if (C < n_features)
        return spd_set_error("IdentityCIError: expected at least %d components, got %d", n_features, C);
    int *perm = spd_malloc((size_t)C * sizeof(int));
    spd_identity_ci_permutation(ci, F, C, perm);
    int size = F < C ? F : C, err = 0;
    for (int i = 0; i < F; i++)
        for (int j = 0; j < C; j++) {
            double v = ci[(size_t)i * C + perm[j]];
            if (i == j && i < size) err += v < 1 - tol;
            else err += v > tol;
        }
    free(perm);
    return err;
}

static const double *sort_key;
static int by_key_desc(const void *x, const void *y) {
    int a = *(const int *)x, b = *(const int *)y;
    if (sort_key[a] > sort_key[b]) return -1;
    if (sort_key[a] < sort_key[b]) return 1;
    return a - b;
}

int spd_dense_ci_distance(const double *ci, int F, int C, int k, double tol) {
    if (C < k) return spd_set_error("IdentityCIError: dense pattern expects at least %d columns, got %d", k, C);
    double *sum = spd_calloc((size_t)C, sizeof(double));
    int *order = spd_malloc((size_t)C * sizeof(int));
    for (int c = 0; c < C; c++) {
        order[c] = c;
        for (int i = 0; i < F; i++) sum[c] += ci[(size_t)i * C + c];
    }
    sort_key = sum;
    qsort(order, (size_t)C, sizeof(int), by_key_desc);
    int err = 0;
    for (int r = 0; r < C; r++) {
        int c = order[r], strong = 0, weak = 0;
        for (int i = 0; i < F; i++) {
            double v = ci[(size_t)i * C + c];
            strong += v >= 1 - tol;
            weak += v > tol;
        }
        if (r < k) err += strong < 1 ? 1 - strong : 0;  // min_entries = 1
        else err += weak;
    }
    free(sum), free(order);
    return err;
}

int spd_target_ci_patterns_from_config(spd_target_ci_pattern *out, int max, const spd_kv_dict_list *identity_ci,
                                       bool has_identity, const spd_kv_dict_list *dense_ci, bool has_dense) {
    int n = 0;
    for (int pass = 0; pass < 2; pass++) {
        const spd_kv_dict_list *list = pass ? dense_ci : identity_ci;
        if (!(pass ? has_dense : has_identity) || !list) continue;
        for (int i = 0; i < list->count && n < max; i++) {
            spd_target_ci_pattern *p = &out[n];
            memset(p, 0, sizeof *p);
            p->dense = pass;
            const char *want = pass ? "k" : "n_features";
            bool have_pat = false, have_n = false;
            for (int j = 0; j < list->items[i].count; j++) {
                const spd_kv *kv = &list->items[i].items[j];
                if (!strcmp(kv->key, "layer_pattern") && !kv->is_int) {
                    snprintf(p->pattern, sizeof p->pattern, "%s", kv->str_value);
                    have_pat = true;
                } else if (!strcmp(kv->key, want)) {
                    p->n = kv->is_int ? (int)kv->int_value : atoi(kv->str_value);
                    have_n = true;
                }
            }
            if (!have_pat || !have_n) continue;
            // A repeated pattern key replaces the earlier value in place (dict semantics).
            int dup = -1;
            for (int q = 0; q < n; q++)
                if (!strcmp(out[q].pattern, p->pattern)) dup = q;
            if (dup >= 0) out[dup] = *p;
            else n++;
        }
    }
    return n;
}

static int match_pattern(const spd_target_ci_pattern *pats, int n_pats, const char *name) {
    for (int p = 0; p < n_pats; p++)
        if (spd_fnmatch(pats[p].pattern, name)) return p;
    return -1;
}

static int pattern_distance(const spd_target_ci_pattern *p, const double *ci, int F, int C, double tol) {
    return p->dense ? spd_dense_ci_distance(ci, F, C, p->n, tol) : spd_identity_ci_distance(ci, F, C, p->n, tol);
}

int spd_identity_ci_error(const spd_target_ci_pattern *pats, int n_pats, int n_mods, const char *const *names,
                          const double *const *ci, const int *F, const int *C, spd_metric_list *out) {
    if (n_pats == 0) return 0;  // make_target_ci_solution: None -> {}
    int total = 0, total2 = 0;
    int *per = spd_malloc(((size_t)n_mods + 1) * sizeof(int));
    for (int l = 0; l < n_mods; l++) {
        per[l] = -1;
        int p = match_pattern(pats, n_pats, names[l]);
        if (p < 0) continue;
        int d1 = pattern_distance(&pats[p], ci[l], F[l], C[l], 0.1);
        int d2 = pattern_distance(&pats[p], ci[l], F[l], C[l], 0.2);
        if (d1 < 0 || d2 < 0) {
            free(per);
            return -1;
        }
        per[l] = d1;
        total += d1;
        total2 += d2;
    }
    spd_metric_list_add(out, "target_solution_error/total", total, true);
    spd_metric_list_add(out, "target_solution_error/total_0p2", total2, true);
    char key[256];
    for (int l = 0; l < n_mods; l++) {
        if (per[l] < 0) continue;
        snprintf(key, sizeof key, "target_solution_error/%s", names[l]);
        spd_metric_list_add(out, key, per[l], true);
    }
    free(per);
    return 0;
}

// ------------------------------------------------------------ TMS

void spd_mmcs_ml2r(const void *W, const void *V, const void *U, spd_dtype dtype, int d_out, int d_in, int C,
                   double *mmcs, double *ml2r) {
    double *unorm = spd_malloc((size_t)(C > 0 ? C : 1) * sizeof(double));
    for (int c = 0; c < C; c++) {
        double s = 0;
        for (int o = 0; o < d_out; o++) {
            double u = spd_metric_at(U, dtype, (int64_t)c * d_out + o);
            s += u * u;
        }
        unorm[c] = sqrt(s);
    }
    double sum_cos = 0, sum_ratio = 0;
    for (int j = 0; j < d_in; j++) {
        double wn = 0;
        for (int o = 0; o < d_out; o++) {
            double w = spd_metric_at(W, dtype, (int64_t)o * d_in + j);
            wn += w * w;
        }
        wn = sqrt(wn);
        double best = -INFINITY, best_norm = 0;
        for (int c = 0; c < C; c++) {
            double vjc = spd_metric_at(V, dtype, (int64_t)j * C + c), dotp = 0;
            for (int o = 0; o < d_out; o++)
                dotp += spd_metric_at(U, dtype, (int64_t)c * d_out + o) * vjc *
                        spd_metric_at(W, dtype, (int64_t)o * d_in + j);
            double an = unorm[c] * fabs(vjc);
            double den = an * wn;
            double cs = dotp / (den > 1e-8 ? den : 1e-8);
            if (cs > best) best = cs, best_norm = an;
        }
        sum_cos += best;
        sum_ratio += wn > 0 ? best_norm / wn : 0;
    }
    *mmcs = sum_cos / d_in;
    *ml2r = sum_ratio / d_in;
    free(unorm);
}

void spd_component_norms(const void *V, const void *U, spd_dtype dtype, int d_in, int d_out, int C, double *norms) {
    for (int c = 0; c < C; c++) {
        double sv = 0, su = 0;
        for (int i = 0; i < d_in; i++) {
            double v = spd_metric_at(V, dtype, (int64_t)i * C + c);
            sv += v * v;
        }
        for (int o = 0; o < d_out; o++) {
            double u = spd_metric_at(U, dtype, (int64_t)c * d_out + o);
            su += u * u;
        }
        norms[c] = sqrt(sv) * sqrt(su);
    }
}

int spd_count_nonnegligible(const double *norms, int C, double rel) {
    double mx = 0;
    for (int c = 0; c < C; c++) mx = norms[c] > mx ? norms[c] : mx;
    int n = 0;
    for (int c = 0; c < C; c++) n += norms[c] > rel * mx;
    return n;
}

int spd_tms_n_significant(const void *V, const void *U, spd_dtype dtype, int d_in, int d_out, int C,
                          spd_signif_rule rule, double thr, double *norms) {
    int n = 0;
    for (int c = 0; c < C; c++) {
        // The rank-one matrix's entries V[i,c] U[c,o] formed as torch's einsum forms them.
        double norm = 0;
        const int outer = rule == SPD_SIGNIF_OUTPUT_FEATURES ? d_out : d_in;
        const int inner = rule == SPD_SIGNIF_OUTPUT_FEATURES ? d_in : d_out;
        for (int a = 0; a < outer; a++) {
            double ss = 0;
            for (int b = 0; b < inner; b++) {
                int i = rule == SPD_SIGNIF_OUTPUT_FEATURES ? b : a, o = rule == SPD_SIGNIF_OUTPUT_FEATURES ? a : b;
                double w = spd_metric_at(V, dtype, (int64_t)i * C + c) * spd_metric_at(U, dtype, (int64_t)c * d_out + o);
                ss += w * w;
            }
            if (rule == SPD_SIGNIF_FROBENIUS) norm += ss;  // summed squares, one root below
            else norm += sqrt(ss);
        }
        if (rule == SPD_SIGNIF_FROBENIUS) norm = sqrt(norm);
        if (norms) norms[c] = norm;
        n += norm > thr;
    }
    return n;
}

double spd_tms_significance_rule(int d_in, int d_out, int F, spd_signif_rule *rule) {
    *rule = d_in == F ? SPD_SIGNIF_INPUT_FEATURES : d_out == F ? SPD_SIGNIF_OUTPUT_FEATURES : SPD_SIGNIF_FROBENIUS;
    return *rule == SPD_SIGNIF_FROBENIUS ? SPD_TMS_HIDDEN_LAYER_THRESHOLD : SPD_TMS_SUBNET_NORM_THRESHOLD;
}
