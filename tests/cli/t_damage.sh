#!/bin/sh
# t_damage.sh - damage in the repository is found before it is used
# (issue 7, defects 7 and 10). One byte is flipped inside a stored chunk - in
# a raw section, in a zstd section, in a lossy array, in a non-weight file,
# in a shard header - and every command that reads it fails with exit 1 and
# one line naming the object, the tensor (or file, or array) and the chunk,
# and writes nothing: no OUT, no temporary file, no new object. load-delta,
# which needs no repository, is not affected.
. tests/cli/lib.sh
# python3 may be a version manager's shim that costs a second a call; this
# script makes dozens, so it resolves the interpreter once.
PY=$(python3 -c 'import sys; print(sys.executable)') || fail "python3 not found"
python3() { "$PY" "$@"; }
FLIP="python3 tests/cli/flip_chunk.py"
BASE=$(model_hash base-bf16)
B12=$(printf %.12s "$BASE")
SPARSE2=$WD_FIXTURES/wdelta/v2/sparse.wdelta  # names 12 of 13 tensors: the parent is rebuilt to be found
SPARSE1=$WD_FIXTURES/wdelta/v1/sparse.wdelta  # names all 13: the recorded hash finds the parent

expect 0 wd init
expect 0 wd -q add-base "$MODELS/base-bf16" --name base
expect 0 wd -q commit "$MODELS/ft-bf16" --on base --name ft
expect 0 wd -q commit "$MODELS/ft-bf16" --on base --strategy sparse --name sp
expect 0 wd -q import "$WD_FIXTURES/wdelta/v2/int4.wdelta" --name imp
expect 0 wd log --json
SP=$(py "$T/out" '[o["id"] for o in d if "sp" in o["names"]][0]')
IMP=$(py "$T/out" '[o["id"] for o in d if "imp" in o["names"]][0]')
N_OBJECTS=4
cp -r "$REPO" "$T/pristine"
mkdir "$T/o"

# fresh: the repository as it was before any damage.
fresh() {
    rm -rf "$REPO" && cp -r "$T/pristine" "$REPO" || fail "cannot restore the repository"
}

# flip WHAT OBJECT [NAME]: damages one chunk; sets CHUNK (12 hex digits)
# and WHERE (the tensor or file).
flip() {
    $FLIP "$REPO/repo.db" "$@" >"$T/flip" || fail "flip_chunk $*"
    CHUNK=$(cut -c1-12 "$T/flip")
    WHERE=$(cut -d' ' -f2 "$T/flip")
}

# damaged WANT CMD...: CMD fails with one line naming the damage, which
# contains WANT, and leaves $T/o empty and the object count unchanged.
damaged() {
    _want=$1
    shift
    expect_fail_line "$@"
    grep -q "chunk $CHUNK: stored data is damaged (.*); run 'wdrepo fsck'\(; .*\)\{0,1\}$" "$T/err" ||
        fail "error does not name chunk $CHUNK as damaged: $*"
    grep -qF "$_want" "$T/err" || fail "error does not name $_want: $*"
    [ -z "$(ls -A "$T/o")" ] || { ls -A "$T/o" >&2; fail "output left behind after: $*"; }
    "$WDREPO" -R "$REPO" log --json >"$T/log" || fail "log after: $*"
    [ "$(py "$T/log" 'len(d)')" -eq "$N_OBJECTS" ] || fail "object count changed after: $*"
}

# --- a raw section of a base tensor (the mantissa plane: kept raw) ------------
fresh
flip raw-section "$BASE" model.layers.2.mlp.weight
note "raw section: chunk $CHUNK of $WHERE"
W="object $B12 tensor 'model.layers.2.mlp.weight' chunk $CHUNK"
damaged "$W" wd checkout base "$T/o/out"
damaged "$W" wd checkout base "$T/o/out" --dtype bfloat16
damaged "$W" wd checkout base "$T/o/out" --dtype float32
damaged "$W" wd checkout ft "$T/o/out" --dtype float16
damaged "$W" wd checkout sp "$T/o/out"
damaged "$W" wd export ft "$T/o/x.wdelta" --strategy sparse
damaged "$W" wd commit "$MODELS/ft2-bf16" --on base
damaged "$W" wd commit "$MODELS/ft2-bf16" --on ft --strategy int4
damaged "$W" wd import "$SPARSE2"
damaged "$W" wd import "$SPARSE1"
grep -q 'add its base first' "$T/err" && fail "import blames a missing base for a damaged one"
# No repository, no damage: load-delta reads the folders only.
expect 0 "$WDREPO" load-delta "$SPARSE2" "$MODELS/base-bf16" "$T/o/ld"
rm -rf "$T/o/ld"
# A delta that does not read the damaged chunk still works: its parent's
# hash is recorded, its own arrays are intact.
expect 0 wd export sp "$T/o/sp.wdelta"
rm -f "$T/o/sp.wdelta"

