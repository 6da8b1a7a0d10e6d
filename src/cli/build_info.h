#ifndef SPD_BUILD_INFO_H
#define SPD_BUILD_INFO_H

// The git commit the binary was built from ("-dirty" when src/ had uncommitted changes).
const char *spd_build_commit(void);

#endif
