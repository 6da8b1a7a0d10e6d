// The SPD config: one table of fields per config class (name, type, default,
// constraint) drives reading, default filling, writing, comparing and freeing,
// so the five can never disagree about which fields exist. The tables follow
// the declaration order of SPD's spd/configs.py; the validators that SPD runs
// (pydantic model validators, and the asserts that would stop a run at start)
// are the `check` hooks. Numbers are coerced as pydantic does in lax mode:
// `3e-4` (a string to YAML 1.1) is a number for a float field, `2.0` is 2 for
// an int field, 2.5 is not.
#include "spd/config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/error.h"
#include "core/yaml_tree.h"
#include "ops/ci_fn.h"  // SPD_CI_FN_MAX_LAYERS
#include "ops/masks.h"  // SPD_RNG_MAX_SAMPLES, SPD_RNG_EVAL_TERM, SPD_RNG_MAX_TERMS

// ---------------------------------------------------------------- enum names

// Literal fields: SPD's names, in SPD's order, with the values they map to.
typedef struct {
    const char *name;
    int value;
} enum_entry;

static const enum_entry CI_FN_TYPES[] = {
    {"mlp", SPD_CFG_CI_FN_MLP}, {"vector_mlp", SPD_CFG_CI_FN_VECTOR_MLP}, {"shared_mlp", SPD_CFG_CI_FN_SHARED_MLP}};
static const enum_entry SAMPLINGS[] = {{"continuous", SPD_CFG_SAMPLING_CONTINUOUS}, {"binomial", SPD_CFG_SAMPLING_BINOMIAL}};
static const enum_entry SIGMOIDS[] = {{"normal", SPD_CFG_SIGMOID_NORMAL},
                                      {"hard", SPD_CFG_SIGMOID_HARD},
                                      {"leaky_hard", SPD_CFG_SIGMOID_LEAKY_HARD},
                                      {"upper_leaky_hard", SPD_CFG_SIGMOID_UPPER_LEAKY_HARD},
                                      {"swish_hard", SPD_CFG_SIGMOID_SWISH_HARD}};
static const enum_entry OUTPUT_LOSSES[] = {{"mse", SPD_OUTPUT_LOSS_MSE}, {"kl", SPD_OUTPUT_LOSS_KL}};
static const enum_entry SCHEDULE_FNS[] = {
    {"constant", SPD_SCHEDULE_CONSTANT}, {"cosine", SPD_SCHEDULE_COSINE}, {"linear", SPD_SCHEDULE_LINEAR}};
static const enum_entry PGD_INITS[] = {
    {"random", SPD_PGD_INIT_RANDOM}, {"ones", SPD_PGD_INIT_ONES}, {"zeroes", SPD_PGD_INIT_ZEROES}};
static const enum_entry MASK_SCOPES[] = {{"unique_per_datapoint", SPD_MASK_SCOPE_UNIQUE_PER_DATAPOINT},
                                         {"shared_across_batch", SPD_MASK_SCOPE_SHARED_ACROSS_BATCH}};
static const enum_entry TMS_DATA_GENERATION[] = {{"exactly_one_active", SPD_DATA_EXACTLY_ONE_ACTIVE},
                                                 {"at_least_zero_active", SPD_DATA_AT_LEAST_ZERO_ACTIVE}};
static const enum_entry RESID_MLP_DATA_GENERATION[] = {{"exactly_one_active", SPD_DATA_EXACTLY_ONE_ACTIVE},
                                                       {"exactly_two_active", SPD_DATA_EXACTLY_TWO_ACTIVE},
                                                       {"at_least_zero_active", SPD_DATA_AT_LEAST_ZERO_ACTIVE}};

// Discriminator values (`type`, `task_name`, `classname`), indexed by the enum value.
static const char *const ROUTERS[] = {"uniform_k_subset", "static_probability"};
static const char *const TASKS[] = {"tms", "resid_mlp", "lm", "ih"};
static const char *const METRICS[SPD_METRIC_COUNT] = {
    "FaithfulnessLoss",
    "ImportanceMinimalityLoss",
    "UnmaskedReconLoss",
    "CIMaskedReconLoss",
    "CIMaskedReconSubsetLoss",
    "CIMaskedReconLayerwiseLoss",
    "StochasticReconLoss",
    "StochasticReconSubsetLoss",
    "StochasticReconLayerwiseLoss",
    "PGDReconLoss",
    "PGDReconSubsetLoss",
    "PGDReconLayerwiseLoss",
    "StochasticHiddenActsReconLoss",
    "CEandKLLosses",
    "CIHistograms",
    "CI_L0",
    "CIMeanPerComponent",
    "ComponentActivationDensity",
    "IdentityCIError",
    "PermutedCIPlots",
    "UVPlots",
    "StochasticReconSubsetCEAndKL",
    "PGDMultiBatchReconLoss",
    "PGDMultiBatchReconSubsetLoss",
};

#define COUNT(a) ((int)(sizeof(a) / sizeof *(a)))
static const char *entry_name(const enum_entry *e, int n, int v) {
    for (int i = 0; i < n; i++)
        if (e[i].value == v) return e[i].name;
    return "?";
}
#define ENTRY_NAME_FN(fn, type, table) \
    const char *fn(type v) { return entry_name(table, COUNT(table), (int)v); }
#define TAG_NAME_FN(fn, type, table) \
    const char *fn(type v) { return (int)v >= 0 && (int)v < COUNT(table) ? table[v] : "?"; }
ENTRY_NAME_FN(spd_cfg_ci_fn_type_name, spd_cfg_ci_fn_type, CI_FN_TYPES)
ENTRY_NAME_FN(spd_cfg_sampling_name, spd_cfg_sampling, SAMPLINGS)
ENTRY_NAME_FN(spd_cfg_sigmoid_type_name, spd_cfg_sigmoid_type, SIGMOIDS)
ENTRY_NAME_FN(spd_output_loss_type_name, spd_output_loss_type, OUTPUT_LOSSES)
ENTRY_NAME_FN(spd_schedule_fn_name, spd_schedule_fn, SCHEDULE_FNS)
ENTRY_NAME_FN(spd_pgd_init_name, spd_pgd_init, PGD_INITS)
ENTRY_NAME_FN(spd_mask_scope_name, spd_mask_scope, MASK_SCOPES)
ENTRY_NAME_FN(spd_data_generation_type_name, spd_data_generation_type, RESID_MLP_DATA_GENERATION)
TAG_NAME_FN(spd_cfg_router_type_name, spd_cfg_router_type, ROUTERS)
TAG_NAME_FN(spd_task_name_name, spd_task_name, TASKS)
TAG_NAME_FN(spd_metric_class_name, spd_metric_class, METRICS)

bool spd_metric_is_loss(spd_metric_class v) { return v <= SPD_METRIC_STOCHASTIC_HIDDEN_ACTS_RECON_LOSS; }

// Enum fields are read and written through int.
_Static_assert(sizeof(spd_cfg_ci_fn_type) == sizeof(int) && sizeof(spd_cfg_sampling) == sizeof(int) &&
                   sizeof(spd_cfg_sigmoid_type) == sizeof(int) && sizeof(spd_cfg_router_type) == sizeof(int) &&
                   sizeof(spd_metric_class) == sizeof(int) && sizeof(spd_data_generation_type) == sizeof(int),
               "enums must be int-sized");

// ---------------------------------------------------------------- schema tables

typedef enum {
    K_INT,
    K_FLOAT,
    K_BOOL,
    K_STR,
    K_ENUM,
    K_INT_LIST,     // spd_int_list
    K_STR_LIST,     // spd_str_list
    K_GROUPS,       // spd_pattern_groups
    K_KV_LIST,      // spd_kv_dict_list
    K_OBJECT,       // nested struct described by .schema
    K_OBJECT_LIST,  // {T *items; int count} of .schema
} field_kind;

enum {
    F_REQUIRED = 1,       // no default: missing is an error
    F_NULLABLE = 2,       // `null` allowed; .has_off (or a NULL string) records it
    F_NOTE_DEFAULT = 4,   // SPD warns when the default is used (ImportanceMinimality beta)
};

typedef enum { R_ANY, R_POS, R_NONNEG, R_PROB } range_kind;

struct loader;
struct schema;

typedef struct {
    const char *name;
    field_kind kind;
    unsigned flags;
    range_kind range;  // K_INT, K_FLOAT, K_INT_LIST items
    size_t off, has_off;
    const enum_entry *entries;  // K_ENUM
    int n_entries;
    const struct schema *schema;
    // Default when absent (fields without F_REQUIRED; nullable ones default to null).
    int64_t d_int;
    double d_num;
    bool d_bool;
    const char *d_str;
    int d_enum;  // K_ENUM value; K_OBJECT of a union: the variant
    const int64_t *d_ints;
    int n_d_ints;
} field;

typedef int (*check_fn)(struct loader *L, const spd_yaml_node *map, void *obj);

// A config class, or a discriminated union of classes (tag_key != NULL).
typedef struct schema {
    const char *name;
    size_t size;
    const field *fields;
    int n_fields;
    const char *ignored_key;  // accepted and dropped (PermutedCIPlots: sigmoid_type)
    check_fn check;
    // Discriminated union: the value of tag_key selects variants[i] (tag names[i]),
    // stored as an int at tag_off; `allowed` masks the variants usable here.
    const char *tag_key;
    size_t tag_off;
    const char *const *tags;
    const struct schema *variants;
    int n_variants;
    uint32_t allowed;
    const char *allowed_note;  // said when a known but disallowed tag is given
} schema;

#define AT(type, member) .off = offsetof(type, member)
#define NULLABLE(type, member) .flags = F_NULLABLE, .has_off = offsetof(type, member)
#define ENUM_OF(table) .kind = K_ENUM, .entries = table, .n_entries = COUNT(table)

// ---- small configs

typedef struct loader loader;
static int check_schedule(loader *L, const spd_yaml_node *map, void *obj);
static int check_importance_minimality(loader *L, const spd_yaml_node *map, void *obj);
static int check_subset_ce_and_kl(loader *L, const spd_yaml_node *map, void *obj);
static int check_config(loader *L, const spd_yaml_node *map, void *obj);

static const field SCHEDULE_FIELDS[] = {
    {.name = "start_val", .kind = K_FLOAT, .flags = F_REQUIRED, .range = R_POS, AT(spd_schedule_config, start_val)},
    {.name = "warmup_pct", .kind = K_FLOAT, .range = R_PROB, AT(spd_schedule_config, warmup_pct), .d_num = 0.0},
    {.name = "final_val_frac", .kind = K_FLOAT, .range = R_NONNEG, AT(spd_schedule_config, final_val_frac), .d_num = 1.0},
    {.name = "fn_type", ENUM_OF(SCHEDULE_FNS), AT(spd_schedule_config, fn_type), .d_enum = SPD_SCHEDULE_CONSTANT},
};
static const schema SCHEDULE = {.name = "ScheduleConfig", .size = sizeof(spd_schedule_config),
                                .fields = SCHEDULE_FIELDS, .n_fields = COUNT(SCHEDULE_FIELDS), .check = check_schedule};

