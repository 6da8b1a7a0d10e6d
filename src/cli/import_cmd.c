// spd import FILE.pth: a PyTorch state dict (torch.save; SPD's model_<step>.pth
// or a target model's <task>.pth) as a safetensors file with the same names,
// order, shapes and dtypes, each tensor contiguous (views and shared storages
// of the .pth are copied out). A model_<s>.pth beside its final_config.yaml
// gets the metadata that spd train writes (format spd-checkpoint-v1, step,
// config), so the file reads like one of spd's own checkpoints. Old SPD
// names are mapped as SPD's loader maps them (legacy_name below).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "core/error.h"
#include "core/safetensors.h"
#include "spd/pth.h"

static void usage(FILE *out) {
    fputs("usage: spd import FILE.pth [--out FILE.safetensors] [--meta KEY=VALUE]...\n"
          "  reads a torch.save state dict (as torch.load(weights_only=True) would: tensors only) and\n"
          "  writes it as safetensors (default: FILE.safetensors beside it); a model_<step>.pth beside its\n"
          "  final_config.yaml gets spd's checkpoint metadata (format, step, config).\n"
          "  --meta KEY=VALUE: extra metadata, e.g. act_fn_name=relu for a ResidMLP target.\n",
          out);
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0, k;
    char *s = spd_malloc(cap);
    while ((k = fread(s + n, 1, cap - n - 1, f)) > 0)
        if ((n += k) == cap - 1) {
            char *g = realloc(s, cap *= 2);
            if (!g) spd_die("out of memory reading %s", path);
            s = g;
        }
    fclose(f);
    s[n] = '\0';
    return s;
}

// SPD's handle_deprecated_state_dict_keys_ (SPD_SPEC.md 5.8), applied in order:
// "_gates." -> "_ci_fns.", "patched_model." -> "target_model.",
// "*.original.weight" -> "*.weight", "[target_model.]X.components.{U,V}" ->
// "_components.<X with . -> ->.{U,V}". Returns 1 when out differs from name.
static int legacy_name(const char *name, char *out, size_t cap) {
    enum { N = 2 * SPD_NAME_MAX };  // names are < SPD_NAME_MAX; a rule adds at most 1 character
    char a[N], b[N + 32];
    snprintf(a, sizeof a, "%s", name);
    a[N - 1] = '\0';
    char *g = strstr(a, "_gates.");
    if (g) {
        snprintf(b, sizeof b, "%.*s_ci_fns.%s", (int)(g - a), a, g + 7);
        memcpy(a, b, N - 1);
    }
    if (strncmp(a, "patched_model.", 14) == 0) {
        snprintf(b, sizeof b, "target_model.%s", a + 14);
        memcpy(a, b, N - 1);
    }
    size_t n = strlen(a);
    if (n > 16 && strcmp(a + n - 16, ".original.weight") == 0) strcpy(a + n - 16, ".weight");
    n = strlen(a);
    if (n > 13 && (strcmp(a + n - 13, ".components.U") == 0 || strcmp(a + n - 13, ".components.V") == 0)) {
        char uv = a[n - 1];
        a[n - 13] = '\0';
        const char *path = strncmp(a, "target_model.", 13) == 0 ? a + 13 : a;
        snprintf(b, sizeof b, "_components.%s.%c", path, uv);
        for (char *p = b + 12; *p && p < b + strlen(b) - 2; p++)
            if (*p == '.') *p = '-';
        memcpy(a, b, N - 1);
    }
    if (strlen(a) >= cap) spd_die_input("import: name '%s' mapped to one longer than %zu characters", name, cap - 1);
    memcpy(out, a, strlen(a) + 1);
    return strcmp(out, name) != 0;
}

int cmd_import(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    char **meta = spd_calloc((size_t)argc + 1, sizeof *meta);
    int n_meta = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--out") == 0 && i + 1 < argc) out = argv[++i];
        else if (strcmp(a, "--meta") == 0 && i + 1 < argc) {
            const char *kv = argv[++i];
            if (!strchr(kv, '=') || kv[0] == '=') spd_die_input("import: --meta: expected KEY=VALUE, found '%s'", kv);
            meta[n_meta++] = spd_strdup(kv);
        } else if (a[0] == '-') spd_die_input("import: unknown option '%s' (or missing value)", a);
        else if (in) spd_die_input("import: expected one FILE.pth, found '%s' and '%s'", in, a);
        else in = a;
    }
    if (!in) {
        usage(stderr);
        return SPD_EXIT_INPUT;
    }
    char def_out[4200];
    const char *dot = strrchr(in, '.'), *slash = strrchr(in, '/');
    int stem = dot && (!slash || dot > slash) ? (int)(dot - in) : (int)strlen(in);
    snprintf(def_out, sizeof def_out, "%.*s.safetensors", stem, in);
    if (!out) out = def_out;
    if (strcmp(out, in) == 0) spd_die_input("import: --out %s would overwrite the input", out);

    spd_pth_file *f = spd_pth_read(in);
    if (!f) spd_die_last_error();
    spd_st_writer *w = spd_st_writer_new();
    const char *base = slash ? slash + 1 : in;
    spd_st_writer_meta(w, "source", base);
    long long step;
    int used = 0;
    char cfg_path[4200], step_s[32];
    char *config = NULL;
    if (sscanf(base, "model_%lld.pth%n", &step, &used) == 1 && used > 0 && base[used] == '\0' && step >= 0) {
        snprintf(cfg_path, sizeof cfg_path, "%.*sfinal_config.yaml", slash ? (int)(slash - in + 1) : 0, in);
        config = read_text(cfg_path);
        if (config) {
            snprintf(step_s, sizeof step_s, "%lld", step);
            spd_st_writer_meta(w, "format", "spd-checkpoint-v1");
            spd_st_writer_meta(w, "step", step_s);
            spd_st_writer_meta(w, "config", config);
        }
    }
    for (int i = 0; i < n_meta; i++) {
        char *eq = strchr(meta[i], '=');
        *eq = '\0';
        int taken = strcmp(meta[i], "source") == 0 || (config && (strcmp(meta[i], "format") == 0 ||
                                                                  strcmp(meta[i], "step") == 0 ||
                                                                  strcmp(meta[i], "config") == 0));
        for (int j = 0; j < i; j++) taken |= strcmp(meta[i], meta[j]) == 0;
        if (taken) spd_die_input("import: --meta %s: key already set", meta[i]);
        spd_st_writer_meta(w, meta[i], eq + 1);
    }
    int shared = 0, renamed = 0;
    char (*names)[SPD_NAME_MAX + 8] = spd_calloc((size_t)f->count + 1, sizeof *names);
    for (int i = 0; i < f->count; i++) {
        const spd_pth_tensor *t = &f->tensors[i];
        renamed += legacy_name(t->name, names[i], sizeof names[i]);
        spd_st_writer_add(w, names[i], t->dtype, t->ndim, t->shape, t->data);
        for (int j = 0; j < i; j++)
            if (f->tensors[j].storage == t->storage) {
                shared++;
                break;
            }
    }
    if (spd_st_writer_save(w, out)) spd_die_last_error();
    printf("wrote %s (%d tensors, %d of them sharing a storage in the .pth, copied; %d old SPD names mapped%s)\n", out,
           f->count, shared, renamed, config ? "; metadata from final_config.yaml" : "");
    free(names);
    spd_st_writer_free(w);
    spd_pth_free(f);
    free(config);
    for (int i = 0; i < n_meta; i++) free(meta[i]);
    free(meta);
    return 0;
}
