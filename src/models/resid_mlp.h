// ResidMLP, the residual-MLP toy target (SPD_SPEC.md 7.3;
// spd/experiments/resid_mlp/models.py ResidMLP, train_resid_mlp.py):
//
//   r_0     = x W_E                             x [B, n_features], W_E [n_features, d_embed]
//   r_{i+1} = r_i + mlp_out(act(mlp_in(r_i)))   layers.i.mlp_in  = Linear(d_embed -> d_mlp)
//                                               layers.i.mlp_out = Linear(d_mlp -> d_embed)
//   out     = r_L W_U                           W_U [d_embed, n_features]
//
// act: relu or exact-erf gelu (act_fn_name); biases per in_bias / out_bias (all
// reference targets: relu, no biases). W_E and W_U are raw parameters in
// [in, out] layout (not modules, not decomposable); the MLP weights are nn.Linear
// [out, in]. SPD's state-dict names (under an optional prefix, "target_model."
// inside a ComponentModel) in SPD's order: W_E, W_U, then per layer
// layers.<i>.mlp_in.weight, layers.<i>.mlp_in.bias, layers.<i>.mlp_out.weight,
// layers.<i>.mlp_out.bias (biases only when configured).
//
// Decomposable modules = linear sites, in SPD's named_modules order:
// "layers.0.mlp_in", "layers.0.mlp_out", "layers.1.mlp_in", ... Biases are added by
// the model after the site (kept whatever the component masks, SPD_SPEC.md 1.5).
// Identities inserted by resid_mlp_insert_identity (SPD's identity_module_info,
// models/identity_insertion.h) follow as sites[n_sites ..], "<module>.pre_identity".
//
// Init (resid_mlp_init_params; SPD's from the global torch RNG, here Philox):
//   W_E ~ N(0, 1/n_features), W_U ~ N(0, 1/d_embed) (init_param_, linear gain);
//   mlp weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (torch's nn.Linear default);
//   embedding fixed_random (every reference target): W_E rows N(0, 1) normalised to unit
//     norm, W_U = W_E^T; fixed_identity: W_E = I (n_features == d_embed), W_U keeps its
//     init. Fixed embeddings are frozen even when training the target.
// Parameter k of the state-dict list draws from Philox (seed, spd_rng_stream(0,
// SPD_RNG_INIT, 1, 0, k)); the fixed random embedding from term 2, k = 0.
//
// Training the target (train_resid_mlp.py) uses act_plus_resid labels (toy_data.h),
// loss "readoff" mean((out - y)^2 * importance) or "resid" (on r_L, against y W_E);
// r_L is m->resid[n_layers].
//
// Gradient convention (ops/components.h): parameter gradients accumulate (+=),
// activation gradients are written (=).
//
// Every backend: declare, bind, forward, backward, free. resid_mlp_init_params
// is host-only: a device model gets its values by upload from a host one
// (spd/device_mirror.h).
#ifndef SPD_RESID_MLP_H
#define SPD_RESID_MLP_H

#include <stdbool.h>
#include <stdint.h>

#include "core/real.h"
#include "core/spec.h"
#include "models/linear_site.h"
#include "models/module_select.h"

typedef enum { RESID_MLP_RELU, RESID_MLP_GELU } resid_mlp_act;

typedef struct {
    int n_features, d_embed, d_mlp, n_layers;
    resid_mlp_act act;
    bool in_bias, out_bias;
} resid_mlp_config;

typedef enum { RESID_EMBED_DEFAULT, RESID_EMBED_FIXED_RANDOM, RESID_EMBED_FIXED_IDENTITY } resid_mlp_embedding;

typedef struct {
    int B;               // rows per forward
    const char *prefix;  // "" (a target checkpoint) or "target_model." (inside a ComponentModel)
    bool train;          // parameters TRAINED (gradients, Adam moments) instead of FROZEN
    resid_mlp_embedding embedding;
} resid_mlp_options;

// Site 2i is layers.i.mlp_in, 2i + 1 layers.i.mlp_out.
#define RESID_MLP_IN(i) (2 * (i))
#define RESID_MLP_OUT(i) (2 * (i) + 1)

#define SPD_RESID_MLP_DEFINE(T, NAME)                                                     \
    typedef struct {                                                                      \
        resid_mlp_config cfg;                                                             \
        resid_mlp_options opt;                                                            \
        char prefix[64];                                                                  \
        int B;                                                                            \
        linear_site *sites; /* n_sites = 2 n_layers, SPD's module order */                \
        int n_sites;                                                                      \
        int n_identity;     /* inserted identities: sites[n_sites ..] */                  \
        T *W_E, *W_U;       /* [n_features, d_embed], [d_embed, n_features] */            \
        T *dW_E, *dW_U;     /* NULL when frozen */                                        \
        T **b_in, **b_out;  /* [n_layers]: [d_mlp], [d_embed]; NULL without the bias */   \
        T **db_in, **db_out;                                                              \
        T **dW;             /* [n_sites]: weight gradients, NULL where frozen */          \
        /* Activations, saved by forward. */                                              \
        T *x;               /* input.x [B, n_features], filled by the caller */           \
        T **resid;          /* [n_layers + 1] of [B, d_embed]: r_0 .. r_L */              \
        T **pre, **mid;     /* [n_layers] of [B, d_mlp]: before / after act */            \
        T *proj;            /* [B, d_embed] mlp_out's output */                           \
        T *out;             /* [B, n_features] */                                         \
        /* Backward: dout is filled by the caller (the loss), the rest written. */        \
        T *dout, *dx;       /* [B, n_features] */                                         \
        T *dres;            /* [B, d_embed] */                                            \
        T *dmid, *dpre;     /* [B, d_mlp] */                                              \
    } NAME;
SPD_RESID_MLP_DEFINE(float, resid_mlp_model_f32)
SPD_RESID_MLP_DEFINE(double, resid_mlp_model_f64)
#if defined(SPD_F64)
typedef resid_mlp_model_f64 resid_mlp_model;
#else
typedef resid_mlp_model_f32 resid_mlp_model;
#endif

// Sizes in range (>= 1), and n_features == d_embed when the embedding is the fixed
// identity; a message and -1 otherwise.
int spd_resid_mlp_config_check(const resid_mlp_config *cfg, resid_mlp_embedding embedding);

// Adds the parameters (FROZEN, or TRAINED with opt->train; fixed embeddings stay
// FROZEN), input.x and the activations to spec. Site paths are ready after this call.
void RFN(resid_mlp_declare)(resid_mlp_model *m, spd_spec *spec, const resid_mlp_config *cfg,
                            const resid_mlp_options *opt);
// SPD's identity insertion before the modules the patterns match (after
// resid_mlp_declare, before spd_spec_alloc). 0, or -1 with spd_last_error().
int RFN(resid_mlp_insert_identity)(resid_mlp_model *m, spd_spec *spec, const spd_module_pattern *patterns,
                                   int n_patterns);
// After spd_spec_alloc: pointers into the spec's buffers (inserted identities included).
void RFN(resid_mlp_bind)(resid_mlp_model *m, const spd_spec *spec);
// SPD's init (above), drawn from Philox seed.
void RFN(resid_mlp_init_params)(resid_mlp_model *m, uint64_t seed);
// x -> out (through the sites: components where attached).
void RFN(resid_mlp_forward)(resid_mlp_model *m);
// dout -> dx (written), the attached components' gradients and the TRAINED
// parameters' gradients (accumulated).
void RFN(resid_mlp_backward)(resid_mlp_model *m);
void RFN(resid_mlp_free)(resid_mlp_model *m);

#endif