static const field MODULE_INFO_FIELDS[] = {
    {.name = "module_pattern", .kind = K_STR, .flags = F_REQUIRED, AT(spd_module_info, module_pattern)},
    {.name = "C", .kind = K_INT, .flags = F_REQUIRED, .range = R_POS, AT(spd_module_info, C)},
};
static const schema MODULE_INFO = {.name = "ModulePatternInfoConfig", .size = sizeof(spd_module_info),
                                   .fields = MODULE_INFO_FIELDS, .n_fields = COUNT(MODULE_INFO_FIELDS)};

static const field STATIC_PROBABILITY_FIELDS[] = {
    {.name = "p", .kind = K_FLOAT, .flags = F_REQUIRED, .range = R_PROB, AT(spd_routing_config, p)},
};
static const schema ROUTING_VARIANTS[] = {
    [SPD_CFG_ROUTER_UNIFORM_K_SUBSET] = {.name = "UniformKSubsetRoutingConfig", .size = sizeof(spd_routing_config)},
    [SPD_CFG_ROUTER_STATIC_PROBABILITY] = {.name = "StaticProbabilityRoutingConfig", .size = sizeof(spd_routing_config),
                                       .fields = STATIC_PROBABILITY_FIELDS, .n_fields = COUNT(STATIC_PROBABILITY_FIELDS)},
};
static const schema ROUTING = {"SubsetRoutingType", sizeof(spd_routing_config), .tag_key = "type",
                               .tag_off = offsetof(spd_routing_config, type), .tags = ROUTERS,
                               .variants = ROUTING_VARIANTS, .n_variants = COUNT(ROUTING_VARIANTS)};

// ---- metric configs

#define M spd_metric_config
#define COEFF {.name = "coeff", .kind = K_FLOAT, NULLABLE(M, has_coeff), AT(M, coeff)}
#define ROUTING_FIELD {.name = "routing", .kind = K_OBJECT, .schema = &ROUTING, AT(M, routing), .d_enum = SPD_CFG_ROUTER_UNIFORM_K_SUBSET}
#define PGD_COMMON                                                                                         \
    {.name = "init", ENUM_OF(PGD_INITS), .flags = F_REQUIRED, AT(M, pgd.init)},                            \
    {.name = "step_size", .kind = K_FLOAT, .flags = F_REQUIRED, AT(M, pgd.step_size)},                     \
    {.name = "n_steps", .kind = K_INT, .flags = F_REQUIRED, .range = R_NONNEG, AT(M, pgd.n_steps)}
#define MASK_SCOPE {.name = "mask_scope", ENUM_OF(MASK_SCOPES), .flags = F_REQUIRED, AT(M, pgd.mask_scope)}
#define GRAD_ACCUM                                                                                         \
    {.name = "gradient_accumulation_steps", .kind = K_INT, .flags = F_REQUIRED, .range = R_POS,              \
     AT(M, pgd.gradient_accumulation_steps)}
#define REQUIRED_NULLABLE(member) .flags = F_REQUIRED | F_NULLABLE, .has_off = offsetof(M, member)

static const field COEFF_ONLY[] = {COEFF};
static const field COEFF_ROUTING[] = {COEFF, ROUTING_FIELD};
static const field IMPORTANCE_MINIMALITY_FIELDS[] = {
    COEFF,
    {.name = "pnorm", .kind = K_FLOAT, .flags = F_REQUIRED, .range = R_NONNEG, AT(M, importance_minimality.pnorm)},
    {.name = "beta", .kind = K_FLOAT, .flags = F_NOTE_DEFAULT, .range = R_NONNEG, AT(M, importance_minimality.beta), .d_num = 0.0},
    {.name = "p_anneal_start_frac", .kind = K_FLOAT, .range = R_PROB, AT(M, importance_minimality.p_anneal_start_frac), .d_num = 1.0},
    {.name = "p_anneal_final_p", .kind = K_FLOAT, .range = R_NONNEG, NULLABLE(M, importance_minimality.has_p_anneal_final_p),
     AT(M, importance_minimality.p_anneal_final_p)},
    {.name = "p_anneal_end_frac", .kind = K_FLOAT, .range = R_PROB, AT(M, importance_minimality.p_anneal_end_frac), .d_num = 1.0},
    {.name = "eps", .kind = K_FLOAT, .range = R_NONNEG, AT(M, importance_minimality.eps), .d_num = 1e-12},
};
static const field PGD_FIELDS[] = {COEFF, PGD_COMMON, MASK_SCOPE};
static const field PGD_SUBSET_FIELDS[] = {COEFF, PGD_COMMON, MASK_SCOPE, ROUTING_FIELD};
static const field PGD_MULTIBATCH_FIELDS[] = {COEFF, PGD_COMMON, GRAD_ACCUM};
static const field PGD_MULTIBATCH_SUBSET_FIELDS[] = {COEFF, PGD_COMMON, GRAD_ACCUM, ROUTING_FIELD};
static const field CE_AND_KL_FIELDS[] = {
    {.name = "rounding_threshold", .kind = K_FLOAT, .flags = F_REQUIRED, AT(M, ce_and_kl.rounding_threshold)},
};
static const field CI_HISTOGRAMS_FIELDS[] = {
    {.name = "n_batches_accum", .kind = K_INT, REQUIRED_NULLABLE(ci_histograms.has_n_batches_accum),
     AT(M, ci_histograms.n_batches_accum)},
};
static const field CI_L0_FIELDS[] = {
    {.name = "groups", .kind = K_GROUPS, REQUIRED_NULLABLE(ci_l0.has_groups), AT(M, ci_l0.groups)},
};
static const field IDENTITY_CI_ERROR_FIELDS[] = {
    {.name = "identity_ci", .kind = K_KV_LIST, REQUIRED_NULLABLE(identity_ci_error.has_identity_ci),
     AT(M, identity_ci_error.identity_ci)},
    {.name = "dense_ci", .kind = K_KV_LIST, REQUIRED_NULLABLE(identity_ci_error.has_dense_ci),
     AT(M, identity_ci_error.dense_ci)},
};
static const field PLOTS_FIELDS[] = {
    {.name = "identity_patterns", .kind = K_STR_LIST, REQUIRED_NULLABLE(plots.has_identity_patterns),
     AT(M, plots.identity_patterns)},
    {.name = "dense_patterns", .kind = K_STR_LIST, REQUIRED_NULLABLE(plots.has_dense_patterns),
     AT(M, plots.dense_patterns)},
};
static const field SUBSET_CE_AND_KL_FIELDS[] = {
    {.name = "include_patterns", .kind = K_GROUPS, REQUIRED_NULLABLE(subset_ce_and_kl.has_include_patterns),
     AT(M, subset_ce_and_kl.include_patterns)},
    {.name = "exclude_patterns", .kind = K_GROUPS, REQUIRED_NULLABLE(subset_ce_and_kl.has_exclude_patterns),
     AT(M, subset_ce_and_kl.exclude_patterns)},
};

#define VARIANT(f) {.size = sizeof(M), .fields = f, .n_fields = COUNT(f)}
#define EMPTY_VARIANT {.size = sizeof(M)}
static const schema METRIC_VARIANTS[SPD_METRIC_COUNT] = {
    [SPD_METRIC_FAITHFULNESS_LOSS] = VARIANT(COEFF_ONLY),
    [SPD_METRIC_IMPORTANCE_MINIMALITY_LOSS] = {.size = sizeof(M), .fields = IMPORTANCE_MINIMALITY_FIELDS,
                                               .n_fields = COUNT(IMPORTANCE_MINIMALITY_FIELDS),
                                               .check = check_importance_minimality},
    [SPD_METRIC_UNMASKED_RECON_LOSS] = VARIANT(COEFF_ONLY),
    [SPD_METRIC_CI_MASKED_RECON_LOSS] = VARIANT(COEFF_ONLY),
    [SPD_METRIC_CI_MASKED_RECON_SUBSET_LOSS] = VARIANT(COEFF_ROUTING),
    [SPD_METRIC_CI_MASKED_RECON_LAYERWISE_LOSS] = VARIANT(COEFF_ONLY),
    [SPD_METRIC_STOCHASTIC_RECON_LOSS] = VARIANT(COEFF_ONLY),
    [SPD_METRIC_STOCHASTIC_RECON_SUBSET_LOSS] = VARIANT(COEFF_ROUTING),
    [SPD_METRIC_STOCHASTIC_RECON_LAYERWISE_LOSS] = VARIANT(COEFF_ONLY),
    [SPD_METRIC_PGD_RECON_LOSS] = VARIANT(PGD_FIELDS),
    [SPD_METRIC_PGD_RECON_SUBSET_LOSS] = VARIANT(PGD_SUBSET_FIELDS),
    [SPD_METRIC_PGD_RECON_LAYERWISE_LOSS] = VARIANT(PGD_FIELDS),
    [SPD_METRIC_STOCHASTIC_HIDDEN_ACTS_RECON_LOSS] = VARIANT(COEFF_ONLY),
    [SPD_METRIC_CE_AND_KL_LOSSES] = VARIANT(CE_AND_KL_FIELDS),
    [SPD_METRIC_CI_HISTOGRAMS] = VARIANT(CI_HISTOGRAMS_FIELDS),
    [SPD_METRIC_CI_L0] = VARIANT(CI_L0_FIELDS),
    [SPD_METRIC_CI_MEAN_PER_COMPONENT] = EMPTY_VARIANT,
    [SPD_METRIC_COMPONENT_ACTIVATION_DENSITY] = EMPTY_VARIANT,
    [SPD_METRIC_IDENTITY_CI_ERROR] = VARIANT(IDENTITY_CI_ERROR_FIELDS),
    [SPD_METRIC_PERMUTED_CI_PLOTS] = {.size = sizeof(M), .fields = PLOTS_FIELDS, .n_fields = COUNT(PLOTS_FIELDS),
                                      .ignored_key = "sigmoid_type"},
    [SPD_METRIC_UV_PLOTS] = VARIANT(PLOTS_FIELDS),
    [SPD_METRIC_STOCHASTIC_RECON_SUBSET_CE_AND_KL] = {.size = sizeof(M), .fields = SUBSET_CE_AND_KL_FIELDS,
                                                      .n_fields = COUNT(SUBSET_CE_AND_KL_FIELDS),
                                                      .check = check_subset_ce_and_kl},
    [SPD_METRIC_PGD_MULTIBATCH_RECON_LOSS] = VARIANT(PGD_MULTIBATCH_FIELDS),
    [SPD_METRIC_PGD_MULTIBATCH_RECON_SUBSET_LOSS] = VARIANT(PGD_MULTIBATCH_SUBSET_FIELDS),
};
#define LOSS_CLASSES ((1u << (SPD_METRIC_STOCHASTIC_HIDDEN_ACTS_RECON_LOSS + 1)) - 1)
static const schema LOSS_METRIC = {.name = "LossMetricConfigType", .size = sizeof(M), .tag_key = "classname",
                                   .tag_off = offsetof(M, classname), .tags = METRICS,
                                   .variants = METRIC_VARIANTS, .n_variants = SPD_METRIC_COUNT,
                                   .allowed = LOSS_CLASSES,
                                   .allowed_note = "an eval-only metric; put it in eval_metric_configs"};
