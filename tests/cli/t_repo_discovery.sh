#!/bin/sh
# t_repo_discovery.sh - which repository a command uses: -R PATH, else
# $WDREPO_DIR, else the first .wdrepo from the current directory upwards;
# `init` creates -R PATH, $WDREPO_DIR or ./.wdrepo.
. tests/cli/lib.sh

mkdir -p "$T/proj/a/b"
(cd "$T/proj" && "$WDREPO" init) >"$T/out" 2>"$T/err" || fail "init in a folder failed"
[ -f "$T/proj/.wdrepo/repo.db" ] || [ -d "$T/proj/.wdrepo" ] || fail "init did not create ./.wdrepo"
[ -s "$T/out" ] && fail "init wrote to stdout"
grep -q "proj/.wdrepo" "$T/err" || fail "init does not say where"
(cd "$T/proj" && "$WDREPO" init) >"$T/out" 2>"$T/err" && fail "second init must fail"
[ "$(nlines "$T/err")" -eq 1 ] || fail "second init: expected one line"

# found from a subdirectory
(cd "$T/proj/a/b" && "$WDREPO" -q add-base "$MODELS/base-f32") >"$T/out" 2>"$T/err" || fail "add-base from a subdirectory"
[ "$(cat "$T/out")" = "$(model_hash base-f32)" ] || fail "add-base from a subdirectory printed $(cat "$T/out")"
(cd "$T/proj/a" && "$WDREPO" log --json) >"$T/out" 2>"$T/err" || fail "log from a subdirectory"
[ "$(py "$T/out" 'len(d)')" = 1 ] || fail "log from a subdirectory does not see the base"

# WDREPO_DIR wins over discovery; -R wins over WDREPO_DIR
(cd "$T" && WDREPO_DIR="$T/env" "$WDREPO" init) >"$T/out" 2>"$T/err" || fail "init with WDREPO_DIR"
[ -d "$T/env" ] || fail "init ignored WDREPO_DIR"
(cd "$T/proj/a" && WDREPO_DIR="$T/env" "$WDREPO" log --json) >"$T/out" 2>"$T/err" || fail "log with WDREPO_DIR"
[ "$(py "$T/out" 'len(d)')" = 0 ] || fail "log did not use WDREPO_DIR"
(cd "$T" && WDREPO_DIR="$T/env" "$WDREPO" -R "$T/proj/.wdrepo" log --json) >"$T/out" 2>"$T/err" || fail "log with -R"
[ "$(py "$T/out" 'len(d)')" = 1 ] || fail "-R did not win over WDREPO_DIR"
# global options may follow the command too
(cd "$T" && "$WDREPO" log --json -R "$T/proj/.wdrepo") >"$T/out" 2>"$T/err" || fail "-R after the command"
[ "$(py "$T/out" 'len(d)')" = 1 ] || fail "-R after the command was not used"
(cd "$T" && "$WDREPO" -R "$T/r2" init) >"$T/out" 2>"$T/err" || fail "init -R"
[ -d "$T/r2" ] || fail "init -R did not create the folder"

# no repository anywhere above: one line, exit 1 (skipped if the machine has
# a repository above the temp dir, which would be found)
above=$T
found=
while [ "$above" != / ] && [ -n "$above" ]; do
    above=$(dirname "$above")
    [ -e "$above/.wdrepo" ] && found=1
done
if [ -z "$found" ]; then
    mkdir "$T/nowhere"
    (cd "$T/nowhere" && "$WDREPO" log) >"$T/out" 2>"$T/err" && fail "log outside a repository must fail"
    [ "$(nlines "$T/err")" -eq 1 ] || fail "log outside a repository: expected one line"
    grep -q '^wdrepo: ' "$T/err" || fail "log outside a repository: no 'wdrepo: ' prefix"
else
    note "a .wdrepo exists above $T: skipping the no-repository check"
fi

# hash needs no repository at all
(cd "$T/nowhere" 2>/dev/null || cd "$T"; WDREPO_DIR="$T/does-not-exist" "$WDREPO" hash "$MODELS/base-bf16") >"$T/out" 2>"$T/err" ||
    fail "hash outside a repository"
[ "$(cat "$T/out")" = "$(model_hash base-bf16)" ] || fail "hash printed $(cat "$T/out")"
(cd "$T"; "$WDREPO" hash "$MODELS/base-bf16" --json) >"$T/out" 2>"$T/err" || fail "hash --json"
[ "$(py "$T/out" 'd["model_hash"]')" = "$(model_hash base-bf16)" ] || fail "hash --json"
exit 0
