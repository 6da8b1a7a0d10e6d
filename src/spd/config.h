// The SPD run configuration (SPD_SPEC.md section 6; SPD's spd/configs.py):
// the fields, defaults, migrations of old keys and validators of SPD's pydantic
// `Config` (extra="forbid"), read from YAML and written back resolved.
//
// Conventions: every name is SPD's key name. Integers are int64_t, floats
// double. A field that may be null has a `has_<field>` flag beside it (false =
// null), except strings, where NULL is null. Lists are {items, count}.
// Loss and eval metric configs are a tagged union on `classname`, task configs
// on `task_name`, routers on `type`.
#ifndef SPD_CONFIG_H
#define SPD_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    int64_t *items;
    int count;
} spd_int_list;

typedef struct {
    char **items;
    int count;
} spd_str_list;

// dict[str, list[str]]: CI_L0 groups, StochasticReconSubsetCEAndKL patterns.
typedef struct {
    char **names;
    spd_str_list *patterns;
    int count;
} spd_pattern_groups;

// dict[str, str | int]: one IdentityCIError entry, e.g. {layer_pattern: "linear1", n_features: 5}.
typedef struct {
    char *key;
    bool is_int;
    int64_t int_value;  // is_int
    char *str_value;    // !is_int
} spd_kv;

typedef struct {
    spd_kv *items;
    int count;
} spd_kv_dict;

typedef struct {
    spd_kv_dict *items;
    int count;
} spd_kv_dict_list;

// ---------------------------------------------------------------- enums (Literal types)

// The config's own enums; the ops keep theirs and parse SPD's names, so map
// through them: e.g. spd_cfg_sigmoid_type_name(cfg->sigmoid_type) is "leaky_hard".
typedef enum { SPD_CFG_CI_FN_MLP, SPD_CFG_CI_FN_VECTOR_MLP, SPD_CFG_CI_FN_SHARED_MLP } spd_cfg_ci_fn_type;
typedef enum { SPD_CFG_SAMPLING_CONTINUOUS, SPD_CFG_SAMPLING_BINOMIAL } spd_cfg_sampling;
typedef enum {
    SPD_CFG_SIGMOID_NORMAL,
    SPD_CFG_SIGMOID_HARD,
    SPD_CFG_SIGMOID_LEAKY_HARD,
    SPD_CFG_SIGMOID_UPPER_LEAKY_HARD,
    SPD_CFG_SIGMOID_SWISH_HARD
} spd_cfg_sigmoid_type;
typedef enum { SPD_OUTPUT_LOSS_MSE, SPD_OUTPUT_LOSS_KL } spd_output_loss_type;
typedef enum { SPD_SCHEDULE_CONSTANT, SPD_SCHEDULE_COSINE, SPD_SCHEDULE_LINEAR } spd_schedule_fn;
typedef enum { SPD_CFG_ROUTER_UNIFORM_K_SUBSET, SPD_CFG_ROUTER_STATIC_PROBABILITY } spd_cfg_router_type;
typedef enum { SPD_PGD_INIT_RANDOM, SPD_PGD_INIT_ONES, SPD_PGD_INIT_ZEROES } spd_pgd_init;
typedef enum { SPD_MASK_SCOPE_UNIQUE_PER_DATAPOINT, SPD_MASK_SCOPE_SHARED_ACROSS_BATCH } spd_mask_scope;
typedef enum { SPD_TASK_TMS, SPD_TASK_RESID_MLP, SPD_TASK_LM, SPD_TASK_IH } spd_task_name;
typedef enum {
    SPD_DATA_EXACTLY_ONE_ACTIVE,
    SPD_DATA_EXACTLY_TWO_ACTIVE,  // resid_mlp only
    SPD_DATA_AT_LEAST_ZERO_ACTIVE
} spd_data_generation_type;

typedef enum {
    // Loss-capable (loss_metric_configs and eval_metric_configs).
    SPD_METRIC_FAITHFULNESS_LOSS,
    SPD_METRIC_IMPORTANCE_MINIMALITY_LOSS,
    SPD_METRIC_UNMASKED_RECON_LOSS,
    SPD_METRIC_CI_MASKED_RECON_LOSS,
    SPD_METRIC_CI_MASKED_RECON_SUBSET_LOSS,
    SPD_METRIC_CI_MASKED_RECON_LAYERWISE_LOSS,
    SPD_METRIC_STOCHASTIC_RECON_LOSS,
    SPD_METRIC_STOCHASTIC_RECON_SUBSET_LOSS,
    SPD_METRIC_STOCHASTIC_RECON_LAYERWISE_LOSS,
    SPD_METRIC_PGD_RECON_LOSS,
    SPD_METRIC_PGD_RECON_SUBSET_LOSS,
    SPD_METRIC_PGD_RECON_LAYERWISE_LOSS,
    SPD_METRIC_STOCHASTIC_HIDDEN_ACTS_RECON_LOSS,
    // Eval-only.
    SPD_METRIC_CE_AND_KL_LOSSES,
    SPD_METRIC_CI_HISTOGRAMS,
    SPD_METRIC_CI_L0,
    SPD_METRIC_CI_MEAN_PER_COMPONENT,
    SPD_METRIC_COMPONENT_ACTIVATION_DENSITY,
    SPD_METRIC_IDENTITY_CI_ERROR,
    SPD_METRIC_PERMUTED_CI_PLOTS,
    SPD_METRIC_UV_PLOTS,
    SPD_METRIC_STOCHASTIC_RECON_SUBSET_CE_AND_KL,
    SPD_METRIC_PGD_MULTIBATCH_RECON_LOSS,
    SPD_METRIC_PGD_MULTIBATCH_RECON_SUBSET_LOSS,
    SPD_METRIC_COUNT
} spd_metric_class;

