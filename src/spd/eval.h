// The evaluation pass of `spd train` (SPD_SPEC.md 5.7, 8; spd/eval.py evaluate):
// every eval_freq steps (step 0 and the final step included when divisible),
// n_eval_steps batches of eval_batch_size rows from the eval data stream
// (toy data keyed by (step, eval index), separate from the training batches),
// one metrics.jsonl line {"step": s, <key>: value, ...} with SPD's keys
// unprefixed (SPD's local_log; wandb and the console add "eval/"):
//
//   loss/<ClassName>      every loss-capable class of eval_metric_configs plus each
//                         loss_metric_configs class not already there (the eval entry
//                         wins); no gradients reach the trained parameters;
//                         ImportanceMinimalityLoss from the summed per-component
//                         (ci_upper + 1e-12)^p over all eval positions (eval ignores eps)
//   l0/<thr>_<module|group>, n_alive/t<thr>_<module>   CI_L0 (+ figures/l0_bar_chart_<s>.json)
//   target_solution_error/...    IdentityCIError (slow)
//   mmcs/<module>, ml2r/<module> TMS targets, the final evaluation only (the paper's
//                                Table 1 metrics; SPD has no key for them)
//   n_significant/<module>       TMS, final evaluation: subcomponents counted by SPD's TMS
//                                plotting rule (the paper's counts; metrics.h spd_tms_n_significant):
//                                norm of the rank-one weight's rows summed over features > 0.017
//                                (linear1 over input features, linear2 over output features),
//                                Frobenius norm > 0.009 for the hidden (identity) layers
// and PNGs under <run>/figures/ (slow steps only): CIHistograms
// (figures_causal_importance_values[_pre_sigmoid]_<s>.png, the first
// n_batches_accum batches), ComponentActivationDensity
// (figures_component_activation_density_<s>.png), CIMeanPerComponent
// (figures_ci_mean_per_component[_log]_<s>.png), PermutedCIPlots
// (figures_causal_importances[_upper_leaky]_<s>.png: CI of one-hot inputs, columns
// permuted to the identity or, for dense patterns, by column sum), UVPlots
// (figures_uv_matrices_<s>.png: V and U with the same permutation of the upper CI).
// Slow steps: step 0 when slow_eval_on_first_step, else step % slow_eval_freq == 0.
//
// How: a second target instance of eval_batch_size rows (the frozen target
// tensors copied from the training spec) and an eval trainer bound to it that
// shares the trained tensors (V, U, CI fns) but owns its work buffers and a
// private gradient buffer, so the training step's gradients, CI and loss values
// are untouched (the eval sits between the training backward and the update, as
// in SPD). Each eval batch is one forward-only spd_train_step of the eval trainer
// (spd_trainer.forward_only: the loss values and CI, no backward; PGD's inner steps
// still take their source gradients) with the eval loss terms.
// Eval draws: Philox streams as in training, with seed = a hash of (config seed,
// eval batch index) so that batches and training steps draw independently.
//
// Not evaluated (a note on stderr at start): CEandKLLosses and
// StochasticReconSubsetCEAndKL (LM only: `spd train` refuses LM tasks; CEandKLLosses
// itself is spd/ce_kl.h, ready for the LM eval), PGDMultiBatch*.
#ifndef SPD_EVAL_H
#define SPD_EVAL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "models/toy_data.h"
#include "spd/config.h"
#include "spd/metrics.h"

typedef struct {
    const spd_config *cfg;
    const void *trainer;        // the training spd_trainer, float64 (its type depends on SPD_F64); read only
    spd_task_name task;         // SPD_TASK_TMS or SPD_TASK_RESID_MLP
    const void *model;          // its tms_model_f64 / resid_mlp_model_f64 (config and options)
    const spd_toy_data *data;   // the run's toy data (eval batches: eval_index >= 0)
    const char *out_dir;        // run directory (figures/ is created there)
} spd_eval_setup;

typedef struct spd_evaluator spd_evaluator;

// Builds the eval target and trainer. NULL with spd_last_error() on bad input
// (an unsupported task).
spd_evaluator *spd_evaluator_new(const spd_eval_setup *s);
void spd_evaluator_free(spd_evaluator *ev);

// The evaluation at `step` is the final one (mmcs / ml2r / n_significant) and slow whatever the
// cadence says (spd eval). Without it: final at cfg->steps, slow per the cadence.
void spd_evaluator_mark_final(spd_evaluator *ev, int64_t step);

// SPD's cadence.
bool spd_eval_due(const spd_config *cfg, int64_t step);
bool spd_eval_slow(const spd_config *cfg, int64_t step);

// One evaluation at `step`: the metrics into out (appended), figures written.
// 0, or -1 with spd_last_error() (a figure that cannot be written).
int spd_evaluate(spd_evaluator *ev, int64_t step, spd_metric_list *out);

// spd_evaluate, then the metrics.jsonl line and a one-line console summary.
int spd_eval_log(spd_evaluator *ev, int64_t step, FILE *metrics);

#endif