static const schema EVAL_METRIC = {.name = "MetricConfigType", .size = sizeof(M), .tag_key = "classname",
                                   .tag_off = offsetof(M, classname), .tags = METRICS,
                                   .variants = METRIC_VARIANTS, .n_variants = SPD_METRIC_COUNT};
#undef M

// ---- task configs

#define T spd_task_config
static const field TMS_FIELDS[] = {
    {.name = "feature_probability", .kind = K_FLOAT, .flags = F_REQUIRED, .range = R_PROB, AT(T, tms.feature_probability)},
    {.name = "data_generation_type", ENUM_OF(TMS_DATA_GENERATION), AT(T, tms.data_generation_type),
     .d_enum = SPD_DATA_AT_LEAST_ZERO_ACTIVE},
};
static const field RESID_MLP_FIELDS[] = {
    {.name = "feature_probability", .kind = K_FLOAT, .flags = F_REQUIRED, .range = R_PROB,
     AT(T, resid_mlp.feature_probability)},
    {.name = "data_generation_type", ENUM_OF(RESID_MLP_DATA_GENERATION), AT(T, resid_mlp.data_generation_type),
     .d_enum = SPD_DATA_AT_LEAST_ZERO_ACTIVE},
};
static const field LM_FIELDS[] = {
    {.name = "max_seq_len", .kind = K_INT, .range = R_POS, AT(T, lm.max_seq_len), .d_int = 512},
    {.name = "buffer_size", .kind = K_INT, .range = R_POS, AT(T, lm.buffer_size), .d_int = 1000},
    {.name = "dataset_name", .kind = K_STR, AT(T, lm.dataset_name), .d_str = "lennart-finke/SimpleStories"},
    {.name = "column_name", .kind = K_STR, AT(T, lm.column_name), .d_str = "story"},
    {.name = "train_data_split", .kind = K_STR, AT(T, lm.train_data_split), .d_str = "train"},
    {.name = "eval_data_split", .kind = K_STR, AT(T, lm.eval_data_split), .d_str = "test"},
    {.name = "shuffle_each_epoch", .kind = K_BOOL, AT(T, lm.shuffle_each_epoch), .d_bool = true},
    {.name = "is_tokenized", .kind = K_BOOL, AT(T, lm.is_tokenized), .d_bool = false},
    {.name = "streaming", .kind = K_BOOL, AT(T, lm.streaming), .d_bool = false},
};
static const field IH_FIELDS[] = {
    {.name = "prefix_window", .kind = K_INT, .range = R_POS, NULLABLE(T, ih.has_prefix_window), AT(T, ih.prefix_window)},
};
static const schema TASK_VARIANTS[] = {
    [SPD_TASK_TMS] = {.name = "TMSTaskConfig", .size = sizeof(T), .fields = TMS_FIELDS, .n_fields = COUNT(TMS_FIELDS)},
    [SPD_TASK_RESID_MLP] = {.name = "ResidMLPTaskConfig", .size = sizeof(T), .fields = RESID_MLP_FIELDS,
                            .n_fields = COUNT(RESID_MLP_FIELDS)},
    [SPD_TASK_LM] = {.name = "LMTaskConfig", .size = sizeof(T), .fields = LM_FIELDS, .n_fields = COUNT(LM_FIELDS)},
    [SPD_TASK_IH] = {.name = "IHTaskConfig", .size = sizeof(T), .fields = IH_FIELDS, .n_fields = COUNT(IH_FIELDS)},
};
static const schema TASK = {.name = "TaskConfig", .size = sizeof(T), .tag_key = "task_name", .tag_off = offsetof(T, task_name),
                            .tags = TASKS, .variants = TASK_VARIANTS, .n_variants = COUNT(TASK_VARIANTS)};
#undef T

// ---- Config

#define C spd_config
static const int64_t DEFAULT_HIDDEN_DIMS[] = {8};
static const field CONFIG_FIELDS[] = {
    {.name = "wandb_project", .kind = K_STR, .flags = F_NULLABLE, AT(C, wandb_project)},
    {.name = "wandb_run_name", .kind = K_STR, .flags = F_NULLABLE, AT(C, wandb_run_name)},
    {.name = "wandb_run_name_prefix", .kind = K_STR, AT(C, wandb_run_name_prefix), .d_str = ""},
    {.name = "seed", .kind = K_INT, AT(C, seed), .d_int = 0},
    {.name = "autocast_bf16", .kind = K_BOOL, AT(C, autocast_bf16), .d_bool = true},
    {.name = "n_mask_samples", .kind = K_INT, .flags = F_REQUIRED, .range = R_POS, AT(C, n_mask_samples)},
    {.name = "ci_fn_type", ENUM_OF(CI_FN_TYPES), AT(C, ci_fn_type), .d_enum = SPD_CFG_CI_FN_VECTOR_MLP},
    {.name = "ci_fn_hidden_dims", .kind = K_INT_LIST, .range = R_NONNEG, AT(C, ci_fn_hidden_dims),
     .d_ints = DEFAULT_HIDDEN_DIMS, .n_d_ints = 1},
    {.name = "sampling", ENUM_OF(SAMPLINGS), AT(C, sampling), .d_enum = SPD_CFG_SAMPLING_CONTINUOUS},
    {.name = "sigmoid_type", ENUM_OF(SIGMOIDS), AT(C, sigmoid_type), .d_enum = SPD_CFG_SIGMOID_LEAKY_HARD},
    {.name = "module_info", .kind = K_OBJECT_LIST, .flags = F_REQUIRED, .schema = &MODULE_INFO, AT(C, module_info)},
    {.name = "identity_module_info", .kind = K_OBJECT_LIST, .schema = &MODULE_INFO,
     NULLABLE(C, has_identity_module_info), AT(C, identity_module_info)},
    {.name = "use_delta_component", .kind = K_BOOL, AT(C, use_delta_component), .d_bool = true},
    {.name = "loss_metric_configs", .kind = K_OBJECT_LIST, .schema = &LOSS_METRIC, AT(C, loss_metric_configs)},
    {.name = "output_loss_type", ENUM_OF(OUTPUT_LOSSES), .flags = F_REQUIRED, AT(C, output_loss_type)},
    {.name = "lr_schedule", .kind = K_OBJECT, .flags = F_REQUIRED, .schema = &SCHEDULE, AT(C, lr_schedule)},
    {.name = "steps", .kind = K_INT, .flags = F_REQUIRED, .range = R_NONNEG, AT(C, steps)},
    {.name = "batch_size", .kind = K_INT, .flags = F_REQUIRED, .range = R_POS, AT(C, batch_size)},
    {.name = "grad_clip_norm_components", .kind = K_FLOAT, .range = R_POS, NULLABLE(C, has_grad_clip_norm_components),
     AT(C, grad_clip_norm_components)},
    {.name = "grad_clip_norm_ci_fns", .kind = K_FLOAT, .range = R_POS, NULLABLE(C, has_grad_clip_norm_ci_fns),
     AT(C, grad_clip_norm_ci_fns)},
    {.name = "faithfulness_warmup_steps", .kind = K_INT, .range = R_NONNEG, AT(C, faithfulness_warmup_steps), .d_int = 0},
    {.name = "faithfulness_warmup_lr", .kind = K_FLOAT, .range = R_POS, AT(C, faithfulness_warmup_lr), .d_num = 0.001},
    {.name = "faithfulness_warmup_weight_decay", .kind = K_FLOAT, .range = R_NONNEG,
     AT(C, faithfulness_warmup_weight_decay), .d_num = 0.0},
    {.name = "train_log_freq", .kind = K_INT, .flags = F_REQUIRED, .range = R_POS, AT(C, train_log_freq)},
    {.name = "eval_freq", .kind = K_INT, .flags = F_REQUIRED, .range = R_POS, AT(C, eval_freq)},
    {.name = "eval_batch_size", .kind = K_INT, .flags = F_REQUIRED, .range = R_POS, AT(C, eval_batch_size)},
    {.name = "slow_eval_freq", .kind = K_INT, .flags = F_REQUIRED, .range = R_POS, AT(C, slow_eval_freq)},
    {.name = "n_eval_steps", .kind = K_INT, .flags = F_REQUIRED, .range = R_POS, AT(C, n_eval_steps)},
    {.name = "slow_eval_on_first_step", .kind = K_BOOL, AT(C, slow_eval_on_first_step), .d_bool = true},
    {.name = "save_freq", .kind = K_INT, .range = R_POS, NULLABLE(C, has_save_freq), AT(C, save_freq)},
    {.name = "eval_metric_configs", .kind = K_OBJECT_LIST, .schema = &EVAL_METRIC, AT(C, eval_metric_configs)},
    {.name = "ci_alive_threshold", .kind = K_FLOAT, .range = R_PROB, AT(C, ci_alive_threshold), .d_num = 0.0},
    {.name = "pretrained_model_class", .kind = K_STR, .flags = F_REQUIRED, AT(C, pretrained_model_class)},
    {.name = "pretrained_model_path", .kind = K_STR, .flags = F_NULLABLE, AT(C, pretrained_model_path)},
    {.name = "pretrained_model_name", .kind = K_STR, .flags = F_NULLABLE, AT(C, pretrained_model_name)},
    {.name = "pretrained_model_output_attr", .kind = K_STR, .flags = F_NULLABLE, AT(C, pretrained_model_output_attr)},
    {.name = "tokenizer_name", .kind = K_STR, .flags = F_NULLABLE, AT(C, tokenizer_name)},
    {.name = "task_config", .kind = K_OBJECT, .flags = F_REQUIRED, .schema = &TASK, AT(C, task_config)},
};
static const schema CONFIG = {.name = "Config", .size = sizeof(C), .fields = CONFIG_FIELDS,
                              .n_fields = COUNT(CONFIG_FIELDS), .check = check_config};
#undef C

// ---------------------------------------------------------------- the loader

struct loader {
    const char *source;
    spd_yaml_doc *doc;
    char path[1024];  // key path of the value being read: "loss_metric_configs[1].coeff"
    size_t path_len;
};

