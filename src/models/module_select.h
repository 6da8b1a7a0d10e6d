// Which target modules are decomposed, chosen as SPD's module_info does
// (SPD_SPEC.md 1.2): each {pattern, C} is matched with fnmatch against the
// target's dotted module paths ('*' matches any run, dots included).
#ifndef SPD_MODULE_SELECT_H
#define SPD_MODULE_SELECT_H

#include <stddef.h>

typedef struct {
    char *pattern;
    int C;
} spd_module_pattern;

typedef struct {
    char *path;  // "h.0.mlp.up_proj"
    int C;
} spd_module_choice;

// candidates: the decomposable module paths in the target's registration order.
// Fills *out (malloc'd) in SPD's order: patterns in the given order, and inside
// one pattern the target's order. A pattern matching nothing, a module matched
// by two patterns, or C < 1 is an error naming the pattern (-1, spd_last_error()).
int spd_select_modules(const char *const *candidates, int n_candidates, const spd_module_pattern *patterns,
                       int n_patterns, spd_module_choice **out, int *n_out);
void spd_module_choices_free(spd_module_choice *choices, int n);

// SPD's insert_identity_operations_ matching (SPD_SPEC.md 1.3): each identity
// pattern is matched (fnmatch) against the candidates, before any identity
// exists. Fills *owners (malloc'd) with the matched candidate indices, patterns
// in order, candidates in order inside one pattern. A duplicate pattern, a
// pattern matching nothing, or a module matched twice is an error naming it.
int spd_select_identity_owners(const char *const *candidates, int n_candidates, const spd_module_pattern *patterns,
                               int n_patterns, int **owners, int *n_owners);

// SPD's Config.all_module_info: module_info, then one entry per
// identity_module_info entry with ".pre_identity" appended to its pattern (same
// C). *out is malloc'd with its own pattern strings (spd_module_patterns_free).
void spd_all_module_patterns(const spd_module_pattern *module_info, int n_module_info,
                             const spd_module_pattern *identity_info, int n_identity_info, spd_module_pattern **out,
                             int *n_out);
void spd_module_patterns_free(spd_module_pattern *patterns, int n);

// The inserted identity's path: "<owner>.pre_identity".
#define SPD_PRE_IDENTITY_SUFFIX ".pre_identity"

// "h.0.mlp.up_proj" -> "h-0-mlp-up_proj" (SPD's key for _components and _ci_fns).
void spd_dashed_name(char *out, size_t size, const char *path);

#endif
