// spd check FILE...: recompute spd-ref-v1 reference files (see spd/reference_check.h).
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "core/error.h"
#include "core/safetensors.h"
#include "spd/reference_check.h"
#include "spd/train_check.h"
#ifdef SPD_HAVE_CUDA
#include "cuda/backend.h"
#endif

static void usage(FILE *out) {
    fputs("usage: spd check [--device cpu|cuda] [--precision f32|f64|both] [--tf32|--bf16] [--mode unfused|fused]\n"
          "                 FILE...\n"
          "Recomputes logits, loss and every V/U gradient of each spd-ref-v1 file and prints\n"
          "max-relative and norm-relative errors per tensor. Bounds on the norm-relative error:\n"
          "float64 1e-10, float32 1e-5; 1e-6 at least where the file stores float32 expectations.\n"
          "--device cuda recomputes on the GPU in float32 (bound 1e-5), or with TF32 products\n"
          "(--tf32, bound 5e-3), or with bf16 operands and float32 accumulation in every product\n"
          "(--bf16, SPD's autocast_bf16; bound 3e-2, the loss measured against the rms of the\n"
          "logits), in either GPU mode (--mode, default unfused).\n"
          "spd-ref-train-v1 files (a training step, or a short run; docs/spd-ref-train-v1.md) are\n"
          "recomputed by the C trainer in float64 on the CPU (bound 1e-8; 1e-6 for a run's losses\n"
          "and final parameters); what spd.c does not implement yet is refused (exit 2).\n"
          "Exit status: 0 all pass, 1 a tensor failed, 2 bad input.\n",
          out);
}

int cmd_check(int argc, char **argv) {
    bool f32 = true, f64 = true, cuda = false, tf32 = false, bf16 = false, fused = false;
    int first_file = 1;
    for (; first_file < argc && strncmp(argv[first_file], "--", 2) == 0; first_file++) {
        const char *a = argv[first_file];
        if (strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--precision") == 0 && first_file + 1 < argc) {
            const char *p = argv[++first_file];
            if (strcmp(p, "f32") == 0) f64 = false;
            else if (strcmp(p, "f64") == 0) f32 = false;
            else if (strcmp(p, "both") != 0)
                spd_die_input("check: --precision: expected f32, f64 or both, found \"%s\"", p);
            continue;
        }
        if (strcmp(a, "--device") == 0 && first_file + 1 < argc) {
            const char *d = argv[++first_file];
            if (strcmp(d, "cuda") == 0) cuda = true;
            else if (strcmp(d, "cpu") != 0) spd_die_input("check: --device: expected cpu or cuda, found \"%s\"", d);
            continue;
        }
        if (strcmp(a, "--tf32") == 0 || strcmp(a, "--bf16") == 0) {
            if (a[2] == 't') tf32 = true;
            else bf16 = true;
            if (tf32 && bf16) spd_die_input("check: --tf32 and --bf16 exclude each other");
            continue;
        }
        if (strcmp(a, "--mode") == 0 && first_file + 1 < argc) {
            const char *m = argv[++first_file];
            if (strcmp(m, "fused") == 0) fused = true;
            else if (strcmp(m, "unfused") != 0) spd_die_input("check: --mode: expected unfused or fused, found \"%s\"", m);
            continue;
        }
        spd_die_input("check: unknown option '%s' (see spd check --help)", a);
    }
    if (first_file >= argc) {
        usage(stderr);
        return SPD_EXIT_INPUT;
    }
    if ((tf32 || bf16 || fused) && !cuda) spd_die_input("check: --tf32, --bf16 and --mode apply to --device cuda only");
#ifdef SPD_HAVE_CUDA
    if (cuda) {
        spd_cuda_init();
        if (tf32) spd_cuda_set_matmul_precision(SPD_MATMUL_TF32);
        if (bf16) spd_cuda_set_matmul_precision(SPD_MATMUL_BF16);
        spd_cuda_set_mode(fused ? SPD_CUDA_FUSED : SPD_CUDA_UNFUSED);
        fprintf(stderr, "device: %s, products %s, mode %s, norm-relative bound %.0e\n", spd_cuda_device_name(),
                spd_cuda_matmul_precision_name(), fused ? "fused" : "unfused", spd_cuda_norm_bound());
    }
#else
    if (cuda) spd_die_input("check: --device cuda: this spd was built without CUDA (nvcc not found at build time)");
#endif
    int failed_files = 0;
    for (int i = first_file; i < argc; i++) {
        spd_st_file *f = spd_st_open(argv[i]);
        if (!f) spd_die_last_error();
        printf("%s\n%-8s %-52s %12s %12s %8s  %s\n", argv[i], "dtype", "tensor", "max_rel", "norm_rel", "bound",
               "status");
        int failures = 0;
        const char *format = spd_st_meta(f, "format");
        if (format && strcmp(format, SPD_REF_TRAIN_FORMAT) == 0) {
            if (!cuda && !f64)
                spd_die_input("check: %s: %s files are checked in float64 on the CPU (or --device cuda)", argv[i],
                              SPD_REF_TRAIN_FORMAT);
            if (cuda && (tf32 || fused))
                spd_die_input("check: %s: %s files take neither --tf32 nor --mode fused", argv[i], SPD_REF_TRAIN_FORMAT);
#ifdef SPD_HAVE_CUDA
            int r = cuda ? train_check_cuda(f, stdout) : train_check_f64(f, stdout);
#else
            int r = train_check_f64(f, stdout);
#endif
            if (r < 0) spd_die_last_error();
            printf("%s: %s (%d tensors failed)\n\n", argv[i], r ? "FAIL" : "PASS", r);
            failed_files += r > 0;
            spd_st_close(f);
            continue;
        }
#ifdef SPD_HAVE_CUDA
        if (cuda) {
            int r = reference_check_cuda(f, stdout);
            if (r < 0) spd_die_last_error();
            failures += r;
        }
#endif
        for (int pass = 0; pass < 2 && !cuda; pass++) {
            if ((pass == 0 && !f64) || (pass == 1 && !f32)) continue;
            int r = pass == 0 ? reference_check_f64(f, stdout) : reference_check_f32(f, stdout);
            if (r < 0) spd_die_last_error();
            failures += r;
        }
        printf("%s: %s (%d tensors failed)\n\n", argv[i], failures ? "FAIL" : "PASS", failures);
        failed_files += failures > 0;
        spd_st_close(f);
    }
    return failed_files ? 1 : 0;
}
