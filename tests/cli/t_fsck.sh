#!/bin/sh
# t_fsck.sh - `wdrepo fsck [--full] [--json]`: a sound repository (bases,
# lossless and lossy deltas, a chain, imported files, names) checks clean
# with exit 0 and is left untouched; each kind of damage (a flipped chunk
# byte, a chunk row gone, a name pointing nowhere, a broken lineage link, a
# wrong recorded size or id, a wrong model hash under --full, a damaged
# database page) is found, exit 3, and named with every object that
# depends on it.
. tests/cli/lib.sh
# python3 may be a version manager's shim that costs a second a call; this
# script makes dozens, so it resolves the interpreter once.
PY=$(python3 -c 'import sys; print(sys.executable)') || fail "python3 not found"
python3() { "$PY" "$@"; }
FLIP="python3 tests/cli/flip_chunk.py"
W2=$WD_FIXTURES/wdelta/v2

expect 0 wd init
expect 0 wd -q add-base "$MODELS/base-bf16" --name base
expect 0 wd -q commit "$MODELS/ft-bf16" --on base --name ft
expect 0 wd -q commit "$MODELS/ft2-bf16" --on ft --name ft2
expect 0 wd -q commit "$MODELS/ft-bf16" --on base --strategy sparse --name sp
expect 0 wd -q commit "$MODELS/ft-bf16" --on base --strategy quantized --name qu
expect 0 wd -q commit "$MODELS/ft2-bf16" --on sp --strategy int4 --name sp-i4
expect 0 wd -q import "$W2/int4.wdelta" --name imp
expect 0 wd -q import "$W2/chain-1.wdelta" --name chain1
expect 0 wd -q import "$W2/chain-2.wdelta" --name chain2
expect 0 wd -q add-base "$MODELS/base-f32" --name f32
expect 0 wd tag also-base base
expect 0 wd log --json
cp "$T/out" "$T/log.json"
# BASE=<id> FT=<id> ...: the ids by name, in one python call.
py "$T/log.json" "'\\n'.join('%s=%s' % (n.upper().replace('-', ''), o['id']) for o in d for n in o['names'])" >"$T/ids"
. "$T/ids"
[ -n "$BASE" ] && [ -n "$SPI4" ] && [ -n "$CHAIN2" ] || fail "ids by name: $(cat "$T/ids")"
cp -r "$REPO" "$T/pristine"

fresh() {
    rm -rf "$REPO" && cp -r "$T/pristine" "$REPO" || fail "cannot restore the repository"
}

# sql 'statement' [args...]: runs one statement on the repository database
# (python3's sqlite3; CHECK constraints off, as a damaged file has none).
sql() {
    python3 - "$REPO/repo.db" "$@" <<'EOF' || fail "sql failed: $*"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("PRAGMA ignore_check_constraints = 1")
args = [bytes.fromhex(a[2:]) if a.startswith("x:") else a for a in sys.argv[3:]]
db.execute(sys.argv[2], args)
db.commit()
EOF
}

# fsck_json [--full]: runs fsck --json, expecting exit 3; the report is
# left in $T/fsck.json.
fsck_damaged() {
    expect 3 wd fsck --json "$@"
    cp "$T/out" "$T/fsck.json"
    pycheck "$T/fsck.json" 'assert d["ok"] is False and d["problems"], d'
}

# affected KIND 'python set of ids': the problems of KIND hit exactly those
# objects (over all problems of that kind).
affected() {
    pycheck "$T/fsck.json" "
got = set()
for p in d['problems']:
    if p['kind'] == '$1':
        got |= set(p['affected'])
want = $2
assert got == want, (sorted(got), sorted(want))
assert set(d['damaged_objects']) >= want"
}

