// The evaluation pass of `spd train` (eval.h). Float64, CPU, like the CLI trainer.
#define SPD_F64
#include "spd/eval.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "models/resid_mlp.h"
#include "models/tms.h"
#include "ops/importance_minimality.h"
#include "spd/figures.h"
#include "spd/identity_patterns.h"
#include "spd/target_resid_mlp.h"
#include "spd/target_tms.h"
#include "spd/train.h"

#define MAX_PATTERNS 64

struct spd_evaluator {
    const spd_config *cfg;
    const spd_trainer *tr;
    const spd_toy_data *data;
    char out_dir[4096];
    spd_task_name task;
    // The eval target: its own spec (frozen target tensors copied) of E rows.
    spd_spec spec;
    tms_model tms;
    resid_mlp_model rm;
    real *x;
    int E, F;
    // The eval trainer: the training spec's tensors with a private gradient buffer.
    spd_spec shadow;
    spd_trainer et;
    // Eval loss terms run by the eval trainer (ImportanceMinimalityLoss is not one:
    // eval computes it from sums over every eval position).
    spd_train_term terms[SPD_TRAIN_MAX_TERMS];
    int n_terms;
    bool has_imp;
    spd_importance_minimality_config imp;
    // Which metrics (eval_metric_configs).
    const spd_metric_config *l0, *hist, *density, *mean, *ident, *perm_plots, *uv_plots;
    spd_target_ci_pattern pats[MAX_PATTERNS];
    int n_pats;
    // The step whose evaluation is the final one (cfg->steps unless marked; slow there if marked).
    int64_t final_step;
    bool final_slow;
};

// ---------------------------------------------------------------- set-up


// One loss-capable metric config into the eval term list.
static void add_loss_metric(spd_evaluator *ev, const spd_metric_config *mc) {
    if (mc->classname == SPD_METRIC_IMPORTANCE_MINIMALITY_LOSS) {
        ev->has_imp = true;
        ev->imp = mc->importance_minimality;
        ev->imp.eps = 1e-12;  // SPD's eval metric ignores the configured eps
        return;
    }
    if (ev->n_terms == SPD_TRAIN_MAX_TERMS || spd_train_term_of_metric(mc, &ev->terms[ev->n_terms])) return;
    ev->terms[ev->n_terms++].coeff = 1;  // values only: eval steps are forward-only
}

static bool is_loss_class(spd_metric_class c) {
    spd_term_kind k;
    return spd_term_kind_of_metric(c, &k);
}

// SPD's get_unique_metric_configs: the eval list, then each loss config whose
// class is not in it.
static void collect_metrics(spd_evaluator *ev) {
    const spd_metric_config_list *ev_l = &ev->cfg->eval_metric_configs, *lo = &ev->cfg->loss_metric_configs;
    for (int i = 0; i < ev_l->count; i++) {
        const spd_metric_config *mc = &ev_l->items[i];
        switch (mc->classname) {
        case SPD_METRIC_CI_L0: ev->l0 = mc; break;
        case SPD_METRIC_CI_HISTOGRAMS: ev->hist = mc; break;
        case SPD_METRIC_COMPONENT_ACTIVATION_DENSITY: ev->density = mc; break;
        case SPD_METRIC_CI_MEAN_PER_COMPONENT: ev->mean = mc; break;
        case SPD_METRIC_IDENTITY_CI_ERROR: ev->ident = mc; break;
        case SPD_METRIC_PERMUTED_CI_PLOTS: ev->perm_plots = mc; break;
        case SPD_METRIC_UV_PLOTS: ev->uv_plots = mc; break;
        default:
            if (is_loss_class(mc->classname)) add_loss_metric(ev, mc);
            else
                fprintf(stderr, "note: eval_metric_configs[%d]: %s is not evaluated by spd train yet\n", i,
                        spd_metric_class_name(mc->classname));
        }
    }
    for (int i = 0; i < lo->count; i++) {
        bool dup = false;
        for (int j = 0; j < ev_l->count; j++) dup |= ev_l->items[j].classname == lo->items[i].classname;
        if (!dup) add_loss_metric(ev, &lo->items[i]);
    }
    if (ev->ident) {
        const spd_metric_config *m = ev->ident;
        ev->n_pats = spd_target_ci_patterns_from_config(ev->pats, MAX_PATTERNS, &m->identity_ci_error.identity_ci,
                                                        m->identity_ci_error.has_identity_ci,
                                                        &m->identity_ci_error.dense_ci, m->identity_ci_error.has_dense_ci);
    }
}

