// The spd command: one binary, one subcommand per job.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "cli/commands.h"
#include "core/error.h"

static void usage(FILE *out) {
    fputs("usage: spd <command> [options]\n"
          "commands:\n"
          "  train [CONFIG]  SPD training from an SPD config, --experiment NAME, or with no argument\n"
          "                  the built-in default run (TMS 5-2 target + decomposition, about a minute)\n"
          "  check FILE...   recompute spd-ref-v1 reference files and report per-tensor errors\n"
          "  bench linear    time one LinearComponents forward/backward/AdamW step\n"
          "  bench full      time the LlamaSimple ComponentModel step (seed protocol)\n"
          "  info FILE       list the tensors and metadata of a safetensors file\n"
          "  config check CONFIG.yaml  validate an SPD config and print it resolved\n"
          "  train-target --experiment NAME  train a toy target (tms_5-2, ..., resid_mlp_3) as SPD does\n"
          "  export RUN_DIR --format pth   write model_<step>.pth as PyTorch SPD saves it\n"
          "  import FILE.pth  a torch.save state dict (SPD checkpoint) to safetensors\n"
          "  eval CHECKPOINT  evaluate a model checkpoint as the final evaluation of its run\n"
          "run 'spd <command> --help' for its options\n",
          out);
}

int main(int argc, char **argv) {
#ifdef _OPENMP
    // The CPU loops split over OpenMP threads only when OMP_NUM_THREADS asks: on a
    // machine whose cores other jobs share, a thread team waits for its slowest
    // member each region (TMS 5-2 training: 2 threads 4x slower than 1 under load).
    if (!getenv("OMP_NUM_THREADS")) omp_set_num_threads(1);
#endif
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? SPD_EXIT_INPUT : 0;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "check") == 0) return cmd_check(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0) return cmd_bench(argc - 1, argv + 1);
    if (strcmp(cmd, "info") == 0) return cmd_info(argc - 1, argv + 1);
    if (strcmp(cmd, "config") == 0) return cmd_config(argc - 1, argv + 1);
    if (strcmp(cmd, "train") == 0) return cmd_train(argc - 1, argv + 1);
    if (strcmp(cmd, "train-target") == 0) return cmd_train_target(argc - 1, argv + 1);
    if (strcmp(cmd, "export") == 0) return cmd_export(argc - 1, argv + 1);
    if (strcmp(cmd, "import") == 0) return cmd_import(argc - 1, argv + 1);
    if (strcmp(cmd, "eval") == 0) return cmd_eval(argc - 1, argv + 1);
    spd_die_input("unknown command '%s' (run 'spd --help' for the list)", cmd);
}