// Appends ".key" (control characters escaped, so a message stays on one line).
static size_t path_key(loader *L, const char *key) {
    size_t old = L->path_len, k = old, cap = sizeof L->path - 1;
    if (k && k < cap) L->path[k++] = '.';
    for (const unsigned char *p = (const unsigned char *)key; *p && k + 4 < cap; p++) {
        if (*p < 0x20 || *p == 0x7f) k += (size_t)snprintf(L->path + k, cap + 1 - k, "\\x%02x", *p);
        else L->path[k++] = (char)*p;
    }
    L->path[k] = '\0';
    L->path_len = k;
    return old;
}

static size_t path_index(loader *L, int i) {
    size_t old = L->path_len;
    int n = snprintf(L->path + old, sizeof L->path - old, "[%d]", i);
    if (n > 0) L->path_len = old + (size_t)n < sizeof L->path ? old + (size_t)n : sizeof L->path - 1;
    return old;
}

static void path_restore(loader *L, size_t len) {
    L->path_len = len;
    L->path[len] = '\0';
}

// "<file>:<line>:<col>: <path>: <message>"; the position is left out for nodes
// that have none (made by a migration) and the path when it is empty.
static int vfail(loader *L, const spd_yaml_node *at, const char *fmt, va_list ap) {
    char msg[1024], where[256];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (at && at->line > 0) snprintf(where, sizeof where, "%s:%d:%d", L->source, at->line, at->col);
    else snprintf(where, sizeof where, "%s", L->source);
    if (L->path_len) return spd_set_error("%s: %s: %s", where, L->path, msg);
    return spd_set_error("%s: %s", where, msg);
}

__attribute__((format(printf, 3, 4))) static int fail(loader *L, const spd_yaml_node *at, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail(L, at, fmt, ap);
    va_end(ap);
    return rc;
}

// A key that is absent from `map`: points at the mapping, except at the top level.
static int fail_missing(loader *L, const spd_yaml_node *map, const char *key, const char *why) {
    size_t old = path_key(L, key);
    fail(L, map == L->doc->root ? NULL : map, "missing (%s)", why);
    path_restore(L, old);
    return -1;
}

// The error for `key` of `map`, pointing at its value (or at the mapping when absent).
__attribute__((format(printf, 4, 5))) static int fail_key(loader *L, const spd_yaml_node *map, const char *key,
                                                          const char *fmt, ...) {
    const spd_yaml_node *at = spd_yaml_map_get(map, key);
    size_t old = path_key(L, key);
    va_list ap;
    va_start(ap, fmt);
    vfail(L, at ? at : map, fmt, ap);
    va_end(ap);
    path_restore(L, old);
    return -1;
}

__attribute__((format(printf, 3, 4))) static void note(loader *L, const spd_yaml_node *at, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (at && at->line > 0) fprintf(stderr, "spd: note: %s:%d:%d: %s\n", L->source, at->line, at->col, msg);
    else fprintf(stderr, "spd: note: %s: %s\n", L->source, msg);
}

#define FOUND(n) spd_yaml_describe((n), (char[128]){0}, 128)

// A value as written, for notes: `1e-2` rather than "1e-2".
static const char *as_written(const spd_yaml_node *n, char *buf, size_t size) {
    if (n->kind != SPD_YAML_SCALAR || n->quoted) return spd_yaml_describe(n, buf, size);
    snprintf(buf, size, "%.60s%s", n->text, n->len > 60 ? "..." : "");
    return buf;
}

// ---- scalars, coerced as pydantic's lax mode does

static bool is_null(const spd_yaml_node *n) { return spd_yaml_resolve(n) == SPD_YAML_T_NULL; }

// Python's float(str): surrounding whitespace, one sign, digits with single
// underscores between them, optional fraction and exponent; inf and nan.
static int py_float(const char *s, double *out) {
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
    char buf[128];
    size_t k = 0;
    const char *p = s;
    if (*p == '+' || *p == '-') buf[k++] = *p++;
    const char *words[] = {"infinity", "inf", "nan"};
    for (int w = 0; w < 3; w++) {
        size_t wl = strlen(words[w]);
        if (strncasecmp(p, words[w], wl) == 0) {
            const char *q = p + wl;
            while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r') q++;
            if (*q) return -1;
            *out = w == 2 ? NAN : (*s == '-' ? -INFINITY : INFINITY);
            return 0;
        }
    }
    int digits = 0;
    // One run of digits with single underscores between digits.
#define DIGIT_RUN()                                                                  \
    do {                                                                             \
        while (*p >= '0' && *p <= '9') {                                             \
            if (k + 2 >= sizeof buf) return -1;                                      \
            buf[k++] = *p++;                                                         \
            digits++;                                                                \
            if (*p == '_' && p[1] >= '0' && p[1] <= '9') p++;                        \
        }                                                                            \
    } while (0)
    DIGIT_RUN();
    if (*p == '.') {
        buf[k++] = *p++;
        DIGIT_RUN();
    }
    if (digits == 0) return -1;
    if (*p == 'e' || *p == 'E') {
        buf[k++] = *p++;
        if (*p == '+' || *p == '-') buf[k++] = *p++;
        int before = digits;
        DIGIT_RUN();
        if (digits == before) return -1;
    }
#undef DIGIT_RUN
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (*p) return -1;
    buf[k] = '\0';
    *out = strtod(buf, NULL);
    return 0;
}

// Python's int(str), exactly: whitespace, one sign, digits with single
// underscores between them. 1 when the text is no integer, -1 on overflow.
static int py_int(const char *s, int64_t *out) {
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
    bool neg = *s == '-';
    if (*s == '+' || *s == '-') s++;
    if (!(*s >= '0' && *s <= '9')) return 1;
    uint64_t v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > (UINT64_MAX - 9) / 10) return -1;
        v = v * 10 + (uint64_t)(*s - '0');
        if (s[1] == '_' && s[2] >= '0' && s[2] <= '9') s++;
    }
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
    if (*s) return 1;
    if (neg ? v > (uint64_t)INT64_MAX + 1 : v > (uint64_t)INT64_MAX) return -1;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

static int to_double(loader *L, const spd_yaml_node *n, double *out) {
    int64_t i;
    int ok = -1;
    switch (spd_yaml_resolve(n)) {
    case SPD_YAML_T_INT:
        if (spd_yaml_int(n, &i) == 0) {
            *out = (double)i;
            ok = 0;
        }
        break;
    case SPD_YAML_T_FLOAT:
        ok = spd_yaml_float(n, out);
        break;
    case SPD_YAML_T_STR:
        ok = py_float(n->text, out);
        break;
    default:
        break;
    }
    if (ok) return fail(L, n, "expected a number, found %s", FOUND(n));
    if (!isfinite(*out)) return fail(L, n, "expected a finite number, found %s", FOUND(n));
    return 0;
}

static int to_int(loader *L, const spd_yaml_node *n, int64_t *out) {
    double d;
    switch (spd_yaml_resolve(n)) {
    case SPD_YAML_T_INT:
        if (spd_yaml_int(n, out) == 0) return 0;
        return fail(L, n, "expected an integer that fits in 64 bits, found %s", FOUND(n));
    case SPD_YAML_T_FLOAT:
    case SPD_YAML_T_STR:
        if (spd_yaml_resolve(n) == SPD_YAML_T_STR) {
            int rc = py_int(n->text, out);
            if (rc == 0) return 0;
            if (rc < 0) return fail(L, n, "expected an integer that fits in 64 bits, found %s", FOUND(n));
        }
        // pydantic: a number, or a string holding one, with no fractional part.
        if ((spd_yaml_resolve(n) == SPD_YAML_T_FLOAT ? spd_yaml_float(n, &d) : py_float(n->text, &d)) != 0 ||
            !isfinite(d))
            break;
        if (spd_yaml_resolve(n) == SPD_YAML_T_STR && strpbrk(n->text, "eE"))
            break;  // pydantic reads "1e3" as no integer
        if (d != floor(d)) return fail(L, n, "expected an integer, found %s (it has a fractional part)", FOUND(n));
        if (!(d >= -9.2233720368547758e18 && d < 9.2233720368547758e18))
            return fail(L, n, "expected an integer that fits in 64 bits, found %s", FOUND(n));
        *out = (int64_t)d;
        return 0;
    default:
        break;
    }
    return fail(L, n, "expected an integer, found %s", FOUND(n));
}

static int to_bool(loader *L, const spd_yaml_node *n, bool *out) {
    int64_t i;
    switch (spd_yaml_resolve(n)) {
    case SPD_YAML_T_BOOL:
        if (spd_yaml_bool(n, out) == 0) return 0;
        break;
    case SPD_YAML_T_INT:
        if (spd_yaml_int(n, &i) == 0 && (i == 0 || i == 1)) {
            *out = i == 1;
            return 0;
        }
        break;
    case SPD_YAML_T_STR: {
        // pydantic's accepted spellings, case-insensitive.
        static const char *const t[] = {"1", "on", "t", "true", "y", "yes"};
        static const char *const f[] = {"0", "off", "f", "false", "n", "no"};
        for (int k = 0; k < COUNT(t); k++) {
            if (strcasecmp(n->text, t[k]) == 0) return *out = true, 0;
            if (strcasecmp(n->text, f[k]) == 0) return *out = false, 0;
        }
        break;
    }
    default:
        break;
    }
    return fail(L, n, "expected a boolean (true or false), found %s", FOUND(n));
}

static int to_str(loader *L, const spd_yaml_node *n, char **out) {
    if (spd_yaml_resolve(n) != SPD_YAML_T_STR) return fail(L, n, "expected a string, found %s", FOUND(n));
    *out = spd_strdup(n->text);
    return 0;
}

static int check_range(loader *L, const spd_yaml_node *n, range_kind r, double v, bool integer) {
    const char *what = integer ? "an integer" : "a number";
    if (r == R_POS && !(v > 0)) return fail(L, n, "expected %s > 0, found %s", what, FOUND(n));
    if (r == R_NONNEG && !(v >= 0)) return fail(L, n, "expected %s >= 0, found %s", what, FOUND(n));
    if (r == R_PROB && !(v >= 0 && v <= 1)) return fail(L, n, "expected a number in [0, 1], found %s", FOUND(n));
    return 0;
}

static void join_names(char *buf, size_t size, const char *const *names, int n, uint32_t allowed, const char *sep) {
    size_t k = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && k < size; i++) {
        if (!names[i] || (allowed && !(allowed & (1u << i)))) continue;
        int w = snprintf(buf + k, size - k, "%s%s", k ? sep : "", names[i]);
        if (w < 0) break;
        k += (size_t)w;
    }
}

