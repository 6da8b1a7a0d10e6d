// LlamaSimple as an SPD training target (spd/train.h spd_target): input tokens
// [B, S] (input.tokens), output the logits [B*S, vocab] compared by the
// trainer's output loss (kl or mse over the vocab, per position). Sites in
// SPD's module order: wte (an embedding site: decomposable only with
// ci_fn_type mlp), h.<i>.attn.{q,k,v,o}_proj, h.<i>.mlp.{gate,up,down}_proj,
// lm_head.
//
// Use: llama_declare(&m, &spec, ...) into the caller's spec (target weights
// FROZEN under "target_model."), spd_trainer_declare with
// spd_target_llama(&m) (paths and shapes are ready after llama_declare),
// spd_spec_alloc, llama_bind, then spd_trainer_bind with spd_target_llama(&m)
// again (now with the buffers).
//
// Every backend (the CUDA build: the model and its tokens on the GPU).
#ifndef SPD_TARGET_LLAMA_H
#define SPD_TARGET_LLAMA_H

#include "core/real.h"
#include "models/llama_simple.h"
#include "spd/train.h"

spd_target RFN(spd_target_llama)(llama_model *m);

#endif
