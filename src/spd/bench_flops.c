// FLOP counts of one benchmark step: the numerator of the floor.
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
