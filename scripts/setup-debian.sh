#!/usr/bin/env bash
# Installs the system packages roformer-v2 needs on Debian/Ubuntu, if missing:
#   libtorch-dev          libtorch (Debian 12: 1.13.1, CPU) with its CMake config
#   libopenblas0-pthread  a fast BLAS; without it Debian's libtorch uses the
#                         reference BLAS, ~15× slower on matrix products
#   cmake, g++            to build the addon
#   libgloo-dev           Gloo's headers: data-parallel training on the CPU (libtorch has the library)
set -euo pipefail
missing=()
for pkg in libtorch-dev libopenblas0-pthread cmake g++ libgloo-dev; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: system packages already installed"
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
