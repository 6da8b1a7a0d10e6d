// spd export RUN_DIR --format pth: a run's model_<step>.safetensors as the
// model_<step>.pth that PyTorch SPD saves (SPD_SPEC.md 5.8), for
// torch.load(weights_only=True) and ComponentModel.load_state_dict (strict).
//
// The tensors keep their names, order, shapes and dtype (--dtype f32 narrows
// float64 runs to SPD's float32). SPD's tied TMS weights are stored as torch
// stores them, one storage and a transposed view: target_model.linear2.weight
// of target_model.linear1.weight, and _components.linear2.U / .V of
// _components.linear1.V / .U (SPD_SPEC.md 5.1 step 5) -- each only when the
// values are bit-exact transposes, so nothing is tied that the run did not tie;
// and _components.<m>.bias as the target's bias tensor itself, as SPD registers it.
// SPD's loader reads final_config.yaml beside the checkpoint: when the .pth goes
// elsewhere (--out) the run's final_config.yaml is copied beside it (or, when the
// run has none, written from the checkpoint's config metadata).
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "core/error.h"
#include "core/safetensors.h"
#include "spd/pth.h"

static void usage(FILE *out) {
    fputs("usage: spd export RUN_DIR|MODEL.safetensors [--format pth] [--step S] [--out FILE.pth] [--dtype keep|f32]\n"
          "  writes the run's model_<S>.safetensors (the latest step unless --step) as model_<S>.pth,\n"
          "  the torch.save state dict that PyTorch SPD writes and loads (torch.load(weights_only=True),\n"
          "  ComponentModel.load_state_dict strict); tied TMS weights share one storage as in torch.\n"
          "  --out FILE.pth: elsewhere (final_config.yaml is copied beside it); default beside the input.\n"
          "  --dtype f32: float64 tensors narrowed to float32 (SPD's dtype); default keep.\n",
          out);
}

// The directory part of a path: "." without one, "/" for a file at the root.
static void dir_of(const char *path, char *out, size_t cap) {
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(out, cap, ".");
    else snprintf(out, cap, "%.*s", slash == path ? 1 : (int)(slash - path), path);
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

// dir/model_<s>.safetensors with the largest s (or s = want when want >= 0).
static int64_t find_model(const char *dir, int64_t want) {
    DIR *d = opendir(dir);
    if (!d) spd_die_input("export: %s: cannot open directory: %s", dir, strerror(errno));
    int64_t best = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        long long s;
        int used = 0;
        if (sscanf(e->d_name, "model_%lld.safetensors%n", &s, &used) == 1 && used > 0 && e->d_name[used] == '\0' &&
            s >= 0 && (want < 0 ? s > best : s == want))
            best = s;
    }
    closedir(d);
    if (best < 0) {
        if (want >= 0) spd_die_input("export: %s: no model_%" PRId64 ".safetensors", dir, want);
        spd_die_input("export: %s: no model_<step>.safetensors checkpoint", dir);
    }
    return best;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0, k;
    char *s = spd_malloc(cap);
    while ((k = fread(s + n, 1, cap - n, f)) > 0)
        if ((n += k) == cap) {
            char *g = realloc(s, cap *= 2);
            if (!g) spd_die("out of memory reading %s", path);
            s = g;
        }
    fclose(f);
    *len = n;
    return s;
}

// final_config.yaml beside out: the run's copy (or the checkpoint's config metadata). An existing different
// file is not overwritten.
static void place_config(const char *in_dir, const char *out_dir, const spd_st_file *f) {
    char src[4200], dst[4200];
    snprintf(src, sizeof src, "%s/final_config.yaml", in_dir);
    snprintf(dst, sizeof dst, "%s/final_config.yaml", out_dir);
    size_t n = 0, m = 0;
    char *text = read_file(src, &n);
    if (!text) {
        const char *meta = spd_st_meta(f, "config");
        if (!meta) {
            fprintf(stderr, "note: %s: no final_config.yaml and no config metadata: SPD's loader will need one\n",
                    in_dir);
            return;
        }
        text = spd_strdup(meta);
        n = strlen(meta);
    }
    char *old = read_file(dst, &m);
    if (old) {
        int same = m == n && memcmp(old, text, n) == 0;
        free(old);
        free(text);
        if (!same) spd_die_input("export: %s exists and differs from the run's final_config.yaml", dst);
        return;
    }
    FILE *o = fopen(dst, "wb");
    if (!o || fwrite(text, 1, n, o) != n || fclose(o) != 0) spd_die_input("export: %s: cannot write", dst);
    free(text);
    printf("wrote %s\n", dst);
}

