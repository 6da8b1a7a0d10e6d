// Training the toy targets as SPD does: spd/target_train.h.
#define SPD_F64
#include "spd/target_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/safetensors.h"
#include "ops/adamw.h"
#include "spd/schedule.h"

const char *const spd_target_presets[] = {"tms_5-2",     "tms_5-2-id",  "tms_40-10",   "tms_40-10-id",
                                          "resid_mlp_1", "resid_mlp_2", "resid_mlp_3", NULL};

int spd_target_preset(const char *experiment, spd_target_train_config *out) {
    spd_target_train_config c = {
        .generation = SPD_TOY_AT_LEAST_ZERO_ACTIVE,
        .lr_warmup_pct = 0.0,
        .weight_decay = 0.01,  // torch AdamW's default (train_tms.py); explicit in train_resid_mlp.py
        .importance_val = 1.0,
        .n_batches_final_losses = 1,
        .seed = 0,
    };
    if (!experiment) return spd_set_error("no experiment given");
    if (strncmp(experiment, "tms_", 4) == 0) {
        // train_tms.py's four TMSTrainConfig blocks.
        bool big = false, id = false;
        if (strcmp(experiment, "tms_5-2") == 0) {
        } else if (strcmp(experiment, "tms_5-2-id") == 0) id = true;
        else if (strcmp(experiment, "tms_40-10") == 0) big = true;
        else if (strcmp(experiment, "tms_40-10-id") == 0) big = id = true;
        else goto unknown;
        c.task = SPD_TARGET_TMS;
        c.tms = (tms_config){.n_features = big ? 40 : 5, .n_hidden = big ? 10 : 2, .n_hidden_layers = id ? 1 : 0,
                             .tied_weights = true, .init_bias_to_zero = big};
        c.tms_hidden = id ? TMS_HIDDEN_FIXED_IDENTITY : TMS_HIDDEN_DEFAULT;
        // Seed: SPD's seed 0 seeds torch's RNG, whose numbers are not Philox's. TMS
        // 5-2 is finicky (train_tms.py says so): with Philox seeds 0-5 some of the 5
        // features end up unrepresented (loss 3.5e-3 .. 9.7e-3); seed 6 is the first
        // whose target preserves all five (one-hot 0.75 within 0.1, loss 1.9e-3).
        c.seed = big ? 0 : 6;
        c.feature_probability = 0.05;
        c.batch_size = big ? 8192 : 1024;
        c.steps = 10000;
        c.lr_fn = SPD_SCHEDULE_CONSTANT;
        c.lr = 5e-3;
        c.lr_final_val_frac = 1.0;
    } else if (strncmp(experiment, "resid_mlp_", 10) == 0) {
        // train_resid_mlp.py's three ResidMLPTrainConfig blocks.
        int L = 0;
        if (strcmp(experiment, "resid_mlp_1") == 0) L = 1;
        else if (strcmp(experiment, "resid_mlp_2") == 0) L = 2;
        else if (strcmp(experiment, "resid_mlp_3") == 0) L = 3;
        else goto unknown;
        c.task = SPD_TARGET_RESID_MLP;
        c.resid = (resid_mlp_config){.n_features = L == 3 ? 102 : 100, .d_embed = 1000,
                                     .d_mlp = L == 1 ? 50 : L == 2 ? 25 : 17, .n_layers = L,
                                     .act = RESID_MLP_RELU, .in_bias = false, .out_bias = false};
        c.embedding = RESID_EMBED_FIXED_RANDOM;
        c.feature_probability = 0.01;
        c.batch_size = 2048;
        c.steps = L == 3 ? 10000 : 1000;
        c.lr_fn = SPD_SCHEDULE_COSINE;
        c.lr = 3e-3;
        c.lr_final_val_frac = 0.0;
        c.n_batches_final_losses = 10;
    } else goto unknown;
    snprintf(c.experiment, sizeof c.experiment, "%s", experiment);
    *out = c;
    return 0;
unknown:
    return spd_set_error("unknown experiment '%s' (expected tms_5-2, tms_5-2-id, tms_40-10, tms_40-10-id, "
                         "resid_mlp_1, resid_mlp_2 or resid_mlp_3)",
                         experiment);
}

