#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char last_error[2048];

int spd_set_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return -1;
}

const char *spd_last_error(void) { return last_error[0] ? last_error : "unknown error"; }

_Noreturn void spd_die_input(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("spd: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(SPD_EXIT_INPUT);
}

_Noreturn void spd_die_last_error(void) { spd_die_input("%s", spd_last_error()); }

_Noreturn void spd_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("spd: internal error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(SPD_EXIT_INTERNAL);
}

void *spd_malloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) spd_die("out of host memory allocating %zu bytes", bytes);
    return p;
}

void *spd_calloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) spd_die("out of host memory allocating %zu x %zu bytes", count, size);
    return p;
}

char *spd_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = spd_malloc(n);
    memcpy(p, s, n);
    return p;
}
