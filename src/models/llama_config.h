// LlamaSimple's configuration (SPD_SPEC.md 7.1), the fields spd.c uses.
#ifndef SPD_LLAMA_CONFIG_H
#define SPD_LLAMA_CONFIG_H

#include <stdbool.h>

typedef struct {
    int vocab_size, n_layer, n_head, n_kv_heads, n_embd, n_intermediate, n_ctx;
    double rotary_base, rms_norm_eps;
    bool rotary_adjacent_pairs;
} llama_config;

// The seed benchmark's model: the 4-layer SimpleStories LlamaSimple
// (vocab 4019, n_embd 128, n_head 4, n_kv 2, n_intermediate 341, n_ctx 512).
llama_config llama_config_ss_4l(void);

// Parses a JSON object such as spd-ref-v1's target_config. `source` names where
// the text came from for messages. 0, or -1 with spd_last_error() set.
int llama_config_from_json(llama_config *cfg, const char *json, const char *source);

// Checks the shape rules (heads divide n_embd, kv heads divide heads, even head dim).
int llama_config_validate(const llama_config *cfg, const char *source);

#endif
