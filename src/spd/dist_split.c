// The precision-free rules of data parallelism (spd/dist.h): batch slices,
// per-rank seeds, the unique id's text form, the deadline.
#include "spd/dist.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

int spd_dist_rows(int64_t B, int world, int rank, const char *what, int64_t *row0, int64_t *rows) {
    if (world < 1 || world > SPD_DIST_MAX_WORLD)
        return spd_set_error("--gpus: expected 1 to %d ranks, found %d", SPD_DIST_MAX_WORLD, world);
    if (rank < 0 || rank >= world) return spd_set_error("--rank: expected 0 to %d, found %d", world - 1, rank);
    if (B < 1 || B % world != 0)
        return spd_set_error("%s: expected a multiple of the %d ranks (--gpus), found %" PRId64, what, world, B);
    *rows = B / world;
    *row0 = (int64_t)rank * *rows;
    return 0;
}

uint64_t spd_dist_rank_seed(uint64_t seed, int world, int rank) { return seed * (uint64_t)world + (uint64_t)rank; }

void spd_dist_id_to_hex(const spd_dist_id *id, char *out) {
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < SPD_DIST_ID_BYTES; i++) {
        out[2 * i] = hex[id->bytes[i] >> 4];
        out[2 * i + 1] = hex[id->bytes[i] & 15];
    }
    out[2 * SPD_DIST_ID_BYTES] = '\0';
}

static int nibble(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

int spd_dist_id_from_hex(spd_dist_id *id, const char *hex) {
    if (!hex || strlen(hex) != 2 * SPD_DIST_ID_BYTES)
        return spd_set_error("SPD_NCCL_ID: expected %d hex digits (set by spd train --gpus), found %zu",
                             2 * SPD_DIST_ID_BYTES, hex ? strlen(hex) : (size_t)0);
    for (int i = 0; i < SPD_DIST_ID_BYTES; i++) {
        int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return spd_set_error("SPD_NCCL_ID: expected hex digits, found '%.2s'", hex + 2 * i);
        id->bytes[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

double spd_dist_timeout_s(void) {
    const char *v = getenv("SPD_DIST_TIMEOUT_S");
    if (!v || !*v) return 300;
    char *end;
    errno = 0;
    double s = strtod(v, &end);
    if (errno || *end || !(s > 0) || !isfinite(s))
        spd_die_input("SPD_DIST_TIMEOUT_S: expected a positive number of seconds, found '%s'", v);
    return s;
}
