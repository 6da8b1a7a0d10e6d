// See train_gpu.h. The CUDA backend's API (SPD_CUDA before the headers, like
// train_check.c's SPD_F64), so this file is compiled once; CUDA builds only.
#define SPD_CUDA
#include "spd/train_gpu.h"

#ifdef SPD_HAVE_CUDA

#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "core/error.h"
#include "core/spec_mirror.h"
#include "cuda/backend.h"
#include "ops/transfer.h"
#include "spd/target_resid_mlp.h"
#include "spd/target_tms.h"
#include "spd/tied.h"
#include "spd/train.h"

struct spd_gpu_run {
    bool resid;
    spd_spec spec;
    tms_model tms;
    resid_mlp_model rm;
    spd_trainer tr;
    spd_tied_pair tie;
    int n_ties;
    float *x;  // input.x on the device
};

spd_gpu_run *spd_gpu_run_create(const spd_gpu_run_config *c) {
    spd_cuda_init();
    spd_gpu_run *g = spd_calloc(1, sizeof *g);
    g->resid = c->resid;
    spd_spec_init(&g->spec);
    g->spec.on_device = true;
    spd_target tg;
    if (c->resid) {
        resid_mlp_options ro = {.B = c->B, .prefix = "target_model."};
        resid_mlp_declare_cuda(&g->rm, &g->spec, &c->resid_mlp, &ro);
        tg = spd_target_resid_mlp_cuda(&g->rm);
    } else {
        tms_options to = {.B = c->B, .prefix = "target_model."};
        tms_declare_cuda(&g->tms, &g->spec, &c->tms, &to);
        tg = spd_target_tms_cuda(&g->tms);
    }
    spd_train_options opt;
    memcpy(&opt, c->opt, sizeof opt);  // same layout in every precision: only the draw source's type differs
    if (opt.draws) spd_die("train_gpu: a draw source is not supported on the device run");
    if (spd_trainer_declare_cuda(&g->tr, &g->spec, &opt, &tg, c->site, c->C, c->n))
        spd_die_input("train --device cuda: %s", spd_last_error());
    spd_spec_alloc(&g->spec);
    if (c->resid) {
        resid_mlp_bind_cuda(&g->rm, &g->spec);
        tg = spd_target_resid_mlp_cuda(&g->rm);
        g->x = g->rm.x;
    } else {
        tms_bind_cuda(&g->tms, &g->spec);
        tg = spd_target_tms_cuda(&g->tms);
        g->x = g->tms.x;
    }
    spd_trainer_bind_cuda(&g->tr, &tg);
    if (c->tie_src >= 0 && c->tie_tgt >= 0) {
        g->tie = (spd_tied_pair){c->tie_src, c->tie_tgt};
        g->n_ties = 1;
        if (spd_tied_check_cuda(&g->tr, &g->tie, 1)) spd_die_input("train --device cuda: %s", spd_last_error());
    }
    return g;
}

static void copy_or_die(spd_spec *dst, const spd_spec *src, spd_role role, spd_mirror_part part) {
    if (spd_spec_copy_role(dst, src, role, part)) spd_die("train --device cuda: %s", spd_last_error());
}

void spd_gpu_run_upload(spd_gpu_run *g, const spd_spec *host, int64_t adam_t) {
    copy_or_die(&g->spec, host, SPD_ROLE_FROZEN, SPD_MIRROR_VALUES);
    copy_or_die(&g->spec, host, SPD_ROLE_TRAINED, SPD_MIRROR_VALUES);
    copy_or_die(&g->spec, host, SPD_ROLE_TRAINED, SPD_MIRROR_ADAM_M);
    copy_or_die(&g->spec, host, SPD_ROLE_TRAINED, SPD_MIRROR_ADAM_V);
    g->tr.adam_t = adam_t;
}

void spd_gpu_run_download(spd_gpu_run *g, spd_spec *host, bool with_grads) {
    copy_or_die(host, &g->spec, SPD_ROLE_TRAINED, SPD_MIRROR_VALUES);
    copy_or_die(host, &g->spec, SPD_ROLE_TRAINED, SPD_MIRROR_ADAM_M);
    copy_or_die(host, &g->spec, SPD_ROLE_TRAINED, SPD_MIRROR_ADAM_V);
    if (with_grads) copy_or_die(host, &g->spec, SPD_ROLE_TRAINED, SPD_MIRROR_GRAD);
}

void spd_gpu_run_ci_lower(spd_gpu_run *g, int l, double *out) {
    SPD_ASSERT(l >= 0 && l < g->tr.n_mods);
    copy_to_host_f64_cuda(out, g->tr.mods[l].ci_lower, (int64_t)g->tr.target.N * g->tr.mods[l].comp.C);
}

void spd_gpu_run_set_input(spd_gpu_run *g, const float *x, int64_t n) {
    spd_device_upload(g->x, x, (size_t)n * sizeof(float));
}

double spd_gpu_run_step(spd_gpu_run *g, int64_t step, double *values) {
    double total = spd_train_step_cuda(&g->tr, step);
    for (int i = 0; i < g->tr.opt.n_terms; i++) values[i] = g->tr.values[i];
    return total;
}

void spd_gpu_run_update(spd_gpu_run *g, int64_t step, double *norm_components, double *norm_ci_fns) {
    if (g->n_ties) spd_tied_update_cuda(&g->tr, &g->tie, g->n_ties, step);
    else spd_train_update_cuda(&g->tr, step);
    *norm_components = g->tr.grad_norm_components;
    *norm_ci_fns = g->tr.grad_norm_ci_fns;
}

int64_t spd_gpu_run_adam_t(const spd_gpu_run *g) { return g->tr.adam_t; }

void spd_gpu_run_free(spd_gpu_run *g) {
    if (!g) return;
    spd_trainer_free_cuda(&g->tr);
    if (g->resid) resid_mlp_free_cuda(&g->rm);
    else tms_free_cuda(&g->tms);
    spd_spec_free(&g->spec);
    free(g);
}

#endif
