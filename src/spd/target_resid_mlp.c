#include "core/real.h"

#include "spd/target_resid_mlp.h"

#if !SPD_REAL_ON_DEVICE  // CPU only for now (train.h, resid_mlp.h)

static void fwd(void *m) { RFN(resid_mlp_forward)(m); }
static void bwd(void *m) { RFN(resid_mlp_backward)(m); }

spd_target RFN(spd_target_resid_mlp)(resid_mlp_model *m) {
    return (spd_target){.model = m,
                        .sites = m->sites,
                        .n_sites = m->n_sites + m->n_identity,  // inserted identities after the model's
                        .N = m->B,
                        .d_out = m->cfg.n_features,
                        .out = m->out,
                        .dout = m->dout,
                        .tokens = NULL,
                        .forward = fwd,
                        .backward = bwd};
}

#endif
