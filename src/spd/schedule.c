#include "spd/schedule.h"

#include <math.h>

#include "core/error.h"

// Evaluated in the order and float64 arithmetic of SPD's Python, so the values
// agree to the last bit wherever libm's cos agrees with numpy's.
double spd_schedule_value_at(spd_schedule_fn fn, double start_val, double warmup_pct, double final_val_frac,
                             int64_t step, int64_t total_steps) {
    SPD_ASSERT(step >= 0 && total_steps > 0 && step <= total_steps);
    // Python's int() truncates toward zero, as the cast does (warmup_pct >= 0).
    int64_t warmup_steps = (int64_t)((double)total_steps * warmup_pct);
    int64_t decay_steps = total_steps - warmup_steps;
    if (step < warmup_steps) return start_val * ((double)step / (double)warmup_steps);
    if (decay_steps <= 1) return start_val;
    double progress = (double)(step - warmup_steps) / (double)(decay_steps - 1);
    double f = final_val_frac;
    switch (fn) {
    case SPD_SCHEDULE_CONSTANT:
        return start_val;
    case SPD_SCHEDULE_LINEAR:
        return start_val * (f + (1 - f) * (1 - progress));
    case SPD_SCHEDULE_COSINE:
        return start_val * (f + (1 - f) * 0.5 * (1 + cos(M_PI * progress)));
    }
    spd_die("spd_schedule_value_at: unknown schedule function %d", (int)fn);
}

double spd_schedule_value(const spd_schedule_config *cfg, int64_t step, int64_t total_steps) {
    return spd_schedule_value_at(cfg->fn_type, cfg->start_val, cfg->warmup_pct, cfg->final_val_frac, step,
                                 total_steps);
}
