// Training options: their defaults and the names of the loss terms.
// Compiled once (precision-free); the precision-generic step is in train.c.
#define SPD_F64  // train.h declares the step for one precision; these functions need none
#include "spd/train.h"

#include <string.h>

const char *spd_term_kind_name(spd_term_kind k) {
    static const char *names[SPD_TERM_KIND_COUNT] = {
        "FaithfulnessLoss",     "ImportanceMinimalityLoss",    "StochasticReconLoss", "StochasticReconLayerwiseLoss",
        "CIMaskedReconLoss",    "CIMaskedReconLayerwiseLoss", "UnmaskedReconLoss",
        "StochasticReconSubsetLoss", "CIMaskedReconSubsetLoss", "StochasticHiddenActsReconLoss",
        "PGDReconLoss", "PGDReconSubsetLoss", "PGDReconLayerwiseLoss",
    };
    return k >= 0 && k < SPD_TERM_KIND_COUNT ? names[k] : "?";
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