# --- a zstd section of a base tensor --------------------------------------------
fresh
flip zstd-section "$BASE"
note "zstd section: chunk $CHUNK of $WHERE"
W="object $B12 tensor '$WHERE' chunk $CHUNK"
damaged "$W" wd checkout base "$T/o/out"
damaged "$W" wd checkout base "$T/o/out" --dtype bfloat16
damaged "$W" wd checkout base "$T/o/out" --dtype float32
damaged "$W" wd commit "$MODELS/ft2-bf16" --on base
damaged "$W" wd export ft "$T/o/x.wdelta" --strategy int4

# --- a lossy array chunk: a committed sparse delta, an imported int4 one -------
fresh
flip array "$SP" model.layers.2.mlp.weight
FIELD=$(cut -d' ' -f3 "$T/flip")
note "array: chunk $CHUNK of $WHERE $FIELD"
W="object $(printf %.12s "$SP") tensor 'model.layers.2.mlp.weight' array '$FIELD' chunk $CHUNK"
damaged "$W" wd checkout sp "$T/o/out"
damaged "$W" wd checkout sp "$T/o/out" --dtype bfloat16
damaged "$W" wd checkout sp "$T/o/out" --dtype float32
damaged "$W" wd export sp "$T/o/x.wdelta"
damaged "$W" wd commit "$MODELS/ft2-bf16" --on sp
expect 0 wd checkout ft "$T/o/out"
rm -rf "$T/o/out"

fresh
flip array "$IMP" model.layers.2.mlp.weight
FIELD=$(cut -d' ' -f3 "$T/flip")
W="object $(printf %.12s "$IMP") tensor 'model.layers.2.mlp.weight' array '$FIELD' chunk $CHUNK"
damaged "$W" wd export imp "$T/o/x.wdelta"
damaged "$W" wd export imp "$T/o/x.wdelta" --format-version 1
damaged "$W" wd checkout imp "$T/o/out" --dtype float32

# --- a non-weight file and a shard header --------------------------------------
fresh
flip file "$BASE" config.json
W="object $B12 file 'config.json' chunk $CHUNK"
damaged "$W" wd checkout base "$T/o/out"
damaged "$W" wd checkout base "$T/o/out" --dtype bfloat16
damaged "$W" wd checkout base "$T/o/out" --dtype float32

fresh
flip header "$BASE" model-00002-of-00002.safetensors
W="object $B12 file 'model-00002-of-00002.safetensors' chunk $CHUNK"
damaged "$W" wd checkout base "$T/o/out"
damaged "$W" wd checkout base "$T/o/out" --dtype float32

# --- a chunk row gone ------------------------------------------------------------
fresh
flip delete "$BASE" model.layers.0.norm.weight
W="object $B12 tensor 'model.layers.0.norm.weight' chunk $CHUNK"
expect_fail_line wd checkout base "$T/o/out" --dtype float32
grep -qF "$W: missing from the store; run 'wdrepo fsck'" "$T/err" || fail "missing chunk not named"
[ -z "$(ls -A "$T/o")" ] || fail "output left behind after a missing chunk"

# --- import: a damaged candidate does not hide an intact parent -----------------
# base-f32 is the parent of v1/int4-f32-mem.wdelta (10 of its 13 tensors, so
# every candidate is rebuilt); the damaged base-bf16 is tried first.
fresh
flip raw-section "$BASE" model.layers.2.mlp.weight
expect 0 wd -q add-base "$MODELS/base-f32" --name f32
python3 - "$REPO/repo.db" <<'EOF' || fail "cannot age the f32 base"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE object SET created = created - 1000 WHERE id IN (SELECT object FROM name WHERE name = 'f32')")
db.commit()
EOF
expect 0 wd import "$WD_FIXTURES/wdelta/v1/int4-f32-mem.wdelta" --name imp32
expect 0 wd checkout imp32 "$T/o/imp32"
rm -rf "$T/o/imp32"

# --- checkout --only: a subset of the files -------------------------------------
# All shards written: the model hash checks the pieces, and a mismatch is
# traced to the chunk. Some shards left out: no model hash to compare, so
# every chunk is checked on its own (a subset once skipped both).
fresh
flip raw-section "$BASE" model.layers.2.mlp.weight
W="object $B12 tensor 'model.layers.2.mlp.weight' chunk $CHUNK"
damaged "$W" wd checkout base "$T/o/out" --only '*.safetensors'
"$WD_BUILD/tools/gen_model" --shards 2 --seed 5 -q "$T/two" >/dev/null 2>&1 || fail "gen_model --shards 2 failed"
expect 0 wd add-base "$T/two" --name two --json
TWO=$(py "$T/out" 'd["id"]')
N_OBJECTS=$((N_OBJECTS + 1))
flip raw-section "$TWO" model.layers.0.mlp.down_proj.weight
SHARD=$(py "$T/two/model.safetensors.index.json" 'd["weight_map"]["model.layers.0.mlp.down_proj.weight"]')
damaged "chunk $CHUNK" wd checkout two "$T/o/out" --only "$SHARD"
exit 0
