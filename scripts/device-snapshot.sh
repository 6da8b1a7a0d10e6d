#!/usr/bin/env bash
# Builds .snap/ (git-ignored via .git/info/exclude: add "/.snap/" there once): a clean
# export of HEAD for the GPU machine, plus COMMIT, the carried Debian packages (.debs,
# from scripts/fetch-device-debs.sh, with ../shared/refs copied to .debs/shared) and the
# PyTorch peer's SPD files (.peer/carry, from bench/make_peer_carry.sh). A device call then
# carries [".snap"] and starts with `cd .snap`, so unfinished files in the working tree
# never reach the device build. Extra files to include may be named as arguments.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
rm -rf .snap && mkdir -p .snap
git archive HEAD | tar -x -C .snap
git rev-parse --short=12 HEAD > .snap/COMMIT
for f in "$@"; do mkdir -p ".snap/$(dirname "$f")"; cp -r "$f" ".snap/$f"; done
[ -d .debs ] && cp -r .debs .snap/.debs
[ -d .peer/carry ] && mkdir -p .snap/.peer && cp -r .peer/carry .snap/.peer/carry
du -sh .snap
