#!/bin/sh
# t_faults.sh - the repository survives what goes wrong around it: a full
# disk (repository and checkout target), a writer killed mid-way, and two
# writers at once. After each, the repository is consistent: log works,
# no half-visible object, and the next command succeeds and verifies.
. tests/cli/lib.sh
GEN=${WD_BUILD:?}/tools/gen_model
[ -x "$GEN" ] || case $GEN in /*) ;; *) GEN=$PWD/$GEN ;; esac
"$GEN" -q --preset small --dtype bf16 --seed 3 "$T/base" --finetune "$T/ft" || fail "gen_model failed"
"$GEN" -q --preset small --dtype bf16 --seed 4 "$T/base2" --finetune "$T/ft2" || fail "gen_model failed"

expect 0 wd init
expect 0 wd add-base "$MODELS/base-bf16" --name tiny

# --- a writer killed at random points leaves old state or new state ----------
for delay in 0.05 0.2 0.5; do
    wd -q add-base "$T/base" --name big >/dev/null 2>&1 &
    pid=$!
    sleep $delay
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    expect 0 wd log --json
    n=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$T/out")
    [ "$n" -eq 1 ] || [ "$n" -eq 2 ] || fail "after kill -9: $n objects"
done
expect 0 wd add-base "$T/base" --name big
expect 0 wd checkout big "$T/out1"
cmp "$T/base/model-00001-of-00002.safetensors" "$T/out1/model-00001-of-00002.safetensors" 2>/dev/null ||
    cmp "$T/base/model.safetensors" "$T/out1/model.safetensors" || fail "checkout after kills differs"
rm -rf "$T/out1"

# --- two writers at once both succeed ------------------------------------------
wd -q commit "$T/ft" --on big --name ft-a >"$T/a.out" 2>"$T/a.err" &
pa=$!
wd -q add-base "$T/base2" --name big2 >"$T/b.out" 2>"$T/b.err" &
pb=$!
wait $pa || fail "concurrent commit failed: $(cat "$T/a.err")"
wait $pb || fail "concurrent add-base failed: $(cat "$T/b.err")"
expect 0 wd commit "$T/ft2" --on big2 --name ft-b
expect 0 wd checkout ft-a "$T/oa"
expect 0 wd checkout ft-b "$T/ob"
for f in "$T/ft"/*; do cmp "$f" "$T/oa/${f##*/}" || fail "ft-a differs: $f"; done
for f in "$T/ft2"/*; do cmp "$f" "$T/ob/${f##*/}" || fail "ft-b differs: $f"; done
rm -rf "$T/oa" "$T/ob"

# --- a full disk -----------------------------------------------------------------
# Needs a small file system of our own: a tmpfs (root only). Without one the
# rest of this script cannot run, which we say rather than pretend.
mkdir -p "$T/small"
if mount -t tmpfs -o size=3m tmpfs "$T/small" 2>/dev/null; then
    trap 'umount "$T/small" 2>/dev/null; rm -rf "$T"' EXIT
    R2=$T/small/repo
    expect 0 "$WDREPO" -R "$R2" init
    expect 0 "$WDREPO" -R "$R2" add-base "$MODELS/base-bf16" --name tiny
    "$WDREPO" -R "$R2" log --json >"$T/log.before"
    expect_fail_line "$WDREPO" -R "$R2" add-base "$T/base" --name big
    grep -qi 'disk full\|no space' "$T/err" || fail "disk-full message unclear: $(cat "$T/err")"
    "$WDREPO" -R "$R2" log --json >"$T/log.after" || fail "log after disk full failed"
    cmp "$T/log.before" "$T/log.after" || fail "repository changed after a failed add-base"
    expect 0 "$WDREPO" -R "$R2" checkout tiny "$T/otiny"
    rm -rf "$T/otiny"
    # A checkout into the full file system fails and leaves nothing.
    run wd checkout big "$T/small/x"
    [ "$rc" -eq 1 ] || fail "checkout into a full disk: exit $rc"
    [ "$(nlines "$T/err")" -eq 1 ] || fail "checkout into a full disk: not one line"
    [ -e "$T/small/x" ] && fail "failed checkout left its output folder"
    ls -a "$T/small" | grep -q wdrepo-tmp && fail "failed checkout left its temporary folder"
    umount "$T/small"
else
    note "no tmpfs mount (not root?): disk-full cases not run"
fi
exit 0
