// A kernel timeline at real clocks, for any CUDA program, without changing it: loaded by
// the driver through CUDA_INJECTION64_PATH, it records every kernel, memset and memcpy
// (graph replays included) with CUPTI's activity API and writes one CSV line per record
// to $SPD_TRACE_OUT at exit. Unlike ncu it neither serializes kernels nor changes clocks,
// so idle time between kernels and the GEMM tuner's picks are as in a plain run.
// Build and use: dev/kernels/trace/README.md.
#include <cupti.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static FILE *trace_out;

#define CUPTI_OR_DIE(call)                                                                        \
    do {                                                                                          \
        CUptiResult r_ = (call);                                                                  \
        if (r_ != CUPTI_SUCCESS) {                                                                \
            const char *msg_ = "?";                                                               \
            cuptiGetResultString(r_, &msg_);                                                      \
            fprintf(stderr, "cupti_trace: %s failed: %s\n", #call, msg_);                         \
            exit(1);                                                                              \
        }                                                                                         \
    } while (0)

static void CUPTIAPI buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records) {
    *size = (size_t)16 << 20;
    *buffer = aligned_alloc(8, *size);
    if (!*buffer) {
        fprintf(stderr, "cupti_trace: out of host memory for a 16 MB record buffer\n");
        exit(1);
    }
    *max_records = 0;  // as many as fit
}

static void write_record(const char *kind, uint64_t start, uint64_t end, uint32_t stream, uint32_t corr,
                         uint32_t graph, const char *name) {
    // Names are mangled C++ (cu++filt demangles them); none holds a comma.
    fprintf(trace_out, "%s,%llu,%llu,%u,%u,%u,%s\n", kind, (unsigned long long)start, (unsigned long long)end,
            stream, corr, graph, name ? name : "");
}

static void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buffer, size_t size, size_t valid) {
    (void)ctx, (void)stream, (void)size;
    CUpti_Activity *rec = NULL;
    while (cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) {
        if (rec->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL || rec->kind == CUPTI_ACTIVITY_KIND_KERNEL) {
            const CUpti_ActivityKernel10 *k = (const CUpti_ActivityKernel10 *)rec;
            write_record("kernel", k->start, k->end, k->streamId, k->correlationId, k->graphId, k->name);
        } else if (rec->kind == CUPTI_ACTIVITY_KIND_MEMSET) {
            const CUpti_ActivityMemset4 *m = (const CUpti_ActivityMemset4 *)rec;
            write_record("memset", m->start, m->end, m->streamId, m->correlationId, m->graphId, "memset");
        } else if (rec->kind == CUPTI_ACTIVITY_KIND_MEMCPY) {
            const CUpti_ActivityMemcpy6 *m = (const CUpti_ActivityMemcpy6 *)rec;
            write_record("memcpy", m->start, m->end, m->streamId, m->correlationId, m->graphId, "memcpy");
        }
    }
    size_t dropped = 0;
    if (cuptiActivityGetNumDroppedRecords(ctx, stream, &dropped) == CUPTI_SUCCESS && dropped)
        fprintf(stderr, "cupti_trace: %zu records dropped\n", dropped);
    free(buffer);
}

static void flush_at_exit(void) {
    cuptiActivityFlushAll(1);
    if (trace_out) fclose(trace_out);
    trace_out = NULL;
}

// Called by the CUDA driver when it loads this library (CUDA_INJECTION64_PATH).
int InitializeInjection(void) {
    const char *path = getenv("SPD_TRACE_OUT");
    if (!path || !*path) path = "spd_trace.csv";
    trace_out = fopen(path, "w");
    if (!trace_out) {
        fprintf(stderr, "cupti_trace: cannot write %s\n", path);
        exit(1);
    }
    fprintf(trace_out, "kind,start_ns,end_ns,stream,correlation,graph,name\n");
    CUPTI_OR_DIE(cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed));
    CUPTI_OR_DIE(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL));
    CUPTI_OR_DIE(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMSET));
    CUPTI_OR_DIE(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY));
    atexit(flush_at_exit);
    return 1;
}
