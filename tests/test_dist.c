// Data parallelism's host-side rules (spd/dist.h), CPU float64, no GPU:
//  - spd_dist_rows splits a global batch into equal rank slices and rejects a
//    batch that does not divide (naming the field); the per-rank seed is
//    seed * world + rank (N = 1: the config's seed); the unique id's hex form
//    round-trips and bad text is rejected;
//  - the ranks' toy-data slices (row0) concatenate to the single-process batch, bit for bit;
//  - simulated data parallel: 2 and 4 "ranks" (trainers of B / world rows each
//    on their slices), their gradients and loss values averaged as the NCCL
//    all-reduce does, then each updated: 20 steps match the single-process run to
//    float64 rounding on a config without random draws (continuous sampling,
//    Faithfulness + ImportanceMinimality (beta 0) + CIMaskedRecon + clipping);
//  - the world_size option reaches importance minimality's beta term (SPD: local sums x world).
#define SPD_F64
#include "core/real.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/spec.h"
#include "models/tms.h"
#include "models/toy_data.h"
#include "spd/dist.h"
#include "spd/train.h"
#include "testing.h"

enum { F = 5, H = 3, BATCH = 16, STEPS = 20 };

static void test_rows(void) {
    int64_t row0, rows;
    bool ok = true;
    for (int world = 1; world <= 8; world *= 2)
        for (int r = 0; r < world; r++)
            ok = ok && spd_dist_rows(64, world, r, "batch_size", &row0, &rows) == 0 && rows == 64 / world &&
                 row0 == r * (64 / world);
    test_report(ok, "dist: batch slices", NULL);
    int rc = spd_dist_rows(30, 4, 1, "batch_size", &row0, &rows);
    test_report(rc == -1 && strstr(spd_last_error(), "batch_size") && strstr(spd_last_error(), "30"),
                "dist: a batch that does not divide is rejected", "%s", spd_last_error());
    test_report(spd_dist_rows(8, 0, 0, "b", &row0, &rows) == -1 && spd_dist_rows(8, 2, 2, "b", &row0, &rows) == -1 &&
                    spd_dist_rows(8, SPD_DIST_MAX_WORLD + 1, 0, "b", &row0, &rows) == -1,
                "dist: bad world / rank rejected", NULL);
    test_report(spd_dist_rank_seed(7, 1, 0) == 7 && spd_dist_rank_seed(7, 2, 0) == 14 && spd_dist_rank_seed(7, 2, 1) == 15,
                "dist: seed per rank = seed * world + rank", NULL);
    spd_dist_id id, back;
    for (int i = 0; i < SPD_DIST_ID_BYTES; i++) id.bytes[i] = (unsigned char)(i * 37 + 5);
    char hex[2 * SPD_DIST_ID_BYTES + 1];
    spd_dist_id_to_hex(&id, hex);
    test_report(spd_dist_id_from_hex(&back, hex) == 0 && memcmp(&id, &back, sizeof id) == 0, "dist: id hex round trip",
                NULL);
    hex[10] = 'x';
    bool bad = spd_dist_id_from_hex(&back, hex) == -1 && spd_dist_id_from_hex(&back, "abc") == -1 &&
               spd_dist_id_from_hex(&back, NULL) == -1;
    test_report(bad, "dist: malformed SPD_NCCL_ID rejected", "%s", spd_last_error());
}

static void test_data_slices(void) {
    spd_toy_data d;
    SPD_ASSERT(spd_toy_data_init_tms(&d, F, 0.3, SPD_TOY_AT_LEAST_ZERO_ACTIVE, 5) == 0);
    double full[BATCH * F], part[BATCH * F];
    bool same = true;
    for (int world = 2; world <= 4; world *= 2)
        for (int64_t step = 0; step < 3; step++) {
            spd_toy_batch_f64(&d, (uint64_t)step, -1, 0, BATCH, full, NULL);
            for (int r = 0; r < world; r++) {
                int64_t row0, rows;
                SPD_ASSERT(spd_dist_rows(BATCH, world, r, "b", &row0, &rows) == 0);
                spd_toy_batch_f64(&d, (uint64_t)step, -1, row0, (int)rows, part + row0 * F, NULL);
            }
            same = same && memcmp(full, part, sizeof full) == 0;
        }
    test_report(same, "dist: rank slices of the toy batch concatenate to the full batch", NULL);
    spd_toy_data_free(&d);
}