// SPD's ties (TMS with a tied target): view <- base, each a transpose of the other.
static const char *const ties[][2] = {
    {"target_model.linear2.weight", "target_model.linear1.weight"},
    {"_components.linear2.U", "_components.linear1.V"},
    {"_components.linear2.V", "_components.linear1.U"},
};

// Is view (shape [c, r]) bit for bit the transpose of base ([r, c])? Both in dtype dt.
static int is_transpose(const spd_st_entry *v, const void *vdata, const spd_st_entry *b, const void *bdata, spd_dtype dt) {
    if (v->ndim != 2 || b->ndim != 2 || v->shape[0] != b->shape[1] || v->shape[1] != b->shape[0]) return 0;
    size_t item = spd_dtype_size(dt);
    const unsigned char *pv = vdata, *pb = bdata;
    for (int64_t i = 0; i < v->shape[0]; i++)
        for (int64_t j = 0; j < v->shape[1]; j++)
            if (memcmp(pv + (size_t)(i * v->shape[1] + j) * item, pb + (size_t)(j * b->shape[1] + i) * item, item))
                return 0;
    return 1;
}

// _components.<dashed>.bias is SPD's buffer holding the target module's own bias tensor: stored as the same
// tensor when target_model.<path>.bias came earlier with the same bytes. 1 when added as an alias.
static int component_bias_alias(const spd_st_file *f, int i, void *const *data, const spd_dtype *dts,
                                 spd_pth_writer *w) {
    const char *name = f->entries[i].name;
    size_t n = strlen(name);
    if (strncmp(name, "_components.", 12) != 0 || n < 18 || strcmp(name + n - 5, ".bias") != 0) return 0;
    char base[2 * SPD_NAME_MAX];
    snprintf(base, sizeof base, "target_model.%.*s.bias", (int)(n - 17), name + 12);
    for (char *p = base + 13; *p; p++)
        if (*p == '-') *p = '.';
    for (int j = 0; j < i; j++) {
        const spd_st_entry *b = &f->entries[j], *e = &f->entries[i];
        if (strcmp(b->name, base) != 0) continue;
        if (dts[j] != dts[i] || b->ndim != e->ndim || memcmp(b->shape, e->shape, (size_t)e->ndim * sizeof *e->shape))
            return 0;
        size_t bytes = spd_dtype_size(dts[i]);
        for (int d = 0; d < e->ndim; d++) bytes *= (size_t)e->shape[d];
        if (memcmp(data[i], data[j], bytes) != 0) return 0;
        if (spd_pth_writer_add_alias(w, name, base)) spd_die_last_error();
        return 1;
    }
    return 0;
}

