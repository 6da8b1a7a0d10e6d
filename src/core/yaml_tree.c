#include "core/yaml_tree.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "core/error.h"

#define MAX_FILE_BYTES (64u << 20)
#define CORE_TAG "tag:yaml.org,2002:"

// ---------------------------------------------------------------- nodes

static spd_yaml_node *new_node(spd_yaml_doc *doc, spd_yaml_kind kind, int line, int col) {
    if (doc->n_nodes == doc->cap_nodes) {
        int cap = doc->cap_nodes ? 2 * doc->cap_nodes : 64;
        spd_yaml_node **nodes = realloc(doc->nodes, (size_t)cap * sizeof *nodes);
        if (!nodes) spd_die("out of host memory growing a YAML tree to %d nodes", cap);
        doc->nodes = nodes;
        doc->cap_nodes = cap;
    }
    spd_yaml_node *n = spd_calloc(1, sizeof *n);
    n->kind = kind;
    n->line = line;
    n->col = col;
    doc->nodes[doc->n_nodes++] = n;
    return n;
}

static void grow(spd_yaml_node *n) {
    if (n->count < n->cap) return;
    int cap = n->cap ? 2 * n->cap : 8;
    n->values = realloc(n->values, (size_t)cap * sizeof *n->values);
    if (!n->values) spd_die("out of host memory growing a YAML node to %d entries", cap);
    if (n->kind == SPD_YAML_MAP) {
        n->keys = realloc(n->keys, (size_t)cap * sizeof *n->keys);
        if (!n->keys) spd_die("out of host memory growing a YAML node to %d entries", cap);
    }
    n->cap = cap;
}

spd_yaml_node *spd_yaml_new_scalar(spd_yaml_doc *doc, const char *text, bool quoted, int line, int col) {
    spd_yaml_node *n = new_node(doc, SPD_YAML_SCALAR, line, col);
    n->text = spd_strdup(text);
    n->len = strlen(text);
    n->quoted = quoted;
    return n;
}

spd_yaml_node *spd_yaml_new_map(spd_yaml_doc *doc, int line, int col) {
    return new_node(doc, SPD_YAML_MAP, line, col);
}

spd_yaml_node *spd_yaml_new_seq(spd_yaml_doc *doc, int line, int col) {
    return new_node(doc, SPD_YAML_SEQ, line, col);
}

void spd_yaml_free(spd_yaml_doc *doc) {
    if (!doc) return;
    for (int i = 0; i < doc->n_nodes; i++) {
        spd_yaml_node *n = doc->nodes[i];
        free(n->text);
        free(n->tag);
        free(n->keys);
        free(n->values);
        free(n);
    }
    free(doc->nodes);
    free(doc->source);
    free(doc);
}

int spd_yaml_map_index(const spd_yaml_node *map, const char *key) {
    if (!map || map->kind != SPD_YAML_MAP) return -1;
    for (int i = 0; i < map->count; i++)
        if (strcmp(map->keys[i]->text, key) == 0) return i;
    return -1;
}

const spd_yaml_node *spd_yaml_map_get(const spd_yaml_node *map, const char *key) {
    int i = spd_yaml_map_index(map, key);
    return i < 0 ? NULL : map->values[i];
}

const spd_yaml_node *spd_yaml_map_key_node(const spd_yaml_node *map, const char *key) {
    int i = spd_yaml_map_index(map, key);
    return i < 0 ? NULL : map->keys[i];
}

void spd_yaml_map_remove_at(spd_yaml_node *map, int index) {
    SPD_ASSERT(map->kind == SPD_YAML_MAP && index >= 0 && index < map->count);
    for (int i = index + 1; i < map->count; i++) {
        map->keys[i - 1] = map->keys[i];
        map->values[i - 1] = map->values[i];
    }
    map->count--;
}

void spd_yaml_map_set(spd_yaml_doc *doc, spd_yaml_node *map, const char *key, spd_yaml_node *value) {
    SPD_ASSERT(map->kind == SPD_YAML_MAP);
    int i = spd_yaml_map_index(map, key);
    if (i >= 0) {
        map->values[i] = value;
        return;
    }
    grow(map);
    map->keys[map->count] = spd_yaml_new_scalar(doc, key, false, value->line, value->col);
    map->values[map->count++] = value;
}