// A discriminator: one of the allowed tags[], as a string; *out its index.
static int to_tag(loader *L, const spd_yaml_node *n, const char *const *tags, int n_tags, uint32_t allowed, int *out) {
    if (spd_yaml_resolve(n) == SPD_YAML_T_STR)
        for (int i = 0; i < n_tags; i++)
            if (tags[i] && (!allowed || (allowed & (1u << i))) && strcmp(n->text, tags[i]) == 0) {
                *out = i;
                return 0;
            }
    char list[1024];
    join_names(list, sizeof list, tags, n_tags, allowed, ", ");
    return fail(L, n, "expected one of %s, found %s", list, FOUND(n));
}

// A Literal field: one of the entries' names, as a string.
static int to_enum(loader *L, const spd_yaml_node *n, const enum_entry *e, int n_entries, int *out) {
    if (spd_yaml_resolve(n) == SPD_YAML_T_STR)
        for (int i = 0; i < n_entries; i++)
            if (strcmp(n->text, e[i].name) == 0) {
                *out = e[i].value;
                return 0;
            }
    char list[1024];
    size_t k = 0;
    list[0] = '\0';
    for (int i = 0; i < n_entries && k < sizeof list; i++)
        k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", e[i].name);
    return fail(L, n, "expected one of %s, found %s", list, FOUND(n));
}

static const char *enum_name(const field *f, int value) {
    const char *name = entry_name(f->entries, f->n_entries, value);
    if (strcmp(name, "?") == 0) spd_die("config field %s holds %d, which is none of its values", f->name, value);
    return name;
}

// ---- containers

static int expect_kind(loader *L, const spd_yaml_node *n, spd_yaml_kind kind) {
    if (n->kind == kind) return 0;
    return fail(L, n, "expected %s, found %s", kind == SPD_YAML_MAP ? "a mapping" : "a list", FOUND(n));
}

static int read_str_list(loader *L, const spd_yaml_node *n, spd_str_list *out) {
    if (expect_kind(L, n, SPD_YAML_SEQ)) return -1;
    out->items = spd_calloc((size_t)n->count, sizeof *out->items);
    for (int i = 0; i < n->count; i++) {
        size_t old = path_index(L, i);
        if (to_str(L, n->values[i], &out->items[i])) return -1;
        out->count = i + 1;
        path_restore(L, old);
    }
    out->count = n->count;
    return 0;
}

static int read_groups(loader *L, const spd_yaml_node *n, spd_pattern_groups *out) {
    if (expect_kind(L, n, SPD_YAML_MAP)) return -1;
    out->names = spd_calloc((size_t)n->count, sizeof *out->names);
    out->patterns = spd_calloc((size_t)n->count, sizeof *out->patterns);
    for (int i = 0; i < n->count; i++) {
        out->count = i + 1;
        size_t old = path_key(L, n->keys[i]->text);
        if (to_str(L, n->keys[i], &out->names[i])) return -1;
        if (read_str_list(L, n->values[i], &out->patterns[i])) return -1;
        path_restore(L, old);
    }
    return 0;
}

static int read_kv_list(loader *L, const spd_yaml_node *n, spd_kv_dict_list *out) {
    if (expect_kind(L, n, SPD_YAML_SEQ)) return -1;
    out->items = spd_calloc((size_t)n->count, sizeof *out->items);
    for (int i = 0; i < n->count; i++) {
        out->count = i + 1;
        size_t old = path_index(L, i);
        const spd_yaml_node *d = n->values[i];
        if (expect_kind(L, d, SPD_YAML_MAP)) return -1;
        spd_kv_dict *dict = &out->items[i];
        dict->items = spd_calloc((size_t)d->count, sizeof *dict->items);
        for (int j = 0; j < d->count; j++) {
            dict->count = j + 1;
            spd_kv *kv = &dict->items[j];
            size_t old2 = path_key(L, d->keys[j]->text);
            if (to_str(L, d->keys[j], &kv->key)) return -1;
            // str | int, as pydantic's smart union: an int stays an int, a string a string.
            const spd_yaml_node *v = d->values[j];
            spd_yaml_type t = spd_yaml_resolve(v);
            if (t == SPD_YAML_T_STR) {
                kv->str_value = spd_strdup(v->text);
            } else if (t == SPD_YAML_T_INT || t == SPD_YAML_T_FLOAT) {
                kv->is_int = true;
                if (to_int(L, v, &kv->int_value)) return -1;
            } else {
                return fail(L, v, "expected a string or an integer, found %s", FOUND(v));
            }
            path_restore(L, old2);
        }
        path_restore(L, old);
    }
    return 0;
}

// Edit distance, for "did you mean": small strings only.
static int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    int row[64];
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static void fill_defaults(const schema *s, void *obj);
static int read_object(loader *L, const schema *s, const spd_yaml_node *n, void *obj);

static int read_object_list(loader *L, const schema *s, const spd_yaml_node *n, char *list) {
    if (expect_kind(L, n, SPD_YAML_SEQ)) return -1;
    char *items = spd_calloc((size_t)n->count, s->size);
    memcpy(list, &items, sizeof items);
    int *count = (int *)(list + sizeof(void *));
    for (int i = 0; i < n->count; i++) {
        *count = i + 1;
        size_t old = path_index(L, i);
        if (read_object(L, s, n->values[i], items + (size_t)i * s->size)) return -1;
        path_restore(L, old);
    }
    return 0;
}

static char *member(void *obj, size_t off) { return (char *)obj + off; }

static int read_field(loader *L, const field *f, const spd_yaml_node *n, void *obj) {
    char *p = member(obj, f->off);
    if (is_null(n)) {
        if (!(f->flags & F_NULLABLE)) {
            const char *what = f->kind == K_INT ? "an integer" : f->kind == K_FLOAT ? "a number"
                             : f->kind == K_BOOL ? "a boolean" : f->kind == K_STR ? "a string"
                             : f->kind == K_ENUM ? "a value" : f->kind == K_OBJECT ? "a mapping" : "a list";
            return fail(L, n, "expected %s, found null", what);
        }
        return 0;  // already zero: has_<field> false, strings NULL
    }
    if (f->flags & F_NULLABLE && f->kind != K_STR) *(bool *)member(obj, f->has_off) = true;
    switch (f->kind) {
    case K_INT: {
        int64_t v;
        if (to_int(L, n, &v) || check_range(L, n, f->range, (double)v, true)) return -1;
        memcpy(p, &v, sizeof v);
        return 0;
    }
    case K_FLOAT: {
        double v;
        if (to_double(L, n, &v) || check_range(L, n, f->range, v, false)) return -1;
        memcpy(p, &v, sizeof v);
        return 0;
    }
    case K_BOOL:
        return to_bool(L, n, (bool *)p);
    case K_STR:
        return to_str(L, n, (char **)p);
    case K_ENUM: {
        int v = 0;
        if (to_enum(L, n, f->entries, f->n_entries, &v)) return -1;
        memcpy(p, &v, sizeof v);  // every enum here is int-sized
        return 0;
    }
    case K_INT_LIST: {
        spd_int_list *l = (spd_int_list *)p;
        if (expect_kind(L, n, SPD_YAML_SEQ)) return -1;
        l->items = spd_calloc((size_t)n->count, sizeof *l->items);
        l->count = n->count;
        for (int i = 0; i < n->count; i++) {
            size_t old = path_index(L, i);
            if (to_int(L, n->values[i], &l->items[i]) ||
                check_range(L, n->values[i], f->range, (double)l->items[i], true))
                return -1;
            path_restore(L, old);
        }
        return 0;
    }
    case K_STR_LIST:
        return read_str_list(L, n, (spd_str_list *)p);
    case K_GROUPS:
        return read_groups(L, n, (spd_pattern_groups *)p);
    case K_KV_LIST:
        return read_kv_list(L, n, (spd_kv_dict_list *)p);
    case K_OBJECT:
        return read_object(L, f->schema, n, p);
    case K_OBJECT_LIST:
        return read_object_list(L, f->schema, n, p);
    }
    return 0;
}

static void fill_default(const field *f, void *obj) {
    char *p = member(obj, f->off);
    if (f->flags & (F_REQUIRED | F_NULLABLE)) return;  // nullable: null (zero) by default
    switch (f->kind) {
    case K_INT:
        memcpy(p, &f->d_int, sizeof f->d_int);
        break;
    case K_FLOAT:
        memcpy(p, &f->d_num, sizeof f->d_num);
        break;
    case K_BOOL:
        *(bool *)p = f->d_bool;
        break;
    case K_STR:
        *(char **)p = f->d_str ? spd_strdup(f->d_str) : NULL;
        break;
    case K_ENUM:
        memcpy(p, &f->d_enum, sizeof f->d_enum);
        break;
    case K_INT_LIST: {
        spd_int_list *l = (spd_int_list *)p;
        l->items = spd_calloc((size_t)f->n_d_ints, sizeof *l->items);
        if (f->n_d_ints) memcpy(l->items, f->d_ints, (size_t)f->n_d_ints * sizeof *l->items);
        l->count = f->n_d_ints;
        break;
    }
    case K_OBJECT:
        if (f->schema->tag_key) {
            memcpy(member(p, f->schema->tag_off), &f->d_enum, sizeof f->d_enum);
            fill_defaults(&f->schema->variants[f->d_enum], p);
        } else {
            fill_defaults(f->schema, p);
        }
        break;
    default:  // lists default to empty (zero)
        break;
    }
}

static void fill_defaults(const schema *s, void *obj) {
    for (int i = 0; i < s->n_fields; i++) fill_default(&s->fields[i], obj);
}

static int read_fields(loader *L, const schema *s, const spd_yaml_node *n, void *obj, const char *tag_key,
                       const char *class_name) {
    // Unknown keys first: a misspelt key explains a "missing" one.
    for (int i = 0; i < n->count; i++) {
        const char *key = n->keys[i]->text;
        bool known = (tag_key && strcmp(key, tag_key) == 0) || (s->ignored_key && strcmp(key, s->ignored_key) == 0);
        for (int j = 0; j < s->n_fields && !known; j++) known = strcmp(key, s->fields[j].name) == 0;
        if (known) continue;
        char list[1024], hint[128] = "";
        size_t k = (size_t)snprintf(list, sizeof list, "%s", tag_key ? tag_key : "");
        int best = 3;  // suggest a field at most 2 edits away
        for (int j = 0; j < s->n_fields && k < sizeof list; j++) {
            k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", k ? ", " : "", s->fields[j].name);
            int d = edit_distance(key, s->fields[j].name);
            if (d < best && d < (int)strlen(s->fields[j].name)) {
                best = d;
                snprintf(hint, sizeof hint, "did you mean %s? ", s->fields[j].name);
            }
        }
        size_t old = path_key(L, key);
        if (k == 0) fail(L, n->keys[i], "unknown key (%s takes no other keys)", class_name);
        else fail(L, n->keys[i], "unknown key (%sexpected one of: %s)", hint, list);
        path_restore(L, old);
        return -1;
    }
    for (int j = 0; j < s->n_fields; j++) {
        const field *f = &s->fields[j];
        const spd_yaml_node *v = spd_yaml_map_get(n, f->name);
        if (!v) {
            if (f->flags & F_REQUIRED) return fail_missing(L, n, f->name, "required");
            fill_default(f, obj);
            if (f->flags & F_NOTE_DEFAULT) {
                size_t old = path_key(L, f->name);
                note(L, n, "%s: not given; defaulting to %g as SPD does", L->path, f->d_num);
                path_restore(L, old);
            }
            continue;
        }
        size_t old = path_key(L, f->name);
        if (read_field(L, f, v, obj)) return -1;
        path_restore(L, old);
    }
    return s->check ? s->check(L, n, obj) : 0;
}