int spd_target_run_init(spd_target_run *r, const spd_target_train_config *cfg) {
    memset(r, 0, sizeof *r);
    if (cfg->batch_size < 1 || cfg->batch_size > (1 << 24))
        return spd_set_error("batch_size: expected 1 .. %d, found %d", 1 << 24, cfg->batch_size);
    if (cfg->steps < 1) return spd_set_error("steps: expected >= 1, found %lld", (long long)cfg->steps);
    if (!(cfg->lr > 0) || !isfinite(cfg->lr)) return spd_set_error("lr: expected > 0, found %g", cfg->lr);
    if (!(cfg->weight_decay >= 0)) return spd_set_error("weight_decay: expected >= 0, found %g", cfg->weight_decay);
    if (!isfinite(cfg->importance_val)) return spd_set_error("importance_val: not finite");
    if (cfg->n_batches_final_losses < 1) return spd_set_error("n_batches_final_losses: expected >= 1");
    r->cfg = *cfg;
    const int B = cfg->batch_size;
    int F;
    spd_spec_init(&r->spec);
    if (cfg->task == SPD_TARGET_TMS) {
        if (spd_tms_config_check(&cfg->tms)) return -1;
        F = cfg->tms.n_features;
        if (spd_toy_data_init_tms(&r->data, F, cfg->feature_probability, cfg->generation, cfg->seed)) return -1;
        tms_options o = {.B = B, .prefix = "", .train = true, .hidden = cfg->tms_hidden};
        tms_declare_f64(&r->tms, &r->spec, &cfg->tms, &o);
        spd_spec_alloc(&r->spec);
        tms_bind_f64(&r->tms, &r->spec);
        tms_init_params_f64(&r->tms, cfg->seed);
        r->x = r->tms.x;
        r->out = r->tms.out;
        r->dout = r->tms.dout;
    } else {
        if (spd_resid_mlp_config_check(&cfg->resid, cfg->embedding)) return -1;
        F = cfg->resid.n_features;
        if (spd_toy_data_init_resid_mlp(&r->data, F, cfg->feature_probability, cfg->generation, cfg->seed)) return -1;
        spd_toy_data_set_labels(&r->data, SPD_TOY_LABELS_ACT_PLUS_RESID,
                                cfg->resid.act == RESID_MLP_GELU ? SPD_TOY_ACT_GELU : SPD_TOY_ACT_RELU, NULL);
        resid_mlp_options o = {.B = B, .prefix = "", .train = true, .embedding = cfg->embedding};
        resid_mlp_declare_f64(&r->rm, &r->spec, &cfg->resid, &o);
        spd_spec_alloc(&r->spec);
        resid_mlp_bind_f64(&r->rm, &r->spec);
        resid_mlp_init_params_f64(&r->rm, cfg->seed);
        r->x = r->rm.x;
        r->out = r->rm.out;
        r->dout = r->rm.dout;
    }
    r->n_features = F;
    r->labels = spd_malloc((size_t)B * (size_t)F * sizeof *r->labels);
    r->weights = spd_malloc((size_t)F * sizeof *r->weights);
    for (int f = 0; f < F; f++)  // compute_feature_importances: importance_val^f (ones when 1)
        r->weights[f] = cfg->importance_val == 1.0 ? 1.0 : pow(cfg->importance_val, (double)f);
    return 0;
}

static void forward(spd_target_run *r) {
    if (r->cfg.task == SPD_TARGET_TMS) tms_forward_f64(&r->tms);
    else resid_mlp_forward_f64(&r->rm);
}

// TMS: labels = x (|x| = x: values in [0, 1)); ResidMLP: the act_plus_resid labels.
static void draw(spd_target_run *r, uint64_t step, int eval_index) {
    spd_toy_batch_f64(&r->data, step, eval_index, 0, r->cfg.batch_size, r->x, r->labels);
    if (r->cfg.task == SPD_TARGET_TMS) {
        const long n = (long)r->cfg.batch_size * r->n_features;
        for (long i = 0; i < n; i++) r->labels[i] = fabs(r->labels[i]);
    }
}