// SPD's spelling of each value ("vector_mlp", "ImportanceMinimalityLoss", ...).
const char *spd_cfg_ci_fn_type_name(spd_cfg_ci_fn_type v);
const char *spd_cfg_sampling_name(spd_cfg_sampling v);
const char *spd_cfg_sigmoid_type_name(spd_cfg_sigmoid_type v);
const char *spd_cfg_router_type_name(spd_cfg_router_type v);
const char *spd_output_loss_type_name(spd_output_loss_type v);
const char *spd_schedule_fn_name(spd_schedule_fn v);
const char *spd_pgd_init_name(spd_pgd_init v);
const char *spd_mask_scope_name(spd_mask_scope v);
const char *spd_task_name_name(spd_task_name v);
const char *spd_data_generation_type_name(spd_data_generation_type v);
const char *spd_metric_class_name(spd_metric_class v);
// True for the classes usable in loss_metric_configs (they carry a coeff).
bool spd_metric_is_loss(spd_metric_class v);

// ---------------------------------------------------------------- small configs

// ScheduleConfig (SPD_SPEC.md 5.4).
typedef struct {
    double start_val;       // > 0, required
    double warmup_pct;      // [0, 1], 0.0
    double final_val_frac;  // >= 0, 1.0 (must be 1.0 for constant)
    spd_schedule_fn fn_type;  // constant
} spd_schedule_config;

// ModulePatternInfoConfig.
typedef struct {
    char *module_pattern;  // fnmatch pattern
    int64_t C;             // > 0
} spd_module_info;

typedef struct {
    spd_module_info *items;
    int count;
} spd_module_info_list;

// UniformKSubsetRoutingConfig | StaticProbabilityRoutingConfig (discriminator `type`).
typedef struct {
    spd_cfg_router_type type;  // uniform_k_subset
    double p;              // static_probability only: [0, 1], required
} spd_routing_config;

// ---------------------------------------------------------------- metric configs

typedef struct {
    double pnorm;  // >= 0, required
    double beta;   // >= 0; 0.0 with a note when absent
    double p_anneal_start_frac;  // [0, 1], 1.0
    bool has_p_anneal_final_p;
    double p_anneal_final_p;   // >= 0 or null
    double p_anneal_end_frac;  // [0, 1], 1.0
    double eps;                // >= 0, 1e-12
} spd_importance_minimality_config;

// PGDConfig (PGDRecon*Loss) and PGDMultiBatchConfig (PGDMultiBatchRecon*Loss).
typedef struct {
    spd_pgd_init init;
    double step_size;
    int64_t n_steps;
    spd_mask_scope mask_scope;            // PGDRecon*Loss only
    int64_t gradient_accumulation_steps;  // PGDMultiBatch* only
} spd_pgd_config;

typedef struct {
    spd_metric_class classname;
    // Loss-capable classes and PGDMultiBatch*: the loss coefficient (required
    // non-null in loss_metric_configs).
    bool has_coeff;
    double coeff;
    // *Subset* classes (CIMaskedReconSubsetLoss, StochasticReconSubsetLoss,
    // PGDReconSubsetLoss, PGDMultiBatchReconSubsetLoss): uniform_k_subset by default.
    spd_routing_config routing;
    union {
        spd_importance_minimality_config importance_minimality;
        spd_pgd_config pgd;  // PGDRecon*, PGDMultiBatch*
        struct {
            double rounding_threshold;
        } ce_and_kl;
        struct {
            bool has_n_batches_accum;
            int64_t n_batches_accum;
        } ci_histograms;
        struct {
            bool has_groups;
            spd_pattern_groups groups;
        } ci_l0;
        struct {
            bool has_identity_ci, has_dense_ci;
            spd_kv_dict_list identity_ci, dense_ci;
        } identity_ci_error;
        struct {  // PermutedCIPlots and UVPlots
            bool has_identity_patterns, has_dense_patterns;
            spd_str_list identity_patterns, dense_patterns;
        } plots;
        struct {
            bool has_include_patterns, has_exclude_patterns;
            spd_pattern_groups include_patterns, exclude_patterns;
        } subset_ce_and_kl;
    };
} spd_metric_config;