static int read_object(loader *L, const schema *s, const spd_yaml_node *n, void *obj) {
    if (expect_kind(L, n, SPD_YAML_MAP)) return -1;
    if (!s->tag_key) return read_fields(L, s, n, obj, NULL, s->name);
    const spd_yaml_node *t = spd_yaml_map_get(n, s->tag_key);
    if (!t) return fail_missing(L, n, s->tag_key, "required: it says which config this is");
    size_t old = path_key(L, s->tag_key);
    int v = 0;
    if (s->allowed_note && spd_yaml_resolve(t) == SPD_YAML_T_STR)
        for (int i = 0; i < s->n_variants; i++)
            if (!(s->allowed & (1u << i)) && s->tags[i] && strcmp(t->text, s->tags[i]) == 0) {
                char list[1024];
                join_names(list, sizeof list, s->tags, s->n_variants, s->allowed, ", ");
                return fail(L, t, "%s is %s (expected one of %s)", t->text, s->allowed_note, list);
            }
    if (to_tag(L, t, s->tags, s->n_variants, s->allowed, &v)) return -1;
    path_restore(L, old);
    memcpy(member(obj, s->tag_off), &v, sizeof v);
    return read_fields(L, &s->variants[v], n, obj, s->tag_key, s->tags[v]);
}

// ---------------------------------------------------------------- validators

static int check_schedule(loader *L, const spd_yaml_node *map, void *obj) {
    const spd_schedule_config *s = obj;
    if (s->fn_type == SPD_SCHEDULE_CONSTANT && s->final_val_frac != 1.0)
        return fail_key(L, map, "final_val_frac", "a constant schedule requires final_val_frac 1.0, found %g",
                        s->final_val_frac);
    return 0;
}

static int check_importance_minimality(loader *L, const spd_yaml_node *map, void *obj) {
    const spd_importance_minimality_config *m = &((spd_metric_config *)obj)->importance_minimality;
    // SPD asserts this when it anneals (get_p_for_step), i.e. on the first step.
    if (m->has_p_anneal_final_p && m->p_anneal_start_frac < 1.0 && m->p_anneal_end_frac < m->p_anneal_start_frac)
        return fail_key(L, map, "p_anneal_end_frac", "expected a value >= p_anneal_start_frac (%g), found %g",
                        m->p_anneal_start_frac, m->p_anneal_end_frac);
    return 0;
}

static int check_subset_ce_and_kl(loader *L, const spd_yaml_node *map, void *obj) {
    const spd_metric_config *m = obj;
    bool inc = m->subset_ce_and_kl.has_include_patterns && m->subset_ce_and_kl.include_patterns.count > 0;
    bool exc = m->subset_ce_and_kl.has_exclude_patterns && m->subset_ce_and_kl.exclude_patterns.count > 0;
    if (!inc && !exc)
        return fail(L, map, "expected at least one of include_patterns and exclude_patterns to be non-empty");
    return 0;
}

static int check_config(loader *L, const spd_yaml_node *map, void *obj) {
    const spd_config *c = obj;
    if (c->steps == 0)
        return fail_key(L, map, "steps", "expected an integer > 0 (the lr schedule is a function of step/steps), found 0");
    if (c->slow_eval_freq % c->eval_freq != 0)
        return fail_key(L, map, "slow_eval_freq", "expected a multiple of eval_freq (%" PRId64 "), found %" PRId64,
                        c->eval_freq, c->slow_eval_freq);
    if ((c->ci_fn_type == SPD_CFG_CI_FN_MLP || c->ci_fn_type == SPD_CFG_CI_FN_VECTOR_MLP) && c->ci_fn_hidden_dims.count == 0)
        return fail_key(L, map, "ci_fn_hidden_dims", "ci_fn_type %s needs at least one hidden layer, found []",
                        spd_cfg_ci_fn_type_name(c->ci_fn_type));
    // spd.c's own limits: the random streams have room for this many mask samples
    // (and PGD microbatches), loss terms and eval metrics (ops/masks.h), and a CI
    // function for this many hidden layers (ops/ci_fn.h).
    if (c->n_mask_samples > SPD_RNG_MAX_SAMPLES)
        return fail_key(L, map, "n_mask_samples", "expected at most %d (spd.c's limit), found %" PRId64,
                        SPD_RNG_MAX_SAMPLES, c->n_mask_samples);
    if (c->ci_fn_hidden_dims.count > SPD_CI_FN_MAX_LAYERS - 1)
        return fail_key(L, map, "ci_fn_hidden_dims", "expected at most %d hidden layers (spd.c's limit), found %d",
                        SPD_CI_FN_MAX_LAYERS - 1, c->ci_fn_hidden_dims.count);
    if (c->loss_metric_configs.count > SPD_RNG_EVAL_TERM)
        return fail_key(L, map, "loss_metric_configs", "expected at most %d losses (spd.c's limit), found %d",
                        SPD_RNG_EVAL_TERM, c->loss_metric_configs.count);
    // Eval runs eval_metric_configs plus each loss whose class is not among them.
    int n_eval = c->eval_metric_configs.count;
    for (int i = 0; i < c->loss_metric_configs.count; i++) {
        bool listed = false;
        for (int j = 0; j < c->eval_metric_configs.count && !listed; j++)
            listed = c->eval_metric_configs.items[j].classname == c->loss_metric_configs.items[i].classname;
        n_eval += !listed;
    }
    if (n_eval > SPD_RNG_MAX_TERMS - SPD_RNG_EVAL_TERM)
        return fail_key(L, map, "eval_metric_configs",
                        "expected at most %d eval metrics with the losses not listed here (spd.c's limit), found %d",
                        SPD_RNG_MAX_TERMS - SPD_RNG_EVAL_TERM, n_eval);
    for (int i = 0; i < c->eval_metric_configs.count; i++) {
        const spd_metric_config *m = &c->eval_metric_configs.items[i];
        if ((m->classname == SPD_METRIC_PGD_MULTIBATCH_RECON_LOSS ||
             m->classname == SPD_METRIC_PGD_MULTIBATCH_RECON_SUBSET_LOSS) &&
            m->pgd.gradient_accumulation_steps > SPD_RNG_MAX_SAMPLES) {
            size_t old = path_key(L, "eval_metric_configs");
            path_index(L, i);
            const spd_yaml_node *item = spd_yaml_map_get(map, "eval_metric_configs")->values[i];
            fail_key(L, item, "gradient_accumulation_steps", "expected at most %d (spd.c's limit), found %" PRId64,
                     SPD_RNG_MAX_SAMPLES, m->pgd.gradient_accumulation_steps);
            path_restore(L, old);
            return -1;
        }
    }
    const spd_yaml_node *losses = spd_yaml_map_get(map, "loss_metric_configs");
    for (int i = 0; i < c->loss_metric_configs.count; i++) {
        if (c->loss_metric_configs.items[i].has_coeff) continue;
        size_t old = path_key(L, "loss_metric_configs");
        path_index(L, i);
        const spd_yaml_node *item = losses->values[i];
        const spd_yaml_node *coeff = spd_yaml_map_get(item, "coeff");
        path_key(L, "coeff");
        if (coeff) fail(L, coeff, "expected a number (every loss needs a coeff), found null");
        else fail(L, item, "missing (every loss needs a coeff)");
        path_restore(L, old);
        return -1;
    }
    return 0;
}

// ---------------------------------------------------------------- migrations of old keys
// SPD's Config.handle_deprecated_config_keys, in its order, on the YAML tree.

static const char *const DEPRECATED_KEYS[] = {
    "image_on_first_step", "image_freq", "metrics_fns", "figures_fns", "schatten_coeff",
    "embedding_recon_coeff", "is_embed_unembed_recon", "out_recon_coeff", "faithfulness_coeff",
    "stochastic_recon_coeff", "stochastic_recon_layerwise_coeff", "recon_coeff", "recon_layerwise_coeff",
    "ci_recon_coeff", "ci_recon_layerwise_coeff", "pnorm", "p_anneal_start_frac", "p_anneal_final_p",
    "p_anneal_end_frac", "importance_minimality_coeff", "dist_backend", "lr_exponential_halflife", "out_dir",
    "n_examples_until_dead", "gradient_accumulation_steps",
};
static const char *const RENAMED_KEYS[][2] = {
    {"grad_clip_norm", "grad_clip_norm_components"},
    {"print_freq", "eval_freq"},
    {"pretrained_model_name_hf", "pretrained_model_name"},
    {"gate_type", "ci_fn_type"},
    {"gate_hidden_dims", "ci_fn_hidden_dims"},
};

static spd_yaml_node *mut(const spd_yaml_node *n) { return (spd_yaml_node *)n; }

// Old `C` + `target_module_patterns` (+ `identity_module_patterns`) -> module_info lists.
static spd_yaml_node *patterns_to_module_info(loader *L, const spd_yaml_node *patterns, const spd_yaml_node *c,
                                              const char *key) {
    size_t old = path_key(L, key);
    if (patterns->kind != SPD_YAML_SEQ) {
        fail(L, patterns, "expected a list of module patterns, found %s", FOUND(patterns));
        return NULL;
    }
    path_restore(L, old);
    spd_yaml_node *list = spd_yaml_new_seq(L->doc, patterns->line, patterns->col);
    for (int i = 0; i < patterns->count; i++) {
        const spd_yaml_node *p = patterns->values[i];
        spd_yaml_node *entry = spd_yaml_new_map(L->doc, p->line, p->col);
        spd_yaml_map_set(L->doc, entry, "module_pattern", mut(p));
        spd_yaml_map_set(L->doc, entry, "C", mut(c));
        spd_yaml_seq_append(list, entry);
    }
    return list;
}