# --- a sound repository --------------------------------------------------------
before=$(cksum <"$REPO/repo.db")
expect 0 wd fsck
[ -s "$T/out" ] && fail "a sound repository printed problems"
grep -q '^fsck: no problems: 10 objects, [0-9]* chunks .*, 11 names checked$' "$T/err" || fail "summary: $(cat "$T/err")"
expect 0 wd fsck --full
grep -q 'every object rebuilt' "$T/err" || fail "--full summary: $(cat "$T/err")"
expect 0 wd -q fsck --full --json
[ -s "$T/err" ] && fail "-q fsck printed on stderr"
pycheck "$T/out" '
assert d["ok"] is True and d["complete"] is True and d["full"] is True and d["problems"] == []
assert d["n_objects"] == 10 and d["n_rebuilt"] == 10 and d["n_names"] == 11 and d["damaged_objects"] == []
assert d["n_chunks"] > 0 and d["raw_bytes"] > d["chunk_bytes"] > 0'
[ "$(cksum <"$REPO/repo.db")" = "$before" ] || fail "fsck changed repo.db"
expect_usage wd fsck extra
expect 0 wd fsck -h
grep -q 'Exit 0: sound; 3: damage found' "$T/out" || fail "fsck -h lacks the exit codes"

# --- a flipped byte in a base chunk: the base and everything built on it -----
fresh
$FLIP "$REPO/repo.db" raw-section "$BASE" model.layers.2.mlp.weight >"$T/flip" || fail flip
CHUNK=$(cut -d' ' -f1 "$T/flip")
expect 3 wd fsck
grep -q "^chunk $(printf %.12s "$CHUNK"): stored data is damaged (hash mismatch)\$" "$T/out" ||
    fail "damaged chunk not named"
grep -q "^  used by: object $(printf %.12s "$BASE") tensor 'model.layers.2.mlp.weight'\$" "$T/out" ||
    fail "the chunk's use not named"
grep -q "^  affects: .*(base 'also-base', 'base')" "$T/out" || fail "affected objects not named"
grep -q '^fsck: 1 problem found; 9 of 10 objects affected$' "$T/err" || fail "summary: $(cat "$T/err")"
fsck_damaged
pycheck "$T/fsck.json" "assert [p['chunk'] for p in d['problems']] == ['$CHUNK'], d['problems']"
affected chunk "{'$BASE', '$FT', '$FT2', '$SP', '$SPI4', '$IMP', '$CHAIN1', '$CHAIN2', '$QU'}"

# --- a flipped byte in a lossy array: that delta and the one built on it -----
fresh
$FLIP "$REPO/repo.db" array "$SP" model.layers.2.mlp.weight >"$T/flip" || fail flip
fsck_damaged
affected chunk "{'$SP', '$SPI4'}"

# --- a flipped byte in a file: only the objects whose files use it ------------
fresh
$FLIP "$REPO/repo.db" file "$F32" config.json >"$T/flip" || fail flip
fsck_damaged
affected chunk "{'$F32'}"

# --- a chunk row gone: named as missing, with its users -----------------------
fresh
$FLIP "$REPO/repo.db" delete "$FT" model.ëmbed.weight >"$T/flip" || fail flip
CHUNK=$(cut -d' ' -f1 "$T/flip")
fsck_damaged
pycheck "$T/fsck.json" "
p = d['problems'][0]
assert p['kind'] == 'chunk' and p['chunk'] == '$CHUNK' and p['message'] == 'missing from the store', p
assert p['where'] == \"object $(printf %.12s "$FT") tensor 'model.ëmbed.weight'\", p"
affected chunk "{'$FT', '$FT2'}"

# --- a name pointing nowhere ----------------------------------------------------
fresh
sql "UPDATE name SET object = ? WHERE name = 'also-base'" "x:$(printf %064d 7)"
expect 3 wd fsck
grep -q "^name 'also-base': points at 000000000000, which is not in the repository\$" "$T/out" ||
    fail "dangling name not named"
fsck_damaged
pycheck "$T/fsck.json" "assert [(p['kind'], p['name'], p['affected']) for p in d['problems']] == [('name', 'also-base', [])]"

