// Data parallelism over NCCL (SPD_SPEC.md 5.9): one process per GPU, each rank
// training on its slice of the global batch, gradients averaged by one
// ncclAllReduce over the flat TRAINED gradient buffer (core/spec.h).
//
// Semantics (SPD's): the global batch_size is split into world equal slices,
// rank r taking rows [r B/world, (r+1) B/world) of the batch a single-process
// run draws (toy data is keyed by the global row, so the slices concatenate to
// the single-process batch); mask, routing and PGD-init draws use the Philox key
// seed * world + rank (SPD's seed_per_rank), so they differ per rank and N > 1
// matches N = 1 in distribution, and to float rounding for configs without
// random draws (continuous sampling, no stochastic / PGD-random terms).
// N = 1 through this path is the single-process run (seed * 1 + 0 = seed).
// Importance minimality's beta term uses local_sum * world (SPD); shared PGD
// sources are broadcast from rank 0 and their gradients averaged at each PGD
// step. Rank 0 alone prints, logs and checkpoints; the logged loss values are
// the mean over ranks, and the logged L0 comes from every rank's CI (all-gathered
// into the global batch's rows on log steps).
//
// Errors: every collective waits with a deadline (SPD_DIST_TIMEOUT_S, default
// 300 s); a rank that fails or times out aborts its communicator and exits with
// its message, and the launcher (cli/launch.c) stops the other ranks.
//
// Built with NCCL when the Makefile finds it (src/cuda/dist.cu); otherwise
// src/spd/dist_none.c, whose spd_dist_init refuses with a message.
#ifndef SPD_DIST_H
#define SPD_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SPD_DIST_ID_BYTES 128  // sizeof(ncclUniqueId)
#define SPD_DIST_MAX_WORLD 64

typedef struct {
    unsigned char bytes[SPD_DIST_ID_BYTES];
} spd_dist_id;

// ---- precision-free rules (src/spd/dist_split.c, every build) ----------------------

// Rank `rank`'s rows of a global batch of B: *row0 and *rows. B must divide by
// world: 0, or -1 with spd_last_error() naming `what` (e.g. "batch_size").
int spd_dist_rows(int64_t B, int world, int rank, const char *what, int64_t *row0, int64_t *rows);
// SPD's per-rank seed: seed * world + rank.
uint64_t spd_dist_rank_seed(uint64_t seed, int world, int rank);
// The id as 256 hex digits (out: SPD_DIST_ID_BYTES * 2 + 1 chars) and back (0, or -1 with a message).
void spd_dist_id_to_hex(const spd_dist_id *id, char *out);
int spd_dist_id_from_hex(spd_dist_id *id, const char *hex);
// The collective deadline in seconds: SPD_DIST_TIMEOUT_S when set (a positive number), else 300.
double spd_dist_timeout_s(void);

// ---- the communicator (src/cuda/dist.cu; without NCCL src/spd/dist_none.c) --------

typedef struct spd_dist spd_dist;

bool spd_dist_built(void);  // this spd was built with NCCL
// A fresh unique id (the launcher's, before it starts the ranks): 0, or -1 with a message.
int spd_dist_unique_id(spd_dist_id *id);
// Selects GPU rank % device count, then joins the communicator (non-blocking
// init polled against the deadline); dies with a message on failure or timeout.
// Call before anything else touches the GPU.
spd_dist *spd_dist_init(int rank, int world, const spd_dist_id *id);
int spd_dist_rank(const spd_dist *d);
int spd_dist_world(const spd_dist *d);
// In place, on the CUDA backend's stream, waited for with the deadline:
// buf [n] float32 in device memory <- the mean over ranks.
void spd_dist_allreduce_avg_f32(spd_dist *d, float *buf, size_t n);
// buf [n] float64 in HOST memory <- the mean over ranks (log values).
void spd_dist_allreduce_avg_host_f64(spd_dist *d, double *buf, size_t n);
// buf [n] float32 in device memory <- rank 0's.
void spd_dist_broadcast_f32(spd_dist *d, float *buf, size_t n);
// recv [world * n] <- every rank's send [n], in rank order (device memory).
void spd_dist_allgather_f32(spd_dist *d, const float *send, float *recv, size_t n);
void spd_dist_free(spd_dist *d);

#ifdef __cplusplus
}
#endif

#endif
