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
#include "spd/faithfulness_warmup.h"
#include "spd/target_llama.h"
#include "spd/target_resid_mlp.h"
#include "spd/target_tms.h"
#include "spd/tied.h"
#include "spd/train.h"

// The host's draw source (float64 buffers; same layout as spd_draw_source).
typedef struct {
    void (*fill)(void *ctx, double *out, long n, spd_rng_purpose purpose, int64_t step, int term, int sample,
                 int module);
    void *ctx;
} host_draws;

struct spd_gpu_run {
    spd_gpu_target kind;
    spd_spec spec;
    tms_model tms;
    resid_mlp_model rm;
    llama_model ll;
    host_draws host;
    spd_draw_source draws;
    spd_trainer tr;
    spd_tied_pair tie;
    int n_ties;
    float *x;  // input.x on the device
    spd_dist *dist;  // data parallel, or NULL
    spd_collectives coll;
};

// ---- data parallel: the trainer's collectives over spd/dist.h
static void coll_broadcast(void *ctx, float *buf, long n) { spd_dist_broadcast_f32(ctx, buf, (size_t)n); }
static void coll_allreduce_avg(void *ctx, float *buf, long n) { spd_dist_allreduce_avg_f32(ctx, buf, (size_t)n); }

// n draws from the host's source, rounded to float32 (the CPU's float32 trainer rounds them the same way).
static void fill_from_host(void *ctx, float *out, long n, spd_rng_purpose purpose, int64_t step, int term, int sample,
                           int module) {
    const host_draws *h = ctx;
    double *tmp = spd_malloc((size_t)(n ? n : 1) * sizeof *tmp);
    h->fill(h->ctx, tmp, n, purpose, step, term, sample, module);
    for (long i = 0; i < n; i++) out[i] = (float)tmp[i];
    free(tmp);
}

static spd_target target_of(spd_gpu_run *g) {
    switch (g->kind) {
    case SPD_GPU_TMS: return spd_target_tms_cuda(&g->tms);
    case SPD_GPU_RESID_MLP: return spd_target_resid_mlp_cuda(&g->rm);
    default: return spd_target_llama_cuda(&g->ll);
    }
}

