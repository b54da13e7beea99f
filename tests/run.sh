#!/bin/sh
# run.sh - the test driver behind `make test`: unit binaries, fuzz-corpus
# replays, then every CLI script tests/cli/t_*.sh. Prints one closing line
# "N passed, N failed" counting test programs and scripts.
BUILD=${BUILD:-build}
export WDREPO="$PWD/$BUILD/wdrepo" WD_BUILD="$PWD/$BUILD" WD_FIXTURES="$PWD/tests/fixtures"
passed=0 failed=0 failures=""
run() { # name, command...
    name=$1; shift
    log=$(mktemp)
    if "$@" >"$log" 2>&1; then
        passed=$((passed + 1)); echo "ok   $name"
    else
        failed=$((failed + 1)); failures="$failures $name"; echo "FAIL $name"; sed 's/^/    /' "$log" | tail -n 40
    fi
    rm -f "$log"
}
for t in "$BUILD"/tests/test_*; do [ -x "$t" ] && run "unit/$(basename "$t")" "$t"; done
for r in "$BUILD"/fuzz/replay_*; do
    [ -x "$r" ] || continue
    n=${r##*/replay_}
    run "replay/$n" "$r" tests/fuzz/corpus/"$n"
done
for s in tests/cli/t_*.sh; do [ -f "$s" ] && run "cli/$(basename "$s" .sh)" sh "$s"; done
[ -n "$failures" ] && echo "failed:$failures"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