int cmd_export(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *format = "pth", *dtype = "keep";
    int64_t step = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        int has_value = i + 1 < argc;
        if (strcmp(a, "--format") == 0 && has_value) format = argv[++i];
        else if (strcmp(a, "--out") == 0 && has_value) out = argv[++i];
        else if (strcmp(a, "--dtype") == 0 && has_value) dtype = argv[++i];
        else if (strcmp(a, "--step") == 0 && has_value) {
            char *end;
            errno = 0;
            long long s = strtoll(argv[++i], &end, 10);
            if (errno || *end || end == argv[i] || s < 0) spd_die_input("export: --step: expected a step >= 0, found '%s'", argv[i]);
            step = s;
        } else if (a[0] == '-') spd_die_input("export: unknown option '%s' (or missing value)", a);
        else if (in) spd_die_input("export: expected one RUN_DIR, found '%s' and '%s'", in, a);
        else in = a;
    }
    if (!in) {
        usage(stderr);
        return SPD_EXIT_INPUT;
    }
    if (strcmp(format, "pth") != 0) spd_die_input("export: --format: expected pth, found '%s'", format);
    if (strcmp(dtype, "keep") != 0 && strcmp(dtype, "f32") != 0)
        spd_die_input("export: --dtype: expected keep or f32, found '%s'", dtype);

    char model[4200], in_dir[4096], def_out[4200];
    if (is_dir(in)) {
        if (step < 0) step = find_model(in, -1);
        else find_model(in, step);
        snprintf(in_dir, sizeof in_dir, "%s", in);
        snprintf(model, sizeof model, "%s/model_%" PRId64 ".safetensors", in, step);
    } else {
        if (step >= 0) spd_die_input("export: --step needs a RUN_DIR, not a file");
        size_t n = strlen(in);
        if (n < 13 || strcmp(in + n - 12, ".safetensors") != 0)
            spd_die_input("export: %s: expected a run directory or a .safetensors file", in);
        snprintf(model, sizeof model, "%s", in);
        dir_of(in, in_dir, sizeof in_dir);
    }
    snprintf(def_out, sizeof def_out, "%.*s.pth", (int)(strlen(model) - 12), model);
    if (!out) out = def_out;

    spd_st_file *f = spd_st_open(model);
    if (!f) spd_die_last_error();
    void **data = spd_calloc((size_t)f->count + 1, sizeof *data);
    spd_dtype *dts = spd_calloc((size_t)f->count + 1, sizeof *dts);
    spd_pth_writer *w = spd_pth_writer_new();
    int n_tied = 0, n_alias = 0;
    for (int i = 0; i < f->count; i++) {
        const spd_st_entry *e = &f->entries[i];
        dts[i] = e->dtype;
        if (strcmp(dtype, "f32") == 0 && e->dtype == SPD_DTYPE_F64) dts[i] = SPD_DTYPE_F32;
        if (!spd_pth_storage_name(dts[i])) spd_die_input("export: %s: tensor '%s': dtype %s has no torch storage", model, e->name, spd_dtype_name(e->dtype));
        size_t bytes = spd_dtype_size(dts[i]);
        for (int d = 0; d < e->ndim; d++) bytes *= (size_t)e->shape[d];
        data[i] = spd_malloc(bytes ? bytes : 1);
        if (spd_st_read(f, e->name, dts[i], e->ndim, e->shape, data[i])) spd_die_last_error();
        int tied = 0;
        for (size_t t = 0; t < sizeof ties / sizeof *ties && !tied; t++) {
            if (strcmp(e->name, ties[t][0]) != 0) continue;
            for (int j = 0; j < i && !tied; j++)
                if (strcmp(f->entries[j].name, ties[t][1]) == 0 && dts[j] == dts[i] &&
                    is_transpose(e, data[i], &f->entries[j], data[j], dts[i])) {
                    if (spd_pth_writer_add_transposed(w, e->name, ties[t][1])) spd_die_last_error();
                    tied = 1;
                }
        }
        n_tied += tied;
        int alias = !tied && component_bias_alias(f, i, data, dts, w);
        n_alias += alias;
        if (!tied && !alias) spd_pth_writer_add(w, e->name, dts[i], e->ndim, e->shape, data[i]);
    }
    if (spd_pth_writer_save(w, out)) spd_die_last_error();
    printf("wrote %s (%d tensors, %d tied as transposed views, %d component biases shared with the target, from %s)\n", out,
           f->count, n_tied, n_alias, model);

    char out_dir[4096];
    dir_of(out, out_dir, sizeof out_dir);
    place_config(in_dir, out_dir, f);  // a no-op when the run's own final_config.yaml is already beside it
    for (int i = 0; i < f->count; i++) free(data[i]);
    free(data);
    free(dts);
    spd_pth_writer_free(w);
    spd_st_close(f);
    return 0;
}
