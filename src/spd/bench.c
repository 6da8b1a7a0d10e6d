#include "core/real.h"

#include "spd/bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/philox.h"
#include "core/spec.h"
#include "models/component_model.h"
#include "ops/adamw.h"
#include "ops/components.h"
#include "ops/loss.h"
#include "ops/matmul.h"

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

static void fill_uniform(real *out, size_t n, uint64_t seed, uint64_t stream) {
    for (size_t i = 0; i < n; i++) out[i] = (real)spd_philox_uniform_f32(seed, stream, i);
}

static const spd_adamw_config bench_adamw = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                                             .weight_decay = 0.0};

static void adamw_all(spd_spec *spec, int64_t t) {
    RFN(adamw_step)(spec->buf[SPD_ROLE_TRAINED], spec->grad, spec->adam_m, spec->adam_v,
                    spd_spec_trained_elems(spec), &bench_adamw, t);
}

// One LinearComponents, MSE to a random target.
static void run_linear(const bench_options *o, bench_result *res, FILE *log) {
    const int N = o->batch * o->seq, din = o->d_in, dout = o->d_out, C = o->C;
    spd_spec spec;
    spd_spec_init(&spec);
    spd_spec_add(&spec, "V", SPD_REAL_DTYPE, 2, (int64_t[]){din, C}, SPD_ROLE_TRAINED, SPD_INIT_NORMAL,
                 1 / sqrt((double)din));
    spd_spec_add(&spec, "U", SPD_REAL_DTYPE, 2, (int64_t[]){C, dout}, SPD_ROLE_TRAINED, SPD_INIT_NORMAL,
                 1 / sqrt((double)C));
    const char *acts[][2] = {{"x", "in"}, {"target", "out"}, {"mask", "C"}, {"a", "C"}, {"scratch", "C"},
                             {"y", "out"}, {"dy", "out"}, {"dx", "in"}};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) {
        int64_t width = acts[i][1][0] == 'i' ? din : acts[i][1][0] == 'o' ? dout : C;
        spd_spec_add(&spec, acts[i][0], SPD_REAL_DTYPE, 2, (int64_t[]){N, width}, SPD_ROLE_ACT, SPD_INIT_ZERO, 0);
    }
    spd_spec_alloc(&spec);
    spd_spec_init_values(&spec, SPD_ROLE_TRAINED, o->seed);
#define T(name) ((real *)spd_spec_get(&spec, name)->data)
    real *V = T("V"), *U = T("U"), *x = T("x"), *target = T("target"), *mask = T("mask"), *a = T("a");
    real *scratch = T("scratch"), *y = T("y"), *dy = T("dy"), *dx = T("dx");
#undef T
    real *dV = spd_spec_grad(&spec, spd_spec_get(&spec, "V")), *dU = spd_spec_grad(&spec, spd_spec_get(&spec, "U"));
    fill_uniform(x, (size_t)N * din, o->seed, 1000001);
    fill_uniform(target, (size_t)N * dout, o->seed, 1000002);
    spd_spec_print_memory(&spec, log);
    res->bytes_alloc = 0;
    for (int r = 0; r < SPD_ROLE_COUNT; r++) res->bytes_alloc += spec.bytes[r];
    res->bytes_alloc += 3.0 * spec.bytes[SPD_ROLE_TRAINED];

    double *ms = spd_malloc((size_t)o->steps * sizeof *ms);
    for (int step = 0; step < o->warmup + o->steps; step++) {
        fill_uniform(mask, (size_t)N * C, o->seed, (uint64_t)step);  // outside the timed region
        double t0 = now_ms();
        spd_spec_zero_grad(&spec);
        RFN(components_forward)(y, a, x, V, U, mask, NULL, NULL, N, din, C, dout, scratch);
        res->loss = RFN(mse_loss_forward)(y, target, (int64_t)N * dout);
        RFN(mse_loss_backward)(dy, y, target, (int64_t)N * dout);
        RFN(components_backward)(dx, dV, dU, NULL, NULL, NULL, dy, x, a, V, U, mask, NULL, NULL, N, din, C, dout,
                                 scratch);
        adamw_all(&spec, step + 1);
        double t1 = now_ms();
        if (step >= o->warmup) ms[step - o->warmup] = t1 - t0;
    }
    summarize(ms, o->steps, res);
    free(ms);
    spd_spec_free(&spec);
}

