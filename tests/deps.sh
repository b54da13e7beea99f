#!/bin/sh
# deps.sh - installs what building and testing wdrepo needs on Debian
# (run as root, or with sudo available). Installs nothing when all is there.
# Usage: sh tests/deps.sh [bench]   ("bench" adds the benchmark's tools)
set -e
pkgs="make gcc pkg-config libsqlite3-dev sqlite3 libzstd-dev libcjson-dev libssl-dev clang libclang-rt-14-dev zstd python3 groff-base bsdutils"
# (issue 9) the Python package and its tests: numpy, pytest, setuptools/wheel/venv
# for pip install --no-build-isolation ./python, torch for the torch tests
pkgs="$pkgs python3-numpy python3-pytest python3-setuptools python3-wheel python3-venv python3-pip python3-torch"
# The remote tests (tests/remote/ceph.sh) run a real Ceph radosgw: ~270 MB, ~40 s to install.
pkgs="$pkgs libcurl4-openssl-dev ceph-mon ceph-osd radosgw"
[ "${1:-}" = bench ] && pkgs="$pkgs hyperfine time openssl"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps.sh: installing$missing" >&2
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "deps.sh: need root to run: apt-get install$missing" >&2; exit 1
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
