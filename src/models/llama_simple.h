// LlamaSimple, the target model of SPD's language-model runs (SPD_SPEC.md 7.1):
// pre-norm blocks of RMSNorm -> GQA attention with rotary embedding and
// RMSNorm -> SwiGLU MLP, a final RMSNorm and an LM head tied to the embedding.
// Every matrix is a linear site (linear_site.h) so that components can stand in
// for it. The backward computes only what SPD trains: the gradients of the
// attached components; target weights are frozen.
#ifndef SPD_LLAMA_SIMPLE_H
#define SPD_LLAMA_SIMPLE_H

#include <stdbool.h>

#include "core/real.h"
#include "core/spec.h"
#include "models/linear_site.h"
#include "models/llama_config.h"
#include "models/module_select.h"

enum { LLAMA_Q, LLAMA_K, LLAMA_V, LLAMA_O, LLAMA_GATE, LLAMA_UP, LLAMA_DOWN, LLAMA_SITES_PER_LAYER };

typedef struct {
    real *rms_1, *rms_2;  // [d] frozen gains
    linear_site *sites[LLAMA_SITES_PER_LAYER];
    // Activations saved by forward, N = B*S rows.
    real *x_in;                 // [N, d] residual stream entering the block
    real *ln1, *rstd1;          // [N, d], [N]
    real *q, *k, *v;            // [N, nh*hd], [N, nkv*hd]; q and k after rotary
    real *att;                  // [B, nh, S, S] softmax probabilities
    real *atty;                 // [N, d] attention output before o_proj
    real *mid;                  // [N, d] residual after attention
    real *ln2, *rstd2;          // [N, d], [N]
    real *gate, *up, *hidden;   // [N, n_intermediate]
} llama_layer;

typedef struct {
    llama_config cfg;
    int B, S, N;
    bool untied_lm_head;
    linear_site *sites;  // wte, 7 per layer (q, k, v, o, gate, up, down), lm_head: registration order
    int n_sites;
    int n_identity;      // inserted identities: sites[n_sites ..] (models/identity_insertion.h)
    linear_site *wte_site, *lm_head_site;
    llama_layer *layers;
    real *ln_f;                 // [d]
    real *rope_cos, *rope_sin;  // [n_ctx, hd]
    int32_t *tokens;            // [N] input.tokens
    real *resid, *lnf, *rstdf;  // [N, d], [N, d], [N]: final residual and norm
    real *proj;                 // [N, d] output of o_proj / down_proj before the residual add
    real *logits;               // [N, vocab]
    real *loss;                 // [1] written by the loss op
    // Backward buffers.
    real *dlogits, *dres, *dln, *dq, *dk, *dv, *datty, *dgate, *dup, *dhidden;
} llama_model;

// Adds the model's tensors to spec (target weights as "target_model.*" FROZEN,
// input.tokens, activations). With untied_lm_head the head has its own
// "target_model.lm_head.weight"; otherwise it reads wte. Site paths are ready
// after this call, for module selection.
void RFN(llama_declare)(llama_model *m, spd_spec *spec, const llama_config *cfg, int B, int S,
                        bool untied_lm_head);
// SPD's identity insertion before the linear modules the patterns match (after
// llama_declare, before spd_spec_alloc). 0, or -1 with spd_last_error().
int RFN(llama_insert_identity)(llama_model *m, spd_spec *spec, const spd_module_pattern *patterns, int n_patterns);
// After spd_spec_alloc: pointers into the spec's buffers and the rotary tables.
void RFN(llama_bind)(llama_model *m, const spd_spec *spec);
// tokens -> logits.
void RFN(llama_forward)(llama_model *m);
// dlogits -> gradients of the attached components (accumulated).
void RFN(llama_backward)(llama_model *m);
void RFN(llama_free)(llama_model *m);

#endif
