// See launch.h.
#include "cli/launch.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/error.h"
#include "spd/dist.h"

static volatile pid_t rank0_pid = -1;

static void forward_term(int sig) {
    if (rank0_pid > 0) kill(rank0_pid, sig);
}

static int status_code(int st) {
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return SPD_EXIT_INTERNAL;
}

int spd_launch_ranks(int world, int argc, char **argv) {
    spd_dist_id id;
    if (spd_dist_unique_id(&id)) spd_die_input("%s: %s", argv[0], spd_last_error());
    char hex[2 * SPD_DIST_ID_BYTES + 1], wbuf[16], rbuf[16];
    spd_dist_id_to_hex(&id, hex);
    snprintf(wbuf, sizeof wbuf, "%d", world);
    // spd train ARGS... --rank R --world N
    char **args = spd_calloc((size_t)argc + 7, sizeof *args);
    args[0] = "spd";
    for (int i = 0; i < argc; i++) args[1 + i] = argv[i];
    args[argc + 1] = "--rank";
    args[argc + 2] = rbuf;
    args[argc + 3] = "--world";
    args[argc + 4] = wbuf;
    if (setenv("SPD_NCCL_ID", hex, 1) || setenv("NCCL_NVLS_ENABLE", "0", 1))
        spd_die("%s --gpus: setenv: %s", argv[0], strerror(errno));
    fflush(stdout);
    fflush(stderr);
    pid_t *pids = spd_calloc((size_t)world, sizeof *pids);
    for (int r = 0; r < world; r++) {
        snprintf(rbuf, sizeof rbuf, "%d", r);
        pid_t p = fork();
        if (p < 0) spd_die("%s --gpus: fork: %s", argv[0], strerror(errno));
        if (p == 0) {
            if (r > 0 && !freopen("/dev/null", "w", stdout)) _exit(SPD_EXIT_INTERNAL);
            execv("/proc/self/exe", args);
            fprintf(stderr, "spd: %s --gpus: rank %d: exec /proc/self/exe: %s\n", argv[0], r, strerror(errno));
            _exit(SPD_EXIT_INTERNAL);
        }
        pids[r] = p;
    }
    rank0_pid = pids[0];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = SIG_IGN;  // the terminal's SIGINT reaches the ranks themselves
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = forward_term;
    sigaction(SIGTERM, &sa, NULL);
    int rc = 0, left = world, failed = -1;
    while (left > 0) {
        int st;
        pid_t p = waitpid(-1, &st, 0);
        if (p < 0) {
            if (errno == EINTR) continue;
            spd_die("%s --gpus: waitpid: %s", argv[0], strerror(errno));
        }
        int r = 0;
        while (r < world && pids[r] != p) r++;
        if (r == world) continue;
        pids[r] = 0;
        left--;
        int code = status_code(st);
        if (failed < 0 && (code != 0 || (r == 0 && left > 0))) {
            // A rank stopped: the others would wait in their next collective, so stop them now.
            failed = r;
            rc = code;
            if (code != 0)
                fprintf(stderr, "spd: %s --gpus %d: rank %d exited with status %d: stopping the other ranks\n",
                        argv[0], world, r, code);
            for (int k = 0; k < world; k++)
                if (pids[k] > 0) kill(pids[k], SIGKILL);
        }
    }
    free(pids);
    free(args);
    return rc;
}