static int migrate_module_info(loader *L, spd_yaml_node *root) {
    int ic = spd_yaml_map_index(root, "C"), ip = spd_yaml_map_index(root, "target_module_patterns");
    if (ic < 0 && ip < 0) return 0;
    if (ic < 0) return fail_missing(L, root, "C", "required with the old key target_module_patterns");
    if (ip < 0) return fail_missing(L, root, "target_module_patterns", "required with the old key C");
    const spd_yaml_node *c = root->values[ic], *patterns = root->values[ip];
    spd_yaml_node *info = patterns_to_module_info(L, patterns, c, "target_module_patterns");
    if (!info) return -1;
    note(L, root->keys[ic], "old keys C and target_module_patterns migrated to module_info");
    spd_yaml_map_remove_at(root, spd_yaml_map_index(root, "C"));
    spd_yaml_map_remove_at(root, spd_yaml_map_index(root, "target_module_patterns"));
    spd_yaml_map_set(L->doc, root, "module_info", info);
    int ii = spd_yaml_map_index(root, "identity_module_patterns");
    if (ii >= 0) {
        const spd_yaml_node *ids = root->values[ii];
        const spd_yaml_node *key = root->keys[ii];
        if (!is_null(ids)) {
            spd_yaml_node *id_info = patterns_to_module_info(L, ids, c, "identity_module_patterns");
            if (!id_info) return -1;
            spd_yaml_map_set(L->doc, root, "identity_module_info", id_info);
        }
        spd_yaml_map_remove_at(root, spd_yaml_map_index(root, "identity_module_patterns"));
        note(L, key, "old key identity_module_patterns migrated to identity_module_info");
    }
    return 0;
}

// Old `lr` (+ `lr_schedule` as a name, `lr_warmup_pct`) -> lr_schedule: ScheduleConfig.
static int migrate_lr(loader *L, spd_yaml_node *root) {
    int il = spd_yaml_map_index(root, "lr");
    if (il < 0) return 0;
    const spd_yaml_node *lr = root->values[il], *lr_key = root->keys[il];
    const spd_yaml_node *fn = spd_yaml_map_get(root, "lr_schedule");
    const spd_yaml_node *warmup = spd_yaml_map_get(root, "lr_warmup_pct");
    if (fn && fn->kind != SPD_YAML_SCALAR)
        return fail_key(L, root, "lr_schedule",
                        "with the old key lr, expected the old schedule's name (constant, cosine, linear), found %s",
                        FOUND(fn));
    // Old cosine decayed to 0; old constant stayed at the start value.
    bool cosine = fn && strcmp(fn->text, "cosine") == 0;
    spd_yaml_node *s = spd_yaml_new_map(L->doc, lr->line, lr->col);
    spd_yaml_map_set(L->doc, s, "start_val", mut(lr));
    spd_yaml_map_set(L->doc, s, "fn_type", fn ? mut(fn) : spd_yaml_new_scalar(L->doc, "constant", true, 0, 0));
    spd_yaml_map_set(L->doc, s, "warmup_pct", warmup ? mut(warmup) : spd_yaml_new_scalar(L->doc, "0.0", false, 0, 0));
    spd_yaml_map_set(L->doc, s, "final_val_frac", spd_yaml_new_scalar(L->doc, cosine ? "0.0" : "1.0", false, 0, 0));
    spd_yaml_map_remove_at(root, spd_yaml_map_index(root, "lr"));
    if (fn) spd_yaml_map_remove_at(root, spd_yaml_map_index(root, "lr_schedule"));
    if (warmup) spd_yaml_map_remove_at(root, spd_yaml_map_index(root, "lr_warmup_pct"));
    spd_yaml_map_set(L->doc, root, "lr_schedule", s);
    note(L, lr_key, "old keys lr%s%s migrated to lr_schedule (start_val, fn_type, warmup_pct, final_val_frac %s)",
         fn ? ", lr_schedule" : "", warmup ? ", lr_warmup_pct" : "", cosine ? "0.0" : "1.0");
    return 0;
}

static bool in_list(const char *key, const char *const *list, int n) {
    for (int i = 0; i < n; i++)
        if (strcmp(key, list[i]) == 0) return true;
    return false;
}

static int migrate(loader *L, spd_yaml_node *root) {
    int i = spd_yaml_map_index(root, "eval_metrics");
    if (i >= 0) {
        note(L, root->keys[i], "old key eval_metrics dropped (SPD no longer maps it; use eval_metric_configs)");
        spd_yaml_map_remove_at(root, i);
    }
    if (migrate_module_info(L, root) || migrate_lr(L, root)) return -1;
    for (i = 0; i < root->count;) {
        const spd_yaml_node *key = root->keys[i];
        if (in_list(key->text, DEPRECATED_KEYS, COUNT(DEPRECATED_KEYS))) {
            note(L, key, "deprecated key %s dropped (value: %s)", key->text,
                 as_written(root->values[i], (char[128]){0}, 128));
            spd_yaml_map_remove_at(root, i);
            continue;
        }
        for (int r = 0; r < COUNT(RENAMED_KEYS); r++) {
            if (strcmp(key->text, RENAMED_KEYS[r][0]) != 0) continue;
            if (spd_yaml_map_index(root, RENAMED_KEYS[r][1]) >= 0) {
                size_t old = path_key(L, RENAMED_KEYS[r][0]);
                fail(L, key, "old name of %s, which is also given: keep one", RENAMED_KEYS[r][1]);
                path_restore(L, old);
                return -1;
            }
            note(L, key, "old key %s renamed to %s", RENAMED_KEYS[r][0], RENAMED_KEYS[r][1]);
            spd_yaml_map_rename_at(L->doc, root, i, RENAMED_KEYS[r][1]);
        }
        const spd_yaml_node *v = root->values[i];
        if ((strcmp(key->text, "loss_metric_configs") == 0 || strcmp(key->text, "eval_metric_configs") == 0) &&
            v->kind == SPD_YAML_SEQ) {
            // Old metric configs with extra_init_kwargs cannot be mapped: SPD drops them.
            spd_yaml_node *kept = spd_yaml_new_seq(L->doc, v->line, v->col);
            for (int j = 0; j < v->count; j++) {
                if (spd_yaml_map_index(v->values[j], "extra_init_kwargs") >= 0) {
                    note(L, v->values[j], "%s[%d] dropped: old metric config with extra_init_kwargs", key->text, j);
                    continue;
                }
                spd_yaml_seq_append(kept, v->values[j]);
            }
            root->values[i] = kept;
        }
        i++;
    }
    const spd_yaml_node *pmc = spd_yaml_map_get(root, "pretrained_model_class");
    static const char old_prefix[] = "simple_stories_train.models.";
    if (pmc && spd_yaml_resolve(pmc) == SPD_YAML_T_STR && strncmp(pmc->text, old_prefix, strlen(old_prefix)) == 0) {
        char *moved = spd_malloc(strlen(pmc->text) + 32);
        sprintf(moved, "spd.pretrain.models.%s", pmc->text + strlen(old_prefix));
        note(L, pmc, "pretrained_model_class %s moved to %s", pmc->text, moved);
        spd_yaml_map_set(L->doc, root, "pretrained_model_class", spd_yaml_new_scalar(L->doc, moved, true, pmc->line, pmc->col));
        free(moved);
    }
    // Required fields that SPD fills in when absent.
    const spd_yaml_node *n;
    if (!spd_yaml_map_get(root, "eval_batch_size") && (n = spd_yaml_map_get(root, "batch_size")))
        spd_yaml_map_set(L->doc, root, "eval_batch_size", mut(n));
    if (!spd_yaml_map_get(root, "train_log_freq"))
        spd_yaml_map_set(L->doc, root, "train_log_freq", spd_yaml_new_scalar(L->doc, "50", false, 0, 0));
    if (!spd_yaml_map_get(root, "slow_eval_freq") && (n = spd_yaml_map_get(root, "eval_freq")))
        spd_yaml_map_set(L->doc, root, "slow_eval_freq", mut(n));
    return 0;
}

// ---------------------------------------------------------------- load

static int load_doc(spd_config *cfg, spd_yaml_doc *doc) {
    memset(cfg, 0, sizeof *cfg);
    if (!doc) return -1;
    loader L = {.source = doc->source, .doc = doc};
    int rc;
    if (!doc->root) rc = spd_set_error("%s: expected a mapping of config keys, found an empty document", doc->source);
    else if (doc->root->kind != SPD_YAML_MAP)
        rc = fail(&L, doc->root, "expected a mapping of config keys at the top level, found %s", FOUND(doc->root));
    else rc = migrate(&L, doc->root) ? -1 : read_object(&L, &CONFIG, doc->root, cfg);
    if (rc) {
        spd_config_free(cfg);
    } else {
        cfg->source = spd_strdup(doc->source);
    }
    spd_yaml_free(doc);
    return rc ? -1 : 0;
}

int spd_config_load(spd_config *cfg, const char *path) { return load_doc(cfg, spd_yaml_load_file(path)); }

int spd_config_load_string(spd_config *cfg, const char *text, const char *source) {
    return load_doc(cfg, spd_yaml_load_string(text, strlen(text), source));
}

// ---------------------------------------------------------------- free and compare

static void free_str_list(spd_str_list *l) {
    for (int i = 0; i < l->count; i++) free(l->items[i]);
    free(l->items);
}

static void free_groups(spd_pattern_groups *g) {
    for (int i = 0; i < g->count; i++) {
        free(g->names[i]);
        free_str_list(&g->patterns[i]);
    }
    free(g->names);
    free(g->patterns);
}

static void free_kv_list(spd_kv_dict_list *l) {
    for (int i = 0; i < l->count; i++) {
        for (int j = 0; j < l->items[i].count; j++) {
            free(l->items[i].items[j].key);
            free(l->items[i].items[j].str_value);
        }
        free(l->items[i].items);
    }
    free(l->items);
}

static const schema *variant_of(const schema *s, const void *obj) {
    if (!s->tag_key) return s;
    int v;
    memcpy(&v, (const char *)obj + s->tag_off, sizeof v);
    return v >= 0 && v < s->n_variants ? &s->variants[v] : NULL;
}

static void free_object(const schema *s, void *obj) {
    s = variant_of(s, obj);
    for (int i = 0; s && i < s->n_fields; i++) {
        const field *f = &s->fields[i];
        char *p = member(obj, f->off);
        switch (f->kind) {
        case K_STR:
            free(*(char **)p);
            break;
        case K_INT_LIST:
            free(((spd_int_list *)p)->items);
            break;
        case K_STR_LIST:
            free_str_list((spd_str_list *)p);
            break;
        case K_GROUPS:
            free_groups((spd_pattern_groups *)p);
            break;
        case K_KV_LIST:
            free_kv_list((spd_kv_dict_list *)p);
            break;
        case K_OBJECT:
            free_object(f->schema, p);
            break;
        case K_OBJECT_LIST: {
            char *items;
            memcpy(&items, p, sizeof items);
            int count = *(int *)(p + sizeof(void *));
            for (int k = 0; k < count; k++) free_object(f->schema, items + (size_t)k * f->schema->size);
            free(items);
            break;
        }
        default:
            break;
        }
    }
}

