#include "core/pickle_min.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

struct pk_reader {
    const unsigned char *p;
    size_t size, pos, op_pos;
    const char *what;
    const pk_callbacks *cb;
    pk_value **stack;
    size_t depth, stack_cap;
    pk_value **memo;
    size_t memo_cap, n_memo;  // n_memo: one past the largest index set (MEMOIZE's next)
    pk_value **values;  // every value made, for pk_free
    size_t n_values, values_cap;
    void **blocks;  // pk_alloc's
    size_t n_blocks, blocks_cap;
};

static void grow(void **arr, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *g = realloc(*arr, c * elem);
    if (!g) spd_die("out of memory (%zu bytes)", c * elem);
    *arr = g;
    *cap = c;
}

void *pk_alloc(pk_reader *r, size_t bytes) {
    grow((void **)&r->blocks, &r->blocks_cap, r->n_blocks + 1, sizeof *r->blocks);
    return r->blocks[r->n_blocks++] = spd_calloc(1, bytes ? bytes : 1);
}

pk_value *pk_new(pk_reader *r, pk_kind kind) {
    pk_value *v = spd_calloc(1, sizeof *v);
    v->kind = kind;
    grow((void **)&r->values, &r->values_cap, r->n_values + 1, sizeof *r->values);
    r->values[r->n_values++] = v;
    return v;
}

void pk_free(pk_reader *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n_values; i++) {
        free(r->values[i]->items);
        free(r->values[i]->s);
        free(r->values[i]);
    }
    for (size_t i = 0; i < r->n_blocks; i++) free(r->blocks[i]);
    free(r->values);
    free(r->blocks);
    free(r->stack);
    free(r->memo);
    free(r);
}

const char *pk_kind_name(pk_kind k) {
    static const char *names[] = {"None", "bool", "int", "float", "str", "bytes", "tuple", "list", "dict", "global", "object", "mark"};
    return (unsigned)k < sizeof names / sizeof *names ? names[k] : "?";
}

static int fail(pk_reader *r, const char *fmt, const char *detail) {
    char msg[512];
    snprintf(msg, sizeof msg, fmt, detail);
    return spd_set_error("%s: pickle byte %zu (opcode 0x%02x): %s", r->what, r->op_pos, r->p[r->op_pos], msg);
}

static void add_item(pk_value *c, pk_value *v) {
    size_t cap = (size_t)c->cap;
    grow((void **)&c->items, &cap, (size_t)c->n + 1, sizeof *c->items);
    c->cap = (int)cap;
    c->items[c->n++] = v;
}

static void push(pk_reader *r, pk_value *v) {
    grow((void **)&r->stack, &r->stack_cap, r->depth + 1, sizeof *r->stack);
    r->stack[r->depth++] = v;
}

static pk_value *pop(pk_reader *r) {
    if (r->depth == 0 || r->stack[r->depth - 1]->kind == PK_MARK) {
        fail(r, "%s", "stack underflow (malformed pickle)");
        return NULL;
    }
    return r->stack[--r->depth];
}

// Index of the topmost MARK; -1 (error set) if none.
static long find_mark(pk_reader *r) {
    for (size_t i = r->depth; i-- > 0;)
        if (r->stack[i]->kind == PK_MARK) return (long)i;
    fail(r, "%s", "no MARK on the stack (malformed pickle)");
    return -1;
}

static const unsigned char *take(pk_reader *r, size_t n) {
    if (r->size - r->pos < n) {
        fail(r, "%s", "argument runs past the end of the data (truncated)");
        return NULL;
    }
    const unsigned char *q = r->p + r->pos;
    r->pos += n;
    return q;
}

static uint64_t le(const unsigned char *q, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | q[i];
    return v;
}

static int push_int(pk_reader *r, int64_t v) {
    pk_value *x = pk_new(r, PK_INT);
    x->i = v;
    push(r, x);
    return 0;
}

static int push_string(pk_reader *r, pk_kind kind, size_t len_bytes) {
    const unsigned char *q = take(r, len_bytes);
    if (!q) return -1;
    uint64_t n = le(q, (int)len_bytes);
    if (n > r->size - r->pos) return fail(r, "%s", "string runs past the end of the data (truncated)");
    pk_value *v = pk_new(r, kind);
    v->s = spd_malloc((size_t)n + 1);
    memcpy(v->s, take(r, (size_t)n), (size_t)n);
    v->s[n] = '\0';
    v->len = (size_t)n;
    push(r, v);
    return 0;
}

