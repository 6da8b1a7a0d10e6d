// Minimal test harness. Each check prints "ok - name" or "not ok - name: why";
// tests/run.sh counts those lines across all test programs and shell tests.
// Static inline helpers in a header: tests are single-file programs.
#ifndef SPD_TESTING_H
#define SPD_TESTING_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

static int testing_failures = 0;

static inline void test_report(int pass, const char *name, const char *fmt, ...) {
    if (pass) {
        printf("ok - %s\n", name);
    } else {
        testing_failures++;
        printf("not ok - %s", name);
        if (fmt) {
            va_list ap;
            va_start(ap, fmt);
            fputs(": ", stdout);
            vprintf(fmt, ap);
            va_end(ap);
        }
        putchar('\n');
    }
    fflush(stdout);
}

// ||a - b|| / ||b|| and max|a - b| / max|b|, accumulated in float64.
static inline double test_rel_norm_err(const double *a, const double *b, long n) {
    double num = 0, den = 0;
    for (long i = 0; i < n; i++) {
        double d = a[i] - b[i];
        num += d * d;
        den += b[i] * b[i];
    }
    if (den == 0) return num == 0 ? 0 : INFINITY;
    double r = sqrt(num / den);
    return r == r ? r : INFINITY;  // NaN fails
}

// Exit status of a test program: non-zero when any check failed.
static inline int test_exit(void) { return testing_failures ? 1 : 0; }

#endif