void spd_yaml_map_rename_at(spd_yaml_doc *doc, spd_yaml_node *map, int index, const char *new_key) {
    SPD_ASSERT(map->kind == SPD_YAML_MAP && index >= 0 && index < map->count);
    const spd_yaml_node *old = map->keys[index];
    map->keys[index] = spd_yaml_new_scalar(doc, new_key, false, old->line, old->col);
}

void spd_yaml_seq_append(spd_yaml_node *seq, spd_yaml_node *value) {
    SPD_ASSERT(seq->kind == SPD_YAML_SEQ);
    grow(seq);
    seq->values[seq->count++] = value;
}

// ---------------------------------------------------------------- parsing

typedef struct {
    char *name;
    spd_yaml_node *node;
} anchor;

typedef struct {
    spd_yaml_node *node;
    spd_yaml_node *pending_key;  // maps: a key waiting for its value
    char *anchor;                // registered when the container closes
} open_node;

typedef struct {
    spd_yaml_doc *doc;
    open_node *stack;
    int depth, cap;
    anchor *anchors;
    int n_anchors, cap_anchors;
} builder;

static int fail_at(const builder *b, int line, int col, const char *what) {
    return spd_set_error("%s:%d:%d: %s", b->doc->source, line, col, what);
}

static int check_tag(const builder *b, const char *tag, int line, int col) {
    if (!tag || strcmp(tag, "!") == 0) return 0;
    static const char *const core[] = {"str", "int", "float", "bool", "null", "map", "seq"};
    if (strncmp(tag, CORE_TAG, strlen(CORE_TAG)) == 0)
        for (size_t i = 0; i < sizeof core / sizeof *core; i++)
            if (strcmp(tag + strlen(CORE_TAG), core[i]) == 0) return 0;
    char msg[256];
    snprintf(msg, sizeof msg, "YAML: unsupported tag '%.100s' (only YAML's core tags such as !!str and !!float)", tag);
    return fail_at(b, line, col, msg);
}

static void add_anchor(builder *b, const char *name, spd_yaml_node *node) {
    if (b->n_anchors == b->cap_anchors) {
        b->cap_anchors = b->cap_anchors ? 2 * b->cap_anchors : 8;
        b->anchors = realloc(b->anchors, (size_t)b->cap_anchors * sizeof *b->anchors);
        if (!b->anchors) spd_die("out of host memory for YAML anchors");
    }
    // A later anchor of the same name shadows an earlier one: search from the end.
    b->anchors[b->n_anchors].name = spd_strdup(name);
    b->anchors[b->n_anchors++].node = node;
}

static spd_yaml_node *find_anchor(const builder *b, const char *name) {
    for (int i = b->n_anchors - 1; i >= 0; i--)
        if (strcmp(b->anchors[i].name, name) == 0) return b->anchors[i].node;
    return NULL;
}

// Attaches a finished node to the innermost open container (or makes it the root).
static int attach(builder *b, spd_yaml_node *n) {
    if (b->depth == 0) {
        b->doc->root = n;
        return 0;
    }
    open_node *top = &b->stack[b->depth - 1];
    spd_yaml_node *c = top->node;
    if (c->kind == SPD_YAML_SEQ) {
        spd_yaml_seq_append(c, n);
        return 0;
    }
    if (!top->pending_key) {
        if (n->kind != SPD_YAML_SCALAR)
            return fail_at(b, n->line, n->col, "YAML: a mapping key must be a plain value, not a list or a mapping");
        for (int i = 0; i < c->count; i++)
            if (strcmp(c->keys[i]->text, n->text) == 0) {
                char msg[256];
                snprintf(msg, sizeof msg, "YAML: duplicate key '%.100s' (first given at line %d)", n->text, c->keys[i]->line);
                return fail_at(b, n->line, n->col, msg);
            }
        top->pending_key = n;
        return 0;
    }
    grow(c);
    c->keys[c->count] = top->pending_key;
    c->values[c->count++] = n;
    top->pending_key = NULL;
    return 0;
}

