// spd/dist.h in a build without NCCL (no nvcc, or nvcc without nccl.h and
// libnccl): --gpus is refused with a message; nothing else can be reached.
#include "spd/dist.h"

#include "core/error.h"

static _Noreturn void no_nccl(void) {
    spd_die_input("--gpus: this spd was built without NCCL (nccl.h / libnccl not found at build time; "
                  "set NCCL_HOME and rebuild)");
}

bool spd_dist_built(void) { return false; }
int spd_dist_unique_id(spd_dist_id *id) {
    (void)id;
    return spd_set_error("--gpus: this spd was built without NCCL (nccl.h / libnccl not found at build time; "
                         "set NCCL_HOME and rebuild)");
}
spd_dist *spd_dist_init(int rank, int world, const spd_dist_id *id) { no_nccl(); }
int spd_dist_rank(const spd_dist *d) { return 0; }
int spd_dist_world(const spd_dist *d) { return 1; }
void spd_dist_allreduce_avg_f32(spd_dist *d, float *buf, size_t n) { no_nccl(); }
void spd_dist_allreduce_avg_host_f64(spd_dist *d, double *buf, size_t n) { no_nccl(); }
void spd_dist_broadcast_f32(spd_dist *d, float *buf, size_t n) { no_nccl(); }
void spd_dist_allgather_f32(spd_dist *d, const float *send, float *recv, size_t n) { no_nccl(); }
void spd_dist_free(spd_dist *d) {}