// mean(w_f (out - y)^2) over [B, F]; with grad, dout = 2 w_f (out - y) / (B F).
static double loss(spd_target_run *r, bool grad) {
    const int B = r->cfg.batch_size, F = r->n_features;
    const double inv = 1.0 / ((double)B * F);
    double s = 0;
    for (int b = 0; b < B; b++)
        for (int f = 0; f < F; f++) {
            const long i = (long)b * F + f;
            const double d = r->out[i] - r->labels[i];
            s += r->weights[f] * d * d;
            if (grad) r->dout[i] = 2.0 * r->weights[f] * d * inv;
        }
    return s * inv;
}

double spd_target_run_step(spd_target_run *r) {
    const spd_target_train_config *c = &r->cfg;
    const double lr = spd_schedule_value_at(c->lr_fn, c->lr, c->lr_warmup_pct, c->lr_final_val_frac, r->step, c->steps);
    draw(r, (uint64_t)r->step, -1);
    spd_spec_zero_grad(&r->spec);
    forward(r);
    const double value = loss(r, true);
    if (c->task == SPD_TARGET_TMS) tms_backward_f64(&r->tms);
    else resid_mlp_backward_f64(&r->rm);
    // torch AdamW over model.parameters() in SPD's order (the spec's order): for a
    // tied TMS linear2.weight is stepped on the shared matrix (copied in before,
    // back after), as torch steps the two aliased Parameters one after the other.
    const spd_adamw_config ac = {.lr = lr, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = c->weight_decay};
    const bool tied = c->task == SPD_TARGET_TMS && c->tms.tied_weights;
    for (int i = 0; i < r->spec.count; i++) {
        spd_tensor *t = &r->spec.tensors[i];
        if (t->role != SPD_ROLE_TRAINED) continue;
        const bool is_w2 = tied && strcmp(t->name, "linear2.weight") == 0;
        if (is_w2) tms_tie_weights_f64(&r->tms);
        adamw_step_f64(t->data, spd_spec_grad(&r->spec, t), spd_spec_adam_m(&r->spec, t),
                       spd_spec_adam_v(&r->spec, t), (size_t)spd_tensor_numel(t), &ac, r->step + 1);
        if (is_w2) tms_tie_weights_reverse_f64(&r->tms);
    }
    r->step++;
    return value;
}

double spd_target_run_eval(spd_target_run *r, int n_batches) {
    double s = 0;
    for (int k = 0; k < n_batches; k++) {
        draw(r, (uint64_t)r->step, k);
        forward(r);
        s += loss(r, false);
    }
    return n_batches > 0 ? s / n_batches : NAN;
}

void spd_target_run_apply(spd_target_run *r, const double *x, double *out) {
    const int F = r->n_features;
    memset(r->x, 0, (size_t)r->cfg.batch_size * (size_t)F * sizeof *r->x);
    memcpy(r->x, x, (size_t)F * sizeof *x);
    forward(r);
    memcpy(out, r->out, (size_t)F * sizeof *out);
}

