#include "core/real.h"

#include "spd/tied.h"

#include <stdlib.h>

#include "core/error.h"
#include "ops/grad_clip.h"
#include "ops/transfer.h"
#include "spd/schedule.h"


int RFN(spd_tied_check)(const spd_trainer *t, const spd_tied_pair *ties, int n_ties) {
    for (int i = 0; i < n_ties; i++) {
        int s = ties[i].src, g = ties[i].tgt;
        if (s < 0 || g < 0 || s >= t->n_mods || g >= t->n_mods || s >= g)
            return spd_set_error("tied components: pair %d: expected 0 <= src < tgt < %d, found (%d, %d)", i,
                                 t->n_mods, s, g);
        const spd_train_module *a = &t->mods[s], *b = &t->mods[g];
        if (a->comp.C != b->comp.C || a->d_in != b->d_out || a->d_out != b->d_in)
            return spd_set_error("tied components: %s (%d -> %d, C %d) and %s (%d -> %d, C %d) do not transpose",
                                 a->comp.dashed, a->d_in, a->d_out, a->comp.C, b->comp.dashed, b->d_in, b->d_out,
                                 b->comp.C);
        for (int j = 0; j < i; j++)
            if (ties[j].src == s || ties[j].tgt == s || ties[j].src == g || ties[j].tgt == g)
                return spd_set_error("tied components: module in two pairs (pairs %d and %d)", j, i);
    }
    return 0;
}

static void transpose(real *dst, const real *src, int rows, int cols) { RFN(transpose)(dst, src, rows, cols); }

void RFN(spd_tied_sync)(spd_trainer *t, const spd_tied_pair *ties, int n_ties) {
    for (int i = 0; i < n_ties; i++) {
        component_module *s = &t->mods[ties[i].src].comp, *g = &t->mods[ties[i].tgt].comp;
        const int C = s->C, din = t->mods[ties[i].src].d_in, dout = t->mods[ties[i].src].d_out;
        transpose(g->U, s->V, C, din);   // tgt.U [C, din] = src.V^T, src.V [din, C]
        transpose(g->V, s->U, dout, C);  // tgt.V [dout, C] = src.U^T, src.U [C, dout]
    }
}

// One tensor's AdamW; a tgt tensor of a pair works on the shared numbers.
static void step_tensor(spd_trainer *t, const spd_tied_pair *ties, int n_ties, int idx, real *m, real *v,
                        const spd_adamw_config *cfg, int64_t t_adam) {
    spd_spec *spec = t->spec;
    const spd_tensor *ts = &spec->tensors[idx];
    const size_t off = ts->offset / sizeof(real), n = (size_t)spd_tensor_numel(ts);
    real *p = ts->data;
    const real *g = (const real *)spec->grad + off;
    // Is it tgt.V or tgt.U of a pair? Then its partner is src.U or src.V.
    real *partner = NULL;
    int rows = 0, cols = 0;  // this tensor's shape
    for (int i = 0; i < n_ties; i++) {
        const spd_train_module *s = &t->mods[ties[i].src], *gm = &t->mods[ties[i].tgt];
        if (idx == gm->t_U) {
            partner = s->comp.V;
            rows = gm->comp.C;
            cols = gm->d_out;
        } else if (idx == gm->t_V) {
            partner = s->comp.U;
            rows = gm->d_in;
            cols = gm->comp.C;
        }
    }
    if (partner) transpose(p, partner, rows, cols);  // src's update already landed on the matrix
    RFN(adamw_step)(p, g, m + off, v + off, n, cfg, t_adam);
    if (partner) transpose(partner, p, cols, rows);  // and this one lands on it too
}

void RFN(spd_tied_adamw_in_order)(spd_trainer *t, const spd_tied_pair *ties, int n_ties, bool with_ci, real *m,
                                  real *v, const spd_adamw_config *cfg, int64_t t_adam) {
    for (int l = 0; l < t->n_mods; l++) {
        step_tensor(t, ties, n_ties, t->mods[l].t_V, m, v, cfg, t_adam);
        step_tensor(t, ties, n_ties, t->mods[l].t_U, m, v, cfg, t_adam);
    }
    if (!with_ci) return;
    for (int l = 0; l < t->n_mods; l++)
        for (int k = 0; k < t->mods[l].ci.arch.n_layers; k++) {
            step_tensor(t, ties, n_ties, t->mods[l].t_W[k], m, v, cfg, t_adam);
            step_tensor(t, ties, n_ties, t->mods[l].t_b[k], m, v, cfg, t_adam);
        }
}

// The gradients of one group (components: V, U; CI fns: W, b), clipped or measured.
static double clip_group(spd_trainer *t, bool ci, double max_norm) {
    int cap = t->n_mods * 2 * SPD_CI_FN_MAX_LAYERS, k = 0;
    real **g = spd_malloc((size_t)cap * sizeof *g);
    int64_t *numel = spd_malloc((size_t)cap * sizeof *numel);
    const spd_spec *spec = t->spec;
    for (int l = 0; l < t->n_mods; l++) {
        const spd_train_module *m = &t->mods[l];
        int idx[2 * SPD_CI_FN_MAX_LAYERS], n = 0;
        if (!ci) {
            idx[n++] = m->t_V;
            idx[n++] = m->t_U;
        } else {
            for (int j = 0; j < m->ci.arch.n_layers; j++) {
                idx[n++] = m->t_W[j];
                idx[n++] = m->t_b[j];
            }
        }
        for (int j = 0; j < n; j++) {
            g[k] = spd_spec_grad(spec, &spec->tensors[idx[j]]);
            numel[k++] = spd_tensor_numel(&spec->tensors[idx[j]]);
        }
    }
    double norm = max_norm > 0 ? RFN(clip_grad_norm)(g, numel, k, max_norm)
                               : RFN(grad_norm)((const real *const *)g, numel, k);
    free(g);
    free(numel);
    return norm;
}

void RFN(spd_tied_update)(spd_trainer *t, const spd_tied_pair *ties, int n_ties, int64_t step) {
    const spd_train_options *o = &t->opt;
    t->grad_norm_components = clip_group(t, false, o->grad_clip_components);
    t->grad_norm_ci_fns = clip_group(t, true, o->grad_clip_ci_fns);
    spd_adamw_config cfg = {.lr = spd_schedule_value(&o->lr, step, o->steps),
                            .beta1 = o->beta1,
                            .beta2 = o->beta2,
                            .eps = o->adam_eps,
                            .weight_decay = o->weight_decay};
    RFN(spd_tied_adamw_in_order)(t, ties, n_ties, true, t->spec->adam_m, t->spec->adam_v, &cfg, ++t->adam_t);
}
