// core/env.h: switches and integers from the environment, and their errors.
#include <stdlib.h>
#include <string.h>

#include "core/env.h"
#include "core/error.h"
#include "testing.h"

#define VAR "SPD_TEST_ENV_VALUE"

// Whether the last error names the variable and the value found.
static bool names(const char *value) {
    const char *e = spd_last_error();
    return strstr(e, VAR) && strstr(e, value);
}

int main(void) {
    unsetenv(VAR);
    test_report(spd_env_flag(VAR, true) == 1 && spd_env_flag(VAR, false) == 0, "flag unset: the default", NULL);
    setenv(VAR, "", 1);
    test_report(spd_env_flag(VAR, true) == 1, "flag empty: the default", NULL);
    setenv(VAR, "0", 1);
    test_report(spd_env_flag(VAR, true) == 0, "flag 0", NULL);
    setenv(VAR, "1", 1);
    test_report(spd_env_flag(VAR, false) == 1, "flag 1", NULL);
    setenv(VAR, "yes", 1);
    test_report(spd_env_flag(VAR, true) == -1 && names("yes"), "flag yes: an error naming variable and value",
                "%s", spd_last_error());

    long x = -7;
    unsetenv(VAR);
    test_report(spd_env_long(VAR, 42, 0, 100, &x) == 0 && x == 42, "integer unset: the default", NULL);
    setenv(VAR, "7296", 1);
    test_report(spd_env_long(VAR, 0, 0, 1 << 30, &x) == 0 && x == 7296, "integer 7296", NULL);
    setenv(VAR, "-3", 1);
    test_report(spd_env_long(VAR, 0, -5, 5, &x) == 0 && x == -3, "integer -3 in [-5, 5]", NULL);
    const char *bad[] = {"abc", "12x", "1e3", "101", "-1", "99999999999999999999999"};
    for (int i = 0; i < 6; i++) {
        char name[96];
        snprintf(name, sizeof name, "integer \"%s\" (range 0..100): an error naming variable and value", bad[i]);
        setenv(VAR, bad[i], 1);
        x = -7;
        test_report(spd_env_long(VAR, 5, 0, 100, &x) == -1 && x == -7 && names(bad[i]), name, "%s",
                    spd_last_error());
    }
    unsetenv(VAR);
    return testing_failures != 0;
}