// The seed's full model: LlamaSimple 4L with all 28 linear modules decomposed, loss = mean of logits.
static void run_full(const bench_options *o, bench_result *res, FILE *log) {
    llama_config cfg = llama_config_ss_4l();
    spd_module_pattern patterns[] = {{"h.*.attn.*", o->C}, {"h.*.mlp.*", o->C}};
    component_model_options opt = {.B = o->batch, .S = o->seq, .untied_lm_head = false, .use_delta = false};
    component_model cm;
    if (RFN(component_model_build)(&cm, &cfg, patterns, 2, &opt)) spd_die_last_error();
    spd_spec_init_values(&cm.spec, SPD_ROLE_FROZEN, o->seed);
    spd_spec_init_values(&cm.spec, SPD_ROLE_TRAINED, o->seed + 1);
    llama_model *m = &cm.target;
    for (int n = 0; n < m->N; n++)
        m->tokens[n] = (int32_t)(spd_philox_uniform_f64(o->seed, 1000003, (uint64_t)n) * cfg.vocab_size);
    fprintf(log, "decomposed modules: %d, C = %d\n", cm.n_modules, o->C);
    spd_spec_print_memory(&cm.spec, log);
    res->bytes_alloc = 3.0 * cm.spec.bytes[SPD_ROLE_TRAINED];
    for (int r = 0; r < SPD_ROLE_COUNT; r++) res->bytes_alloc += cm.spec.bytes[r];

    int64_t n_logits = (int64_t)m->N * cfg.vocab_size;
    double *ms = spd_malloc((size_t)o->steps * sizeof *ms);
    for (int step = 0; step < o->warmup + o->steps; step++) {
        for (int i = 0; i < cm.n_modules; i++)  // outside the timed region
            fill_uniform(cm.modules[i].mask, (size_t)m->N * cm.modules[i].C, o->seed,
                         (uint64_t)step * 1024 + (uint64_t)i);
        double t0 = now_ms();
        spd_spec_zero_grad(&cm.spec);
        RFN(component_model_forward)(&cm);
        res->loss = RFN(mean_loss_forward)(m->logits, n_logits);
        RFN(mean_loss_backward)(m->dlogits, n_logits);
        RFN(component_model_backward)(&cm);
        adamw_all(&cm.spec, step + 1);
        double t1 = now_ms();
        if (step >= o->warmup) ms[step - o->warmup] = t1 - t0;
    }
    summarize(ms, o->steps, res);
    free(ms);
    RFN(component_model_free)(&cm);
}

void RFN(bench_run)(const bench_options *opt, bench_result *res, FILE *log) {
    memset(res, 0, sizeof *res);
    res->flops = bench_step_flops(opt);
    if (opt->kind == BENCH_LINEAR) run_linear(opt, res, log);
    else run_full(opt, res, log);
}

double RFN(bench_matmul_gflops)(int n, int reps) {
    size_t nn = (size_t)n * n;
    real *A = spd_malloc(nn * sizeof *A), *B = spd_malloc(nn * sizeof *B), *C = spd_malloc(nn * sizeof *C);
    fill_uniform(A, nn, 7, 1);
    fill_uniform(B, nn, 7, 2);
    double *ms = spd_malloc((size_t)reps * sizeof *ms);
    RFN(matmul)(C, A, B, n, n, n, false, false, 1, 0);  // warm-up
    for (int r = 0; r < reps; r++) {
        double t0 = now_ms();
        RFN(matmul)(C, A, B, n, n, n, false, false, 1, 0);
        ms[r] = now_ms() - t0;
    }
    bench_result tmp;
    summarize(ms, reps, &tmp);
    free(ms);
    free(A);
    free(B);
    free(C);
    return 2.0 * n * (double)nn / (tmp.median_ms * 1e-3) / 1e9;
}
