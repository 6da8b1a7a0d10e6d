// spd config check CONFIG.yaml: validates an SPD config as `spd train` will
// read it and prints the resolved config (every field, defaults filled in).
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "core/error.h"
#include "spd/config.h"

static void usage(FILE *out) {
    fputs("usage: spd config check CONFIG.yaml\n"
          "  validates CONFIG.yaml against SPD's config schema (old keys are migrated,\n"
          "  with a note on stderr) and prints the resolved config as YAML on stdout;\n"
          "  a bad config gives one line on stderr naming the key, and exit status 2\n",
          out);
}

static int config_check(int argc, char **argv) {
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (argv[i][0] == '-' && argv[i][1] != '\0') spd_die_input("config check: unknown option '%s'", argv[i]);
        if (path) spd_die_input("config check: expected one CONFIG file, found '%s' and '%s'", path, argv[i]);
        path = argv[i];
    }
    if (!path) {
        usage(stderr);
        return SPD_EXIT_INPUT;
    }
    spd_config cfg;
    if (spd_config_load(&cfg, path)) spd_die_last_error();
    spd_config_fprint_yaml(&cfg, stdout);
    spd_config_free(&cfg);
    return fflush(stdout) == 0 ? 0 : SPD_EXIT_INTERNAL;
}

int cmd_config(int argc, char **argv) {
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc < 2) {
        usage(stderr);
        return SPD_EXIT_INPUT;
    }
    if (strcmp(argv[1], "check") == 0) return config_check(argc - 1, argv + 1);
    spd_die_input("config: unknown subcommand '%s' (expected check)", argv[1]);
}
