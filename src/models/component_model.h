// SPD's ComponentModel over a LlamaSimple target: the chosen linear sites get
// component modules (V [d_in, C], U [C, d_out], trained), the rest keeps the
// frozen target weights. One spec table holds everything under SPD's
// state-dict names, so a checkpoint or an spd-ref-v1 file maps onto it by name.
#ifndef SPD_COMPONENT_MODEL_H
#define SPD_COMPONENT_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/real.h"
#include "core/spec.h"
#include "models/linear_site.h"
#include "models/llama_simple.h"
#include "models/module_select.h"

typedef struct {
    spd_spec spec;
    llama_model target;
    component_module *modules;  // in SPD's module order (patterns, then target order)
    int n_modules;
    bool use_delta;  // delta components allocated (each module may still switch its own off)
} component_model;

typedef struct {
    int B, S;              // positions per step: batch x sequence
    bool untied_lm_head;   // the head has its own weight instead of wte's
    bool use_delta;        // allocate weight deltas and input.delta_masks.<dashed>
} component_model_options;

// Declares, selects, allocates and binds. Tensors start at zero (ones for norm
// gains); call spd_spec_init_values to draw SPD's initialisation. 0, or -1 with
// spd_last_error() naming the pattern that failed.
int RFN(component_model_build)(component_model *cm, const llama_config *cfg, const spd_module_pattern *patterns,
                               int n_patterns, const component_model_options *opt);
// Switches one module's delta component off (its delta_mask becomes NULL).
void RFN(component_model_disable_delta)(component_model *cm, int module);
// Weight deltas of the modules using them, then the target forward: tokens -> logits.
void RFN(component_model_forward)(component_model *cm);
// dlogits (target.dlogits) -> gradients of every V and U, the delta path included.
// Gradients accumulate: zero them (spd_spec_zero_grad) before a new step.
void RFN(component_model_backward)(component_model *cm);
void RFN(component_model_free)(component_model *cm);

#endif