// ---- simulated data parallel over the float64 trainer

typedef struct {
    spd_spec spec;
    tms_model tms;
    spd_trainer tr;
} fixture;

static void tms_fwd(void *m) { tms_forward_f64(m); }
static void tms_bwd(void *m) { tms_backward_f64(m); }

static spd_target tms_target(tms_model *m) {
    return (spd_target){.model = m, .sites = m->sites, .n_sites = m->n_sites, .N = m->B,
                        .d_out = m->cfg.n_features, .out = m->out, .dout = m->dout,
                        .forward = tms_fwd, .backward = tms_bwd};
}

static void build(fixture *fx, const spd_train_options *opt, int B) {
    memset(fx, 0, sizeof *fx);
    spd_spec_init(&fx->spec);
    tms_config cfg = {.n_features = F, .n_hidden = H, .n_hidden_layers = 1};
    tms_options topt = {.B = B, .prefix = "target_model."};
    tms_declare_f64(&fx->tms, &fx->spec, &cfg, &topt);
    spd_target tg = tms_target(&fx->tms);
    int sites[3] = {TMS_LINEAR1, TMS_LINEAR2, TMS_HIDDEN0}, Cs[3] = {4, 4, 4};
    SPD_ASSERT(spd_trainer_declare_f64(&fx->tr, &fx->spec, opt, &tg, sites, Cs, 3) == 0);
    spd_spec_alloc(&fx->spec);
    tms_bind_f64(&fx->tms, &fx->spec);
    tms_init_params_f64(&fx->tms, 7);
    tg = tms_target(&fx->tms);
    spd_trainer_bind_f64(&fx->tr, &tg);
    spd_trainer_init_params_f64(&fx->tr, 11);  // identical on every rank (same seed), as SPD's set_seed
}

static void fixture_free(fixture *fx) {
    spd_trainer_free_f64(&fx->tr);
    tms_free_f64(&fx->tms);
    spd_spec_free(&fx->spec);
}

static void drawless_options(spd_train_options *o) {
    spd_train_options_default(o);
    o->n_terms = 3;
    o->terms[0] = (spd_train_term){.kind = SPD_TERM_FAITHFULNESS, .coeff = 1};
    o->terms[1] = (spd_train_term){.kind = SPD_TERM_IMPORTANCE_MINIMALITY, .coeff = 3e-3,
                                   .imp = {.pnorm = 1, .p_anneal_start_frac = 1, .p_anneal_end_frac = 1, .eps = 1e-12}};
    o->terms[2] = (spd_train_term){.kind = SPD_TERM_CI_MASKED_RECON, .coeff = 1};
    o->steps = STEPS;
    o->lr = (spd_schedule_config){.start_val = 1e-2, .warmup_pct = 0.1, .final_val_frac = 0.1, .fn_type = SPD_SCHEDULE_COSINE};
    o->grad_clip_components = 0.5;  // clipping sees the averaged gradients
    o->grad_clip_ci_fns = 0.5;
}

static double trained_rel_err(const fixture *a, const fixture *b) {
    size_t n = spd_spec_trained_elems(&a->spec);
    return test_rel_norm_err(a->spec.buf[SPD_ROLE_TRAINED], b->spec.buf[SPD_ROLE_TRAINED], (long)n);
}