// A line of GLOBAL's argument: printable ASCII up to '\n'.
static int read_line(pk_reader *r, char *out, size_t cap) {
    size_t k = 0;
    for (;;) {
        const unsigned char *q = take(r, 1);
        if (!q) return -1;
        if (*q == '\n') break;
        if (*q < 0x20 || *q > 0x7e || k + 1 >= cap) return fail(r, "%s", "GLOBAL name malformed or too long");
        out[k++] = (char)*q;
    }
    out[k] = '\0';
    return 0;
}

static int push_global(pk_reader *r, const char *module, const char *name) {
    if (!r->cb->allow(r->cb->ctx, module, name)) {
        char full[300];
        snprintf(full, sizeof full, "%s.%s", module, name);
        return fail(r, "global '%s' is not allowed (only tensors of a state dict are read, as torch.load(weights_only=True))",
                    full);
    }
    pk_value *v = pk_new(r, PK_GLOBAL);
    size_t n = strlen(module) + strlen(name) + 2;
    v->s = spd_malloc(n);
    snprintf(v->s, n, "%s.%s", module, name);
    v->len = n - 1;
    push(r, v);
    return 0;
}

// The items above the topmost MARK into a new container of `kind` (MARK removed).
static pk_value *collect(pk_reader *r, pk_kind kind) {
    long m = find_mark(r);
    if (m < 0) return NULL;
    pk_value *c = pk_new(r, kind);
    for (size_t i = (size_t)m + 1; i < r->depth; i++) add_item(c, r->stack[i]);
    r->depth = (size_t)m;
    return c;
}

static pk_value *small_tuple(pk_reader *r, int n) {
    if (r->depth < (size_t)n) {
        fail(r, "%s", "stack underflow (malformed pickle)");
        return NULL;
    }
    pk_value *c = pk_new(r, PK_TUPLE);
    for (size_t i = r->depth - (size_t)n; i < r->depth; i++) {
        if (r->stack[i]->kind == PK_MARK) {
            fail(r, "%s", "MARK inside a tuple (malformed pickle)");
            return NULL;
        }
        add_item(c, r->stack[i]);
    }
    r->depth -= (size_t)n;
    return c;
}

static int memo_put(pk_reader *r, uint64_t idx) {
    if (r->depth == 0 || r->stack[r->depth - 1]->kind == PK_MARK) return fail(r, "%s", "nothing to memoize");
    if (idx > r->size) return fail(r, "%s", "memo index out of range");
    size_t cap = r->memo_cap;
    grow((void **)&r->memo, &r->memo_cap, (size_t)idx + 1, sizeof *r->memo);
    for (size_t i = cap; i < r->memo_cap; i++) r->memo[i] = NULL;
    r->memo[idx] = r->stack[r->depth - 1];
    if (idx >= r->n_memo) r->n_memo = (size_t)idx + 1;
    return 0;
}

static int memo_get(pk_reader *r, uint64_t idx) {
    if (idx >= r->memo_cap || !r->memo[idx]) return fail(r, "%s", "memo index not set (malformed pickle)");
    push(r, r->memo[idx]);
    return 0;
}

// stack[first..depth) into the list (or, as key/value pairs, the dict) at stack[c]; the stack is cut to keep.
static int add_items(pk_reader *r, long c, size_t first, size_t keep, pk_kind kind) {
    if (c < 0 || r->stack[c]->kind != kind)
        return fail(r, "%s", kind == PK_LIST ? "APPEND target is not a list" : "SETITEM target is not a dict");
    if (kind == PK_DICT && (r->depth - first) % 2) return fail(r, "%s", "odd number of items for SETITEMS");
    for (size_t i = first; i < r->depth; i++) {
        if (r->stack[i]->kind == PK_MARK) return fail(r, "%s", "MARK among the items (malformed pickle)");
        add_item(r->stack[c], r->stack[i]);
    }
    r->depth = keep;
    return 0;
}

