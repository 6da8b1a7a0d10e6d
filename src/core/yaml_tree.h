// A YAML document as a small tree of mappings, sequences and scalars, read with
// libyaml. Every node keeps the line and column where it starts, so that a
// config error can point at it ("config.yaml:12:5: ...").
//
// Scalars keep their text; what a plain scalar *means* (null, bool, int, float
// or string) is decided later with spd_yaml_resolve, which follows PyYAML's
// YAML 1.1 resolver (SPD reads its configs with yaml.safe_load): `1e-3` is a
// string there, `1.0e-3` a float, `10_000` an int, `yes` a bool, `~` null.
//
// The document owns all its nodes; they are freed together by spd_yaml_free.
// Nodes may be shared (an alias points at its anchored node) and may be added
// or moved by the edit functions below (config migrations use them).
#ifndef SPD_YAML_TREE_H
#define SPD_YAML_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { SPD_YAML_SCALAR, SPD_YAML_SEQ, SPD_YAML_MAP } spd_yaml_kind;

typedef struct spd_yaml_node {
    spd_yaml_kind kind;
    int line, col;  // 1-based start; 0 for nodes made by the edit functions without a position
    // Scalars: the text (NUL-terminated; len excludes the NUL).
    char *text;
    size_t len;
    bool quoted;  // single/double quoted or a block scalar: always a string
    char *tag;    // explicit core tag ("tag:yaml.org,2002:str", ...) or NULL
    // Maps: keys[i] (scalar nodes) -> values[i]. Sequences: values[i].
    struct spd_yaml_node **keys, **values;
    int count, cap;
} spd_yaml_node;

typedef struct {
    char *source;  // file name used in messages
    spd_yaml_node *root;
    spd_yaml_node **nodes;  // every node, for freeing
    int n_nodes, cap_nodes;
} spd_yaml_doc;

// Reads one YAML document. NULL, with spd_last_error() set to one line
// ("<source>:<line>:<col>: YAML syntax error: ..."), when the file cannot be
// read, is not valid YAML, holds more than one document, has a duplicate key,
// a non-scalar key, an unknown anchor or a tag other than YAML's core tags.
// An empty document gives a doc whose root is NULL.
spd_yaml_doc *spd_yaml_load_file(const char *path);
spd_yaml_doc *spd_yaml_load_string(const char *text, size_t len, const char *source);
void spd_yaml_free(spd_yaml_doc *doc);

// What a scalar means under YAML 1.1 (PyYAML's implicit resolvers, or an
// explicit core tag). Sequences and maps are SPD_YAML_T_OTHER.
typedef enum {
    SPD_YAML_T_NULL,
    SPD_YAML_T_BOOL,
    SPD_YAML_T_INT,
    SPD_YAML_T_FLOAT,
    SPD_YAML_T_STR,
    SPD_YAML_T_OTHER
} spd_yaml_type;
spd_yaml_type spd_yaml_resolve(const spd_yaml_node *n);

// Values of resolved scalars, as PyYAML computes them. Return 0, or -1 when the
// scalar does not have that type or (ints) does not fit in int64.
int spd_yaml_bool(const spd_yaml_node *n, bool *out);
int spd_yaml_int(const spd_yaml_node *n, int64_t *out);
int spd_yaml_float(const spd_yaml_node *n, double *out);

// Lookups and edits.
const spd_yaml_node *spd_yaml_map_get(const spd_yaml_node *map, const char *key);
int spd_yaml_map_index(const spd_yaml_node *map, const char *key);  // -1 when absent
const spd_yaml_node *spd_yaml_map_key_node(const spd_yaml_node *map, const char *key);
void spd_yaml_map_remove_at(spd_yaml_node *map, int index);
// Appends key -> value, or replaces the value of an existing key.
void spd_yaml_map_set(spd_yaml_doc *doc, spd_yaml_node *map, const char *key, spd_yaml_node *value);
void spd_yaml_map_rename_at(spd_yaml_doc *doc, spd_yaml_node *map, int index, const char *new_key);
void spd_yaml_seq_append(spd_yaml_node *seq, spd_yaml_node *value);
spd_yaml_node *spd_yaml_new_scalar(spd_yaml_doc *doc, const char *text, bool quoted, int line, int col);
spd_yaml_node *spd_yaml_new_map(spd_yaml_doc *doc, int line, int col);
spd_yaml_node *spd_yaml_new_seq(spd_yaml_doc *doc, int line, int col);

// A short description of a node for "found ..." in messages: the scalar as
// written ("abc" quoted when it is a string, 2.5 or null bare, long text cut),
// "a mapping" or "a list".
const char *spd_yaml_describe(const spd_yaml_node *n, char *buf, size_t size);

#endif
