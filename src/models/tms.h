// TMS, the toy model of superposition (SPD_SPEC.md 7.2; spd/experiments/tms/models.py
// TMSModel, train_tms.py):
//
//   h_0     = linear1(x)                       x [B, n_features], linear1.weight [n_hidden, n_features]
//   h_{i+1} = hidden_layers.i(h_i)             hidden_layers.i.weight [n_hidden, n_hidden]
//   pre     = linear2(h_L) + linear2.bias      linear2.weight [n_features, n_hidden], bias [n_features]
//   out     = ReLU(pre)                        i.e. x^ = ReLU(W^T I W x + b) with W = linear1.weight
//
// nn.Linear layout throughout (y = x W^T + b); no bias except linear2's. SPD's
// state-dict names (under an optional prefix, "target_model." inside a
// ComponentModel) in SPD's order: linear1.weight, linear2.weight, linear2.bias,
// hidden_layers.<i>.weight.
//
// Decomposable modules = linear sites, in SPD's named_modules order: "linear1",
// "linear2", "hidden_layers.0", ... (linear2 is registered before hidden_layers).
// linear2's bias is added by the model after the site, so with components in
// place it is still added whatever the masks (SPD_SPEC.md 1.5 step 4).
// Identities inserted by tms_insert_identity (SPD's identity_module_info,
// models/identity_insertion.h) follow as sites[n_sites ..], "<module>.pre_identity".
//
// Tied weights (tied_weights, every reference target): SPD makes linear2.weight a
// transposed view of linear1.weight's storage, so a checkpoint holds both names
// with linear2.weight = linear1.weight^T. Here linear2.weight is its own tensor
// kept equal by tms_tie_weights (after init and after loading, as SPD's
// tie_weights_). The backward gives each name its own gradient, as torch gives the
// two Parameters: linear1.weight gets linear1's use, linear2.weight linear2's. To
// reproduce torch's AdamW on the aliased pair (SPD_SPEC.md 13.13: two Adam states,
// both updates land on the one matrix, weight decay twice), a trainer steps
// linear1.weight, calls tms_tie_weights, steps linear2.weight, then calls
// tms_tie_weights_reverse (torch's for-loop AdamW, the CPU default; the foreach
// variant, the CUDA default, applies both decays before both updates, a
// difference of order lr^2 * weight_decay). The gradient of the tied function
// with respect to W is dW1 + dW2^T. In SPD decompositions of a tied target the
// components are tied too (linear2.U = linear1.V^T, linear2.V = linear1.U^T,
// spd/run_spd.py): that is the component model's business.
//
// Init (tms_init_params; SPD's is torch's default nn.Linear init from the global RNG,
// here Philox): every weight and linear2.bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))
// (kaiming_uniform with a = sqrt(5)); linear2.bias zero when init_bias_to_zero;
// then linear2.weight = linear1.weight^T when tied. Hidden layers: the default init,
// or fixed to the identity ("-id" targets: fixed_identity_hidden_layers) or to N(0, 1)
// (fixed_random_hidden_layers); fixed ones are frozen even when training the target.
// Parameter k of the list above draws from Philox (seed, spd_rng_stream(0,
// SPD_RNG_INIT, 1, 0, k)), independent of the spec table's layout.
//
// Gradient convention (ops/components.h): parameter gradients accumulate (+=),
// activation gradients are written (=).
//
// CPU only for now: ReLU, the bias and the transposes are host loops. The CUDA
// build compiles this file to nothing until relu/bias ops have CUDA twins.
#ifndef SPD_TMS_H
#define SPD_TMS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/real.h"
#include "core/spec.h"
#include "models/linear_site.h"
#include "models/module_select.h"

typedef struct {
    int n_features, n_hidden, n_hidden_layers;
    bool tied_weights, init_bias_to_zero;
} tms_config;

typedef enum { TMS_HIDDEN_DEFAULT, TMS_HIDDEN_FIXED_IDENTITY, TMS_HIDDEN_FIXED_RANDOM } tms_hidden_init;

typedef struct {
    int B;               // rows per forward
    const char *prefix;  // "" (a target checkpoint) or "target_model." (inside a ComponentModel)
    bool train;          // parameters TRAINED (gradients, Adam moments) instead of FROZEN
    tms_hidden_init hidden;
} tms_options;

// Site indices: TMS_LINEAR1, TMS_LINEAR2, then TMS_HIDDEN0 + i.
enum { TMS_LINEAR1, TMS_LINEAR2, TMS_HIDDEN0 };

// One model's pointers in one precision; defined for both so that one program
// can hold both (linear_site is this backend's). `tms_model` is this backend's.
#define SPD_TMS_DEFINE(T, NAME)                                                       \
    typedef struct {                                                                  \
        tms_config cfg;                                                               \
        tms_options opt;                                                              \
        char prefix[64];                                                              \
        int B;                                                                        \
        linear_site *sites; /* n_sites = 2 + n_hidden_layers, SPD's module order */   \
        int n_sites;                                                                  \
        int n_identity;     /* inserted identities: sites[n_sites ..] */              \
        T *bias;            /* linear2.bias [n_features] */                           \
        T **dW;             /* [n_sites]: weight gradients, NULL where frozen */      \
        T *dbias;           /* NULL when frozen */                                    \
        /* Activations, saved by forward. */                                          \
        T *x;               /* input.x [B, n_features], filled by the caller */       \
        T **hidden;         /* [n_hidden_layers + 1] of [B, n_hidden] */              \
        T *pre, *out;       /* [B, n_features] before / after the ReLU */             \
        /* Backward: dout is filled by the caller (the loss), the rest written. */    \
        T *dout, *dpre, *dx; /* [B, n_features] */                                    \
        T *dh[2];            /* [B, n_hidden] */                                      \
    } NAME;
SPD_TMS_DEFINE(float, tms_model_f32)
SPD_TMS_DEFINE(double, tms_model_f64)
#if defined(SPD_F64)
typedef tms_model_f64 tms_model;
#else
typedef tms_model_f32 tms_model;
#endif

// Sizes in range (n_features, n_hidden >= 1, n_hidden_layers >= 0), with a message; 0 or -1.
int spd_tms_config_check(const tms_config *cfg);

// Adds the parameters (FROZEN, or TRAINED with opt->train; fixed hidden layers stay
// FROZEN), input.x and the activations to spec. Site paths are ready after this
// call, for module selection. cfg must pass spd_tms_config_check.
void RFN(tms_declare)(tms_model *m, spd_spec *spec, const tms_config *cfg, const tms_options *opt);
// SPD's identity insertion before the modules the patterns match (after
// tms_declare, before spd_spec_alloc). 0, or -1 with spd_last_error().
int RFN(tms_insert_identity)(tms_model *m, spd_spec *spec, const spd_module_pattern *patterns, int n_patterns);
// After spd_spec_alloc: pointers into the spec's buffers (inserted identities included).
void RFN(tms_bind)(tms_model *m, const spd_spec *spec);
// SPD's init (above) drawn from Philox seed: default init, fixed hidden layers,
// then linear2 tied when tied.
void RFN(tms_init_params)(tms_model *m, uint64_t seed);
// linear2.weight = linear1.weight^T, and the reverse.
void RFN(tms_tie_weights)(tms_model *m);
void RFN(tms_tie_weights_reverse)(tms_model *m);
// x -> out (through the sites: components where attached).
void RFN(tms_forward)(tms_model *m);
// dout -> dx (written), the attached components' gradients and, where the
// parameters are TRAINED, their gradients (accumulated).
void RFN(tms_backward)(tms_model *m);
void RFN(tms_free)(tms_model *m);

#endif
