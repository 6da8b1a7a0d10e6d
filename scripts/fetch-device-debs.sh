#!/usr/bin/env bash
# The GPU machine has no network and lacks libcjson and libyaml: download the
# Debian packages spd.c links against into .debs/ (git-ignored), to be carried
# to the device and unpacked there by scripts/device-env.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .debs
cd .debs
apt-get download libopenblas0-pthread libopenblas-dev libopenblas-pthread-dev libgfortran5 libquadmath0 \
    libcjson1 libcjson-dev libyaml-0-2 libyaml-dev libpng16-16 libpng-dev zlib1g-dev
