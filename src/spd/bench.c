#include "core/real.h"

#include "spd/bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/device.h"
#include "core/error.h"
#include "core/philox.h"
#include "core/spec.h"
#include "models/component_model.h"
#include "ops/adamw.h"
#include "ops/components.h"
#include "ops/fill.h"
#include "ops/loss.h"
#include "ops/matmul.h"
#include "ops/transfer.h"
#if SPD_REAL_ON_DEVICE
#include "cuda/backend.h"
#include "cuda/gemm.h"
#endif

// Device work is asynchronous: the clock is read only once queued work finished.
static void sync_backend(void) {
#if SPD_REAL_ON_DEVICE
    spd_device_synchronize();
#endif
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void summarize(double *ms, int n, bench_result *res) {
    double sum = 0;
    for (int i = 0; i < n; i++) sum += ms[i];
    qsort(ms, (size_t)n, sizeof *ms, cmp_double);
    res->mean_ms = sum / n;
    res->median_ms = n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
    res->min_ms = ms[0];
}

static double read_scalar(const real *x) {
    double v;
    RFN(copy_to_host_f64)(&v, x, 1);
    return v;
}

static const spd_adamw_config bench_adamw = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                                             .weight_decay = 0.0};

static void adamw_all(spd_spec *spec, int64_t t) {
    RFN(adamw_step)(spec->buf[SPD_ROLE_TRAINED], spec->grad, spec->adam_m, spec->adam_v,
                    spd_spec_trained_elems(spec), &bench_adamw, t);
}

// One benchmark step: prepare (masks; untimed), then body (zero grad, forward,
// loss, backward) and the AdamW update, timed together.
typedef struct {
    void (*prepare)(void *ctx, int step);
    void (*body)(void *ctx);
    void *ctx;
    spd_spec *spec;
} bench_step;

static void time_steps(const bench_options *o, const bench_step *s, bench_result *res) {
#if SPD_REAL_ON_DEVICE
    if (o->graph) {  // one eager run settles cuBLAS's choices, then the body is captured once
        s->prepare(s->ctx, 0);
        s->body(s->ctx);
        spd_cuda_graph_begin();
        s->body(s->ctx);
        spd_cuda_graph_end();
    }
#endif
    double *ms = spd_malloc((size_t)o->steps * sizeof *ms);
#if SPD_REAL_ON_DEVICE
    spd_cuda_profiler_start();  // a profiler run with --profile-from-start off sees the steps only
#endif
    for (int step = 0; step < o->warmup + o->steps; step++) {
        s->prepare(s->ctx, step);
        sync_backend();
        double t0 = now_ms();
#if SPD_REAL_ON_DEVICE
        if (o->graph) spd_cuda_graph_launch();
        else s->body(s->ctx);
#else
        s->body(s->ctx);
#endif
#if SPD_REAL_ON_DEVICE
        // Data parallel: DDP's mean of the gradients, where a real step pays for it.
        if (o->allreduce) o->allreduce(o->allreduce_ctx, s->spec->grad, spd_spec_trained_elems(s->spec));
#endif
        // AdamW stays outside the graph: its bias correction depends on the step.
        adamw_all(s->spec, step + 1);
        sync_backend();
        double t1 = now_ms();
        if (step >= o->warmup) ms[step - o->warmup] = t1 - t0;
    }
#if SPD_REAL_ON_DEVICE
    if (o->graph) spd_cuda_graph_destroy();
#endif
    summarize(ms, o->steps, res);
    free(ms);
}

// One LinearComponents, MSE to a random target.
typedef struct {
    int N, din, dout, C;
    uint64_t seed;
    spd_spec *spec;
    real *V, *U, *dV, *dU, *x, *target, *mask, *a, *scratch, *y, *dy, *dx, *loss;
} linear_ctx;

static void linear_prepare(void *p, int step) {
    linear_ctx *c = p;
    RFN(fill_uniform)(c->mask, (int64_t)c->N * c->C, c->seed, (uint64_t)step, 0);
}

static void linear_body(void *p) {
    linear_ctx *c = p;
    spd_spec_zero_grad(c->spec);
    // The seed's masks take no gradient: the GPU's fused mode does not save a (ops/components.h).
    real *a = c->a;
#if SPD_REAL_ON_DEVICE
    if (spd_cuda_mode_get() == SPD_CUDA_FUSED) a = NULL;
#endif
    RFN(components_forward)(c->y, a, c->x, c->V, c->U, c->mask, NULL, NULL, c->N, c->din, c->C, c->dout,
                            c->scratch);
    RFN(mse_loss_forward_backward)(c->loss, c->dy, c->y, c->target, (int64_t)c->N * c->dout);
    RFN(components_backward)(c->dx, c->dV, c->dU, NULL, NULL, NULL, c->dy, c->x, c->a, c->V, c->U, c->mask, NULL,
                             NULL, c->N, c->din, c->C, c->dout, c->scratch, false);
}

