#!/bin/sh
# t_fault_matrix.sh - a crash at any step leaves a sound repository.
#
# WDREPO_FAULT=KIND:N (src/fault.h) SIGKILLs wdrepo right after the Nth chunk
# insert, committed transaction or output file write. For every command that
# changes the repository (and checkout and export, which write files), the
# kill points of every kind are stepped through (every transaction and file
# write, every 3rd chunk insert; sparser under make check), each on a fresh
# copy of the same starting repository, until the command runs to its end.
# After each kill:
#   - SQLite's integrity_check says ok and `wdrepo fsck` finds no damage;
#   - every object that was there before checks out byte-identical;
#   - the killed command, run again, succeeds, and its result checks out.
# Counts are printed as "# matrix: ..." lines for the closing notes.
. tests/cli/lib.sh
GEN=${WD_BUILD:?}/tools/gen_model
case $GEN in /*) ;; *) GEN=$PWD/$GEN ;; esac
"$GEN" -q --preset tiny --dtype bf16 --shards 2 --seed 11 "$T/base" --finetune "$T/ft" || fail "gen_model failed"

kills=0 scenarios=0 runs=0

# integrity DIR: the database passes SQLite's own check.
integrity() {
    r=$(sqlite3 -readonly "$1/repo.db" 'PRAGMA integrity_check' 2>&1)
    [ "$r" = ok ] || fail "integrity_check on $1: $r"
}

# snapshot REPO DIR: checks out every object of REPO into DIR/<id>.
snapshot() {
    mkdir -p "$2"
    "$WDREPO" -R "$1" log --json >"$T/snap.json" || fail "log failed on $1"
    for id in $(python3 -c 'import json,sys; print(" ".join(o["id"] for o in json.load(open(sys.argv[1]))))' "$T/snap.json"); do
        "$WDREPO" -q -R "$1" checkout "$id" "$2/$id" 2>"$T/err" || fail "checkout $id from $1 failed"
    done
}

# same_objects REF_DIR REPO: every object checked out in REF_DIR still checks
# out byte-identical from REPO.
same_objects() {
    for d in "$1"/*; do
        [ -d "$d" ] || continue
        id=${d##*/}
        rm -rf "$T/cmpout"
        if ! "$WDREPO" -q -R "$2" checkout "$id" "$T/cmpout" 2>"$T/err"; then
            # The object a killed rm was removing may be gone, whole.
            [ "$id" = "${may_go:-}" ] && grep -q 'unknown reference' "$T/err" && continue
            fail "object $id lost after a kill"
        fi
        diff -r "$d" "$T/cmpout" >/dev/null || fail "object $id differs after a kill"
    done
    rm -rf "$T/cmpout"
}

# sound REPO: what must hold after any kill.
sound() {
    integrity "$1"
    "$WDREPO" -q -R "$1" fsck >"$T/fsck.out" 2>&1 || { cat "$T/fsck.out" >&2; fail "fsck after a kill: not clean"; }
}

# matrix NAME TEMPLATE CMD...: steps every kill point of CMD (run with -R on
# a copy of TEMPLATE). ${pre:-} runs before each run (to clear an output);
# ${check:-} after each successful re-run, with the repository as argument.
matrix() {
    name=$1 tpl=$2
    shift 2
    rm -rf "$T/ref"
    snapshot "$tpl" "$T/ref"
    for kind in chunk txn write; do
        # Chunk inserts come by the dozen: every STRIDE-th is enough to cross
        # every stage of the run, starting with the first. (make check, where
        # a process start costs ten times more, samples sparser: Makefile.)
        step=${WD_FAULT_STRIDE_OTHER:-1}
        [ "$kind" = chunk ] && step=${WD_FAULT_STRIDE:-3}
        n=1 points=0
        while :; do
            rm -rf "$T/w"
            cp -a "$tpl" "$T/w"
            [ -n "${pre:-}" ] && $pre
            WDREPO_FAULT=$kind:$n "$WDREPO" -q -R "$T/w" "$@" >"$T/out" 2>"$T/err"
            rc=$?
            runs=$((runs + 1))
            [ "$rc" -eq 137 ] || break
            kills=$((kills + 1))
            sound "$T/w"
            same_objects "$T/ref" "$T/w"
            "$WDREPO" -q -R "$T/w" "$@" >"$T/out" 2>"$T/err" ||
                { [ -n "${done_already:-}" ] && $done_already "$T/w"; } ||
                fail "$name: re-run after kill at $kind:$n failed"
            ls -a "$T" "$T/w" | grep -q 'wdrepo-tmp' && fail "$name: a temporary survived the re-run after $kind:$n"
            [ -n "${check:-}" ] && $check "$T/w"
            sound "$T/w"
            points=$((points + 1))
            n=$((n + step))
        done
        [ "$rc" -eq 0 ] || fail "$name: exit $rc without a kill ($kind:$n)"
        [ -n "${check:-}" ] && $check "$T/w"
        note "matrix: $name $kind: $points kill points"
    done
    scenarios=$((scenarios + 1))
}