typedef struct {
    spd_metric_config *items;
    int count;
} spd_metric_config_list;

// ---------------------------------------------------------------- task configs

typedef struct {
    double feature_probability;  // [0, 1], required
    spd_data_generation_type data_generation_type;  // at_least_zero_active
} spd_toy_task_config;

typedef struct {
    int64_t max_seq_len;  // 512
    int64_t buffer_size;  // 1000
    char *dataset_name;   // "lennart-finke/SimpleStories"
    char *column_name;    // "story"
    char *train_data_split, *eval_data_split;  // "train", "test"
    bool shuffle_each_epoch;  // true
    bool is_tokenized;        // false
    bool streaming;           // false
} spd_lm_task_config;

typedef struct {
    spd_task_name task_name;
    union {
        spd_toy_task_config tms;
        spd_toy_task_config resid_mlp;
        spd_lm_task_config lm;
        struct {
            bool has_prefix_window;
            int64_t prefix_window;  // > 0 or null
        } ih;
    };
} spd_task_config;

// ---------------------------------------------------------------- Config

typedef struct {
    char *source;  // the file it was loaded from (not a config field; NULL if none)

    // WandB
    char *wandb_project;          // null
    char *wandb_run_name;         // null
    char *wandb_run_name_prefix;  // ""
    // General
    int64_t seed;          // 0
    bool autocast_bf16;    // true
    int64_t n_mask_samples;  // > 0, required
    spd_cfg_ci_fn_type ci_fn_type;      // vector_mlp
    spd_int_list ci_fn_hidden_dims;  // each >= 0; [8]
    spd_cfg_sampling sampling;          // continuous
    spd_cfg_sigmoid_type sigmoid_type;  // leaky_hard
    spd_module_info_list module_info;  // required
    bool has_identity_module_info;
    spd_module_info_list identity_module_info;  // null
    bool use_delta_component;  // true
    spd_metric_config_list loss_metric_configs;  // []
    spd_output_loss_type output_loss_type;       // required
    // Training
    spd_schedule_config lr_schedule;  // required
    int64_t steps;       // >= 0, required (and > 0: the schedule divides by it)
    int64_t batch_size;  // > 0, required
    bool has_grad_clip_norm_components, has_grad_clip_norm_ci_fns;
    double grad_clip_norm_components, grad_clip_norm_ci_fns;  // > 0 or null
    // Faithfulness warm-up
    int64_t faithfulness_warmup_steps;        // >= 0, 0
    double faithfulness_warmup_lr;            // > 0, 0.001
    double faithfulness_warmup_weight_decay;  // >= 0, 0.0
    // Logging and saving
    int64_t train_log_freq;   // > 0, 50 when absent
    int64_t eval_freq;        // > 0, required
    int64_t eval_batch_size;  // > 0, batch_size when absent
    int64_t slow_eval_freq;   // > 0, eval_freq when absent; a multiple of eval_freq
    int64_t n_eval_steps;     // > 0, required
    bool slow_eval_on_first_step;  // true
    bool has_save_freq;
    int64_t save_freq;  // > 0 or null
    spd_metric_config_list eval_metric_configs;  // []
    double ci_alive_threshold;  // [0, 1], 0.0
    // Pretrained model
    char *pretrained_model_class;        // required
    char *pretrained_model_path;         // null ("wandb:..." or a path, kept as written)
    char *pretrained_model_name;         // null
    char *pretrained_model_output_attr;  // null
    char *tokenizer_name;                // null
    // Task
    spd_task_config task_config;  // required
} spd_config;

// Reads and validates a config file. 0, or -1 with spd_last_error() set to one
// line: "<file>:<line>:<col>: <key path>: expected ..., found ..." (no line for
// a top-level key that is missing). Old keys are migrated first (SPD_SPEC.md
// 6.1), each with a note on stderr. On failure *cfg is left empty (freeable).
int spd_config_load(spd_config *cfg, const char *path);
int spd_config_load_string(spd_config *cfg, const char *text, const char *source);

// The resolved config (every field, defaults filled in) as YAML in SPD's key
// names; loading it back gives an equal config. The file is written to a
// temporary name and renamed into place. 0, or -1 with spd_last_error() set.
int spd_config_write_yaml(const spd_config *cfg, const char *path);
void spd_config_fprint_yaml(const spd_config *cfg, FILE *out);

// Field-by-field equality (`source` is not compared).
bool spd_config_equal(const spd_config *a, const spd_config *b);
void spd_config_free(spd_config *cfg);

#endif
