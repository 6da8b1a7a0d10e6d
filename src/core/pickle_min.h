// A restricted pickle reader and a tiny pickle writer: the subset that
// torch.save writes for a state dict (protocol 2; a few protocol 4 opcodes are
// read too). https://github.com/python/cpython/blob/main/Lib/pickletools.py
// documents every opcode.
//
// The reader never imports or calls anything: GLOBAL yields a name, which the
// caller's allow() callback must accept (else the file is refused, as
// torch.load(weights_only=True) refuses it), REDUCE and BINPERSID go to the
// caller's reduce() and persistent_load() callbacks, and BUILD is accepted on a
// dict only (torch's OrderedDict with its _metadata attribute), its state
// dropped. Every value lives in the reader's arena, freed by pk_free. Malformed
// input (an unknown opcode, a truncated argument, a stack underflow) gives one
// message naming the file and the byte offset.
#ifndef SPD_PICKLE_MIN_H
#define SPD_PICKLE_MIN_H

#include <stddef.h>
#include <stdint.h>

typedef enum { PK_NONE, PK_BOOL, PK_INT, PK_FLOAT, PK_STR, PK_BYTES, PK_TUPLE, PK_LIST, PK_DICT, PK_GLOBAL, PK_EXT, PK_MARK } pk_kind;

typedef struct pk_value pk_value;
struct pk_value {
    pk_kind kind;
    int64_t i;        // BOOL, INT
    double f;         // FLOAT
    char *s;          // STR, BYTES (NUL-terminated as well); GLOBAL: "module.name"
    size_t len;       // of s
    pk_value **items;  // TUPLE, LIST; DICT: key, value, key, value, ...
    int n, cap;        // items used (a DICT holds n/2 pairs), allocated
    int ext_kind;      // EXT: the caller's type tag
    void *ext;         // EXT: the caller's object (in the arena)
};

typedef struct pk_reader pk_reader;

typedef struct {
    void *ctx;
    int (*allow)(void *ctx, const char *module, const char *name);                 // 1: allowed
    pk_value *(*reduce)(void *ctx, pk_reader *r, const pk_value *callable, const pk_value *args);  // NULL: error set
    pk_value *(*persistent_load)(void *ctx, pk_reader *r, const pk_value *pid);                  // NULL: error set
} pk_callbacks;

// Unpickles data (what = the file's name for messages). The top-level value, or
// NULL with spd_last_error() set. The value lives until pk_free(*reader).
pk_value *pk_load(const unsigned char *data, size_t size, const char *what, const pk_callbacks *cb, pk_reader **reader);
void pk_free(pk_reader *r);
// Allocation in the reader's arena (zeroed), for callbacks' objects.
void *pk_alloc(pk_reader *r, size_t bytes);
pk_value *pk_new(pk_reader *r, pk_kind kind);
const char *pk_kind_name(pk_kind k);

// ---------------------------------------------------------------- writer (protocol 2)
typedef struct {
    unsigned char *b;
    size_t len, cap;
} pk_buf;

void pk_put_proto(pk_buf *b);
void pk_put_stop(pk_buf *b);
void pk_put_op(pk_buf *b, unsigned char op);  // MARK '(', TUPLE 't', EMPTY_TUPLE ')', REDUCE 'R', SETITEMS 'u', BINPERSID 'Q', NEWFALSE 0x89
void pk_put_int(pk_buf *b, int64_t v);
void pk_put_str(pk_buf *b, const char *s);
void pk_put_global(pk_buf *b, const char *module, const char *name);
// A tuple of ints (EMPTY_TUPLE, TUPLE1..3 or MARK ... TUPLE).
void pk_put_int_tuple(pk_buf *b, const int64_t *v, int n);

#endif