static void push(builder *b, spd_yaml_node *n, const char *anchor_name) {
    if (b->depth == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 16;
        b->stack = realloc(b->stack, (size_t)b->cap * sizeof *b->stack);
        if (!b->stack) spd_die("out of host memory for the YAML parser stack");
    }
    b->stack[b->depth++] = (open_node){n, NULL, anchor_name ? spd_strdup(anchor_name) : NULL};
}

static int handle_event(builder *b, const yaml_event_t *ev, int *n_docs) {
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (++*n_docs > 1) return fail_at(b, line, col, "YAML: expected one document, found a second one");
        return 0;
    case YAML_SCALAR_EVENT: {
        const char *tag = (const char *)ev->data.scalar.tag;
        if (check_tag(b, tag, line, col)) return -1;
        spd_yaml_node *n = new_node(b->doc, SPD_YAML_SCALAR, line, col);
        n->len = ev->data.scalar.length;
        n->text = spd_malloc(n->len + 1);
        memcpy(n->text, ev->data.scalar.value, n->len);
        n->text[n->len] = '\0';
        n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || (tag && strcmp(tag, "!") == 0);
        if (tag && strcmp(tag, "!") != 0) n->tag = spd_strdup(tag);
        if (ev->data.scalar.anchor) add_anchor(b, (const char *)ev->data.scalar.anchor, n);
        return attach(b, n);
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        bool seq = ev->type == YAML_SEQUENCE_START_EVENT;
        const char *tag = (const char *)(seq ? ev->data.sequence_start.tag : ev->data.mapping_start.tag);
        if (check_tag(b, tag, line, col)) return -1;
        spd_yaml_node *n = new_node(b->doc, seq ? SPD_YAML_SEQ : SPD_YAML_MAP, line, col);
        push(b, n, (const char *)(seq ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor));
        return 0;
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT: {
        open_node top = b->stack[--b->depth];
        // Registered only now, so an alias inside its own anchor is unknown (no cycles).
        if (top.anchor) {
            add_anchor(b, top.anchor, top.node);
            free(top.anchor);
        }
        return attach(b, top.node);
    }
    case YAML_ALIAS_EVENT: {
        spd_yaml_node *n = find_anchor(b, (const char *)ev->data.alias.anchor);
        if (!n) {
            char msg[256];
            snprintf(msg, sizeof msg, "YAML: unknown anchor '*%.100s' (an alias must follow its complete anchor)",
                     (const char *)ev->data.alias.anchor);
            return fail_at(b, line, col, msg);
        }
        return attach(b, n);
    }
    default:
        return 0;
    }
}

spd_yaml_doc *spd_yaml_load_string(const char *text, size_t len, const char *source) {
    spd_yaml_doc *doc = spd_calloc(1, sizeof *doc);
    doc->source = spd_strdup(source);
    builder b = {.doc = doc};
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) spd_die("libyaml: cannot initialise a parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int rc = 0, n_docs = 0, done = 0;
    while (!done && rc == 0) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            char msg[512];
            snprintf(msg, sizeof msg, "YAML syntax error: %s%s%s", parser.problem ? parser.problem : "cannot parse",
                     parser.context ? " " : "", parser.context ? parser.context : "");
            rc = fail_at(&b, (int)parser.problem_mark.line + 1, (int)parser.problem_mark.column + 1, msg);
            break;
        }
        rc = handle_event(&b, &ev, &n_docs);
        done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    for (int i = 0; i < b.depth; i++) free(b.stack[i].anchor);
    free(b.stack);
    for (int i = 0; i < b.n_anchors; i++) free(b.anchors[i].name);
    free(b.anchors);
    if (rc) {
        spd_yaml_free(doc);
        return NULL;
    }
    return doc;
}