# --- an object row gone: its rows and its name are left pointing nowhere ------
fresh
sql "DELETE FROM object WHERE id = ?" "x:$FT2"
fsck_damaged
pycheck "$T/fsck.json" "
kinds = sorted((p['kind'], p['object'] or p['name']) for p in d['problems'])
assert kinds == [('name', 'ft2'), ('object', '$FT2'), ('object', '$FT2')], kinds"

# --- broken lineage: a missing parent, a parent model hash that disagrees, a loop
fresh
sql "UPDATE object SET parent = ? WHERE id = ?" "x:$(printf %064d 5)" "x:$FT2"
fsck_damaged
pycheck "$T/fsck.json" "
p = [p for p in d['problems'] if p['kind'] == 'lineage']
assert len(p) == 1 and p[0]['object'] == '$FT2' and 'is not in the repository' in p[0]['message'], p"
affected lineage "{'$FT2'}"

fresh
sql "UPDATE object SET parent_model_hash = ? WHERE id = ?" "x:$(printf %064d 6)" "x:$SP"
fsck_damaged
affected lineage "{'$SP', '$SPI4'}"

fresh
sql "UPDATE object SET kind = 'delta', parent = ? WHERE id = ?" "x:$FT" "x:$BASE"
expect 3 wd fsck
grep -q "parent links loop" "$T/out" || fail "lineage loop not named"
expect 3 wd fsck --full

# --- records that disagree: a size, a tensor row (so the delta id) --------------
fresh
sql "UPDATE tensor SET stored_bytes = stored_bytes + 1 WHERE object = ? AND name = 'model.ëmbed.weight'" "x:$FT"
fsck_damaged
pycheck "$T/fsck.json" "
assert [(p['kind'], p['object'], p['affected']) for p in d['problems']] == [('size', '$FT', [])], d['problems']"

fresh
sql "UPDATE tensor SET ordinal = ordinal + 100 WHERE object = ? AND name = 'model.layers.0.norm.weight'" "x:$FT"
fsck_damaged
pycheck "$T/fsck.json" "
p = [p for p in d['problems'] if p['kind'] == 'object']
assert len(p) == 1 and p[0]['object'] == '$FT' and 'not to its id' in p[0]['message'], d['problems']"
affected object "{'$FT', '$FT2'}"

fresh
sql "UPDATE tensor SET shape = '[7]' WHERE object = ? AND name = 'model.layers.0.norm.weight'" "x:$BASE"
fsck_damaged
pycheck "$T/fsck.json" "assert any(p['kind'] == 'object' and p['object'] == '$BASE' for p in d['problems']), d['problems']"

# --- a wrong model hash: only a rebuild can tell ------------------------------
fresh
sql "UPDATE object SET model_hash = ? WHERE id = ?" "x:$(printf %064d 9)" "x:$SPI4"
expect 3 wd fsck --full
grep -q "^object $(printf %.12s "$SPI4"): rebuilds to weights hashing to [0-9a-f]*, recorded 000000000000\$" "$T/out" ||
    fail "wrong model hash not named"
fsck_damaged --full
pycheck "$T/fsck.json" "assert [(p['kind'], p['affected']) for p in d['problems']] == [('model_hash', ['$SPI4'])], d"

fresh
sql "UPDATE object SET f32_hash = ? WHERE id = ?" "x:$(printf %064d 8)" "x:$CHAIN1"
fsck_damaged --full
pycheck "$T/fsck.json" "assert [(p['kind'], p['object']) for p in d['problems']] == [('model_hash', '$CHAIN1')], d"

# --- a damaged database page: SQLite's own check -------------------------------
fresh
python3 - "$REPO/repo.db" <<'EOF' || fail "cannot damage the database file"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
page = db.execute("PRAGMA page_size").fetchone()[0]
root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'object_model_hash'").fetchone()[0]
db.close()
with open(sys.argv[1], "r+b") as f:
    f.seek((root - 1) * page)
    f.write(b"\xff")  # not a b-tree page type
EOF
expect 3 wd fsck
grep -q '^database: ' "$T/out" || fail "database damage not named"
grep -q 'the database itself is damaged' "$T/err" || fail "summary: $(cat "$T/err")"
exit 0
