#include "core/env.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

int spd_env_flag(const char *name, bool dflt) {
    const char *v = getenv(name);
    if (!v || !*v) return dflt;
    if (strcmp(v, "0") == 0) return 0;
    if (strcmp(v, "1") == 0) return 1;
    return spd_set_error("%s: expected 0 or 1, found \"%s\"", name, v);
}

int spd_env_long(const char *name, long dflt, long lo, long hi, long *out) {
    const char *v = getenv(name);
    if (!v || !*v) {
        *out = dflt;
        return 0;
    }
    char *end;
    errno = 0;
    const long x = strtol(v, &end, 10);
    if (errno || *end || x < lo || x > hi)
        return spd_set_error("%s: expected an integer from %ld to %ld, found \"%s\"", name, lo, hi, v);
    *out = x;
    return 0;
}

bool spd_env_flag_or_die(const char *name, bool dflt) {
    const int f = spd_env_flag(name, dflt);
    if (f < 0) spd_die_last_error();
    return f;
}

long spd_env_long_or_die(const char *name, long dflt, long lo, long hi) {
    long x = dflt;
    if (spd_env_long(name, dflt, lo, hi, &x)) spd_die_last_error();
    return x;
}
