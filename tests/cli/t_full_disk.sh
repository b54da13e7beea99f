#!/bin/sh
# t_full_disk.sh - a write that fills the file system gives the space back:
# the failed add-base removes the chunks it had committed and shrinks the
# database itself (one line saying so), so the next commit works; when
# another writer is active it cannot, says "'wdrepo gc' frees them", and gc
# then does. Needs a small tmpfs of its own (root).
. tests/cli/lib.sh
# The interpreter itself, not a version manager's shim around it (pyenv's
# costs a second a call here).
PY3=$(python3 -c 'import sys; print(sys.executable)') || fail "python3 not found"
python3() { "$PY3" "$@"; }
GEN=${WD_BUILD:?}/tools/gen_model
case $GEN in /*) ;; *) GEN=$PWD/$GEN ;; esac

mkdir "$T/small"
if [ "$(id -u)" -ne 0 ] || ! mount -t tmpfs -o size=24m tmpfs "$T/small" 2>/dev/null; then
    note "no tmpfs mount (not root?): the full-disk cases were not run"
    exit 0
fi
trap 'umount "$T/small" 2>/dev/null; rm -rf "$T"' EXIT
"$GEN" -q --preset small --seed 5 "$T/big" || fail "gen_model failed"
R2=$T/small/repo
w2() { "$WDREPO" -R "$R2" "$@"; }
used() { find "$R2" -type f -exec cat {} + | wc -c | tr -d ' '; }

expect 0 w2 init
expect 0 w2 add-base "$MODELS/base-bf16" --name tiny
expect 0 w2 log --json
cp "$T/out" "$T/log0"
used0=$(used)

# --- the failed command cleans up after itself ------------------------------------
expect_fail_line w2 add-base "$T/big" --name big
grep -q "disk full" "$T/err" || fail "no 'disk full' in: $(cat "$T/err")"
grep -q "removed again" "$T/err" || fail "the failed add-base did not say it gave the space back: $(cat "$T/err")"
[ "$(used)" -le $((used0 + 262144)) ] || fail "after the failed add-base the repository holds $(used) bytes (was $used0)"
ls "$R2" | grep -q '^repo.reserve\.' && fail "the failed add-base left its reserve file"
expect 0 w2 log --json
cmp -s "$T/out" "$T/log0" || fail "the failed add-base changed the repository"
# The next small commit works, and everything checks out.
expect 0 w2 commit "$MODELS/ft-bf16" --on tiny --name ft
expect 0 w2 checkout ft "$T/co-ft"
same_tree "$MODELS/ft-bf16" "$T/co-ft"
expect 0 w2 rm ft
expect 0 w2 gc
used0=$(used)

# --- another writer active: the space waits for gc -----------------------------------
flock -s "$R2/repo.lock" sh -c 'while [ ! -e "$1" ]; do sleep 0.05; done' sh "$T/release" &
holder=$!
while flock -n -x "$R2/repo.lock" true 2>/dev/null; do sleep 0.05; done
expect_fail_line w2 add-base "$T/big" --name big
grep -q "disk full" "$T/err" || fail "no 'disk full' in: $(cat "$T/err")"
grep -q "left unreferenced while another command writes: 'wdrepo gc' frees them" "$T/err" ||
    fail "the failed add-base beside a writer does not point to gc: $(cat "$T/err")"
[ "$(used)" -gt $((used0 + 8000000)) ] || fail "premise: the failed add-base left only $(used) bytes"
touch "$T/release"
wait $holder
expect 0 w2 gc --json
pycheck "$T/out" 'assert d["n_unreferenced"] > 0 and d["freed_bytes"] > 8000000, d'
[ "$(used)" -le $((used0 + 262144)) ] || fail "after gc the repository holds $(used) bytes (was $used0)"
expect 0 w2 log --json
cmp -s "$T/out" "$T/log0" || fail "the failed add-base or gc changed the objects"
expect 0 w2 commit "$MODELS/ft-bf16" --on tiny --name ft
expect 0 w2 checkout tiny "$T/co-tiny"
same_tree "$MODELS/base-bf16" "$T/co-tiny"
exit 0