int spd_target_run_save(const spd_target_run *r, const char *path, double final_loss) {
    const spd_target_train_config *c = &r->cfg;
    spd_st_writer *w = spd_st_writer_new();
    char buf[64];
#define META_I(k, v) (snprintf(buf, sizeof buf, "%lld", (long long)(v)), spd_st_writer_meta(w, k, buf))
#define META_G(k, v) (snprintf(buf, sizeof buf, "%.17g", (double)(v)), spd_st_writer_meta(w, k, buf))
#define META_B(k, v) spd_st_writer_meta(w, k, (v) ? "true" : "false")
    spd_st_writer_meta(w, "format", "spd-target-v1");
    spd_st_writer_meta(w, "experiment", c->experiment);
    if (c->task == SPD_TARGET_TMS) {
        spd_st_writer_meta(w, "task", "tms");
        spd_st_writer_meta(w, "pretrained_model_class", "spd.experiments.tms.models.TMSModel");
        META_I("n_features", c->tms.n_features);
        META_I("n_hidden", c->tms.n_hidden);
        META_I("n_hidden_layers", c->tms.n_hidden_layers);
        META_B("tied", c->tms.tied_weights);
        META_B("init_bias_to_zero", c->tms.init_bias_to_zero);
        META_B("fixed_identity_hidden_layers", c->tms_hidden == TMS_HIDDEN_FIXED_IDENTITY);
        META_B("fixed_random_hidden_layers", c->tms_hidden == TMS_HIDDEN_FIXED_RANDOM);
        spd_st_writer_meta(w, "loss", "mean((|x| - out)^2)");
    } else {
        spd_st_writer_meta(w, "task", "resid_mlp");
        spd_st_writer_meta(w, "pretrained_model_class", "spd.experiments.resid_mlp.models.ResidMLP");
        META_I("n_features", c->resid.n_features);
        META_I("d_embed", c->resid.d_embed);
        META_I("d_mlp", c->resid.d_mlp);
        META_I("n_layers", c->resid.n_layers);
        spd_st_writer_meta(w, "act_fn_name", c->resid.act == RESID_MLP_GELU ? "gelu" : "relu");
        META_B("in_bias", c->resid.in_bias);
        META_B("out_bias", c->resid.out_bias);
        META_B("tied", false);
        META_B("fixed_random_embedding", c->embedding == RESID_EMBED_FIXED_RANDOM);
        META_B("fixed_identity_embedding", c->embedding == RESID_EMBED_FIXED_IDENTITY);
        spd_st_writer_meta(w, "label_type", "act_plus_resid");
        spd_st_writer_meta(w, "label_coeffs", "ones");
        spd_st_writer_meta(w, "loss", "readoff: mean((out - y)^2)");
    }
    META_G("feature_probability", c->feature_probability);
    spd_st_writer_meta(w, "data_generation_type", spd_toy_generation_name(c->generation));
    META_I("batch_size", c->batch_size);
    META_I("steps", r->step);
    spd_st_writer_meta(w, "lr_schedule_fn_type", spd_schedule_fn_name(c->lr_fn));
    META_G("lr", c->lr);
    META_G("lr_warmup_pct", c->lr_warmup_pct);
    META_G("lr_final_val_frac", c->lr_final_val_frac);
    META_G("weight_decay", c->weight_decay);
    META_G("importance_val", c->importance_val);
    META_I("seed", (long long)c->seed);
    if (!isnan(final_loss)) META_G("final_loss", final_loss);
#undef META_I
#undef META_G
#undef META_B
    // Every parameter (trained or fixed) in SPD's state-dict order, as float32.
    float **bufs = spd_calloc((size_t)r->spec.count, sizeof *bufs);
    for (int i = 0; i < r->spec.count; i++) {
        const spd_tensor *t = &r->spec.tensors[i];
        if (t->role != SPD_ROLE_TRAINED && t->role != SPD_ROLE_FROZEN) continue;
        const int64_t n = spd_tensor_numel(t);
        bufs[i] = spd_malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
        const double *d = t->data;
        for (int64_t k = 0; k < n; k++) bufs[i][k] = (float)d[k];
        spd_st_writer_add(w, t->name, SPD_DTYPE_F32, t->ndim, t->shape, bufs[i]);
    }
    const int rc = spd_st_writer_save(w, path);
    spd_st_writer_free(w);
    for (int i = 0; i < r->spec.count; i++) free(bufs[i]);
    free(bufs);
    return rc;
}

void spd_target_run_free(spd_target_run *r) {
    if (r->cfg.task == SPD_TARGET_TMS) {
        if (r->tms.sites) tms_free_f64(&r->tms);
    } else if (r->rm.sites) resid_mlp_free_f64(&r->rm);
    spd_toy_data_free(&r->data);
    spd_spec_free(&r->spec);
    free(r->labels);
    free(r->weights);
    memset(r, 0, sizeof *r);
}
