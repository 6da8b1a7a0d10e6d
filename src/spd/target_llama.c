#include "core/real.h"

#include "spd/target_llama.h"

#if !SPD_REAL_ON_DEVICE  // CPU only for now (train.h)

static void fwd(void *m) { RFN(llama_forward)(m); }
static void bwd(void *m) { RFN(llama_backward)(m); }

spd_target RFN(spd_target_llama)(llama_model *m) {
    return (spd_target){.model = m,
                        .sites = m->sites,
                        .n_sites = m->n_sites + m->n_identity,  // inserted identities after the model's
                        .N = m->N,
                        .d_out = m->cfg.vocab_size,
                        .out = m->logits,
                        .dout = m->dlogits,
                        .tokens = m->tokens,
                        .forward = fwd,
                        .backward = bwd};
}

#endif
