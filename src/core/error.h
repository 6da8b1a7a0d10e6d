// Error reporting. Two kinds of failure:
// - bad input (a file, a config key, a shape): the library records one message
//   naming what was expected and what was found (spd_set_error) and returns a
//   failure; the CLI prints it as one line and exits with status 2.
// - broken internal invariants: SPD_ASSERT, always on, prints where and exits 1.
#ifndef SPD_ERROR_H
#define SPD_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
#define SPD_NORETURN [[noreturn]]
extern "C" {
#else
#define SPD_NORETURN _Noreturn
#endif

#define SPD_EXIT_INPUT 2
#define SPD_EXIT_INTERNAL 1

// Records the message for the caller to report; returns -1 so that
// `return spd_set_error(...)` reads as a failure.
int spd_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *spd_last_error(void);

// Prints "spd: <message>" on one line to stderr and exits with status 2.
SPD_NORETURN void spd_die_input(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Prints spd_last_error() as one line and exits with status 2.
SPD_NORETURN void spd_die_last_error(void);
// Internal failure: prints and exits with status 1.
SPD_NORETURN void spd_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define SPD_ASSERT(cond)                                                        \
    do {                                                                        \
        if (!(cond)) spd_die("assertion failed: %s (%s:%d)", #cond, __FILE__, __LINE__); \
    } while (0)

// Allocation that never returns NULL: out of memory is reported with the size.
void *spd_malloc(size_t bytes);
void *spd_calloc(size_t count, size_t size);
char *spd_strdup(const char *s);

#ifdef __cplusplus
}
#endif

#endif