// A second instance of the target with E rows; every target_model.* tensor
// (frozen, never updated) copied from the training spec.
static int build_eval_target(spd_evaluator *ev, const void *model, spd_target *tg) {
    spd_spec_init(&ev->spec);
    if (ev->task == SPD_TASK_TMS) {
        const tms_model *m = model;
        tms_options o = m->opt;
        o.B = ev->E;
        o.train = false;
        tms_declare_f64(&ev->tms, &ev->spec, &m->cfg, &o);
        int n_id, rc = 0;
        spd_module_pattern *id = spd_identity_patterns(ev->cfg, &n_id);
        if (n_id) rc = tms_insert_identity_f64(&ev->tms, &ev->spec, id, n_id);
        free(id);
        if (rc) return -1;
        spd_spec_alloc(&ev->spec);
        tms_bind_f64(&ev->tms, &ev->spec);
        ev->x = ev->tms.x;
        ev->F = m->cfg.n_features;
    } else if (ev->task == SPD_TASK_RESID_MLP) {
        const resid_mlp_model *m = model;
        resid_mlp_options o = m->opt;
        o.B = ev->E;
        o.train = false;
        resid_mlp_declare_f64(&ev->rm, &ev->spec, &m->cfg, &o);
        int n_id, rc = 0;
        spd_module_pattern *id = spd_identity_patterns(ev->cfg, &n_id);
        if (n_id) rc = resid_mlp_insert_identity_f64(&ev->rm, &ev->spec, id, n_id);
        free(id);
        if (rc) return -1;
        spd_spec_alloc(&ev->spec);
        resid_mlp_bind_f64(&ev->rm, &ev->spec);
        ev->x = ev->rm.x;
        ev->F = m->cfg.n_features;
    } else {
        return spd_set_error("eval: task %s: only tms and resid_mlp are evaluated", spd_task_name_name(ev->task));
    }
    const spd_spec *src = ev->tr->spec;
    for (int i = 0; i < ev->spec.count; i++) {
        spd_tensor *t = &ev->spec.tensors[i];
        if (t->role != SPD_ROLE_FROZEN || strncmp(t->name, "target_model.", 13) != 0) continue;
        const spd_tensor *s = spd_spec_find(src, t->name);
        if (!s || s->nbytes != t->nbytes || s->dtype != t->dtype)
            return spd_set_error("eval: target tensor %s missing or different in the training model", t->name);
        memcpy(t->data, s->data, t->nbytes);
    }
    *tg = ev->task == SPD_TASK_TMS ? spd_target_tms_f64(&ev->tms) : spd_target_resid_mlp_f64(&ev->rm);
    return 0;
}

