#!/bin/sh
# t_idempotent.sh - storing the same thing twice: add-base and commit give
# the same id again, report already_present and zero new bytes, leave the
# object list alone, and do not grow the repository beyond a page or two.
. tests/cli/lib.sh

slack=8192 # bytes the database may grow on a no-op write (two pages)

expect 0 wd init
expect 0 wd add-base "$MODELS/base-bf16" --json
pycheck "$T/out" '
assert d["id"] == h["models"]["base-bf16"]["model_hash"], d["id"]
assert d["model_hash"] == d["id"]
assert d["already_present"] is False
assert d["new_bytes"] > 0 and d["stored_bytes"] > 0
assert d["n_tensors"] == 13, d["n_tensors"]
'
base=$(py "$T/out" 'd["id"]')
expect 0 wd log --json
cp "$T/out" "$T/log1"
size1=$(repo_bytes)

expect 0 wd add-base "$MODELS/base-bf16" --json
pycheck "$T/out" '
assert d["id"] == h["models"]["base-bf16"]["model_hash"]
assert d["already_present"] is True
assert d["new_bytes"] == 0, d["new_bytes"]
'
# The human summary says so too.
expect 0 wd add-base "$MODELS/base-bf16"
grep -q 'already stored' "$T/err" || fail "second add-base does not say 'already stored'"
[ "$(cat "$T/out")" = "$base" ] || fail "second add-base printed another hash"
expect 0 wd log --json
cmp -s "$T/out" "$T/log1" || fail "log changed after adding the same base again"
size2=$(repo_bytes)
[ "$size2" -le $((size1 + slack)) ] || fail "repository grew from $size1 to $size2 bytes on a repeated add-base"

# -q: only the hash, nothing on stderr.
expect 0 wd -q add-base "$MODELS/base-bf16"
[ -s "$T/err" ] && fail "-q add-base wrote to stderr"
[ "$(cat "$T/out")" = "$base" ] || fail "-q add-base printed '$(cat "$T/out")'"

expect 0 wd commit "$MODELS/ft-bf16" --on "$base" -m same --json
pycheck "$T/out" '
assert d["kind"] == "delta"
assert d["already_present"] is False
assert d["model_hash"] == h["models"]["ft-bf16"]["model_hash"]
assert d["n_tensors"] == 13
assert d["n_unchanged"] + d["n_encoded"] + d["n_whole"] == 13, d
assert d["n_unchanged"] >= 1, "model.layers.10.attn.k_proj.weight and position_ids are unchanged"
assert d["n_dropped"] == 0
'
delta=$(py "$T/out" 'd["id"]')
expect 0 wd log --json
cp "$T/out" "$T/log2"
size3=$(repo_bytes)

expect 0 wd commit "$MODELS/ft-bf16" --on "$base" -m same --json
pycheck "$T/out" '
assert d["already_present"] is True
assert d["new_bytes"] == 0, d["new_bytes"]
'
[ "$(py "$T/out" 'd["id"]')" = "$delta" ] || fail "second commit gave another id"
expect 0 wd -q commit "$MODELS/ft-bf16" --on "$base" -m same
[ "$(cat "$T/out")" = "$delta" ] || fail "third commit printed another id"
[ -s "$T/err" ] && fail "-q commit wrote to stderr"
expect 0 wd commit "$MODELS/ft-bf16" --on "$base" -m same
grep -q 'already stored' "$T/err" || fail "repeated commit does not say 'already stored'"
expect 0 wd log --json
cmp -s "$T/out" "$T/log2" || fail "log changed after committing the same delta again"
size4=$(repo_bytes)
[ "$size4" -le $((size3 + slack)) ] || fail "repository grew from $size3 to $size4 bytes on a repeated commit"

# new_bytes in log is what the object added when first stored: unchanged.
pycheck "$T/out" '
assert len(d) == 2, len(d)
for o in d:
    assert o["new_bytes"] > 0, o
'
exit 0