static void run_linear(const bench_options *o, bench_result *res, FILE *log) {
    const int N = o->batch * o->seq, din = o->d_in, dout = o->d_out, C = o->C;
    spd_spec spec;
    spd_spec_init(&spec);
    spd_spec_add(&spec, "V", SPD_REAL_DTYPE, 2, (int64_t[]){din, C}, SPD_ROLE_TRAINED, SPD_INIT_NORMAL,
                 1 / sqrt((double)din));
    spd_spec_add(&spec, "U", SPD_REAL_DTYPE, 2, (int64_t[]){C, dout}, SPD_ROLE_TRAINED, SPD_INIT_NORMAL,
                 1 / sqrt((double)C));
    const char *acts[][2] = {{"x", "in"}, {"target", "out"}, {"mask", "C"}, {"a", "C"}, {"scratch", "C"},
                             {"y", "out"}, {"dy", "out"}, {"dx", "in"}, {"loss", "1"}};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) {
        char w = acts[i][1][0];
        int64_t shape[2] = {w == '1' ? 1 : N, w == 'i' ? din : w == 'o' ? dout : w == 'C' ? C : 1};
        spd_spec_add(&spec, acts[i][0], SPD_REAL_DTYPE, 2, shape, SPD_ROLE_ACT, SPD_INIT_ZERO, 0);
    }
    spec.on_device = SPD_REAL_ON_DEVICE;
    spd_spec_alloc(&spec);
    spd_spec_init_values(&spec, SPD_ROLE_TRAINED, o->seed);
#define T(name) ((real *)spd_spec_get(&spec, name)->data)
    linear_ctx c = {.N = N, .din = din, .dout = dout, .C = C, .seed = o->seed, .spec = &spec, .V = T("V"),
                    .U = T("U"), .x = T("x"), .target = T("target"), .mask = T("mask"), .a = T("a"),
                    .scratch = T("scratch"), .y = T("y"), .dy = T("dy"), .dx = T("dx"), .loss = T("loss")};
#undef T
    c.dV = spd_spec_grad(&spec, spd_spec_get(&spec, "V"));
    c.dU = spd_spec_grad(&spec, spd_spec_get(&spec, "U"));
    RFN(fill_uniform)(c.x, (int64_t)N * din, o->seed, 1000001, 0);
    RFN(fill_uniform)(c.target, (int64_t)N * dout, o->seed, 1000002, 0);
    spd_spec_print_memory(&spec, log);
    res->bytes_alloc = 3.0 * spec.bytes[SPD_ROLE_TRAINED];
    for (int r = 0; r < SPD_ROLE_COUNT; r++) res->bytes_alloc += spec.bytes[r];

    bench_step step = {.prepare = linear_prepare, .body = linear_body, .ctx = &c, .spec = &spec};
    time_steps(o, &step, res);
    res->loss = read_scalar(c.loss);
    spd_spec_free(&spec);
}

// The seed's full model: LlamaSimple 4L with all 28 linear modules decomposed, loss = mean of logits.
typedef struct {
    component_model *cm;
    uint64_t seed;
} full_ctx;

static void full_prepare(void *p, int step) {
    full_ctx *c = p;
    for (int i = 0; i < c->cm->n_modules; i++)
        RFN(fill_uniform)(c->cm->modules[i].mask, (int64_t)c->cm->target.N * c->cm->modules[i].C, c->seed,
                          (uint64_t)step * 1024 + (uint64_t)i, 0);
}

static void full_body(void *p) {
    component_model *cm = ((full_ctx *)p)->cm;
    llama_model *m = &cm->target;
    int64_t n_logits = (int64_t)m->N * m->cfg.vocab_size;
    spd_spec_zero_grad(&cm->spec);
    RFN(component_model_forward)(cm);
    RFN(mean_loss_forward)(m->loss, m->logits, n_logits);
    RFN(mean_loss_backward)(m->dlogits, n_logits);
    RFN(component_model_backward)(cm);
}

static void run_full(const bench_options *o, bench_result *res, FILE *log) {
    llama_config cfg = llama_config_ss_4l();
    spd_module_pattern patterns[] = {{"h.*.attn.*", o->C}, {"h.*.mlp.*", o->C}};
    component_model_options opt = {.B = o->batch, .S = o->seq, .untied_lm_head = false, .use_delta = false};
    component_model cm;
    if (RFN(component_model_build)(&cm, &cfg, patterns, 2, &opt)) spd_die_last_error();
    spd_spec_init_values(&cm.spec, SPD_ROLE_FROZEN, o->seed);
    spd_spec_init_values(&cm.spec, SPD_ROLE_TRAINED, o->seed + 1);
    llama_model *m = &cm.target;
    int32_t *tokens = spd_malloc((size_t)m->N * sizeof *tokens);
    uint64_t first = (uint64_t)o->rank * (uint64_t)m->N;  // data parallel: this rank's slice of the global batch
    for (int n = 0; n < m->N; n++)
        tokens[n] = (int32_t)(spd_philox_uniform_f64(o->seed, 1000003, first + (uint64_t)n) * cfg.vocab_size);
    spd_tensor_upload(&cm.spec, spd_spec_get(&cm.spec, "input.tokens"), tokens);
    free(tokens);
    fprintf(log, "decomposed modules: %d, C = %d\n", cm.n_modules, o->C);
    spd_spec_print_memory(&cm.spec, log);
    res->bytes_alloc = 3.0 * cm.spec.bytes[SPD_ROLE_TRAINED];
    for (int r = 0; r < SPD_ROLE_COUNT; r++) res->bytes_alloc += cm.spec.bytes[r];

    full_ctx c = {.cm = &cm, .seed = o->seed};
    bench_step step = {.prepare = full_prepare, .body = full_body, .ctx = &c, .spec = &cm.spec};
    time_steps(o, &step, res);
    res->loss = read_scalar(m->loss);
    RFN(component_model_free)(&cm);
}

