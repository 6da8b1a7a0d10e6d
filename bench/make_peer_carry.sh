#!/usr/bin/env bash
# Build .peer/carry: only the SPD source files that bench/peer_torch.py imports, so the device
# call can carry a few dozen KiB instead of two full SPD exports.  SPD's code is never committed:
# .peer/ is git-ignored; name `.peer/carry` in the device call's `carry` list.
#
#   .peer/carry/spd-cd23cf80/   spd/{__init__,models/__init__,models/components,
#                               models/masked_module,models/component_model,models/sigmoids,
#                               utils/__init__,utils/module_utils}.py + COMMIT
#   .peer/carry/spd-3f0bb61e/   spd/pretrain/models/llama_simple.py + COMMIT
#
# Source: the SPD mirror (SPD_MIRROR, default /work/.mirror/goodfire-ai+spd/repo, a bare git dir).
# Also (re)creates the full exports .peer/spd-cd23cf80 and .peer/spd when they are missing.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
MIRROR=${SPD_MIRROR:-/work/.mirror/goodfire-ai+spd/repo}
OLD=cd23cf80
NEW=3f0bb61e
OLD_FILES="spd/__init__.py spd/models/__init__.py spd/models/components.py
  spd/models/masked_module.py spd/models/component_model.py spd/models/sigmoids.py
  spd/utils/__init__.py spd/utils/module_utils.py"
NEW_FILES="spd/pretrain/models/llama_simple.py"

git -C "$MIRROR" rev-parse --verify -q "$OLD^{commit}" >/dev/null || { echo "no $OLD in $MIRROR" >&2; exit 1; }
git -C "$MIRROR" rev-parse --verify -q "$NEW^{commit}" >/dev/null || { echo "no $NEW in $MIRROR" >&2; exit 1; }

# full exports (reference copies; not carried)
if [ ! -f .peer/spd-$OLD/spd/models/component_model.py ]; then
  mkdir -p .peer/spd-$OLD
  git -C "$MIRROR" archive $OLD | tar -x -C .peer/spd-$OLD
  git -C "$MIRROR" rev-parse $OLD > .peer/spd-$OLD/COMMIT
fi
if [ ! -f .peer/spd/spd/pretrain/models/llama_simple.py ]; then
  mkdir -p .peer/spd
  git -C "$MIRROR" archive $NEW | tar -x -C .peer/spd
  git -C "$MIRROR" rev-parse $NEW > .peer/spd/COMMIT
fi

rm -rf .peer/carry
mkdir -p .peer/carry/spd-$OLD .peer/carry/spd-$NEW
# shellcheck disable=SC2086
git -C "$MIRROR" archive $OLD -- $OLD_FILES | tar -x -C .peer/carry/spd-$OLD
git -C "$MIRROR" rev-parse $OLD > .peer/carry/spd-$OLD/COMMIT
# shellcheck disable=SC2086
git -C "$MIRROR" archive $NEW -- $NEW_FILES | tar -x -C .peer/carry/spd-$NEW
git -C "$MIRROR" rev-parse $NEW > .peer/carry/spd-$NEW/COMMIT

echo "built .peer/carry:"
find .peer/carry -type f | sort
du -sh .peer/carry