static void simulate(int world) {
    spd_train_options o;
    drawless_options(&o);
    fixture one, ranks[4];
    build(&one, &o, BATCH);
    spd_toy_data d;
    SPD_ASSERT(spd_toy_data_init_tms(&d, F, 0.3, SPD_TOY_AT_LEAST_ZERO_ACTIVE, 5) == 0);
    int64_t rows = BATCH / world;
    for (int r = 0; r < world; r++) {
        spd_train_options ro = o;
        ro.seed = spd_dist_rank_seed(o.seed, world, r);
        ro.world_size = world;
        build(&ranks[r], &ro, (int)rows);
    }
    size_t n = spd_spec_trained_elems(&one.spec);
    double *avg = spd_malloc(n * sizeof *avg);
    double worst_total = 0, worst_grad = 0;
    for (int64_t step = 0; step < STEPS; step++) {
        spd_toy_batch_f64(&d, (uint64_t)step, -1, 0, BATCH, one.tms.x, NULL);
        double total = spd_train_step_f64(&one.tr, step);
        double total_avg = 0;
        memset(avg, 0, n * sizeof *avg);
        for (int r = 0; r < world; r++) {
            spd_toy_batch_f64(&d, (uint64_t)step, -1, r * rows, (int)rows, ranks[r].tms.x, NULL);
            total_avg += spd_train_step_f64(&ranks[r].tr, step) / world;
            const double *g = ranks[r].spec.grad;
            for (size_t i = 0; i < n; i++) avg[i] += g[i] / world;  // ncclAvg
        }
        for (int r = 0; r < world; r++) memcpy(ranks[r].spec.grad, avg, n * sizeof *avg);
        double e = test_rel_norm_err(avg, one.spec.grad, (long)n);
        if (e > worst_grad) worst_grad = e;
        e = fabs(total_avg - total) / fabs(total);
        if (e > worst_total) worst_total = e;
        spd_train_update_f64(&one.tr, step);
        for (int r = 0; r < world; r++) spd_train_update_f64(&ranks[r].tr, step);
    }
    double e_params = trained_rel_err(&ranks[0], &one);
    bool in_sync = true;
    for (int r = 1; r < world; r++) in_sync = in_sync && trained_rel_err(&ranks[r], &ranks[0]) == 0;
    char name[128];
    snprintf(name, sizeof name, "dist: %d simulated ranks match one process over %d steps (no random draws)", world,
             STEPS);
    // float64 rounding of a re-associated batch sum, carried through 20 Adam steps.
    test_report(worst_grad < 1e-12 && worst_total < 1e-13 && e_params < 1e-10 && in_sync, name,
                "grad %.3g total %.3g params %.3g in_sync %d", worst_grad, worst_total, e_params, in_sync);
    free(avg);
    spd_toy_data_free(&d);
    for (int r = 0; r < world; r++) fixture_free(&ranks[r]);
    fixture_free(&one);
}

// world_size scales importance minimality's beta term (local sums x world), and nothing when beta = 0.
static void test_world_size_beta(void) {
    double v[2][2];
    for (int beta = 0; beta < 2; beta++)
        for (int w = 0; w < 2; w++) {
            spd_train_options o;
            drawless_options(&o);
            o.terms[1].imp.beta = beta ? 0.5 : 0.0;
            o.world_size = w ? 4 : 1;
            fixture fx;
            build(&fx, &o, 4);
            for (int i = 0; i < 4 * F; i++) fx.tms.x[i] = (i % 3) * 0.4;
            spd_train_step_f64(&fx.tr, 0);
            v[beta][w] = fx.tr.values[1];
            fixture_free(&fx);
        }
    test_report(v[0][0] == v[0][1] && v[1][1] > v[1][0], "dist: world_size reaches importance minimality's beta term",
                "beta 0: %.17g vs %.17g; beta 0.5: %.17g vs %.17g", v[0][0], v[0][1], v[1][0], v[1][1]);
}

int main(void) {
    test_rows();
    test_data_slices();
    simulate(2);
    simulate(4);
    test_world_size_beta();
    return test_exit();
}
