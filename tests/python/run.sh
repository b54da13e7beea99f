#!/bin/sh
# run.sh - the Python package's pytest suite against $BUILD/libwdrepo.so.0
# and $BUILD/wdrepo, with Debian's python3 (numpy, pytest; torch optional).
# tests/run.sh runs it as the test python/pytest. Under the sanitizer build
# (BUILD=build-san) the library needs the ASan runtime preloaded into
# python3, which then reports CPython's and numpy's own allocations as
# leaks: leak detection is off there, every other check stays on.
BUILD=${BUILD:-build}
PY=${PYTHON:-/usr/bin/python3}
if ! "$PY" -c 'import numpy, pytest' 2>/dev/null; then
    echo "python/pytest: skipped: $PY lacks numpy or pytest (sh tests/deps.sh installs them)"
    exit 0
fi
root=$(cd "$(dirname "$0")/../.." && pwd)
export WDREPO_LIB="$root/$BUILD/libwdrepo.so.0" WDREPO="${WDREPO:-$root/$BUILD/wdrepo}"
export WD_FIXTURES="${WD_FIXTURES:-$root/tests/fixtures}" PYTHONPATH="$root/python:$root/tests/python"
export PYTHONDONTWRITEBYTECODE=1
if nm -D "$WDREPO_LIB" 2>/dev/null | grep -q ' U __asan_init'; then
    asan=$(${CC:-clang} -print-file-name=libclang_rt.asan-x86_64.so 2>/dev/null)
    [ -f "$asan" ] || { echo "python/pytest: cannot find the ASan runtime to preload" >&2; exit 1; }
    export LD_PRELOAD="$asan" ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
fi
exec "$PY" -m pytest -q -p no:cacheprovider "$root/tests/python"
