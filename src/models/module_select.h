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

// "h.0.mlp.up_proj" -> "h-0-mlp-up_proj" (SPD's key for _components and _ci_fns).
void spd_dashed_name(char *out, size_t size, const char *path);

#endif
