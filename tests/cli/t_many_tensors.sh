#!/bin/sh
# t_many_tensors.sh - scaling with the tensor count: shards of many tiny
# tensors (mixed dtypes; names sort in the reverse of the data order, the
# worst case for any sort by data order; the header in a third order) go
# through every command, each under a generous timeout, and the results are
# checked (checkouts byte-identical, counts right).
#
# A per-tensor cost that grows with n (a scan per tensor, an insertion sort)
# is O(n^2) overall: an insertion sort by data order makes n^2/2 moves on
# these names. With WD_MANY_TENSORS=300000 both known ones (checkout's and
# add-base's storage order) trip the timeout while the linear work takes
# seconds; the default stays at 150000 until add-base's sort (commit.c) is
# replaced, as the slower linear one still takes ~40 s there. The big model
# goes through hash, add-base and checkout; the other commands, whose
# per-tensor constant is still large, run on a model of a fifteenth of the
# tensors so the script stays near 30 s.
#
# WD_MANY_TENSORS sets the big model's tensor count (the original report
# had 1310000). An ASan build (detected from the binary) is several times
# slower per tensor (its allocator most of all) and runs a 32nd of it.
. tests/cli/lib.sh

GEN=${WD_BUILD:?}/tools/gen_many
case $GEN in /*) ;; *) GEN=$PWD/$GEN ;; esac
[ -x "$GEN" ] || fail "$GEN is not built (make all builds it)"

N=${WD_MANY_TENSORS:-320000}
if [ -z "${WD_MANY_TENSORS:-}" ] && grep -q AddressSanitizer "$WDREPO" 2>/dev/null; then
    N=$((N / 32))
fi
NS=$((N / 15))
TO=${WD_MANY_TIMEOUT:-120}
note "$N and $NS tensors, $TO s per command"

# ok CMD...: runs CMD (wd: wdrepo on the test's repository) under the
# timeout and fails unless it exits 0; status 124 means it ran too long.
ok() {
    if [ "$1" = wd ]; then
        shift
        set -- "$WDREPO" -R "$REPO" "$@"
    fi
    run timeout "$TO" "$@"
    [ "$rc" -eq 124 ] && fail "timed out after $TO s (super-linear in the tensor count?): $*"
    [ "$rc" -eq 0 ] || fail "exit status $rc: $*"
}

# ---- the big model: hash, add-base, checkout --------------------------------
"$GEN" -n "$N" "$T/big" >"$T/out" 2>"$T/err" || fail "gen_many -n $N failed"
ok "$WDREPO" hash "$T/big"
h=$(cat "$T/out")
ok wd init
ok wd -q add-base "$T/big" --name big
[ "$(cat "$T/out")" = "$h" ] || fail "add-base and hash disagree on the big model"
ok wd -q checkout big "$T/co-big"
same_tree "$T/big" "$T/co-big"
rm -rf "$T/co-big"

# ---- the small model: every other command -----------------------------------
# Every 50th tensor of the fine-tune changes (when it is floating point).
"$GEN" -n "$NS" --change-every 50 "$T/base" --finetune "$T/ft" >"$T/out" 2>"$T/err" ||
    fail "gen_many -n $NS failed"
ok wd -q add-base "$T/base" --name base
ok wd commit "$T/ft" --on base --name ftl --json
pycheck "$T/out" "
n = $NS
assert d['n_tensors'] == n, d['n_tensors']
assert 0 < d['n_encoded'] < n // 20, d['n_encoded']
assert d['n_unchanged'] + d['n_encoded'] == n and d['n_whole'] == 0 and d['n_dropped'] == 0, d
"
ok wd -q commit "$T/ft" --on base --strategy sparse --name fts
ok wd -q commit "$T/ft" --on base --strategy int4 --name fti

ok wd -q checkout ftl "$T/co-ftl"
same_tree "$T/ft" "$T/co-ftl"
ok wd -q checkout fts "$T/co-fts"
cmp -s "$T/co-fts/model.safetensors" "$T/base/model.safetensors" &&
    fail "the sparse checkout equals the base: the changed tensors were lost"

ok wd log --json
pycheck "$T/out" "assert len(d) == 5, len(d)"
ok wd log
ok wd inspect ftl
ok wd inspect fts --json
pycheck "$T/out" "assert d['n_tensors'] == $NS and len(d['tensors']) == $NS, d['n_tensors']"

ok wd -q export fts "$T/fts.wdelta"
ok "$WDREPO" inspect "$T/fts.wdelta" --json
nf=$(py "$T/out" 'd["n_tensors"]')
[ "$nf" -gt $((NS / 2)) ] || fail "the exported file names only $nf of $NS tensors"
ok wd -q import "$T/fts.wdelta" --name imp
ok wd -q export imp "$T/imp.wdelta"
cmp "$T/fts.wdelta" "$T/imp.wdelta" || fail "an imported delta does not export byte-identical"

# format 1 keeps deltatensors 0.2.0's record order, which an imported file
# records and its export restores (placed by binary search, not a scan)
ok "$WDREPO" -q save-delta "$T/sd1.wdelta" "$T/ft" "$T/base" --strategy int4 --format-version 1
ok wd -q import "$T/sd1.wdelta" --name imp1
ok wd -q export imp1 "$T/imp1.wdelta" --format-version 1
cmp "$T/sd1.wdelta" "$T/imp1.wdelta" || fail "an imported format-1 file does not export byte-identical"

ok "$WDREPO" -q save-delta "$T/sd.wdelta" "$T/ft" "$T/base" --strategy sparse
ok "$WDREPO" -q load-delta "$T/sd.wdelta" "$T/base" "$T/ld"
python3 - "$T/ld/model.safetensors" "$NS" <<'EOF' || fail "load-delta output does not hold the $NS tensors"
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n))
assert len(h) - ("__metadata__" in h) == int(sys.argv[2]), len(h)
EOF
exit 0
