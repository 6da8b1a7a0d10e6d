// SPD's ScheduleConfig evaluated at a step (SPD_SPEC.md 5.4; SPD's
// get_scheduled_value), used for the learning rate. With T = total_steps,
// Wu = floor(T warmup_pct) and Dd = T - Wu:
//   step < Wu:  start * step / Wu                  (0 at step 0)
//   Dd <= 1:    start
//   else        p = (step - Wu) / (Dd - 1), f = final_val_frac:
//               constant  start
//               linear    start (f + (1 - f)(1 - p))
//               cosine    start (f + (1 - f) 1/2 (1 + cos(pi p)))
// p reaches 1 at step T - 1. SPD also evaluates the extra final iteration
// step = T, where p > 1 extrapolates (cosine rises again, linear goes below f,
// possibly negative; SPD_SPEC.md 13.10); no update is made there, so this is
// kept as SPD logs it.
#ifndef SPD_SCHEDULE_H
#define SPD_SCHEDULE_H

#include <stdint.h>

#include "spd/config.h"

// 0 <= step <= total_steps, total_steps > 0 (internal invariants, as SPD asserts).
double spd_schedule_value_at(spd_schedule_fn fn, double start_val, double warmup_pct, double final_val_frac,
                             int64_t step, int64_t total_steps);

// The same, taking the config's fields.
double spd_schedule_value(const spd_schedule_config *cfg, int64_t step, int64_t total_steps);

#endif