static int step(pk_reader *r, int *stop) {
    r->op_pos = r->pos;
    const unsigned char *q = take(r, 1);
    if (!q) return spd_set_error("%s: pickle ends without STOP (truncated)", r->what);
    unsigned char op = *q;
    pk_value *a, *b, *v;
    long m;
    char mod[256], name[256];
    switch (op) {
    case 0x80:  // PROTO
        if (!(q = take(r, 1))) return -1;
        if (*q < 2 || *q > 5) return fail(r, "%s", "pickle protocol outside 2..5");
        return 0;
    case 0x95:  // FRAME
        return take(r, 8) ? 0 : -1;
    case '.':
        *stop = 1;
        return 0;
    case '(':
        push(r, pk_new(r, PK_MARK));
        return 0;
    case '0':  // POP
        if (r->depth == 0) return fail(r, "%s", "stack underflow (malformed pickle)");
        r->depth--;
        return 0;
    case 'N':
        push(r, pk_new(r, PK_NONE));
        return 0;
    case 0x88:
    case 0x89:
        v = pk_new(r, PK_BOOL);
        v->i = op == 0x88;
        push(r, v);
        return 0;
    case 'J':
        if (!(q = take(r, 4))) return -1;
        return push_int(r, (int32_t)(uint32_t)le(q, 4));
    case 'K':
        if (!(q = take(r, 1))) return -1;
        return push_int(r, *q);
    case 'M':
        if (!(q = take(r, 2))) return -1;
        return push_int(r, (int64_t)le(q, 2));
    case 0x8a: {  // LONG1: little-endian two's complement
        if (!(q = take(r, 1))) return -1;
        int n = *q;
        if (n > 8) return fail(r, "%s", "integer wider than 64 bits");
        if (!(q = take(r, (size_t)n))) return -1;
        uint64_t u = le(q, n);
        if (n > 0 && n < 8 && (q[n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n);
        return push_int(r, (int64_t)u);
    }
    case 'G': {  // BINFLOAT: big-endian
        if (!(q = take(r, 8))) return -1;
        uint64_t u = 0;
        for (int i = 0; i < 8; i++) u = u << 8 | q[i];
        v = pk_new(r, PK_FLOAT);
        memcpy(&v->f, &u, 8);
        push(r, v);
        return 0;
    }
    case 'X':
        return push_string(r, PK_STR, 4);
    case 0x8c:
        return push_string(r, PK_STR, 1);
    case 0x8d:
        return push_string(r, PK_STR, 8);
    case 'B':
        return push_string(r, PK_BYTES, 4);
    case 'C':
        return push_string(r, PK_BYTES, 1);
    case ')':
        push(r, pk_new(r, PK_TUPLE));
        return 0;
    case 't':
        if (!(v = collect(r, PK_TUPLE))) return -1;
        push(r, v);
        return 0;
    case 0x85:
    case 0x86:
    case 0x87:
        if (!(v = small_tuple(r, op - 0x84))) return -1;
        push(r, v);
        return 0;
    case ']':
        push(r, pk_new(r, PK_LIST));
        return 0;
    case 'l':
        if (!(v = collect(r, PK_LIST))) return -1;
        push(r, v);
        return 0;
    case 'a':
        if (r->depth < 2) return fail(r, "%s", "stack underflow (malformed pickle)");
        return add_items(r, (long)r->depth - 2, r->depth - 1, r->depth - 1, PK_LIST);
    case 'e':
        if ((m = find_mark(r)) < 0) return -1;
        return add_items(r, m - 1, (size_t)m + 1, (size_t)m, PK_LIST);
    case '}':
        push(r, pk_new(r, PK_DICT));
        return 0;
    case 'd':
        if (!(v = collect(r, PK_DICT))) return -1;
        if (v->n % 2) return fail(r, "%s", "odd number of items for DICT");
        push(r, v);
        return 0;
    case 's':
        if (r->depth < 3) return fail(r, "%s", "stack underflow (malformed pickle)");
        return add_items(r, (long)r->depth - 3, r->depth - 2, r->depth - 2, PK_DICT);
    case 'u':
        if ((m = find_mark(r)) < 0) return -1;
        return add_items(r, m - 1, (size_t)m + 1, (size_t)m, PK_DICT);
    case 'c':
        if (read_line(r, mod, sizeof mod) || read_line(r, name, sizeof name)) return -1;
        return push_global(r, mod, name);
    case 0x93:  // STACK_GLOBAL
        if (!(b = pop(r)) || !(a = pop(r))) return -1;
        if (a->kind != PK_STR || b->kind != PK_STR || a->len >= sizeof mod || b->len >= sizeof name)
            return fail(r, "%s", "STACK_GLOBAL expects two strings");
        return push_global(r, a->s, b->s);
    case 'R':
        if (!(b = pop(r)) || !(a = pop(r))) return -1;
        if (a->kind != PK_GLOBAL) return fail(r, "REDUCE on a %s, not a global", pk_kind_name(a->kind));
        if (b->kind != PK_TUPLE) return fail(r, "REDUCE arguments are a %s, not a tuple", pk_kind_name(b->kind));
        if (!(v = r->cb->reduce(r->cb->ctx, r, a, b))) return -1;
        push(r, v);
        return 0;
    case 'b':  // BUILD: only a dict's attributes (OrderedDict._metadata), dropped
        if (!(b = pop(r)) || !(a = pop(r))) return -1;
        if (a->kind != PK_DICT || (b->kind != PK_DICT && b->kind != PK_NONE && b->kind != PK_TUPLE))
            return fail(r, "BUILD on a %s is outside the state-dict subset", pk_kind_name(a->kind));
        push(r, a);
        return 0;
    case 'Q':
        if (!(a = pop(r))) return -1;
        if (!(v = r->cb->persistent_load(r->cb->ctx, r, a))) return -1;
        push(r, v);
        return 0;
    case 'q':
        if (!(q = take(r, 1))) return -1;
        return memo_put(r, *q);
    case 'r':
        if (!(q = take(r, 4))) return -1;
        return memo_put(r, le(q, 4));
    case 0x94:
        return memo_put(r, r->n_memo);
    case 'h':
        if (!(q = take(r, 1))) return -1;
        return memo_get(r, *q);
    case 'j':
        if (!(q = take(r, 4))) return -1;
        return memo_get(r, le(q, 4));
    default:
        return fail(r, "%s", "opcode outside the supported subset (torch.save state dicts)");
    }
}

pk_value *pk_load(const unsigned char *data, size_t size, const char *what, const pk_callbacks *cb, pk_reader **reader) {
    pk_reader *r = spd_calloc(1, sizeof *r);
    *reader = r;
    r->p = data;
    r->size = size;
    r->what = what;
    r->cb = cb;
    int stop = 0;
    while (!stop)
        if (step(r, &stop)) return NULL;
    if (r->depth != 1 || r->stack[0]->kind == PK_MARK) {
        spd_set_error("%s: pickle stops with %zu values on the stack, expected 1 (malformed pickle)", what, r->depth);
        return NULL;
    }
    if (r->pos != size) {
        spd_set_error("%s: %zu bytes after the pickle's STOP", what, size - r->pos);
        return NULL;
    }
    return r->stack[0];
}

// ---------------------------------------------------------------- writer

static void put(pk_buf *b, const void *p, size_t n) {
    grow((void **)&b->b, &b->cap, b->len + n, 1);
    memcpy(b->b + b->len, p, n);
    b->len += n;
}

void pk_put_op(pk_buf *b, unsigned char op) { put(b, &op, 1); }

void pk_put_proto(pk_buf *b) {
    const unsigned char h[2] = {0x80, 2};
    put(b, h, 2);
}

void pk_put_stop(pk_buf *b) { pk_put_op(b, '.'); }

void pk_put_int(pk_buf *b, int64_t v) {
    unsigned char h[10];
    if (v >= 0 && v < 256) {
        h[0] = 'K';
        h[1] = (unsigned char)v;
        put(b, h, 2);
    } else if (v >= 0 && v < 65536) {
        h[0] = 'M';
        h[1] = (unsigned char)v;
        h[2] = (unsigned char)(v >> 8);
        put(b, h, 3);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        h[0] = 'J';
        for (int i = 0; i < 4; i++) h[1 + i] = (unsigned char)((uint64_t)v >> (8 * i));
        put(b, h, 5);
    } else {  // LONG1, 8 bytes two's complement
        h[0] = 0x8a;
        h[1] = 8;
        for (int i = 0; i < 8; i++) h[2 + i] = (unsigned char)((uint64_t)v >> (8 * i));
        put(b, h, 10);
    }
}

void pk_put_str(pk_buf *b, const char *s) {
    size_t n = strlen(s);
    unsigned char h[5] = {'X'};
    for (int i = 0; i < 4; i++) h[1 + i] = (unsigned char)((uint64_t)n >> (8 * i));
    put(b, h, 5);
    put(b, s, n);
}

void pk_put_global(pk_buf *b, const char *module, const char *name) {
    pk_put_op(b, 'c');
    put(b, module, strlen(module));
    pk_put_op(b, '\n');
    put(b, name, strlen(name));
    pk_put_op(b, '\n');
}

void pk_put_int_tuple(pk_buf *b, const int64_t *v, int n) {
    if (n == 0) {
        pk_put_op(b, ')');
        return;
    }
    if (n > 3) pk_put_op(b, '(');
    for (int i = 0; i < n; i++) pk_put_int(b, v[i]);
    pk_put_op(b, n > 3 ? 't' : (unsigned char)(0x84 + n));
}
