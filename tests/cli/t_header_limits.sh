#!/bin/sh
# t_header_limits.sh - a hostile safetensors header costs memory in
# proportion to its size, not to what a JSON tree of it would take: a 90 MB
# 30 MB header holding one 15M-element "shape" array, and a 20 MB header of
# 400k minimal tensor entries with a defect at its very end, are each
# refused with one line (the real defect named, not an allocation failure)
# while the process may use at most 300 and 250 MB of address space. A JSON
# tree of either would need over a gigabyte.
. tests/cli/lib.sh

# A header made by python3 (stdlib only): prefix, JSON, data bytes.
mkheader() { # DIR KIND
    mkdir -p "$1"
    python3 - "$1/model.safetensors" "$2" <<'EOF' || fail "cannot write $1"
import struct, sys
path, kind = sys.argv[1], sys.argv[2]
if kind == "shape":
    n = 15_000_000
    body = b'{"a":{"dtype":"U8","shape":[' + b"1," * (n - 1) + b'1],"data_offsets":[0,1]}}'
    data = b"\0"
else:
    # 400k tensors of one byte each, then one byte no tensor covers
    n = 400_000
    parts = [b'"t%d":{"dtype":"U8","shape":[1],"data_offsets":[%d,%d]}' % (i, i, i + 1) for i in range(n)]
    body = b"{" + b",".join(parts) + b"}"
    data = b"\0" * (n + 1)
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(body)))
    f.write(body)
    f.write(data)
EOF
}

mkheader "$T/shape" shape
mkheader "$T/many" many

expect 0 wd init
expect 0 wd -q add-base "$MODELS/base-f32" --name base

# Sanitizer builds reserve terabytes of address space and cannot run under
# ulimit -v at all: there the refusals are still checked, unbounded.
limited() { # KB CMD...: CMD under ulimit -v KB when the binary can run so
    _kb=$1
    shift
    if [ "$can_limit" = 1 ]; then
        (ulimit -v "$_kb" && "$@")
    else
        "$@"
    fi
}
can_limit=0
(ulimit -v 300000 && "$WDREPO" --version) >/dev/null 2>&1 && can_limit=1
[ "$can_limit" = 1 ] || note "this wdrepo cannot run under ulimit -v (sanitizer build?): memory not bounded here"

# One 15M-element shape: refused at its 17th element.
for cmd in hash add-base; do
    if [ $cmd = hash ]; then run limited 300000 "$WDREPO" hash "$T/shape"; else run limited 300000 wd add-base "$T/shape"; fi
    [ "$rc" -eq 1 ] || fail "$cmd of a 15M-element shape: exit $rc, expected 1"
    [ "$(nlines "$T/err")" -eq 1 ] || fail "$cmd: expected one line on stderr"
    grep -q "^wdrepo: '.*model.safetensors': tensor 'a' has more than 16 dimensions$" "$T/err" ||
        fail "$cmd: the refusal does not name the defect"
    [ -s "$T/out" ] && fail "$cmd wrote to stdout"
done
run limited 300000 wd commit "$T/shape" --on base
[ "$rc" -eq 1 ] && grep -q "more than 16 dimensions" "$T/err" || fail "commit of a 15M-element shape was not refused"

# 400k tensors, every one fine, then a byte no tensor covers: the whole
# header is read (about 5x its size at most) before the refusal.
run limited 250000 "$WDREPO" hash "$T/many"
[ "$rc" -eq 1 ] || fail "hash of 400k tensors with a trailing byte: exit $rc, expected 1"
[ "$(nlines "$T/err")" -eq 1 ] || fail "expected one line on stderr"
grep -q "1 trailing bytes after the last tensor 't399999'" "$T/err" || fail "the refusal does not name the defect"

# Nothing was stored.
expect 0 wd log --json
[ "$(py "$T/out" 'len(d)')" = 1 ] || fail "a refused folder left an object"
exit 0