spd_gpu_run *spd_gpu_run_create(const spd_gpu_run_config *c) {
    spd_cuda_init();
    spd_gpu_run *g = spd_calloc(1, sizeof *g);
    g->kind = c->kind;
    spd_spec_init(&g->spec);
    g->spec.on_device = true;
    if (c->kind == SPD_GPU_RESID_MLP) {
        resid_mlp_options ro = {.B = c->B, .prefix = "target_model."};
        resid_mlp_declare_cuda(&g->rm, &g->spec, &c->resid_mlp, &ro);
    } else if (c->kind == SPD_GPU_TMS) {
        tms_options to = {.B = c->B, .prefix = "target_model."};
        tms_declare_cuda(&g->tms, &g->spec, &c->tms, &to);
    } else {
        llama_declare_cuda(&g->ll, &g->spec, &c->llama, c->B, c->T, c->untied_lm_head);
    }
    if (c->n_identity > 0) {
        int rc = c->kind == SPD_GPU_RESID_MLP ? resid_mlp_insert_identity_cuda(&g->rm, &g->spec, c->identity, c->n_identity)
                 : c->kind == SPD_GPU_TMS     ? tms_insert_identity_cuda(&g->tms, &g->spec, c->identity, c->n_identity)
                                              : llama_insert_identity_cuda(&g->ll, &g->spec, c->identity, c->n_identity);
        if (rc) spd_die_input("train --device cuda: identity_module_info: %s", spd_last_error());
    }
    spd_target tg = target_of(g);
    spd_train_options opt;
    memcpy(&opt, c->opt, sizeof opt);  // same layout in every precision: only the draw source's type differs
    if (opt.draws) {
        memcpy(&g->host, opt.draws, sizeof g->host);
        g->draws = (spd_draw_source){.fill = fill_from_host, .ctx = &g->host};
        opt.draws = &g->draws;
    }
    if (c->dist) {
        g->dist = c->dist;
        g->coll = (spd_collectives){.broadcast = coll_broadcast, .allreduce_avg = coll_allreduce_avg, .ctx = c->dist};
        opt.coll = &g->coll;
        opt.world_size = spd_dist_world(c->dist);
    }
    if (spd_trainer_declare_cuda(&g->tr, &g->spec, &opt, &tg, c->site, c->C, c->n))
        spd_die_input("train --device cuda: %s", spd_last_error());
    spd_spec_alloc(&g->spec);
    if (c->kind == SPD_GPU_RESID_MLP) {
        resid_mlp_bind_cuda(&g->rm, &g->spec);
        g->x = g->rm.x;
    } else if (c->kind == SPD_GPU_TMS) {
        tms_bind_cuda(&g->tms, &g->spec);
        g->x = g->tms.x;
    } else {
        llama_bind_cuda(&g->ll, &g->spec);
    }
    tg = target_of(g);
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

void spd_gpu_run_ci(spd_gpu_run *g, int l, int what, double *out) {
    SPD_ASSERT(l >= 0 && l < g->tr.n_mods && what >= 0 && what <= 2);
    const spd_train_module *m = &g->tr.mods[l];
    const float *src = what == 0 ? m->pre : what == 1 ? m->ci_lower : m->ci_upper;
    copy_to_host_f64_cuda(out, src, (int64_t)g->tr.target.N * m->comp.C);
}

void spd_gpu_run_target_output(spd_gpu_run *g, double *out) {
    copy_to_host_f64_cuda(out, g->tr.y_t, (int64_t)g->tr.target.N * g->tr.target.d_out);
}

void spd_gpu_run_set_input(spd_gpu_run *g, const float *x, int64_t n) {
    SPD_ASSERT(g->x);
    spd_device_upload(g->x, x, (size_t)n * sizeof(float));
}

bool spd_gpu_run_toy_batch(spd_gpu_run *g, const spd_toy_data *d, int64_t step, int64_t row0, int B) {
    SPD_ASSERT(g->x);
    return spd_toy_batch_cuda(d, (uint64_t)step, -1, row0, B, g->x) == 0;
}

void spd_gpu_run_set_tokens(spd_gpu_run *g, const int32_t *tokens, int64_t n) {
    SPD_ASSERT(g->kind == SPD_GPU_LLAMA && n == g->ll.N);
    spd_device_upload(g->ll.tokens, tokens, (size_t)n * sizeof(int32_t));
}

double spd_gpu_run_warmup(spd_gpu_run *g, int64_t steps, double lr, double weight_decay) {
    spd_faithfulness_warmup_options wo = {.steps = steps, .lr = lr, .weight_decay = weight_decay,
                                          .ties = g->n_ties ? &g->tie : NULL, .n_ties = g->n_ties};
    return spd_faithfulness_warmup_cuda(&g->tr, &wo);
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

// ---- data parallel (spd/dist.h)

void spd_gpu_run_dist_broadcast_params(spd_gpu_run *g) {
    SPD_ASSERT(g->dist);
    spd_dist_broadcast_f32(g->dist, g->spec.buf[SPD_ROLE_TRAINED], spd_spec_trained_elems(&g->spec));
}

void spd_gpu_run_dist_ci(spd_gpu_run *g, int l, int what, double *out) {
    SPD_ASSERT(g->dist && l >= 0 && l < g->tr.n_mods && what >= 0 && what <= 2);
    const spd_train_module *m = &g->tr.mods[l];
    const float *src = what == 0 ? m->pre : what == 1 ? m->ci_lower : m->ci_upper;
    size_t n = (size_t)g->tr.target.N * m->comp.C, world = (size_t)spd_dist_world(g->dist);
    float *all = spd_device_malloc(world * n * sizeof *all);
    spd_dist_allgather_f32(g->dist, src, all, n);
    copy_to_host_f64_cuda(out, all, (int64_t)(world * n));
    spd_device_free(all);
}

void spd_gpu_run_dist_average(spd_gpu_run *g, double *values, double *total) {
    SPD_ASSERT(g->dist);
    // The TRAINED gradient mirror is one allocation (padding zero), so DDP's mean is one call.
    spd_dist_allreduce_avg_f32(g->dist, g->spec.grad, spd_spec_trained_elems(&g->spec));
    double v[SPD_TRAIN_MAX_TERMS + 1];
    int n = g->tr.opt.n_terms;
    for (int i = 0; i < n; i++) v[i] = values[i];
    v[n] = *total;
    spd_dist_allreduce_avg_host_f64(g->dist, v, (size_t)n + 1);
    for (int i = 0; i < n; i++) values[i] = v[i];
    *total = v[n];
}

void spd_gpu_run_free(spd_gpu_run *g) {
    if (!g) return;
    spd_trainer_free_cuda(&g->tr);
    if (g->kind == SPD_GPU_RESID_MLP) resid_mlp_free_cuda(&g->rm);
    else if (g->kind == SPD_GPU_TMS) tms_free_cuda(&g->tms);
    else llama_free_cuda(&g->ll);
    spd_spec_free(&g->spec);
    free(g);
}

#endif
