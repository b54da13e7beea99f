#!/bin/sh
# t_concurrency.sh - 4 writers, 4 readers and gc, all looping on one
# repository. Every command either succeeds or fails with the one-line
# "busy" message; afterwards fsck is clean and every object a writer was
# told it stored checks out byte-identical to what it was given.
. tests/cli/lib.sh
GEN=${WD_BUILD:?}/tools/gen_model
case $GEN in /*) ;; *) GEN=$PWD/$GEN ;; esac
ROUNDS=${WD_CONCURRENCY_ROUNDS:-4}

expect 0 wd init
expect 0 wd add-base "$MODELS/base-bf16" --name tiny
for w in 1 2 3 4; do
    "$GEN" -q --preset tiny --dtype bf16 --seed $((20 + w)) "$T/b$w" --finetune "$T/f$w" || fail "gen_model failed"
done

# writer W: add-base of its own model, then commits of its fine-tune with
# each strategy, then removes them again (rm), ROUNDS times.
writer() {
    w=$1
    for i in $(seq "$ROUNDS"); do
        for step in "add-base $T/b$w --name b$w" \
                    "commit $T/f$w --on b$w --name f$w-$i" \
                    "commit $T/f$w --on b$w --strategy int4 --name q$w-$i" \
                    "commit $T/f$w --on b$w --strategy sparse --name s$w-$i" \
                    "rm q$w-$i"; do
            # shellcheck disable=SC2086
            if "$WDREPO" -q -R "$REPO" $step >"$T/w$w.out" 2>"$T/w$w.err"; then
                case $step in commit*) echo "${step##* }" >>"$T/stored" ;; esac
            else
                grep -q 'busy' "$T/w$w.err" || { echo "writer $w: $step: $(cat "$T/w$w.err")" >>"$T/bad"; return; }
                echo busy >>"$T/busy"
            fi
        done
    done
}

# reader R: log, inspect, checkout of the tiny base and of whatever a writer
# stored last, ROUNDS * 4 times.
reader() {
    r=$1
    for i in $(seq $((ROUNDS * 4))); do
        for step in "log" "inspect tiny" "checkout tiny $T/r$r-$i" "checkout f$(((r + i) % 4 + 1))-1 $T/rf$r-$i"; do
            # shellcheck disable=SC2086
            if ! "$WDREPO" -q -R "$REPO" $step >"$T/r$r.out" 2>"$T/r$r.err"; then
                grep -q 'busy\|unknown reference' "$T/r$r.err" ||
                    { echo "reader $r: $step: $(cat "$T/r$r.err")" >>"$T/bad"; return; }
                grep -q busy "$T/r$r.err" && echo busy >>"$T/busy"
            fi
        done
        rm -rf "$T/r$r-$i" "$T/rf$r-$i"
    done
}

collector() {
    for i in $(seq $((ROUNDS * 3))); do
        if ! "$WDREPO" -q -R "$REPO" gc >"$T/gc.out" 2>"$T/gc.err"; then
            grep -q busy "$T/gc.err" || { echo "gc: $(cat "$T/gc.err")" >>"$T/bad"; return; }
            echo busy >>"$T/busy"
        fi
    done
}

: >"$T/bad"
: >"$T/stored"
: >"$T/busy"
pids=""
for w in 1 2 3 4; do writer $w & pids="$pids $!"; done
for r in 1 2 3 4; do reader $r & pids="$pids $!"; done
collector & pids="$pids $!"
for p in $pids; do wait "$p"; done
[ -s "$T/bad" ] && { cat "$T/bad" >&2; fail "a concurrent command failed without saying busy"; }
note "concurrency: 4 writers x $ROUNDS rounds, 4 readers, gc x $((ROUNDS * 3)): $(nlines "$T/busy") busy failures"

expect 0 wd fsck
# Every commit that reported success is there, whole (the int4 ones were
# removed again on purpose, unless that rm said busy).
n=0
while read -r name; do
    case $name in q*) continue ;; esac
    w=${name#?}
    w=${w%%-*}
    expect 0 wd checkout "$name" "$T/co"
    case $name in f*) diff -r "$T/f$w" "$T/co" >/dev/null || fail "$name differs from its fine-tune" ;; esac
    rm -rf "$T/co"
    n=$((n + 1))
done <"$T/stored"
[ "$n" -gt 0 ] || fail "no commit succeeded"
exit 0