// The eval trainer: the training modules' tensors (spec indices) bound to the eval target.
static void build_eval_trainer(spd_evaluator *ev, const spd_target *tg) {
    const spd_trainer *tr = ev->tr;
    ev->shadow = *tr->spec;
    ev->shadow.grad = spd_calloc(tr->spec->bytes[SPD_ROLE_TRAINED] + 1, 1);
    ev->shadow.adam_m = ev->shadow.adam_v = NULL;
    spd_trainer *e = &ev->et;
    memset(e, 0, sizeof *e);
    e->opt = tr->opt;
    e->opt.draws = NULL;
    memcpy(e->opt.terms, ev->terms, sizeof ev->terms);
    e->opt.n_terms = ev->n_terms;
    e->spec = &ev->shadow;
    e->n_mods = tr->n_mods;
    e->mods = spd_calloc((size_t)tr->n_mods, sizeof *e->mods);
    for (int l = 0; l < tr->n_mods; l++) {
        const spd_train_module *s = &tr->mods[l];
        spd_train_module *m = &e->mods[l];
        m->site = s->site;
        m->d_in = s->d_in;
        m->d_out = s->d_out;
        m->comp.C = s->comp.C;
        memcpy(m->comp.dashed, s->comp.dashed, sizeof m->comp.dashed);
        m->ci.arch = s->ci.arch;
        m->t_V = s->t_V;
        m->t_U = s->t_U;
        memcpy(m->t_W, s->t_W, sizeof m->t_W);
        memcpy(m->t_b, s->t_b, sizeof m->t_b);
    }
    spd_trainer_bind_f64(e, tg);
    e->forward_only = true;  // its gradients were thrown away anyway
}

// IdentityCIError's patterns against the modules they match (first match wins), so that a
// misfit is an input error at start rather than at the first slow eval.
static int check_patterns(const spd_evaluator *ev) {
    for (int l = 0; l < ev->et.n_mods; l++) {
        const char *name = ev->et.target.sites[ev->et.mods[l].site].path;
        int C = ev->et.mods[l].comp.C;
        for (int p = 0; p < ev->n_pats; p++) {
            const spd_target_ci_pattern *pt = &ev->pats[p];
            if (!spd_fnmatch(pt->pattern, name)) continue;
            if (!pt->dense && (pt->n != ev->F || pt->n > C))
                return spd_set_error("eval_metric_configs: IdentityCIError: identity_ci %s: n_features %d must equal "
                                     "the target's n_features (%d) and be at most C (%d) of %s",
                                     pt->pattern, pt->n, ev->F, C, name);
            if (pt->dense && pt->n > C)
                return spd_set_error("eval_metric_configs: IdentityCIError: dense_ci %s: k %d exceeds C (%d) of %s",
                                     pt->pattern, pt->n, C, name);
            break;
        }
    }
    return 0;
}

spd_evaluator *spd_evaluator_new(const spd_eval_setup *s) {
    spd_evaluator *ev = spd_calloc(1, sizeof *ev);
    ev->cfg = s->cfg;
    ev->tr = s->trainer;
    ev->data = s->data;
    ev->task = s->task;
    ev->E = (int)s->cfg->eval_batch_size;
    ev->final_step = s->cfg->steps;
    snprintf(ev->out_dir, sizeof ev->out_dir, "%s", s->out_dir);
    collect_metrics(ev);
    spd_target tg;
    if (build_eval_target(ev, s->model, &tg)) {
        free(ev);
        return NULL;
    }
    build_eval_trainer(ev, &tg);
    if (check_patterns(ev)) {
        spd_evaluator_free(ev);
        return NULL;
    }
    return ev;
}

void spd_evaluator_free(spd_evaluator *ev) {
    if (!ev) return;
    spd_trainer_free_f64(&ev->et);
    free(ev->shadow.grad);
    if (ev->task == SPD_TASK_TMS) tms_free_f64(&ev->tms);
    else resid_mlp_free_f64(&ev->rm);
    spd_spec_free(&ev->spec);
    free(ev);
}

void spd_evaluator_mark_final(spd_evaluator *ev, int64_t step) {
    ev->final_step = step;
    ev->final_slow = true;
}

// ---------------------------------------------------------------- cadence

bool spd_eval_due(const spd_config *cfg, int64_t step) { return cfg->eval_freq > 0 && step % cfg->eval_freq == 0; }

bool spd_eval_slow(const spd_config *cfg, int64_t step) {
    return step == 0 ? cfg->slow_eval_on_first_step : step % cfg->slow_eval_freq == 0;
}

// ---------------------------------------------------------------- evaluation