spd_yaml_doc *spd_yaml_load_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        spd_set_error("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = spd_malloc(cap);
    for (;;) {
        if (len == cap) {
            if (cap >= MAX_FILE_BYTES) {
                fclose(f);
                free(buf);
                spd_set_error("%s: expected a config file of at most %u MiB, found a larger one", path,
                              MAX_FILE_BYTES >> 20);
                return NULL;
            }
            cap *= 2;
            char *grown = realloc(buf, cap);
            if (!grown) spd_die("out of host memory reading %s", path);
            buf = grown;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        spd_set_error("%s: read error", path);
        return NULL;
    }
    spd_yaml_doc *doc = spd_yaml_load_string(buf, len, path);
    free(buf);
    return doc;
}

// ---------------------------------------------------------------- YAML 1.1 resolution
// Hand-written versions of PyYAML's implicit resolver patterns (resolver.py).

static bool is_dig(char c) { return c >= '0' && c <= '9'; }
static bool is_hex(char c) { return is_dig(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// [0-9_]* starting at p; returns the end.
static const char *skip_digits_(const char *p) {
    while (is_dig(*p) || *p == '_') p++;
    return p;
}

// (:[0-5]?[0-9])+ ; NULL when there is not at least one group.
static const char *skip_sexagesimal(const char *p) {
    const char *start = p;
    while (*p == ':') {
        if (p[1] >= '0' && p[1] <= '5' && is_dig(p[2])) p += 3;
        else if (is_dig(p[1])) p += 2;
        else return NULL;
    }
    return p == start ? NULL : p;
}

// [eE][-+][0-9]+ (optional: returns p unchanged when absent, NULL when malformed-and-present is impossible)
static const char *skip_exponent(const char *p) {
    if ((*p == 'e' || *p == 'E') && (p[1] == '-' || p[1] == '+') && is_dig(p[2])) {
        p += 2;
        while (is_dig(*p)) p++;
    }
    return p;
}

static bool match_int(const char *s) {
    const char *p = s;
    if (*p == '-' || *p == '+') p++;
    if (p[0] == '0' && p[1] == 'b') {
        const char *q = p + 2;
        while (*q == '0' || *q == '1' || *q == '_') q++;
        return q > p + 2 && *q == '\0';
    }
    if (p[0] == '0' && p[1] == 'x') {
        const char *q = p + 2;
        while (is_hex(*q) || *q == '_') q++;
        return q > p + 2 && *q == '\0';
    }
    if (p[0] == '0') {
        if (p[1] == '\0') return true;
        const char *q = p + 1;
        while ((*q >= '0' && *q <= '7') || *q == '_') q++;
        return q > p + 1 && *q == '\0';
    }
    if (*p < '1' || *p > '9') return false;
    const char *q = skip_digits_(p + 1);
    if (*q == '\0') return true;
    q = skip_sexagesimal(q);
    return q && *q == '\0';
}

static bool match_float(const char *s) {
    const char *p = s;
    if (strcmp(s, ".nan") == 0 || strcmp(s, ".NaN") == 0 || strcmp(s, ".NAN") == 0) return true;
    if (*p == '.' && is_dig(p[1])) {  // .5, .5e-3 (no sign allowed here)
        const char *q = skip_exponent(skip_digits_(p + 1));
        return *q == '\0';
    }
    if (*p == '-' || *p == '+') p++;
    if (strcmp(p, ".inf") == 0 || strcmp(p, ".Inf") == 0 || strcmp(p, ".INF") == 0) return true;
    if (!is_dig(*p)) return false;
    const char *q = skip_digits_(p + 1);
    if (*q == ':') {
        q = skip_sexagesimal(q);
        if (!q || *q != '.') return false;
        return *skip_digits_(q + 1) == '\0';
    }
    if (*q != '.') return false;
    q = skip_exponent(skip_digits_(q + 1));
    return *q == '\0';
}

static bool match_bool(const char *s, bool *value) {
    static const char *const t[] = {"yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"};
    static const char *const f[] = {"no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"};
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        if (strcmp(s, t[i]) == 0) {
            if (value) *value = true;
            return true;
        }
        if (strcmp(s, f[i]) == 0) {
            if (value) *value = false;
            return true;
        }
    }
    return false;
}

static bool match_null(const char *s) {
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
           strcmp(s, "NULL") == 0;
}

spd_yaml_type spd_yaml_resolve(const spd_yaml_node *n) {
    if (!n || n->kind != SPD_YAML_SCALAR) return SPD_YAML_T_OTHER;
    if (n->tag) {
        const char *t = n->tag + strlen(CORE_TAG);
        if (strcmp(t, "null") == 0) return SPD_YAML_T_NULL;
        if (strcmp(t, "bool") == 0) return SPD_YAML_T_BOOL;
        if (strcmp(t, "int") == 0) return SPD_YAML_T_INT;
        if (strcmp(t, "float") == 0) return SPD_YAML_T_FLOAT;
        return SPD_YAML_T_STR;
    }
    if (n->quoted || strlen(n->text) != n->len) return SPD_YAML_T_STR;
    const char *s = n->text;
    if (match_null(s)) return SPD_YAML_T_NULL;
    if (match_bool(s, NULL)) return SPD_YAML_T_BOOL;
    if (match_int(s)) return SPD_YAML_T_INT;
    if (match_float(s)) return SPD_YAML_T_FLOAT;
    return SPD_YAML_T_STR;
}

int spd_yaml_bool(const spd_yaml_node *n, bool *out) {
    if (spd_yaml_resolve(n) != SPD_YAML_T_BOOL) return -1;
    // PyYAML's constructor lower-cases: `!!bool YES` is true.
    char low[8];
    size_t i = 0;
    for (; n->text[i] && i < sizeof low - 1; i++) low[i] = (char)(n->text[i] | 0x20);
    low[i] = '\0';
    if (strcmp(low, "yes") == 0 || strcmp(low, "true") == 0 || strcmp(low, "on") == 0) *out = true;
    else if (strcmp(low, "no") == 0 || strcmp(low, "false") == 0 || strcmp(low, "off") == 0) *out = false;
    else return -1;
    return 0;
}

// Accumulates digits of `base` from s (underscores skipped) into *v; -1 on overflow or a bad digit.
static int accumulate(const char *s, int base, uint64_t *v) {
    for (; *s; s++) {
        if (*s == '_') continue;
        int d = is_dig(*s) ? *s - '0' : (*s >= 'a' && *s <= 'f') ? *s - 'a' + 10 : (*s >= 'A' && *s <= 'F') ? *s - 'A' + 10 : 99;
        if (d >= base) return -1;
        if (*v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base) return -1;
        *v = *v * (uint64_t)base + (uint64_t)d;
    }
    return 0;
}

int spd_yaml_int(const spd_yaml_node *n, int64_t *out) {
    if (spd_yaml_resolve(n) != SPD_YAML_T_INT || !match_int(n->text)) return -1;
    const char *p = n->text;
    bool neg = *p == '-';
    if (*p == '-' || *p == '+') p++;
    uint64_t v = 0;
    int rc;
    if (p[0] == '0' && p[1] == 'b') rc = accumulate(p + 2, 2, &v);
    else if (p[0] == '0' && p[1] == 'x') rc = accumulate(p + 2, 16, &v);
    else if (p[0] == '0' && p[1] != '\0') rc = accumulate(p + 1, 8, &v);  // YAML 1.1 octal: 017 = 15
    else if (strchr(p, ':')) {
        // Sexagesimal: 1:30 = 90.
        rc = 0;
        char part[32];
        const char *q = p;
        while (rc == 0 && *q) {
            size_t k = strcspn(q, ":");
            if (k >= sizeof part) return -1;
            memcpy(part, q, k);
            part[k] = '\0';
            uint64_t d = 0;
            rc = accumulate(part, 10, &d);
            if (rc == 0 && (v > (UINT64_MAX - d) / 60)) rc = -1;
            if (rc == 0) v = v * 60 + d;
            q += k + (q[k] == ':');
        }
    } else rc = accumulate(p, 10, &v);
    if (rc) return -1;
    if (neg ? v > (uint64_t)INT64_MAX + 1 : v > (uint64_t)INT64_MAX) return -1;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

// Python's float() on PyYAML's cleaned text (an explicit !!float tag skips the
// implicit pattern, so `!!float 1e-3` is 0.001): decimal digits, one dot, an
// optional exponent; at least one digit.
static bool python_float_text(const char *s) {
    const char *p = s + (*s == '-' || *s == '+');
    int digits = 0;
    while (is_dig(*p)) p++, digits++;
    if (*p == '.') p++;
    while (is_dig(*p)) p++, digits++;
    if (!digits) return false;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '-' || *p == '+') p++;
        if (!is_dig(*p)) return false;
        while (is_dig(*p)) p++;
    }
    return *p == '\0';
}

int spd_yaml_float(const spd_yaml_node *n, double *out) {
    if (spd_yaml_resolve(n) != SPD_YAML_T_FLOAT) return -1;
    if (!n->tag && !match_float(n->text)) return -1;
    char buf[128];
    size_t k = 0;
    for (const char *q = n->text; *q; q++)
        if (*q != '_') {
            if (k + 1 >= sizeof buf) return -1;
            buf[k++] = (char)(*q >= 'A' && *q <= 'Z' ? *q + 32 : *q);  // PyYAML lower-cases
        }
    buf[k] = '\0';
    bool neg = buf[0] == '-';
    const char *p = (buf[0] == '-' || buf[0] == '+') ? buf + 1 : buf;
    if (strcmp(p, ".inf") == 0) {
        *out = neg ? -INFINITY : INFINITY;
        return 0;
    }
    if (strcmp(p, ".nan") == 0) {
        *out = NAN;
        return 0;
    }
    if (strchr(buf, ':')) {
        // Sexagesimal float: 1:30.5 = 90.5.
        if (!n->tag && !match_float(n->text)) return -1;
        double v = 0;
        char *q = buf + (buf[0] == '-' || buf[0] == '+');
        for (;;) {
            char *colon = strchr(q, ':');
            if (!colon) break;
            *colon = '\0';
            v = v * 60 + strtod(q, NULL);
            q = colon + 1;
        }
        v = v * 60 + strtod(q, NULL);
        *out = neg ? -v : v;
        return 0;
    }
    if (!python_float_text(buf)) return -1;
    *out = strtod(buf, NULL);
    return 0;
}

// ---------------------------------------------------------------- messages

const char *spd_yaml_describe(const spd_yaml_node *n, char *buf, size_t size) {
    if (!n) {
        snprintf(buf, size, "nothing");
        return buf;
    }
    if (n->kind == SPD_YAML_MAP) {
        snprintf(buf, size, "a mapping");
        return buf;
    }
    if (n->kind == SPD_YAML_SEQ) {
        snprintf(buf, size, "a list");
        return buf;
    }
    spd_yaml_type t = spd_yaml_resolve(n);
    if (t == SPD_YAML_T_NULL && n->len == 0) {
        snprintf(buf, size, "null");
        return buf;
    }
    bool quote = t == SPD_YAML_T_STR;
    size_t k = 0, limit = size > 16 ? size - 8 : 0;
    if (quote && k + 1 < size) buf[k++] = '"';
    for (size_t i = 0; i < n->len && k + 5 < size; i++) {
        if (i >= 60 || k >= limit) {
            memcpy(buf + k, "...", 3);
            k += 3;
            break;
        }
        unsigned char c = (unsigned char)n->text[i];
        if (c == '"' || c == '\\') {
            buf[k++] = '\\';
            buf[k++] = (char)c;
        } else if (c == '\n') {
            buf[k++] = '\\';
            buf[k++] = 'n';
        } else if (c < 0x20 || c == 0x7f) {
            k += (size_t)snprintf(buf + k, size - k, "\\x%02x", c);
        } else {
            buf[k++] = (char)c;
        }
    }
    if (quote && k + 1 < size) buf[k++] = '"';
    buf[k < size ? k : size - 1] = '\0';
    return buf;
}
