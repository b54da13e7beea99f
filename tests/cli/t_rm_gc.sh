#!/bin/sh
# t_rm_gc.sh - rm, tag -d / -l and gc. rm refuses an object others are built
# on (naming them) unless --recursive, and takes the names along; gc frees
# exactly the chunks nothing references and the file shrinks; a commit
# killed after N transactions leaves chunks that gc frees (with the stale
# reserve file); a gc waiting keeps new writers from starting; gc never runs
# beside a writer: a paused add-base makes it fail "busy" or wait, and the
# add-base completes and checks out.
. tests/cli/lib.sh
# The interpreter itself, not a version manager's shim around it (pyenv's
# costs a second a call here, and these scripts call python3 often).
PY3=$(python3 -c 'import sys; print(sys.executable)') || fail "python3 not found"
python3() { "$PY3" "$@"; }
GEN=${WD_BUILD:?}/tools/gen_model
case $GEN in /*) ;; *) GEN=$PWD/$GEN ;; esac

# chunks: rows in table chunk (a read-only look from outside).
chunks() {
    python3 - "$REPO/repo.db" <<'EOF'
import sqlite3, sys
c = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
print(c.execute("SELECT count(*) FROM chunk").fetchone()[0])
EOF
}

expect 0 wd init
expect 0 wd -q add-base "$MODELS/base-bf16" --name base
expect 0 wd -q commit "$MODELS/ft-bf16" --on base --name ft -m first
ft=$(cat "$T/out")
expect 0 wd -q commit "$MODELS/ft2-bf16" --on ft --name ft2
ft2=$(cat "$T/out")
expect 0 wd tag also-ft ft
base=$(model_hash base-bf16)

# --- tag -l / -d -----------------------------------------------------------------
expect 0 wd tag -l --json
pycheck "$T/out" '
assert [n["name"] for n in d] == ["also-ft", "base", "ft", "ft2"], d
assert all(len(n["id"]) == 64 and n["kind"] in ("base", "delta") and n["created"] > 0 for n in d), d
assert [n["kind"] for n in d] == ["delta", "base", "delta", "delta"], d
'
expect 0 wd tag -l
[ "$(nlines "$T/out")" -eq 5 ] || fail "tag -l: expected a header and 4 names"
expect 0 wd tag
[ "$(nlines "$T/out")" -eq 5 ] || fail "tag alone does not list the names"
expect 0 wd tag -d also-ft
expect 0 wd tag -l --json
pycheck "$T/out" 'assert [n["name"] for n in d] == ["base", "ft", "ft2"], d'
expect 0 wd inspect ft --json
[ "$(py "$T/out" 'd["id"]')" = "$ft" ] || fail "tag -d removed more than the name"
expect_fail_line wd tag -d also-ft
grep -q "no name 'also-ft'" "$T/err" || fail "unclear message for an unknown name: $(cat "$T/err")"
expect_usage wd tag -d
expect_usage wd tag -d x -l
expect_usage wd tag x
expect_usage wd tag -l extra

# --- rm refuses an object others are built on --------------------------------------
expect 0 wd log --json
cp "$T/out" "$T/log0"
expect_fail_line wd rm base
grep -q "2 objects are built on it" "$T/err" || fail "rm base: dependents not counted: $(cat "$T/err")"
grep -q "$(echo "$ft" | cut -c1-12)" "$T/err" && grep -q "$(echo "$ft2" | cut -c1-12)" "$T/err" ||
    fail "rm base does not name its dependents: $(cat "$T/err")"
grep -q -- "--recursive" "$T/err" || fail "rm base does not mention --recursive"
expect_fail_line wd rm ft
expect 0 wd log --json
cmp -s "$T/out" "$T/log0" || fail "a refused rm changed the repository"
expect_fail_line wd rm nosuchname
expect_usage wd rm

# --- rm of a leaf: its names go, the rest checks out ----------------------------------
expect 0 wd rm ft2 --json
pycheck "$T/out" "
assert len(d) == 1 and d[0]['id'] == '$ft2' and d[0]['kind'] == 'delta' and d[0]['names'] == ['ft2'], d
"
expect 0 wd tag -l --json
pycheck "$T/out" 'assert [n["name"] for n in d] == ["base", "ft"], d'
expect_fail_line wd inspect ft2
expect 0 wd checkout ft "$T/co-ft"
same_tree "$MODELS/ft-bf16" "$T/co-ft"

# gc frees what ft2 alone referenced, and nothing the others need.
expect 0 wd gc --dry-run --json
pycheck "$T/out" 'assert d["dry_run"] and d["n_unreferenced"] > 0 and d["unreferenced_bytes"] > 0, d'
dry=$(py "$T/out" 'd["n_unreferenced"]')
expect 0 wd gc --dry-run --json
[ "$(py "$T/out" 'd["n_unreferenced"]')" = "$dry" ] || fail "a dry run removed something"
expect 0 wd gc --json
pycheck "$T/out" "assert not d['dry_run'] and d['n_unreferenced'] == $dry, d"
expect 0 wd gc --json
pycheck "$T/out" 'assert d["n_unreferenced"] == 0, d'
rm -rf "$T/co-ft"
expect 0 wd checkout ft "$T/co-ft"
same_tree "$MODELS/ft-bf16" "$T/co-ft"
expect 0 wd checkout base "$T/co-base"
same_tree "$MODELS/base-bf16" "$T/co-base"
# Human report on stderr, nothing on stdout.
expect 0 wd gc
grep -q "^removed 0 of [0-9]* chunks" "$T/err" || fail "gc summary: $(cat "$T/err")"
[ -s "$T/out" ] && fail "gc without --json wrote to stdout"

# --- rm --recursive ---------------------------------------------------------------------
expect 0 wd rm --recursive base
[ "$(nlines "$T/out")" -eq 2 ] || fail "rm -r base: expected 2 ids"
[ "$(sed -n 1p "$T/out")" = "$ft" ] || fail "rm -r removes children first"
[ "$(sed -n 2p "$T/out")" = "$base" ] || fail "rm -r did not remove base"
expect 0 wd log --json
pycheck "$T/out" 'assert d == [], d'
expect 0 wd tag -l --json
pycheck "$T/out" 'assert d == [], d'
expect 0 wd gc --json
pycheck "$T/out" 'assert d["n_chunks"] == d["n_unreferenced"] > 0, d'
[ "$(chunks)" -eq 0 ] || fail "chunks left after removing everything"

# --- du goes down: rm + gc of a bigger model ---------------------------------------------
"$GEN" -q --preset small --layers 2 --seed 11 "$T/mid" || fail "gen_model failed"
expect 0 wd add-base "$MODELS/base-bf16" --name base
small=$(repo_bytes)
expect 0 wd add-base "$T/mid" --name mid
big=$(repo_bytes)
[ "$big" -gt $((small + 4000000)) ] || fail "a generated model took only $((big - small)) bytes"
expect 0 wd rm mid
expect 0 wd gc --json
pycheck "$T/out" 'assert d["freed_bytes"] > 4000000 and d["file_bytes_after"] < d["file_bytes_before"], d'
after=$(repo_bytes)
[ "$after" -le $((small + 262144)) ] || fail "repository still $after bytes after rm + gc (was $small before the model)"

# --- a repository made before auto-vacuum is rewritten once, then shrinks -------------
auto_vacuum() {
    python3 - "$REPO/repo.db" "$1" <<'EOF'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
if sys.argv[2] != "get":
    c.execute("PRAGMA auto_vacuum = " + sys.argv[2])
    c.execute("VACUUM")
print(c.execute("PRAGMA auto_vacuum").fetchone()[0])
EOF
}
[ "$(auto_vacuum NONE)" -eq 0 ] || fail "could not make an old-style repository"
expect 0 wd add-base "$T/mid" --name mid
expect 0 wd rm mid
expect 0 wd gc --json
pycheck "$T/out" 'assert d["compacted"] and d["compact_needs"] == 0 and d["freed_bytes"] > 4000000, d'
[ "$(auto_vacuum get)" -eq 2 ] || fail "gc did not turn an old repository to incremental auto-vacuum"
[ "$(repo_bytes)" -le $((small + 262144)) ] || fail "old-style repository still $(repo_bytes) bytes after gc"
expect 0 wd checkout base "$T/co-base2"
same_tree "$MODELS/base-bf16" "$T/co-base2"

# --- a commit killed mid-way: gc frees its chunks and the reserve it left -------------
WDREPO_FAULT=txn:2 "$WDREPO" -R "$REPO" -q add-base "$T/mid" --name mid >/dev/null 2>&1
[ $? -eq 137 ] || fail "add-base with WDREPO_FAULT=txn:2 was not killed"
expect 0 wd log --json
pycheck "$T/out" 'assert len(d) == 1, d'
ls "$REPO" | grep -q '^repo.reserve\.' || fail "the killed add-base left no reserve file (test premise)"
expect 0 wd gc --json
pycheck "$T/out" 'assert d["n_unreferenced"] > 0 and d["freed_bytes"] > 0, d'
ls "$REPO" | grep -q '^repo.reserve\.' && fail "gc left a stale reserve file"
[ "$(repo_bytes)" -le $((small + 262144)) ] || fail "gc after a killed add-base left $(repo_bytes) bytes"
expect 0 wd add-base "$T/mid" --name mid
expect 0 wd checkout mid "$T/co-mid"
same_tree "$T/mid" "$T/co-mid"
expect 0 wd rm mid
expect 0 wd gc

# A gc waiting (gc.lock held exclusive, as gc holds it while it waits) keeps
# a new writer from starting until it is done.
flock -x "$REPO/gc.lock" sh -c 'while [ ! -e "$1" ]; do sleep 0.05; done' sh "$T/release" &
holder=$!
while flock -n -s "$REPO/gc.lock" true 2>/dev/null; do sleep 0.05; done
wd tag waited base >"$T/tag.out" 2>"$T/tag.err" &
tagger=$!
sleep 1
kill -0 $tagger 2>/dev/null || fail "a writer started while gc.lock was held: $(cat "$T/tag.err")"
expect 0 wd tag -l --json
pycheck "$T/out" 'assert "waited" not in [n["name"] for n in d], d'
touch "$T/release"
wait $holder
wait $tagger || fail "the writer that waited for gc failed: $(cat "$T/tag.err")"
expect 0 wd tag -l --json
pycheck "$T/out" 'assert "waited" in [n["name"] for n in d], d'

# --- gc beside a writer -------------------------------------------------------------------
# A paused add-base has committed chunk groups but not its object: gc must
# not run beside it (busy), or wait until it is done.
"$GEN" -q --preset small --layers 12 --seed 12 "$T/big" || fail "gen_model failed"
# pause_writer: starts add-base of big and stops it (SIGSTOP) once it has
# committed a chunk group: its log holds more than one group (4 MiB),
# written at each group's commit. 0 when paused, 1 if it finished first.
wal_bytes() { stat -c %s "$REPO/repo.db-wal" 2>/dev/null || echo 0; }
pause_writer() {
    "$WDREPO" -R "$REPO" -q -j 1 add-base "$T/big" --name big >"$T/bg.out" 2>"$T/bg.err" &
    writer=$!
    n=0
    while [ "$(wal_bytes)" -lt 9000000 ] && kill -0 $writer 2>/dev/null; do
        n=$((n + 1))
        [ $n -lt 3000 ] || fail "the add-base stored no chunks in 60 s"
        sleep 0.02
    done
    kill -STOP $writer 2>/dev/null && return 0
    # It ended first (a very fast machine): start over.
    wait $writer || fail "add-base failed: $(cat "$T/bg.err")"
    expect 0 wd rm big
    expect 0 wd gc
    return 1
}
tries=0
until pause_writer; do
    tries=$((tries + 1))
    [ $tries -lt 5 ] || fail "could not pause an add-base mid-way in 5 tries"
done
# (Nothing reads the database while the writer is stopped: stopped at an
# unlucky instant, it can hold a lock SQLite readers wait for. Whether gc
# spared its chunks shows below: the add-base completes and checks out.)
expect_fail_line wd gc --wait 1
grep -q "busy" "$T/err" || fail "gc beside a writer: $(cat "$T/err")"
expect_fail_line wd gc --dry-run --wait 0
grep -q "busy" "$T/err" || fail "gc --dry-run beside a writer: $(cat "$T/err")"

# A gc that may wait long enough runs once the add-base is done: the add-base
# completes and is intact, and gc finds nothing of it to remove.
wd gc --wait 120 --json >"$T/gc.out" 2>"$T/gc.err" &
collector=$!
while flock -n -s "$REPO/gc.lock" true 2>/dev/null; do
    kill -0 $collector 2>/dev/null || fail "gc ended while a writer was paused: $(cat "$T/gc.err")"
    sleep 0.05
done
kill -CONT $writer
wait $writer || fail "the add-base paused during gc failed: $(cat "$T/bg.err")"
wait $collector || fail "gc waiting for the add-base failed: $(cat "$T/gc.err")"
pycheck "$T/gc.out" 'assert d["n_unreferenced"] == 0, d'
expect 0 wd checkout big "$T/co-big"
same_tree "$T/big" "$T/co-big"
exit 0
