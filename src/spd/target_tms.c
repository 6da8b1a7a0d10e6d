#include "core/real.h"

#include "spd/target_tms.h"

#if !SPD_REAL_ON_DEVICE  // CPU only for now (train.h, tms.h)

static void fwd(void *m) { RFN(tms_forward)(m); }
static void bwd(void *m) { RFN(tms_backward)(m); }

spd_target RFN(spd_target_tms)(tms_model *m) {
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
