// What a finished `spd train` run found (printed after the last step, figures
// into <run dir>/figures/):
//   alive subcomponents per module: CI (ci_lower) > ci_alive_threshold at some
//     position of n_eval fresh eval batches (the toy data's eval streams);
//   TMS: significant subcomponents per module by SPD's TMS plotting rule, the rule
//     behind the paper's counts (metrics.h spd_tms_n_significant);
//   CI per feature: the CI of every subcomponent for each one-hot input 0.75 e_f
//     (IdentityCIError's probe, SPD_SPEC.md 7.5);
//   per feature and module whose weight has a feature axis (d_in == F: columns of
//     W, as the paper's Table 1; d_out == F: rows of W, i.e. columns of W^T): the
//     best-matching subcomponent, its cosine and norm ratio (MMCS / ML2R terms);
//   figures: subcomponents_<module> (spd_fig_tms: target W and the largest
//     subcomponents' rank-one weights with their CI per feature), hidden_space_<module>
//     (2-D hidden spaces: each feature's target vector and its subcomponent's,
//     the paper's TMS picture) and ci_per_feature (F x C heat maps per module).
// Float64 trainer (the CLI's): include with SPD_F64 defined, as train_cmd.c does. Runs the trainer's forward on the probe batches:
// its gradients and loss values are overwritten.
#ifndef SPD_CLI_TRAIN_SUMMARY_H
#define SPD_CLI_TRAIN_SUMMARY_H

#include <stdbool.h>
#include <stdint.h>

#include "models/toy_data.h"
#include "spd/train.h"

#define SPD_SUMMARY_MAX_MODS 16

typedef struct {
    int n_mods;
    int alive[SPD_SUMMARY_MAX_MODS];
    int n_significant[SPD_SUMMARY_MAX_MODS];  // TMS only (else -1)
    bool has_features[SPD_SUMMARY_MAX_MODS];  // the module's weight has a feature axis
    double mmcs[SPD_SUMMARY_MAX_MODS], ml2r[SPD_SUMMARY_MAX_MODS];
} spd_train_summary_result;

// x: the target's input buffer [B, F] (filled here); step: keys the eval batches;
// final_values / final_total: the last training step's losses (printed; NULL: no loss line part);
// tms: the target is TMS (the significant counts).
// 0, or -1 with a message (a figure that could not be written).
int spd_train_summary_f64(spd_trainer *tr, const spd_toy_data *data, double *x, int B, int F, int64_t step,
                          double thr, int n_eval, const double *final_values, double final_total, bool tms,
                          const char *dir, spd_train_summary_result *res);

#endif
