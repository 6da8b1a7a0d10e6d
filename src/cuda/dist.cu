// spd/dist.h over NCCL. The communicator is created non-blocking
// (ncclConfig_t.blocking = 0) so that init and every collective can be polled
// against a deadline: on an NCCL error or a timeout the rank aborts its
// communicator (ncclCommAbort) and dies with a message naming the rank, the
// operation and the cause, instead of hanging on a peer that is gone.
// Collectives run on the CUDA backend's stream, after the step's kernels.
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cuda/cuda_common.h"

extern "C" {
#include "spd/dist.h"
}

struct spd_dist {
    ncclComm_t comm;
    int rank, world;
    double timeout_s;
    double *scratch;  // device float64 staging for host all-reduces
    size_t scratch_n;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void pause_us(long us) {
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

// The message first (so that it is seen even if the abort stalls), then the abort
// under an alarm: a communicator stuck connecting to a dead peer must not hang the exit.
[[noreturn]] static void fail(spd_dist *d, const char *what, const char *why) {
    fprintf(stderr, "spd: rank %d of %d: NCCL %s: %s\n", d->rank, d->world, what, why);
    fflush(stderr);
    if (d->comm) {
        alarm(15);
        ncclCommAbort(d->comm);  // frees the communicator whatever state its peers are in
    }
    exit(SPD_EXIT_INTERNAL);
}

// Waits until the communicator has no operation in progress (non-blocking calls
// return ncclInProgress until their enqueue completes).
static void wait_comm(spd_dist *d, ncclResult_t r, const char *what, double deadline) {
    while (r == ncclInProgress) {
        if (now_s() > deadline) fail(d, what, "timed out (another rank failed or never started?)");
        pause_us(50);
        if (ncclCommGetAsyncError(d->comm, &r) != ncclSuccess) fail(d, what, "ncclCommGetAsyncError failed");
    }
    if (r != ncclSuccess) fail(d, what, ncclGetErrorString(r));
}

// Waits for the stream (the collective's completion), checking for NCCL
// errors raised asynchronously and for the deadline.
static void wait_stream(spd_dist *d, const char *what, double deadline) {
    cudaStream_t s = spd_cuda_stream();
    for (long spins = 0;; spins++) {
        cudaError_t e = cudaStreamQuery(s);
        if (e == cudaSuccess) return;
        if (e != cudaErrorNotReady) fail(d, what, cudaGetErrorString(e));
        ncclResult_t r;
        if (ncclCommGetAsyncError(d->comm, &r) != ncclSuccess) fail(d, what, "ncclCommGetAsyncError failed");
        if (r != ncclSuccess && r != ncclInProgress) fail(d, what, ncclGetErrorString(r));
        if (now_s() > deadline) fail(d, what, "timed out (another rank failed or stopped?)");
        if (spins > 1000) pause_us(20);  // spin first: a toy model's all-reduce takes microseconds
    }
}

extern "C" bool spd_dist_built(void) { return true; }

extern "C" int spd_dist_unique_id(spd_dist_id *id) {
    static_assert(sizeof(ncclUniqueId) == SPD_DIST_ID_BYTES, "ncclUniqueId size");
    ncclUniqueId u;
    ncclResult_t r = ncclGetUniqueId(&u);
    if (r != ncclSuccess) return spd_set_error("--gpus: ncclGetUniqueId: %s", ncclGetErrorString(r));
    memcpy(id->bytes, &u, sizeof u);
    return 0;
}

extern "C" spd_dist *spd_dist_init(int rank, int world, const spd_dist_id *id) {
    setenv("NCCL_NVLS_ENABLE", "0", 1);  // NVLink multicast off (the lent machines' rule)
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0)
        spd_die_input("rank %d of %d: no usable GPU (%s)", rank, world,
                      e != cudaSuccess ? cudaGetErrorString(e) : "none found");
    CUDA_CHECK(cudaSetDevice(rank % n));
    spd_cuda_init();
    spd_dist *d = (spd_dist *)spd_calloc(1, sizeof *d);
    d->rank = rank;
    d->world = world;
    d->timeout_s = spd_dist_timeout_s();
    ncclUniqueId u;
    memcpy(&u, id->bytes, sizeof u);
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    double deadline = now_s() + d->timeout_s;
    ncclResult_t r = ncclCommInitRankConfig(&d->comm, world, u, rank, &cfg);
    if (r != ncclSuccess && r != ncclInProgress) fail(d, "ncclCommInitRankConfig", ncclGetErrorString(r));
    wait_comm(d, r, "ncclCommInitRankConfig", deadline);
    return d;
}

extern "C" int spd_dist_rank(const spd_dist *d) { return d->rank; }
extern "C" int spd_dist_world(const spd_dist *d) { return d->world; }

static void allreduce(spd_dist *d, void *buf, size_t n, ncclDataType_t type, const char *what) {
    double deadline = now_s() + d->timeout_s;
    ncclResult_t r = ncclAllReduce(buf, buf, n, type, ncclAvg, d->comm, spd_cuda_stream());
    wait_comm(d, r, what, deadline);
    wait_stream(d, what, deadline);
}

extern "C" void spd_dist_allreduce_avg_f32(spd_dist *d, float *buf, size_t n) {
    if (n) allreduce(d, buf, n, ncclFloat32, "all-reduce (float32)");
}

extern "C" void spd_dist_allreduce_avg_host_f64(spd_dist *d, double *buf, size_t n) {
    if (!n) return;
    if (n > d->scratch_n) {
        if (d->scratch) CUDA_CHECK(cudaFree(d->scratch));
        CUDA_CHECK(cudaMalloc(&d->scratch, n * sizeof(double)));
        d->scratch_n = n;
    }
    cudaStream_t s = spd_cuda_stream();
    CUDA_CHECK(cudaMemcpyAsync(d->scratch, buf, n * sizeof(double), cudaMemcpyHostToDevice, s));
    allreduce(d, d->scratch, n, ncclFloat64, "all-reduce (float64 log values)");
    CUDA_CHECK(cudaMemcpyAsync(buf, d->scratch, n * sizeof(double), cudaMemcpyDeviceToHost, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
}

extern "C" void spd_dist_broadcast_f32(spd_dist *d, float *buf, size_t n) {
    if (!n) return;
    double deadline = now_s() + d->timeout_s;
    ncclResult_t r = ncclBroadcast(buf, buf, n, ncclFloat32, 0, d->comm, spd_cuda_stream());
    wait_comm(d, r, "broadcast", deadline);
    wait_stream(d, "broadcast", deadline);
}

extern "C" void spd_dist_allgather_f32(spd_dist *d, const float *send, float *recv, size_t n) {
    if (!n) return;
    double deadline = now_s() + d->timeout_s;
    ncclResult_t r = ncclAllGather(send, recv, n, ncclFloat32, d->comm, spd_cuda_stream());
    wait_comm(d, r, "all-gather", deadline);
    wait_stream(d, "all-gather", deadline);
}

extern "C" void spd_dist_free(spd_dist *d) {
    if (!d) return;
    if (d->comm) {
        double deadline = now_s() + d->timeout_s;
        ncclResult_t r = ncclCommFinalize(d->comm);
        if (r == ncclSuccess || r == ncclInProgress) wait_comm(d, r, "ncclCommFinalize", deadline);
        ncclCommDestroy(d->comm);
    }
    if (d->scratch) cudaFree(d->scratch);
    free(d);
}
