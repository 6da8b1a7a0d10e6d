// Command-line option values, validated: no atoi, no silent clamping.
#ifndef SPD_CLI_ARGS_H
#define SPD_CLI_ARGS_H

// Parses `value` of option `option` as an integer in [min, max]; dies with a
// one-line message (exit 2) naming the option otherwise.
long spd_arg_int(const char *option, const char *value, long min, long max);
double spd_arg_double(const char *option, const char *value, double min, double max);

#endif
