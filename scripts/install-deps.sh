#!/usr/bin/env bash
# Installs the Debian packages kiln needs to build and test, when missing.
# Usage: scripts/install-deps.sh [extra-package ...]
set -euo pipefail

packages=(cmake g++ make doctest-dev libstb-dev libbenchmark-dev libcli11-dev nlohmann-json3-dev pkg-config
          libopenmpi-dev openmpi-bin "$@")  # MPI: kiln/dist, kiln-train under mpirun, the dist tests

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep "install ok installed" >/dev/null || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "kiln: installing missing packages: ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "kiln: these packages are missing and I am not root: ${missing[*]}" >&2
    echo "      install them with: apt-get install ${missing[*]}" >&2
    exit 1
  fi
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
# Lists may be absent on a fresh machine; update once, quietly.
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "kiln: installed ${missing[*]}" >&2
