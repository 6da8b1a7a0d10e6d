// spd info FILE: the metadata and the tensors of a safetensors file.
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "core/error.h"
#include "core/safetensors.h"

static void usage(FILE *out) {
    fputs("usage: spd info FILE\n"
          "  validates the safetensors FILE and prints its metadata (key = value)\n"
          "  and one line per tensor: name, dtype, shape, bytes\n",
          out);
}

// Metadata values are free text: keep each on one line.
static void print_escaped(const char *s, FILE *out) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\n') fputs("\\n", out);
        else if (*p == '\t') fputs("\\t", out);
        else if (*p == '\\') fputs("\\\\", out);
        else if (*p < 0x20 || *p == 0x7f) fprintf(out, "\\x%02x", *p);
        else fputc(*p, out);
    }
}

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (argv[i][0] == '-' && argv[i][1] != '\0') spd_die_input("info: unknown option '%s'", argv[i]);
        if (path) spd_die_input("info: expected one FILE, found '%s' and '%s'", path, argv[i]);
        path = argv[i];
    }
    if (!path) {
        usage(stderr);
        return SPD_EXIT_INPUT;
    }
    spd_st_file *f = spd_st_open(path);
    if (!f) spd_die_last_error();

    size_t data_bytes = 0;
    int name_width = 4;
    for (int i = 0; i < f->count; i++) {
        data_bytes += f->entries[i].end - f->entries[i].begin;
        int len = (int)strlen(f->entries[i].name);
        if (len > name_width) name_width = len;
    }
    printf("file: %s (%zu bytes, %d tensors, %zu bytes of tensor data)\n", path, f->map_size, f->count, data_bytes);
    printf("metadata: %d\n", f->meta_count);
    for (int i = 0; i < f->meta_count; i++) {
        fputs("  ", stdout);
        print_escaped(f->meta_keys[i], stdout);
        fputs(" = ", stdout);
        print_escaped(f->meta_values[i], stdout);
        fputc('\n', stdout);
    }
    printf("tensors: %d\n", f->count);
    for (int i = 0; i < f->count; i++) {
        const spd_st_entry *e = &f->entries[i];
        char shape[256];
        printf("  %-*s  %-4s  %-20s  %zu\n", name_width, e->name, spd_dtype_name(e->dtype),
               spd_shape_str(shape, sizeof shape, e->ndim, e->shape), e->end - e->begin);
    }
    spd_st_close(f);
    return 0;
}
