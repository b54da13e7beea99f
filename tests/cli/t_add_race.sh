#!/bin/sh
# t_add_race.sh - two identical add-base at once (the dedup race): both
# succeed, exactly one stores the base, the other reports it already
# present with new_bytes 0, as documented; the chunks the loser stored
# before finding the object count in the object's new_bytes, so the
# object's new_bytes is what the chunk table holds. Same for two identical
# commits at once. Both writers store chunks while the other does, so the
# loser has stored some by the time it finds the winner's object (each
# round checks the invariants whichever way the race goes).
. tests/cli/lib.sh
GEN=${WD_BUILD:?}/tools/gen_model
case $GEN in /*) ;; *) GEN=$PWD/$GEN ;; esac
"$GEN" -q --preset tiny --hidden 512 --vocab 16000 --layers 4 --seed 7 "$T/base" --finetune "$T/ft" || fail "gen_model failed"

# chunk_bytes: compressed bytes in the chunk table.
chunk_bytes() {
    python3 - "$REPO/repo.db" <<'EOF'
import sqlite3, sys
db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
print(db.execute("SELECT coalesce(sum(length(data)), 0) FROM chunk").fetchone()[0])
EOF
}

# race CMD...: runs CMD twice at once (with --json), checks the pair.
race() {
    wd "$@" --json >"$T/r1.out" 2>"$T/r1.err" &
    p1=$!
    wd "$@" --json >"$T/r2.out" 2>"$T/r2.err" &
    p2=$!
    wait $p1 || fail "first of two concurrent '$1' failed: $(cat "$T/r1.err")"
    wait $p2 || fail "second of two concurrent '$1' failed: $(cat "$T/r2.err")"
    python3 - "$T/r1.out" "$T/r2.out" <<'EOF' || fail "concurrent '$1': the two reports disagree with the docs"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["id"] == b["id"], (a["id"], b["id"])
assert sorted([a["already_present"], b["already_present"]]) == [False, True], (a, b)
loser = a if a["already_present"] else b
winner = b if loser is a else a
assert loser["new_bytes"] == 0, loser
# The winner's own new_bytes may be 0: the loser can have stored every
# chunk first (seen under the sanitizers); the log's new_bytes, checked
# below, holds what both stored.
assert winner["new_bytes"] >= 0, winner
assert loser["stored_bytes"] == winner["stored_bytes"], (a, b)
EOF
}

H=$("$WDREPO" hash "$T/base") || fail "hash failed"
for round in 1 2; do
    rm -rf "$REPO"
    expect 0 wd init
    race add-base "$T/base"
    expect 0 wd log --json
    pycheck "$T/out" "assert len(d) == 1, len(d)"
    [ "$(py "$T/out" 'd[0]["new_bytes"]')" = "$(chunk_bytes)" ] ||
        fail "round $round: the base's new_bytes is not what the chunk table holds"
    race commit "$T/ft" --on "$H"
    expect 0 wd log --json
    pycheck "$T/out" "assert len(d) == 2, len(d)"
    total=$(py "$T/out" 'sum(o["new_bytes"] for o in d)')
    [ "$total" = "$(chunk_bytes)" ] || fail "round $round: new_bytes add up to $total, the chunks to $(chunk_bytes)"
done
expect 0 wd -q checkout "$(py "$T/r1.out" 'd["id"]')" "$T/co"
same_tree "$T/ft" "$T/co"
exit 0
