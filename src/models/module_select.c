#include "models/module_select.h"

#include <fnmatch.h>
#include <stdio.h>
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

int spd_select_identity_owners(const char *const *candidates, int n_candidates, const spd_module_pattern *patterns,
                               int n_patterns, int **owners, int *n_owners) {
    int *matched_by = spd_malloc((size_t)(n_candidates ? n_candidates : 1) * sizeof *matched_by);
    for (int i = 0; i < n_candidates; i++) matched_by[i] = -1;
    int *out = spd_malloc((size_t)(n_candidates ? n_candidates : 1) * sizeof *out);
    int n = 0, rc = 0;
    for (int p = 0; p < n_patterns && !rc; p++) {
        for (int q = 0; q < p && !rc; q++)
            if (strcmp(patterns[q].pattern, patterns[p].pattern) == 0)
                rc = spd_set_error("identity_module_info[%d]: duplicate pattern '%s'", p, patterns[p].pattern);
        int matched = 0;
        for (int i = 0; i < n_candidates && !rc; i++) {
            if (fnmatch(patterns[p].pattern, candidates[i], 0) != 0) continue;
            // SPD would insert a second identity and then find '<m>.pre_identity' matched by two patterns.
            if (matched_by[i] >= 0)
                rc = spd_set_error("identity_module_info: module '%s' is matched by two patterns: '%s' and '%s'",
                                   candidates[i], patterns[matched_by[i]].pattern, patterns[p].pattern);
            matched_by[i] = p;
            out[n++] = i;
            matched++;
        }
        if (!rc && !matched)
            rc = spd_set_error("identity_module_info[%d]: pattern '%s' matches no linear module of the target model",
                               p, patterns[p].pattern);
    }
    free(matched_by);
    if (rc) {
        free(out);
        return rc;
    }
    *owners = out;
    *n_owners = n;
    return 0;
}

void spd_all_module_patterns(const spd_module_pattern *module_info, int n_module_info,
                             const spd_module_pattern *identity_info, int n_identity_info, spd_module_pattern **out,
                             int *n_out) {
    int n = n_module_info + n_identity_info;
    spd_module_pattern *all = spd_calloc((size_t)(n ? n : 1), sizeof *all);
    for (int i = 0; i < n_module_info; i++) all[i] = (spd_module_pattern){spd_strdup(module_info[i].pattern), module_info[i].C};
    for (int i = 0; i < n_identity_info; i++) {
        size_t len = strlen(identity_info[i].pattern) + sizeof SPD_PRE_IDENTITY_SUFFIX;
        char *p = spd_malloc(len);
        snprintf(p, len, "%s%s", identity_info[i].pattern, SPD_PRE_IDENTITY_SUFFIX);
        all[n_module_info + i] = (spd_module_pattern){p, identity_info[i].C};
    }
    *out = all;
    *n_out = n;
}

void spd_module_patterns_free(spd_module_pattern *patterns, int n) {
    if (!patterns) return;
    for (int i = 0; i < n; i++) free(patterns[i].pattern);
    free(patterns);
}

void spd_dashed_name(char *out, size_t size, const char *path) {
    size_t i = 0;
    for (; path[i] && i + 1 < size; i++) out[i] = path[i] == '.' ? '-' : path[i];
    out[i] = '\0';
}
