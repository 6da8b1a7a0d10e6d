#!/usr/bin/env bash
# Installs the Debian packages spd.c builds against, when they are missing.
# As root it runs apt-get; otherwise it names the packages and exits 1.
set -euo pipefail
packages=(build-essential pkg-config libopenblas-dev libcjson-dev libyaml-dev libpng-dev python3)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
    echo "installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
else
    echo "spd.c needs these Debian packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
