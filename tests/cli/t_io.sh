#!/bin/sh
# t_io.sh - inputs and outputs: '-' for standard input (import, inspect,
# hash; export and save-delta to '-' are in t_safe_outputs.sh), hash of single files and of several
# paths, import naming its parent, an exported delta importing back as
# itself, the wrong-parent warning of commit, and import/export progress on
# a terminal.
. tests/cli/lib.sh
W=$WD_FIXTURES/wdelta
B=$(model_hash base-bf16)

# ---- hash ------------------------------------------------------------------
expect 0 "$WDREPO" hash "$MODELS/base-f32/model.safetensors"
[ "$(cat "$T/out")" = "$(model_hash base-f32)" ] || fail "hash of a single file"
cat "$MODELS/base-f32/model.safetensors" | "$WDREPO" hash - >"$T/out" 2>"$T/err" || fail "hash - from a pipe failed"
[ "$(cat "$T/out")" = "$(model_hash base-f32)" ] || fail "hash - (pipe)"
expect 0 "$WDREPO" hash "$MODELS/base-bf16" "$MODELS/base-f32"
printf '%s  %s\n%s  %s\n' "$B" "$MODELS/base-bf16" "$(model_hash base-f32)" "$MODELS/base-f32" >"$T/want"
cmp -s "$T/want" "$T/out" || fail "hash of several folders is not one 'HASH  PATH' line each"
expect 0 "$WDREPO" hash --json "$MODELS/base-bf16" "$MODELS/base-f32"
pycheck "$T/out" 'assert [e["model_hash"] for e in d] == [h["models"]["base-bf16"]["model_hash"], h["models"]["base-f32"]["model_hash"]], d'
expect_usage "$WDREPO" hash - -
expect_fail_line "$WDREPO" hash "$MODELS/base-bf16/config.json"

# ---- import: '-', the parent it matched, --json ------------------------------
expect 0 wd init
expect 0 wd -q add-base "$MODELS/base-bf16" --name base
expect 0 wd import "$W/v2/sparse.wdelta" --json
pycheck "$T/out" '
assert d["parent"] == h["models"]["base-bf16"]["model_hash"], d
assert d["strategy"] == "sparse", d'
file_id=$(py "$T/out" 'd["id"]')
grep -q "on ${B%"${B#????????????}"} (sparse)" "$T/err" || fail "import does not say which parent it matched"
expect 0 wd rm "$file_id"
cat "$W/v2/sparse.wdelta" | wd import - >"$T/out" 2>"$T/err" || fail "import - from a pipe failed"
[ "$(cat "$T/out")" = "$file_id" ] || fail "import - (pipe) gave another id"
expect 0 wd inspect "$file_id" --json
[ "$(py "$T/out" 'd["message"]')" = "imported from standard input" ] || fail "import - message"
ls -a "$REPO" | grep -q 'tmp' && fail "import - left a temporary in the repository"
# a bad input on standard input is named as such, not by the copy's path
for c in "hash -" "inspect -"; do
    echo garbage | "$WDREPO" $c >"$T/out" 2>"$T/err" && fail "$c took garbage"
    grep -q '^wdrepo: standard input: ' "$T/err" || fail "$c does not name standard input: $(cat "$T/err")"
done
echo garbage | wd import - >"$T/out" 2>"$T/err" && fail "import - took garbage"
grep -q '^wdrepo: standard input: ' "$T/err" || fail "import - does not name standard input: $(cat "$T/err")"
cat "$W/v1/int4.wdelta" | "$WDREPO" inspect - --json >"$T/out" 2>"$T/err" || fail "inspect - failed"
[ "$(py "$T/out" 'd["strategy"]')" = int4 ] || fail "inspect - read something else"
printf 'not a delta' | wd import - >"$T/out" 2>"$T/err" && fail "import of garbage from a pipe succeeded"

# (export and save-delta to '-': t_safe_outputs.sh)

# ---- an exported delta imports back as itself --------------------------------
for s in sparse quantized int4; do
    expect 0 wd -q commit "$MODELS/ft-bf16" --on base --strategy $s
    id=$(cat "$T/out")
    for v in 2 1; do
        # v1 re-encodes int4 (another delta); sparse alone shows v1's order
        [ $s != sparse ] && [ $v = 1 ] && continue
        expect 0 wd -q export "$id" "$T/rt.wdelta" --force --format-version $v
        expect 0 wd import "$T/rt.wdelta" --json
        [ "$(py "$T/out" 'd["id"]')" = "$id" ] || fail "$s v$v: export then import gave another object"
        [ "$(py "$T/out" 'd["already_present"]')" = true ] || fail "$s v$v: not reported as already stored"
    done
done
expect 0 wd log --json
[ "$(py "$T/out" 'len(d)')" = 5 ] || fail "round trips stored new objects"

# ---- commit on the wrong parent warns, even under -q -------------------------
expect 0 wd -q commit "$MODELS/base-f32" --on base
grep -q "^wdrepo: warning: 0 of the 13 tensors of 'base' are not in the fine-tune and 12 have another shape or dtype" "$T/err" ||
    fail "no wrong-parent warning"
[ "$(nlines "$T/err")" = 1 ] || fail "the warning is not one line"
expect 0 wd commit "$MODELS/ft-bf16" --on base
grep -q warning "$T/err" && fail "a right parent drew a warning"

# ---- progress on a terminal --------------------------------------------------
script -qec "\"$WDREPO\" -R \"$REPO\" export $id \"$T/tty.wdelta\"" /dev/null >"$T/tty" 2>&1 || fail "export on a terminal"
grep -q 'export: 100%' "$T/tty" || fail "export shows no progress on a terminal"
expect 0 wd rm "$file_id"
script -qec "\"$WDREPO\" -R \"$REPO\" import \"$W/v2/sparse.wdelta\"" /dev/null >"$T/tty" 2>&1 || fail "import on a terminal"
grep -q 'import: ' "$T/tty" || fail "import shows no progress on a terminal"
echo "ok"
