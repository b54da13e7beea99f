#!/bin/sh
# t_log.sh - log's filters: -n N, --oneline, log REF (REF's ancestors and
# descendants only), and parents shown by name where they have one, in the
# plain list, --oneline and the tree a terminal gets.
. tests/cli/lib.sh
GEN=${WD_BUILD:?}/tools/gen_model
"$GEN" -q --preset tiny --seed 5 "$T/base" --finetune "$T/ft" || fail "gen_model failed"
"$GEN" -q --preset tiny --seed 6 "$T/base2" || fail "gen_model failed"
short() { echo "$1" | cut -c1-12; }

# b <- a1 <- a2 (unnamed) <- a3;  b <- c1;  b2 alone
expect 0 wd init
expect 0 wd -q add-base "$T/base" --name b
expect 0 wd -q commit "$T/ft" --on b --name a1 -m first
a1=$(cat "$T/out")
expect 0 wd -q commit "$T/base" --on a1
a2=$(cat "$T/out")
expect 0 wd -q commit "$T/ft" --on "$a2" --name a3
expect 0 wd -q commit "$T/ft" --on b --strategy sparse --name c1
expect 0 wd -q add-base "$T/base2" --name b2

expect 0 wd log --oneline
[ "$(nlines "$T/out")" -eq 6 ] || fail "--oneline: expected 6 lines, no header"
grep -qx "[0-9a-f]\{12\}  b2  *base  *-" "$T/out" || fail "--oneline: base line"
grep -qx "[0-9a-f]\{12\}  c1  *delta/sparse  *b" "$T/out" || fail "--oneline: c1's parent by name"
grep -qx "[0-9a-f]\{12\}  a3  *delta/lossless  *$(short "$a2")" "$T/out" || fail "--oneline: unnamed parent by short id"
grep -qx "$(short "$a2")  -  *delta/lossless  *a1" "$T/out" || fail "--oneline: unnamed object"

expect 0 wd log -n 2 --oneline
[ "$(nlines "$T/out")" -eq 2 ] || fail "-n 2: expected 2 lines"
sed -n 1p "$T/out" | grep -q "  b2  " || fail "-n 2: the newest first"
expect 0 wd log --max-count=1 --json
[ "$(py "$T/out" 'len(d)')" = 1 ] || fail "--max-count=1 --json"

# lineage of a2: its ancestors a1, b and its descendant a3; not c1 nor b2
expect 0 wd log "$a2" --oneline
cut -c1-12 "$T/out" | tr '\n' ' ' >"$T/ids"
for n in a3 a1 b; do grep -q "  $n  " "$T/out" || fail "log a2 lacks $n"; done
grep -q "^$(short "$a2")" "$T/out" || fail "log a2 lacks a2"
[ "$(nlines "$T/out")" -eq 4 ] || fail "log a2: expected a3, a2, a1, b"
expect 0 wd log c1 --json
pycheck "$T/out" 'assert sorted(n for o in d for n in o["names"]) == ["b", "c1"], d'
expect 0 wd log b --oneline
[ "$(nlines "$T/out")" -eq 5 ] || fail "log b: every object built on b, and b"
expect_fail_line wd log nosuch
expect_usage wd log --oneline --json
expect_usage wd log a1 a3

# plain list: PARENT by name; tree on a terminal, filtered
expect 0 wd log
grep "^$(short "$a1") " "$T/out" | grep -q "^$(short "$a1")  *b  " || fail "plain log: parent by name"
on_tty "$WDREPO" -R "$REPO" log a3
grep -q '`-- [0-9a-f]\{12\}  *delta  lossless  a3 ' "$T/out" || fail "tree of log a3: a3 under a2"
grep -q 'c1\|b2' "$T/out" && fail "tree of log a3 shows other lineages"
exit 0
