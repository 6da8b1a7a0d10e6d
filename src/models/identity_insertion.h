// SPD's identity insertion (SPD_SPEC.md 1.3; spd/identity_insertion.py): before
// each linear module matched by an identity_module_info pattern, an identity
// Identity(d_in) named "<module>.pre_identity" whose output is the module's
// input. Decomposed (patterns "<pattern>.pre_identity", spd_all_module_patterns),
// it is a d_in x d_in linear map with target weight I: LinearComponents without
// bias, as SPD's ComponentModel.target_weight gives torch.eye for it.
//
// Here an inserted identity is one more linear site (SITE_IDENTITY) appended to
// the model's sites after its own n_sites, so a trainer sees it like any other;
// the owning site's `pre` points at it (linear_site.h), so the model's forward
// and backward are unchanged. Its tensors are activations, not parameters: SPD's
// state dict holds nothing for an Identity, so checkpoints do not either.
//   act.<path>.eye       [d, d]  I_d, the target weight (filled by identity_bind)
//   act.<path>.out       [N, d]  the identity's output = the owner's input
//   grad.<path>.out      [N, d]  the gradient there
// with <path> = "<owner>.pre_identity".
//
// Use: the model's declare, then identity_insert (before spd_spec_alloc; the
// sites array is reallocated, so take no pointers into it before), then after
// alloc the model's bind calls identity_bind.
#ifndef SPD_IDENTITY_INSERTION_H
#define SPD_IDENTITY_INSERTION_H

#include "core/real.h"
#include "core/spec.h"
#include "models/linear_site.h"
#include "models/module_select.h"

// *sites holds n_sites model sites followed by *n_identity inserted identities;
// appends one identity per module the patterns match (SPD's matching,
// spd_select_identity_owners, over the model sites) and declares its tensors
// for N positions. Identities of an earlier call are kept. 0, or -1 with
// spd_last_error() naming the pattern (no match, a duplicate, an embedding, a
// module that has one already).
int RFN(identity_insert)(linear_site **sites, int n_sites, int *n_identity, spd_spec *spec, int N,
                         const spd_module_pattern *patterns, int n_patterns);
// order [n_sites + n_identity]: site indices in torch's named_modules order,
// each inserted identity right after its owner (the candidates' order for
// module selection: it decides the order of modules one pattern matches).
void RFN(identity_named_order)(const linear_site *sites, int n_sites, int n_identity, int *order);
// After spd_spec_alloc: the identities' pointers, I_d into their target weights,
// and each owner's `pre`.
void RFN(identity_bind)(linear_site *sites, int n_sites, int n_identity, const spd_spec *spec);

#endif
