// The launcher of `spd train --gpus N` and `spd bench full --gpus N` (spd/dist.h): the spd process creates the
// NCCL unique id and starts N ranks, each this same binary re-executed with
//   spd train ARGS... --rank R --world N     (SPD_NCCL_ID=<hex id> in the environment)
// which is also the interface for starting ranks by hand or by another launcher
// (every rank must get the same id and N). Rank 0 keeps stdout; the other ranks'
// stdout goes to /dev/null (their stderr stays, for errors). The launcher waits:
// when a rank exits non-zero (or rank 0 exits at all) it kills the others, names
// the failed rank, and exits with that rank's status. SIGINT reaches every rank
// from the terminal (ranks > 0 ignore it; rank 0 saves and exits); SIGTERM to the
// launcher is passed on to rank 0.
#ifndef SPD_CLI_LAUNCH_H
#define SPD_CLI_LAUNCH_H

// argv: the subcommand's own (argv[0] = "train" or "bench"); returns the exit status.
int spd_launch_ranks(int world, int argc, char **argv);

#endif