static uint64_t mix64(uint64_t z) {  // splitmix64's finaliser
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// IdentityCIError's CI of one-hot inputs 0.75 e_f (get_single_feature_causal_importances):
// lo[l], up[l] [F, C_l] (ci_lower, ci_upper), in chunks of E rows through the eval
// trainer with no loss terms.
static void onehot_ci(spd_evaluator *ev, int64_t step, double **lo, double **up) {
    spd_trainer *e = &ev->et;
    int n_terms = e->opt.n_terms;
    e->opt.n_terms = 0;
    e->opt.seed = mix64((uint64_t)ev->cfg->seed ^ mix64(0x1de7u));
    for (int f0 = 0; f0 < ev->F; f0 += ev->E) {
        int rows = ev->F - f0 < ev->E ? ev->F - f0 : ev->E;
        memset(ev->x, 0, (size_t)ev->E * ev->F * sizeof(real));
        for (int r = 0; r < rows; r++) ev->x[(size_t)r * ev->F + f0 + r] = 0.75;
        spd_train_step_f64(e, step);
        for (int l = 0; l < e->n_mods; l++) {
            int C = e->mods[l].comp.C;
            memcpy(lo[l] + (size_t)f0 * C, e->mods[l].ci_lower, (size_t)rows * C * sizeof(double));
            memcpy(up[l] + (size_t)f0 * C, e->mods[l].ci_upper, (size_t)rows * C * sizeof(double));
        }
    }
    e->opt.n_terms = n_terms;
}

// CI_L0's bar chart as SPD's local_log writes a CustomChart: figures/l0_bar_chart_<step>.json.
static int write_l0_chart(const spd_evaluator *ev, const spd_metric_list *l0, int64_t step) {
    char path[4400];
    if (spd_figure_path(path, sizeof path, ev->out_dir, "l0/bar_chart", step)) return -1;
    size_t n = strlen(path);
    snprintf(path + n - 4, sizeof path - n + 4, ".json");
    FILE *f = fopen(path, "w");
    if (!f) return spd_set_error("%s: cannot write: %s", path, strerror(errno));
    char thr[48], prefix[64];
    spd_py_float_str(thr, sizeof thr, ev->cfg->ci_alive_threshold);
    snprintf(prefix, sizeof prefix, "l0/%s_", thr);
    fputs("{\"columns\": [\"layer\", \"l0\"], \"data\": [", f);
    int k = 0;
    for (int i = 0; i < l0->count; i++) {
        const char *key = l0->items[i].key;
        if (strncmp(key, prefix, strlen(prefix)) != 0) continue;
        fprintf(f, "%s[\"%s\", %.17g]", k++ ? ", " : "", key + strlen(prefix), l0->items[i].value);
    }
    fprintf(f, "], \"step\": %" PRId64 "}\n", step);
    return fclose(f) == 0 ? 0 : spd_set_error("%s: cannot write: %s", path, strerror(errno));
}

static int slow_figures(const spd_evaluator *ev, const spd_eval_acc *acc, int64_t step) {
    const int n = acc->n_mods;
    const char *const *names = (const char *const *)acc->names;
    char path[4400];
    int rc = 0;
    if (ev->hist && acc->hist_batches > 0) {
        const double **v = spd_malloc((size_t)n * sizeof *v);
        for (int l = 0; l < n; l++) v[l] = acc->hist_ci[l];
        rc = spd_figure_path(path, sizeof path, ev->out_dir, "figures/causal_importance_values", step);
        rc = rc ? rc : spd_fig_histograms(path, n, names, v, acc->hist_len, 100, 1, "Causal importances for",
                                          "Causal importance value");
        for (int l = 0; l < n; l++) v[l] = acc->hist_pre[l];
        rc = rc ? rc : spd_figure_path(path, sizeof path, ev->out_dir, "figures/causal_importance_values_pre_sigmoid", step);
        rc = rc ? rc : spd_fig_histograms(path, n, names, v, acc->hist_pre_len, 100, 1, "Causal importances for",
                                          "Causal importance value");
        free(v);
    }
    double **per = spd_malloc((size_t)n * sizeof *per);
    int64_t *cnt = spd_malloc((size_t)n * sizeof *cnt);
    for (int l = 0; l < n; l++) {
        per[l] = spd_malloc((size_t)acc->C[l] * sizeof(double));
        cnt[l] = acc->C[l];
    }
    if (!rc && ev->density) {
        for (int l = 0; l < n; l++) spd_eval_acc_density(acc, l, per[l]);
        rc = spd_figure_path(path, sizeof path, ev->out_dir, "figures/component_activation_density", step);
        rc = rc ? rc : spd_fig_histograms(path, n, names, (const double *const *)per, cnt, 100, 1, "",
                                          "Activation density");
    }
    if (!rc && ev->mean) {
        for (int l = 0; l < n; l++) spd_eval_acc_ci_mean(acc, l, per[l]);
        rc = spd_figure_path(path, sizeof path, ev->out_dir, "figures/ci_mean_per_component", step);
        rc = rc ? rc : spd_fig_ci_mean(path, n, names, (const double *const *)per, acc->C, 0);
        rc = rc ? rc : spd_figure_path(path, sizeof path, ev->out_dir, "figures/ci_mean_per_component_log", step);
        rc = rc ? rc : spd_fig_ci_mean(path, n, names, (const double *const *)per, acc->C, 1);
    }
    for (int l = 0; l < n; l++) free(per[l]);
    free(per);
    free(cnt);
    return rc;
}

// PermutedCIPlots / UVPlots' column order for module `name` (plot_causal_importance_vals):
// dense (columns by sum, descending) where a dense pattern matches and no identity
// pattern does, else the identity assignment.
static void plot_permutation(const spd_metric_config *mc, const char *name, const double *ci, int F, int C, int *perm) {
    bool ident = false, dense = false;
    for (int i = 0; mc->plots.has_identity_patterns && i < mc->plots.identity_patterns.count; i++)
        ident |= spd_fnmatch(mc->plots.identity_patterns.items[i], name);
    for (int i = 0; mc->plots.has_dense_patterns && i < mc->plots.dense_patterns.count; i++)
        dense |= spd_fnmatch(mc->plots.dense_patterns.items[i], name);
    if (ident || !dense) {
        spd_identity_ci_permutation(ci, F, C, perm);
        return;
    }
    double *sum = spd_calloc((size_t)C, sizeof *sum);
    for (int f = 0; f < F; f++)
        for (int c = 0; c < C; c++) sum[c] += ci[(size_t)f * C + c];
    for (int c = 0; c < C; c++) perm[c] = c;
    for (int i = 1; i < C; i++)  // stable insertion sort, descending
        for (int j = i; j > 0 && sum[perm[j]] > sum[perm[j - 1]]; j--) {
            int t = perm[j];
            perm[j] = perm[j - 1];
            perm[j - 1] = t;
        }
    free(sum);
}

// ci [F, C] with its columns in perm's order.
static double *permuted(const double *ci, int F, int C, const int *perm) {
    double *p = spd_malloc((size_t)F * C * sizeof *p);
    for (int f = 0; f < F; f++)
        for (int c = 0; c < C; c++) p[(size_t)f * C + c] = ci[(size_t)f * C + perm[c]];
    return p;
}

// PermutedCIPlots: figures/causal_importances (ci_lower, Blues), .._upper_leaky (Reds).
static int permuted_ci_plots(const spd_evaluator *ev, int64_t step, const char *const *names, double *const *lo,
                             double *const *up) {
    const int L = ev->et.n_mods, F = ev->F;
    double **m = spd_malloc((size_t)L * sizeof *m);
    char (*titles)[160] = spd_malloc((size_t)L * sizeof *titles);
    const char **tp = spd_malloc((size_t)L * sizeof *tp);
    int *rows = spd_malloc((size_t)L * sizeof *rows), *cols = spd_malloc((size_t)L * sizeof *cols);
    int *perm = NULL;
    char path[4400];
    int rc = 0;
    for (int pass = 0; pass < 2 && !rc; pass++) {
        for (int l = 0; l < L; l++) {
            int C = ev->et.mods[l].comp.C;
            perm = spd_malloc((size_t)C * sizeof *perm);
            const double *ci = pass ? up[l] : lo[l];
            plot_permutation(ev->perm_plots, names[l], ci, F, C, perm);
            m[l] = permuted(ci, F, C, perm);
            free(perm);
            snprintf(titles[l], sizeof titles[l], "%s %s", pass ? "importance values" : "importance values lower leaky relu",
                     names[l]);
            tp[l] = titles[l];
            rows[l] = F;
            cols[l] = C;
        }
        rc = spd_figure_path(path, sizeof path, ev->out_dir,
                             pass ? "figures/causal_importances_upper_leaky" : "figures/causal_importances", step);
        rc = rc ? rc : spd_fig_matrices(path, L, tp, (const double *const *)m, rows, cols, 1,
                                        pass ? SPD_CMAP_REDS : SPD_CMAP_BLUES);
        for (int l = 0; l < L; l++) free(m[l]);
    }
    free(m), free(titles), free(tp), free(rows), free(cols);
    return rc;
}

// UVPlots: figures/uv_matrices, per module (sorted by name) V [d_in, C] with permuted
// columns and U [C, d_out] with permuted rows, the permutation from the upper CI.
static int uv_plots(const spd_evaluator *ev, int64_t step, const char *const *names, double *const *up) {
    const int L = ev->et.n_mods, F = ev->F;
    int *ord = spd_malloc((size_t)L * sizeof *ord);
    for (int l = 0; l < L; l++) ord[l] = l;
    for (int i = 1; i < L; i++)
        for (int j = i; j > 0 && strcmp(names[ord[j]], names[ord[j - 1]]) < 0; j--) {
            int t = ord[j];
            ord[j] = ord[j - 1];
            ord[j - 1] = t;
        }
    double **m = spd_malloc((size_t)2 * L * sizeof *m);
    char (*titles)[160] = spd_malloc((size_t)2 * L * sizeof *titles);
    const char **tp = spd_malloc((size_t)2 * L * sizeof *tp);
    int *rows = spd_malloc((size_t)2 * L * sizeof *rows), *cols = spd_malloc((size_t)2 * L * sizeof *cols);
    for (int k = 0; k < L; k++) {
        int l = ord[k];
        const spd_train_module *md = &ev->et.mods[l];
        const int C = md->comp.C, din = md->d_in, dout = md->d_out;
        int *perm = spd_malloc((size_t)C * sizeof *perm);
        plot_permutation(ev->uv_plots, names[l], up[l], F, C, perm);
        double *V = spd_malloc((size_t)din * C * sizeof *V), *U = spd_malloc((size_t)C * dout * sizeof *U);
        for (int i = 0; i < din; i++)
            for (int c = 0; c < C; c++) V[(size_t)i * C + c] = md->comp.V[(size_t)i * C + perm[c]];
        for (int c = 0; c < C; c++) memcpy(U + (size_t)c * dout, md->comp.U + (size_t)perm[c] * dout, dout * sizeof *U);
        free(perm);
        m[2 * k] = V, m[2 * k + 1] = U;
        rows[2 * k] = din, cols[2 * k] = C, rows[2 * k + 1] = C, cols[2 * k + 1] = dout;
        snprintf(titles[2 * k], sizeof titles[0], "%s (V matrix)", names[l]);
        snprintf(titles[2 * k + 1], sizeof titles[0], "%s (U matrix)", names[l]);
        tp[2 * k] = titles[2 * k], tp[2 * k + 1] = titles[2 * k + 1];
    }
    char path[4400];
    int rc = spd_figure_path(path, sizeof path, ev->out_dir, "figures/uv_matrices", step);
    rc = rc ? rc : spd_fig_matrices(path, 2 * L, tp, (const double *const *)m, rows, cols, 2, SPD_CMAP_COOLWARM);
    for (int i = 0; i < 2 * L; i++) free(m[i]);
    free(m), free(titles), free(tp), free(rows), free(cols), free(ord);
    return rc;
}

int spd_evaluate(spd_evaluator *ev, int64_t step, spd_metric_list *out) {
    const spd_config *cfg = ev->cfg;
    spd_trainer *e = &ev->et;
    const int L = e->n_mods;
    const bool slow = spd_eval_slow(cfg, step) || (ev->final_slow && step == ev->final_step);
    const char **names = spd_malloc((size_t)L * sizeof *names);
    int *C = spd_malloc((size_t)L * sizeof *C);
    int sumC = 0;
    for (int l = 0; l < L; l++) {
        names[l] = e->target.sites[e->mods[l].site].path;
        C[l] = e->mods[l].comp.C;
        sumC += C[l];
    }
    int64_t hist_max = 0;  // CIHistograms' n_batches_accum, on slow steps only
    if (slow && ev->hist)
        hist_max = ev->hist->ci_histograms.has_n_batches_accum ? ev->hist->ci_histograms.n_batches_accum : -1;
    spd_eval_acc acc;
    spd_eval_acc_init(&acc, L, names, C, cfg->ci_alive_threshold,
                      ev->l0 && ev->l0->ci_l0.has_groups ? &ev->l0->ci_l0.groups : NULL, hist_max);
    double loss_sum[SPD_TRAIN_MAX_TERMS] = {0};
    double *imp_S = spd_calloc((size_t)sumC + 1, sizeof(double));
    double p = 0;
    if (ev->has_imp)
        p = importance_minimality_p(ev->imp.pnorm, ev->imp.p_anneal_start_frac, ev->imp.has_p_anneal_final_p,
                                    ev->imp.p_anneal_final_p, ev->imp.p_anneal_end_frac,
                                    (double)step / (double)cfg->steps);
    const void **ci = spd_malloc((size_t)L * sizeof *ci), **pre = spd_malloc((size_t)L * sizeof *pre);
    const int n_batches = (int)cfg->n_eval_steps;
    for (int b = 0; b < n_batches; b++) {
        spd_toy_batch_f64(ev->data, (uint64_t)step, b, 0, ev->E, ev->x, NULL);
        e->opt.seed = mix64((uint64_t)cfg->seed ^ mix64(0xe7a1000000000000ull + (uint64_t)b));
        spd_train_step_f64(e, step);
        for (int i = 0; i < e->opt.n_terms; i++) loss_sum[i] += e->values[i];
        for (int l = 0, off = 0; l < L; off += C[l], l++) {
            ci[l] = e->mods[l].ci_lower;
            pre[l] = e->mods[l].pre;
            if (ev->has_imp) importance_minimality_sums_f64(imp_S + off, e->mods[l].ci_upper, ev->E, C[l], p, ev->imp.eps);
        }
        spd_eval_acc_update(&acc, ev->E, ci, pre, SPD_DTYPE_F64);
    }
    char key[256];
    for (int i = 0; i < e->opt.n_terms; i++) {
        snprintf(key, sizeof key, "loss/%s", spd_term_kind_name(e->opt.terms[i].kind));
        spd_metric_list_add(out, key, loss_sum[i] / n_batches, false);
    }
    if (ev->has_imp)
        spd_metric_list_add(out, "loss/ImportanceMinimalityLoss",
                            importance_minimality_from_sums(imp_S, C, L, (double)n_batches * ev->E, ev->imp.beta, 1.0),
                            false);
    int rc = 0;
    if (ev->l0) {
        spd_metric_list l0 = {0};
        spd_eval_acc_compute(&acc, &l0);
        for (int i = 0; i < l0.count; i++) spd_metric_list_add(out, l0.items[i].key, l0.items[i].value, l0.items[i].is_int);
        rc = write_l0_chart(ev, &l0, step);
        spd_metric_list_free(&l0);
    }
    if (!rc && slow) rc = slow_figures(ev, &acc, step);
    if (!rc && slow && ((ev->ident && ev->n_pats > 0) || ev->perm_plots || ev->uv_plots)) {
        double **lo = spd_malloc((size_t)L * sizeof *lo), **up = spd_malloc((size_t)L * sizeof *up);
        int *Fs = spd_malloc((size_t)L * sizeof *Fs);
        for (int l = 0; l < L; l++) {
            lo[l] = spd_malloc((size_t)ev->F * C[l] * sizeof(double));
            up[l] = spd_malloc((size_t)ev->F * C[l] * sizeof(double));
            Fs[l] = ev->F;
        }
        onehot_ci(ev, step, lo, up);
        if (ev->ident && ev->n_pats > 0)
            rc = spd_identity_ci_error(ev->pats, ev->n_pats, L, names, (const double *const *)lo, Fs, C, out);
        if (!rc && ev->perm_plots) rc = permuted_ci_plots(ev, step, names, lo, up);
        if (!rc && ev->uv_plots) rc = uv_plots(ev, step, names, up);
        for (int l = 0; l < L; l++) free(lo[l]), free(up[l]);
        free(lo);
        free(up);
        free(Fs);
    }
    if (!rc && step == ev->final_step && ev->task == SPD_TASK_TMS) {  // the paper's TMS metrics, final eval
        for (int l = 0; l < L; l++) {
            const spd_train_module *m = &e->mods[l];
            const linear_site *s = &e->target.sites[m->site];
            double mmcs, ml2r;
            spd_mmcs_ml2r(s->W, m->comp.V, m->comp.U, SPD_DTYPE_F64, s->d_out, s->d_in, m->comp.C, &mmcs, &ml2r);
            snprintf(key, sizeof key, "mmcs/%s", names[l]);
            spd_metric_list_add(out, key, mmcs, false);
            snprintf(key, sizeof key, "ml2r/%s", names[l]);
            spd_metric_list_add(out, key, ml2r, false);
        }
        for (int l = 0; l < L; l++) {
            const spd_train_module *m = &e->mods[l];
            spd_signif_rule rule;
            double thr = spd_tms_significance_rule(m->d_in, m->d_out, ev->F, &rule);
            snprintf(key, sizeof key, "n_significant/%s", names[l]);
            spd_metric_list_add(out, key,
                                spd_tms_n_significant(m->comp.V, m->comp.U, SPD_DTYPE_F64, m->d_in, m->d_out,
                                                      m->comp.C, rule, thr, NULL),
                                true);
        }
    }
    spd_eval_acc_free(&acc);
    free(imp_S);
    free(ci);
    free(pre);
    free(names);
    free(C);
    return rc;
}

int spd_eval_log(spd_evaluator *ev, int64_t step, FILE *metrics) {
    spd_metric_list out = {0};
    if (spd_evaluate(ev, step, &out)) {
        spd_metric_list_free(&out);
        return -1;
    }
    fprintf(metrics, "{\"step\": %" PRId64, step);
    spd_metric_list_write_json(&out, metrics);
    fputs("}\n", metrics);
    printf("eval   %6" PRId64 ":", step);
    for (int i = 0; i < out.count; i++) {
        const spd_metric_kv *kv = &out.items[i];
        if (strncmp(kv->key, "n_alive/", 8) == 0) continue;  // the l0 line says enough
        if (kv->is_int) printf(" %s %lld", kv->key, (long long)kv->value);
        else printf(" %s %.4g", kv->key, kv->value);
    }
    bool figs = ev->hist || ev->density || ev->mean || ev->perm_plots || ev->uv_plots;
    printf("%s\n", figs && spd_eval_slow(ev->cfg, step) ? " (+ figures)" : "");
    fflush(stdout);
    spd_metric_list_free(&out);
    return 0;
}