void RFN(bench_run)(const bench_options *opt, bench_result *res, FILE *log) {
    memset(res, 0, sizeof *res);
    res->flops = bench_step_flops(opt);
    if (opt->kind == BENCH_LINEAR) run_linear(opt, res, log);
    else run_full(opt, res, log);
}

// Median milliseconds of `reps` runs of op(ctx) after one warm-up run.
static double median_ms_of(void (*op)(void *), void *ctx, int reps) {
    op(ctx);
    double *ms = spd_malloc((size_t)reps * sizeof *ms);
    for (int r = 0; r < reps; r++) {
        sync_backend();
        double t0 = now_ms();
        op(ctx);
        sync_backend();
        ms[r] = now_ms() - t0;
    }
    bench_result tmp;
    summarize(ms, reps, &tmp);
    free(ms);
    return tmp.median_ms;
}

typedef struct {
    real *a, *b, *c;
    void *a16, *b16;  // bf16 products: the operands already rounded (the rate, not the rounding)
    int n;
} ceiling_ctx;

static void square_matmul(void *p) {
    ceiling_ctx *c = p;
#if SPD_REAL_ON_DEVICE
    if (c->a16) {
        matmul_cuda_ld_bf16(c->c, c->a16, true, c->b16, true, c->n, c->n, c->n, false, false, 1, 0, c->n, c->n, c->n);
        return;
    }
#endif
    RFN(matmul)(c->c, c->a, c->b, c->n, c->n, c->n, false, false, 1, 0);
}

static void big_copy(void *p) {
    ceiling_ctx *c = p;
    RFN(copy)(c->b, c->a, c->n);
}

// Two or three tensors of n_elems in this backend's memory, the first two random.
static ceiling_ctx ceiling_buffers(spd_spec *spec, int64_t n_elems, int count) {
    spd_spec_init(spec);
    spec->on_device = SPD_REAL_ON_DEVICE;
    const char *names[] = {"a", "b", "c"};
    for (int i = 0; i < count; i++)
        spd_spec_add(spec, names[i], SPD_REAL_DTYPE, 1, &n_elems, SPD_ROLE_ACT, SPD_INIT_ZERO, 0);
    spd_spec_alloc(spec);
    ceiling_ctx c = {.a = spd_spec_get(spec, "a")->data, .b = spd_spec_get(spec, "b")->data,
                     .c = count > 2 ? spd_spec_get(spec, "c")->data : NULL};
    RFN(fill_uniform)(c.a, n_elems, 7, 1, 0);  // random operands: zeros would run faster
    RFN(fill_uniform)(c.b, n_elems, 7, 2, 0);
    return c;
}

double RFN(bench_matmul_gflops)(int n, int reps) {
    spd_spec spec;
    ceiling_ctx c = ceiling_buffers(&spec, (int64_t)n * n, 3);
    c.n = n;
#if SPD_REAL_ON_DEVICE
    if (spd_cuda_matmul_precision() == SPD_MATMUL_BF16) {  // n % 8 == 0 keeps the bf16 rows 16-byte aligned
        const size_t bytes = (size_t)n * n * 2;
        c.a16 = spd_device_malloc(bytes);
        c.b16 = spd_device_malloc(bytes);
        spd_to_bf16(c.a16, n, c.a, n, n, n);
        spd_to_bf16(c.b16, n, c.b, n, n, n);
    }
#endif
    double ms = median_ms_of(square_matmul, &c, reps);
#if SPD_REAL_ON_DEVICE
    spd_device_free(c.a16);
    spd_device_free(c.b16);
#endif
    spd_spec_free(&spec);
    return 2.0 * n * (double)n * n / (ms * 1e-3) / 1e9;
}

double RFN(bench_bandwidth_gbs)(size_t bytes, int reps) {
    int64_t n = (int64_t)(bytes / sizeof(real));
    spd_spec spec;
    ceiling_ctx c = ceiling_buffers(&spec, n, 2);
    c.n = (int)n;
    double ms = median_ms_of(big_copy, &c, reps);
    spd_spec_free(&spec);
    return 2.0 * (double)n * sizeof(real) / (ms * 1e-3) / 1e9;  // bytes read plus bytes written
}