# The starting repository: a base and a lossless delta on it.
R0=$T/r0
expect 0 "$WDREPO" -R "$R0" init
expect 0 "$WDREPO" -R "$R0" add-base "$MODELS/base-bf16" --name tiny
expect 0 "$WDREPO" -R "$R0" commit "$MODELS/ft-bf16" --on tiny --name tiny-ft

# checks out NAME and compares it with folder DIR: check functions.
has_base() { "$WDREPO" -q -R "$1" checkout big "$T/co" && diff -r "$T/base" "$T/co" >/dev/null || fail "base not intact"; rm -rf "$T/co"; }
has_ft() { "$WDREPO" -q -R "$1" checkout ft "$T/co" && diff -r "$T/ft" "$T/co" >/dev/null || fail "fine-tune not intact"; rm -rf "$T/co"; }
has_lossy() { "$WDREPO" -q -R "$1" checkout ft4 "$T/co" || fail "lossy delta does not check out"; rm -rf "$T/co"; }
has_import() { "$WDREPO" -q -R "$1" checkout imp "$T/co" || fail "imported delta does not check out"; rm -rf "$T/co"; }

check=has_base matrix add-base "$R0" add-base "$T/base" --name big

R1=$T/r1
cp -a "$R0" "$R1"
expect 0 "$WDREPO" -R "$R1" add-base "$T/base" --name big
check=has_ft matrix commit-lossless "$R1" commit "$T/ft" --on big --name ft
check=has_lossy matrix commit-int4 "$R1" commit "$T/ft" --on big --strategy int4 --name ft4
check=has_import matrix import "$R0" import "$WD_FIXTURES/wdelta/v2/int4.wdelta" --name imp

# Outputs: a killed checkout or export leaves the repository alone, and its
# re-run removes the temporary the killed one left beside the output.
clear_out() { rm -rf "$T/o" "$T/o.wdelta"; }
has_out() { diff -r "$T/ft" "$T/o" >/dev/null || fail "checkout after a kill differs"; }
R2=$T/r2
cp -a "$R1" "$R2"
expect 0 "$WDREPO" -R "$R2" commit "$T/ft" --on big --name ft
expect 0 "$WDREPO" -R "$R2" commit "$T/ft" --on big --strategy int4 --name ft4
pre=clear_out check=has_out matrix checkout "$R2" checkout ft "$T/o"
has_export() { [ -s "$T/o.wdelta" ] || fail "export after a kill wrote nothing"; }
pre=clear_out check=has_export matrix export "$R2" export ft4 "$T/o.wdelta"
pre=

# rm: killed, the object is there whole or gone whole (then the re-run says
# so, which is all a re-run can do).
gone_ft4() { grep -q "unknown reference 'ft4'" "$T/err" && ! "$WDREPO" -q -R "$1" checkout ft4 "$T/gone" 2>/dev/null; }
no_ft4() { "$WDREPO" -q -R "$1" inspect ft4 >/dev/null 2>&1 && fail "ft4 still there after rm"; rm -rf "$T/gone"; }
may_go=$("$WDREPO" -R "$R2" log --json | $PY -c 'import json,sys; print([o["id"] for o in json.load(sys.stdin) if "ft4" in o.get("names", [])][0])')
done_already=gone_ft4 check=no_ft4 matrix rm "$R2" rm ft4
done_already= may_go=

# gc with garbage to collect: a removed delta and a commit killed half-way.
R3=$T/r3
cp -a "$R2" "$R3"
expect 0 "$WDREPO" -R "$R3" rm ft4
WDREPO_FAULT=txn:3 "$WDREPO" -q -R "$R3" commit "$T/ft" --on big --strategy sparse >/dev/null 2>&1
[ $? -eq 137 ] || fail "the commit meant to leave garbage was not killed"
no_garbage() { "$WDREPO" -q -R "$1" gc --dry-run --json >"$T/gc.json" && grep -q '"n_unreferenced":[[:space:]]*0,' "$T/gc.json" || fail "gc left garbage: $(cat "$T/gc.json")"; }
check=no_garbage matrix gc "$R3" gc
check=

note "matrix: $scenarios commands, $kills kill points, $runs runs"
exit 0
