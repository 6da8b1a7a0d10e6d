// A config's identity_module_info as module patterns (SPD_SPEC.md 1.3), for the
// *_insert_identity calls of every model instance a run builds (the trained one,
// its GPU twin, the eval copy), so all of them have the same sites in one order.
#ifndef SPD_IDENTITY_PATTERNS_H
#define SPD_IDENTITY_PATTERNS_H

#include "models/module_select.h"
#include "spd/config.h"

// The patterns (NULL when the config has none; the caller frees), their count in
// *n. The strings point into cfg.
spd_module_pattern *spd_identity_patterns(const spd_config *cfg, int *n);

#endif
