#include "cli/args.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "core/error.h"

long spd_arg_int(const char *option, const char *value, long min, long max) {
    char *end = NULL;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno || end == value || *end != '\0')
        spd_die_input("%s: expected an integer, found \"%s\"", option, value);
    if (v < min || v > max) spd_die_input("%s: expected an integer in [%ld, %ld], found %ld", option, min, max, v);
    return v;
}

double spd_arg_double(const char *option, const char *value, double min, double max) {
    char *end = NULL;
    errno = 0;
    double v = strtod(value, &end);
    if (errno || end == value || *end != '\0' || !isfinite(v))
        spd_die_input("%s: expected a number, found \"%s\"", option, value);
    if (v < min || v > max) spd_die_input("%s: expected a number in [%g, %g], found %g", option, min, max, v);
    return v;
}
