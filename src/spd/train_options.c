// Training options: their defaults and the names of the loss terms.
// Compiled once (precision-free); the precision-generic step is in train.c.
#define SPD_F64  // train.h declares the step for one precision; these functions need none
#include "spd/train.h"

#include <string.h>

#include "core/error.h"

const char *spd_term_kind_name(spd_term_kind k) {
    static const char *names[SPD_TERM_KIND_COUNT] = {
        "FaithfulnessLoss",     "ImportanceMinimalityLoss",    "StochasticReconLoss", "StochasticReconLayerwiseLoss",
        "CIMaskedReconLoss",    "CIMaskedReconLayerwiseLoss", "UnmaskedReconLoss",
        "StochasticReconSubsetLoss", "CIMaskedReconSubsetLoss", "StochasticHiddenActsReconLoss",
        "PGDReconLoss", "PGDReconSubsetLoss", "PGDReconLayerwiseLoss",
    };
    return k >= 0 && k < SPD_TERM_KIND_COUNT ? names[k] : "?";
}

bool spd_term_kind_of_metric(spd_metric_class c, spd_term_kind *k) {
    static const struct {
        spd_metric_class cls;
        spd_term_kind kind;
    } map[] = {
        {SPD_METRIC_FAITHFULNESS_LOSS, SPD_TERM_FAITHFULNESS},
        {SPD_METRIC_IMPORTANCE_MINIMALITY_LOSS, SPD_TERM_IMPORTANCE_MINIMALITY},
        {SPD_METRIC_STOCHASTIC_RECON_LOSS, SPD_TERM_STOCHASTIC_RECON},
        {SPD_METRIC_STOCHASTIC_RECON_LAYERWISE_LOSS, SPD_TERM_STOCHASTIC_RECON_LAYERWISE},
        {SPD_METRIC_CI_MASKED_RECON_LOSS, SPD_TERM_CI_MASKED_RECON},
        {SPD_METRIC_CI_MASKED_RECON_LAYERWISE_LOSS, SPD_TERM_CI_MASKED_RECON_LAYERWISE},
        {SPD_METRIC_UNMASKED_RECON_LOSS, SPD_TERM_UNMASKED_RECON},
        {SPD_METRIC_STOCHASTIC_RECON_SUBSET_LOSS, SPD_TERM_STOCHASTIC_RECON_SUBSET},
        {SPD_METRIC_CI_MASKED_RECON_SUBSET_LOSS, SPD_TERM_CI_MASKED_RECON_SUBSET},
        {SPD_METRIC_STOCHASTIC_HIDDEN_ACTS_RECON_LOSS, SPD_TERM_STOCHASTIC_HIDDEN_ACTS_RECON},
        {SPD_METRIC_PGD_RECON_LOSS, SPD_TERM_PGD_RECON},
        {SPD_METRIC_PGD_RECON_SUBSET_LOSS, SPD_TERM_PGD_RECON_SUBSET},
        {SPD_METRIC_PGD_RECON_LAYERWISE_LOSS, SPD_TERM_PGD_RECON_LAYERWISE},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (map[i].cls == c) {
            *k = map[i].kind;
            return true;
        }
    return false;
}

int spd_train_term_of_metric(const spd_metric_config *mc, spd_train_term *t) {
    spd_term_kind k;
    if (!spd_term_kind_of_metric(mc->classname, &k)) return -1;
    memset(t, 0, sizeof *t);
    t->kind = k;
    t->coeff = mc->coeff;
    if (k == SPD_TERM_IMPORTANCE_MINIMALITY) t->imp = mc->importance_minimality;
    // Only the *Subset* terms route; the others ignore it.
    t->router = (spd_router){.kind = mc->routing.type == SPD_CFG_ROUTER_STATIC_PROBABILITY ? SPD_ROUTE_STATIC_PROBABILITY
                                                                                           : SPD_ROUTE_UNIFORM_K_SUBSET,
                             .p = mc->routing.p};
    if (k == SPD_TERM_PGD_RECON || k == SPD_TERM_PGD_RECON_SUBSET || k == SPD_TERM_PGD_RECON_LAYERWISE) t->pgd = mc->pgd;
    return 0;
}

int spd_train_options_settings(const spd_config *cfg, spd_train_options *o) {
    o->output_loss = cfg->output_loss_type == SPD_OUTPUT_LOSS_KL ? SPD_DIVERGENCE_KL : SPD_DIVERGENCE_MSE;
    if (spd_ci_fn_kind_parse(spd_cfg_ci_fn_type_name(cfg->ci_fn_type), &o->ci_kind) ||
        spd_sigmoid_pair_parse(spd_cfg_sigmoid_type_name(cfg->sigmoid_type), &o->sigmoid) ||
        spd_mask_sampling_parse(spd_cfg_sampling_name(cfg->sampling), &o->sampling))
        return -1;
    if (cfg->ci_fn_hidden_dims.count > SPD_CI_FN_MAX_LAYERS - 1)
        return spd_set_error("ci_fn_hidden_dims: at most %d layers", SPD_CI_FN_MAX_LAYERS - 1);
    o->n_ci_hidden = cfg->ci_fn_hidden_dims.count;
    for (int i = 0; i < o->n_ci_hidden; i++) o->ci_hidden[i] = (int)cfg->ci_fn_hidden_dims.items[i];
    o->n_mask_samples = (int)cfg->n_mask_samples;
    o->use_delta = cfg->use_delta_component;
    o->seed = (uint64_t)cfg->seed;
    o->steps = cfg->steps;
    o->lr = cfg->lr_schedule;
    o->grad_clip_components = cfg->has_grad_clip_norm_components ? cfg->grad_clip_norm_components : 0;
    o->grad_clip_ci_fns = cfg->has_grad_clip_norm_ci_fns ? cfg->grad_clip_norm_ci_fns : 0;
    return 0;
}

void spd_train_options_default(spd_train_options *o) {
    memset(o, 0, sizeof *o);
    o->output_loss = SPD_DIVERGENCE_MSE;
    o->ci_kind = SPD_CI_VECTOR_MLP;
    o->ci_hidden[0] = 8;
    o->n_ci_hidden = 1;
    o->sigmoid = (spd_sigmoid_pair){SPD_SIGMOID_FN_LOWER_LEAKY_HARD, SPD_SIGMOID_FN_UPPER_LEAKY_HARD};
    o->sampling = SPD_MASK_CONTINUOUS;
    o->n_mask_samples = 1;
    o->use_delta = true;
    o->steps = 1;
    o->lr = (spd_schedule_config){.start_val = 1e-3, .warmup_pct = 0, .final_val_frac = 1, .fn_type = SPD_SCHEDULE_CONSTANT};
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->adam_eps = 1e-8;
}
