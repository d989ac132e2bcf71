#!/bin/sh
# Installs the Debian packages the project needs, when missing. The one list of them.
# usage: scripts/deps.sh [--bench]   (--bench adds python3-torch for the peer benchmark)
set -e
PKGS="build-essential pkg-config clang valgrind libopenmpi-dev openmpi-bin slurm-wlm munge libmsgpack-dev libcurl4-openssl-dev libarchive-dev libssl-dev
zlib1g-dev libdnnl-dev libopenblas-dev python3 python3-msgpack gnuplot-nox"
[ "${1:-}" = "--bench" ] && PKGS="$PKGS python3-torch"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then echo "deps: all packages present"; exit 0; fi
echo "deps: installing$missing"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
