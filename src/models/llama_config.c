#include "models/llama_config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

#include "core/error.h"

llama_config llama_config_ss_4l(void) {
    return (llama_config){.vocab_size = 4019, .n_layer = 4, .n_head = 4, .n_kv_heads = 2, .n_embd = 128,
                          .n_intermediate = 341, .n_ctx = 512, .rotary_base = 10000.0, .rms_norm_eps = 1e-6,
                          .rotary_adjacent_pairs = false};
}

static int get_int(const cJSON *obj, const char *key, int *out, const char *source) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) return spd_set_error("%s: target_config.%s: missing", source, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 1 ||
        v->valuedouble > 1e9)
        return spd_set_error("%s: target_config.%s: expected a positive integer", source, key);
    *out = (int)v->valuedouble;
    return 0;
}

static int get_double(const cJSON *obj, const char *key, double *out, const char *source) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) return spd_set_error("%s: target_config.%s: missing", source, key);
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0))
        return spd_set_error("%s: target_config.%s: expected a positive number", source, key);
    *out = v->valuedouble;
    return 0;
}

int llama_config_from_json(llama_config *cfg, const char *json, const char *source) {
    cJSON *root = cJSON_Parse(json);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return spd_set_error("%s: target_config: expected a JSON object", source);
    }
    int rc = -1;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (type && !(cJSON_IsString(type) && strcmp(type->valuestring, "LlamaSimple") == 0)) {
        spd_set_error("%s: target_config.model_type: expected \"LlamaSimple\"", source);
        goto done;
    }
    if (get_int(root, "vocab_size", &cfg->vocab_size, source) || get_int(root, "n_layer", &cfg->n_layer, source) ||
        get_int(root, "n_head", &cfg->n_head, source) ||
        get_int(root, "n_key_value_heads", &cfg->n_kv_heads, source) ||
        get_int(root, "n_embd", &cfg->n_embd, source) ||
        get_int(root, "n_intermediate", &cfg->n_intermediate, source) || get_int(root, "n_ctx", &cfg->n_ctx, source) ||
        get_double(root, "rotary_base", &cfg->rotary_base, source) ||
        get_double(root, "rms_norm_eps", &cfg->rms_norm_eps, source))
        goto done;
    const cJSON *adj = cJSON_GetObjectItemCaseSensitive(root, "rotary_adjacent_pairs");
    cfg->rotary_adjacent_pairs = false;
    if (adj) {
        if (!cJSON_IsBool(adj)) {
            spd_set_error("%s: target_config.rotary_adjacent_pairs: expected true or false", source);
            goto done;
        }
        cfg->rotary_adjacent_pairs = cJSON_IsTrue(adj);
    }
    rc = llama_config_validate(cfg, source);
done:
    cJSON_Delete(root);
    return rc;
}

int llama_config_validate(const llama_config *cfg, const char *source) {
    if (cfg->n_embd % cfg->n_head)
        return spd_set_error("%s: target_config: n_embd %d is not a multiple of n_head %d", source, cfg->n_embd,
                             cfg->n_head);
    if (cfg->n_head % cfg->n_kv_heads)
        return spd_set_error("%s: target_config: n_head %d is not a multiple of n_key_value_heads %d", source,
                             cfg->n_head, cfg->n_kv_heads);
    if ((cfg->n_embd / cfg->n_head) % 2)
        return spd_set_error("%s: target_config: head dim %d must be even for rotary embedding", source,
                             cfg->n_embd / cfg->n_head);
    return 0;
}
