// FLOP and byte counts of one benchmark step: the numerators of the floor.
#include "models/llama_config.h"
#include "spd/bench.h"

// Forward a = x V, y = (a m) U: 2NC(din + dout). Backward h = G U^T, dU, dV,
// dx: 4NC(din + dout).
static double components_flops(double N, double C, double din, double dout) { return 6.0 * N * C * (din + dout); }

double bench_step_flops(const bench_options *o) {
    double N = (double)o->batch * o->seq;
    if (o->kind == BENCH_LINEAR) return components_flops(N, o->C, o->d_in, o->d_out);
    llama_config c = llama_config_ss_4l();
    double d = c.n_embd, hd = (double)c.n_embd / c.n_head, kvd = hd * c.n_kv_heads, I = c.n_intermediate;
    double per_layer = components_flops(N, o->C, d, d) * 2 + components_flops(N, o->C, d, kvd) * 2 +
                       components_flops(N, o->C, d, I) * 2 + components_flops(N, o->C, I, d);
    // Attention counted as dense S x S (as cuBLAS/PyTorch run it): QK^T and AV
    // forward, four products of the same size backward.
    double attention = 12.0 * o->batch * c.n_head * (double)o->seq * o->seq * hd;
    // Tied LM head: logits forward and dx backward (the embedding is frozen).
    double head = 4.0 * N * d * c.vocab_size;
    return c.n_layer * (per_layer + attention) + head;
}

double bench_step_bytes(const bench_options *o) {
    double N = (double)o->batch * o->seq, f = 4.0;
    // Parameters: read by forward and backward at least once, written by AdamW;
    // gradient written and read; two moments read and written: 8 passes.
    if (o->kind == BENCH_LINEAR) {
        double params = (double)o->C * (o->d_in + o->d_out);
        return f * (N * o->C + N * o->d_in + 2 * N * o->d_out + 8 * params);
    }
    llama_config c = llama_config_ss_4l();
    double d = c.n_embd, kvd = (double)c.n_embd / c.n_head * c.n_kv_heads, I = c.n_intermediate;
    double masks = c.n_layer * 7.0 * N * o->C;
    double params = c.n_layer * (double)o->C * (2 * (d + d) + 2 * (d + kvd) + 3 * (d + I));
    return f * (masks + 8 * params + N * c.vocab_size) + 4.0 * N;
}