void spd_config_free(spd_config *cfg) {
    if (!cfg) return;
    free_object(&CONFIG, cfg);
    free(cfg->source);
    memset(cfg, 0, sizeof *cfg);
}

static bool str_eq(const char *a, const char *b) { return (!a && !b) || (a && b && strcmp(a, b) == 0); }

static bool str_list_eq(const spd_str_list *a, const spd_str_list *b) {
    if (a->count != b->count) return false;
    for (int i = 0; i < a->count; i++)
        if (!str_eq(a->items[i], b->items[i])) return false;
    return true;
}

static bool groups_eq(const spd_pattern_groups *a, const spd_pattern_groups *b) {
    if (a->count != b->count) return false;
    for (int i = 0; i < a->count; i++)
        if (!str_eq(a->names[i], b->names[i]) || !str_list_eq(&a->patterns[i], &b->patterns[i])) return false;
    return true;
}

static bool kv_list_eq(const spd_kv_dict_list *a, const spd_kv_dict_list *b) {
    if (a->count != b->count) return false;
    for (int i = 0; i < a->count; i++) {
        const spd_kv_dict *x = &a->items[i], *y = &b->items[i];
        if (x->count != y->count) return false;
        for (int j = 0; j < x->count; j++) {
            const spd_kv *p = &x->items[j], *q = &y->items[j];
            if (!str_eq(p->key, q->key) || p->is_int != q->is_int) return false;
            if (p->is_int ? p->int_value != q->int_value : !str_eq(p->str_value, q->str_value)) return false;
        }
    }
    return true;
}

static bool object_eq(const schema *s, const void *a, const void *b) {
    if (s->tag_key) {
        if (memcmp((const char *)a + s->tag_off, (const char *)b + s->tag_off, sizeof(int)) != 0) return false;
        s = variant_of(s, a);
        if (!s) return false;
    }
    for (int i = 0; i < s->n_fields; i++) {
        const field *f = &s->fields[i];
        const char *p = (const char *)a + f->off, *q = (const char *)b + f->off;
        if (f->flags & F_NULLABLE && f->kind != K_STR) {
            bool hp = *(const bool *)((const char *)a + f->has_off), hq = *(const bool *)((const char *)b + f->has_off);
            if (hp != hq) return false;
            if (!hp) continue;
        }
        bool eq = true;
        switch (f->kind) {
        case K_INT:
            eq = memcmp(p, q, sizeof(int64_t)) == 0;
            break;
        case K_FLOAT: {
            double x, y;
            memcpy(&x, p, sizeof x);
            memcpy(&y, q, sizeof y);
            eq = x == y;
            break;
        }
        case K_BOOL:
            eq = *(const bool *)p == *(const bool *)q;
            break;
        case K_STR:
            eq = str_eq(*(char *const *)p, *(char *const *)q);
            break;
        case K_ENUM:
            eq = memcmp(p, q, sizeof(int)) == 0;
            break;
        case K_INT_LIST: {
            const spd_int_list *x = (const spd_int_list *)p, *y = (const spd_int_list *)q;
            eq = x->count == y->count && (x->count == 0 || memcmp(x->items, y->items, (size_t)x->count * sizeof *x->items) == 0);
            break;
        }
        case K_STR_LIST:
            eq = str_list_eq((const spd_str_list *)p, (const spd_str_list *)q);
            break;
        case K_GROUPS:
            eq = groups_eq((const spd_pattern_groups *)p, (const spd_pattern_groups *)q);
            break;
        case K_KV_LIST:
            eq = kv_list_eq((const spd_kv_dict_list *)p, (const spd_kv_dict_list *)q);
            break;
        case K_OBJECT:
            eq = object_eq(f->schema, p, q);
            break;
        case K_OBJECT_LIST: {
            const char *x, *y;
            memcpy(&x, p, sizeof x);
            memcpy(&y, q, sizeof y);
            int nx = *(const int *)(p + sizeof(void *)), ny = *(const int *)(q + sizeof(void *));
            eq = nx == ny;
            for (int k = 0; eq && k < nx; k++)
                eq = object_eq(f->schema, x + (size_t)k * f->schema->size, y + (size_t)k * f->schema->size);
            break;
        }
        }
        if (!eq) return false;
    }
    return true;
}

bool spd_config_equal(const spd_config *a, const spd_config *b) { return object_eq(&CONFIG, a, b); }

// ---------------------------------------------------------------- write

// Shortest text that reads back as the same double, spelt as a YAML 1.1 float
// (with a dot: 1.0e-12, 3.0) so that any YAML reader sees a number.
static void format_double(char *buf, size_t size, double v) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    if (strchr(buf, '.') || !isfinite(v)) return;
    char *e = strchr(buf, 'e');
    char tail[16];
    snprintf(tail, sizeof tail, "%.8s", e ? e : "");
    if (e) *e = '\0';
    size_t k = strlen(buf);
    snprintf(buf + k, size - k, ".0%s", tail);
}

static void write_string(FILE *out, const char *s) {
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(out, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", out);
        else if (*p == '\t') fputs("\\t", out);
        else if (*p < 0x20 || *p == 0x7f) fprintf(out, "\\x%02x", *p);
        else fputc(*p, out);
    }
    fputc('"', out);
}

static void write_str_list(FILE *out, const spd_str_list *l) {
    fputc('[', out);
    for (int i = 0; i < l->count; i++) {
        if (i) fputs(", ", out);
        write_string(out, l->items[i]);
    }
    fputc(']', out);
}

static void indent_to(FILE *out, int indent) {
    for (int i = 0; i < indent; i++) fputc(' ', out);
}

static void write_object(FILE *out, const schema *s, const void *obj, int indent, bool first_inline);

// One "key: value" line (or block) at `indent`; *first_inline: the line
// continues a "- " already written.
static void write_field(FILE *out, const field *f, const void *obj, int indent, bool *first_inline) {
    const char *p = (const char *)obj + f->off;
    if (!*first_inline) indent_to(out, indent);
    *first_inline = false;
    fprintf(out, "%s:", f->name);
    bool null = f->kind == K_STR ? *(char *const *)p == NULL
                                 : (f->flags & F_NULLABLE) && !*(const bool *)((const char *)obj + f->has_off);
    if (null) {
        fputs(" null\n", out);
        return;
    }
    char num[64];
    switch (f->kind) {
    case K_INT: {
        int64_t v;
        memcpy(&v, p, sizeof v);
        fprintf(out, " %" PRId64 "\n", v);
        return;
    }
    case K_FLOAT: {
        double v;
        memcpy(&v, p, sizeof v);
        format_double(num, sizeof num, v);
        fprintf(out, " %s\n", num);
        return;
    }
    case K_BOOL:
        fputs(*(const bool *)p ? " true\n" : " false\n", out);
        return;
    case K_STR:
        fputc(' ', out);
        write_string(out, *(char *const *)p);
        fputc('\n', out);
        return;
    case K_ENUM: {
        int v;
        memcpy(&v, p, sizeof v);
        fprintf(out, " %s\n", enum_name(f, v));
        return;
    }
    case K_INT_LIST: {
        const spd_int_list *l = (const spd_int_list *)p;
        fputs(" [", out);
        for (int i = 0; i < l->count; i++) fprintf(out, "%s%" PRId64, i ? ", " : "", l->items[i]);
        fputs("]\n", out);
        return;
    }
    case K_STR_LIST:
        fputc(' ', out);
        write_str_list(out, (const spd_str_list *)p);
        fputc('\n', out);
        return;
    case K_GROUPS: {
        const spd_pattern_groups *g = (const spd_pattern_groups *)p;
        if (g->count == 0) {
            fputs(" {}\n", out);
            return;
        }
        fputc('\n', out);
        for (int i = 0; i < g->count; i++) {
            indent_to(out, indent + 2);
            write_string(out, g->names[i]);
            fputs(": ", out);
            write_str_list(out, &g->patterns[i]);
            fputc('\n', out);
        }
        return;
    }
    case K_KV_LIST: {
        const spd_kv_dict_list *l = (const spd_kv_dict_list *)p;
        if (l->count == 0) {
            fputs(" []\n", out);
            return;
        }
        fputc('\n', out);
        for (int i = 0; i < l->count; i++) {
            indent_to(out, indent + 2);
            fputs("- {", out);
            for (int j = 0; j < l->items[i].count; j++) {
                const spd_kv *kv = &l->items[i].items[j];
                if (j) fputs(", ", out);
                write_string(out, kv->key);
                fputs(": ", out);
                if (kv->is_int) fprintf(out, "%" PRId64, kv->int_value);
                else write_string(out, kv->str_value);
            }
            fputs("}\n", out);
        }
        return;
    }
    case K_OBJECT:
        fputc('\n', out);
        write_object(out, f->schema, p, indent + 2, false);
        return;
    case K_OBJECT_LIST: {
        const char *items;
        memcpy(&items, p, sizeof items);
        int count = *(const int *)(p + sizeof(void *));
        if (count == 0) {
            fputs(" []\n", out);
            return;
        }
        fputc('\n', out);
        for (int k = 0; k < count; k++) {
            indent_to(out, indent + 2);
            fputs("- ", out);
            write_object(out, f->schema, items + (size_t)k * f->schema->size, indent + 4, true);
        }
        return;
    }
    }
}

static void write_object(FILE *out, const schema *s, const void *obj, int indent, bool first_inline) {
    if (s->tag_key) {
        int v;
        memcpy(&v, (const char *)obj + s->tag_off, sizeof v);
        if (!first_inline) indent_to(out, indent);
        fprintf(out, "%s: %s\n", s->tag_key, s->tags[v]);
        first_inline = false;
        s = &s->variants[v];
    } else if (s->n_fields == 0 && first_inline) {
        fputs("{}\n", out);
        return;
    }
    for (int i = 0; i < s->n_fields; i++) write_field(out, &s->fields[i], obj, indent, &first_inline);
}

void spd_config_fprint_yaml(const spd_config *cfg, FILE *out) {
    fputs("# SPD config, resolved by spd.c: every field, defaults filled in", out);
    bool plain_source = cfg->source != NULL;
    for (const char *p = cfg->source; p && *p; p++)
        if ((unsigned char)*p < 0x20) plain_source = false;
    if (plain_source) fprintf(out, " (read from %s)", cfg->source);
    fputc('\n', out);
    write_object(out, &CONFIG, cfg, 0, false);
}

int spd_config_write_yaml(const spd_config *cfg, const char *path) {
    size_t n = strlen(path) + 32;
    char *tmp = spd_malloc(n);
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        spd_set_error("%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    spd_config_fprint_yaml(cfg, f);
    int bad = ferror(f);
    if (fclose(f) != 0) bad = 1;
    if (bad || rename(tmp, path) != 0) {
        spd_set_error("%s: cannot write: %s", path, strerror(errno));
        remove(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}
