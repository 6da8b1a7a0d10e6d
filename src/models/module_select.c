#include "models/module_select.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

int spd_select_modules(const char *const *candidates, int n_candidates, const spd_module_pattern *patterns,
                       int n_patterns, spd_module_choice **out, int *n_out) {
    int *owner = spd_malloc((size_t)(n_candidates ? n_candidates : 1) * sizeof *owner);
    for (int i = 0; i < n_candidates; i++) owner[i] = -1;
    spd_module_choice *chosen = spd_calloc((size_t)(n_candidates ? n_candidates : 1), sizeof *chosen);
    int n = 0;
    for (int p = 0; p < n_patterns; p++) {
        if (patterns[p].C < 1) {
            free(owner);
            spd_module_choices_free(chosen, n);
            return spd_set_error("module_info[%d] '%s': C must be at least 1, found %d", p, patterns[p].pattern,
                                 patterns[p].C);
        }
        int matched = 0;
        for (int i = 0; i < n_candidates; i++) {
            if (fnmatch(patterns[p].pattern, candidates[i], 0) != 0) continue;
            if (owner[i] >= 0) {
                int first = owner[i];
                free(owner);
                spd_module_choices_free(chosen, n);
                return spd_set_error("module '%s' is matched by two patterns: '%s' and '%s'", candidates[i],
                                     patterns[first].pattern, patterns[p].pattern);
            }
            owner[i] = p;
            chosen[n].path = spd_strdup(candidates[i]);
            chosen[n].C = patterns[p].C;
            n++;
            matched++;
        }
        if (!matched) {
            free(owner);
            spd_module_choices_free(chosen, n);
            return spd_set_error("module pattern '%s' matches no decomposable module of the target model",
                                 patterns[p].pattern);
        }
    }
    free(owner);
    *out = chosen;
    *n_out = n;
    return 0;
}

void spd_module_choices_free(spd_module_choice *choices, int n) {
    if (!choices) return;
    for (int i = 0; i < n; i++) free(choices[i].path);
    free(choices);
}

void spd_dashed_name(char *out, size_t size, const char *path) {
    size_t i = 0;
    for (; path[i] && i + 1 < size; i++) out[i] = path[i] == '.' ? '-' : path[i];
    out[i] = '\0';
}
