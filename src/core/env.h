// Switches and numbers read from the environment (SPD_CUDA_B2B=0, SPD_CUDA_B2B_MIN_M=...):
// validated here, so that a malformed value is reported with its name instead of being
// read as 0 by atoi or taken as "on".
#ifndef SPD_ENV_H
#define SPD_ENV_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

// `name` as a switch: unset or empty gives dflt, "0" false, "1" true. Returns 0 or 1, or
// -1 for any other value (spd_set_error names the variable and the value found).
int spd_env_flag(const char *name, bool dflt);
// `name` as a decimal integer in [lo, hi]: unset or empty gives dflt. Returns 0 with
// *out set, or -1 (spd_set_error) for anything else.
int spd_env_long(const char *name, long dflt, long lo, long hi, long *out);

// The same, exiting with the message (status 2) on a malformed value.
bool spd_env_flag_or_die(const char *name, bool dflt);
long spd_env_long_or_die(const char *name, long dflt, long lo, long hi);

#ifdef __cplusplus
}
#endif

#endif
