// CEandKLLosses' precision-free part (ce_kl.h): SPD's key order and the compute.
#include "spd/ce_kl.h"

#include <stdio.h>

const char *const spd_ce_kl_keys[SPD_CE_KL_N_KEYS] = {
    "kl_ci_masked",
    "kl_unmasked",
    "kl_stoch_masked",
    "kl_random_masked",
    "kl_rounded_masked",
    "kl_zero_masked",
    "ce_difference_ci_masked",
    "ce_difference_unmasked",
    "ce_difference_stoch_masked",
    "ce_difference_random_masked",
    "ce_difference_rounded_masked",
    "ce_unrecovered_ci_masked",
    "ce_unrecovered_unmasked",
    "ce_unrecovered_stoch_masked",
    "ce_unrecovered_random_masked",
    "ce_unrecovered_rounded_masked",
};

void spd_ce_kl_compute(const spd_ce_kl_acc *acc, spd_metric_list *out) {
    char key[64];
    for (int i = 0; i < SPD_CE_KL_N_KEYS; i++) {
        snprintf(key, sizeof key, "ce_kl/%s", spd_ce_kl_keys[i]);
        spd_metric_list_add(out, key, acc->sums[i] / acc->n_positions, false);
    }
}
