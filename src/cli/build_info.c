// What this binary was built from, for benchmark provenance.
#include "cli/build_info.h"

#ifndef SPD_GIT_COMMIT
#define SPD_GIT_COMMIT "unknown"
#endif

const char *spd_build_commit(void) { return SPD_GIT_COMMIT; }
