#!/bin/sh
# run.sh - the test driver behind `make test`: unit binaries, fuzz-corpus
# replays, then every CLI script tests/cli/t_*.sh. Prints one line per test
# program or script in a fixed order, with its time, and a closing line
# "N passed, N failed".
#
# WD_TEST_JOBS (default: the number of cores) tests run at once: most of a
# CLI script's time is process start-up and small waits, not CPU, so two at
# once on two cores take ~40% less time. Every test works in its own
# temporary folders, so they cannot see each other.
BUILD=${BUILD:-build}
export WDREPO="$PWD/$BUILD/wdrepo" WD_BUILD="$PWD/$BUILD" WD_FIXTURES="$PWD/tests/fixtures"
jobs=${WD_TEST_JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)}
case $jobs in '' | *[!0-9]* | 0) jobs=1 ;; esac
out=$(mktemp -d) || exit 1
trap 'rm -rf "$out"' EXIT
trap 'exit 130' INT TERM

# The list: one line per test, "name<TAB>command and arguments".
list=$out/list
: >"$list"
for t in "$BUILD"/tests/test_*; do [ -x "$t" ] && printf 'unit/%s\t%s\n' "$(basename "$t")" "$t" >>"$list"; done
for r in "$BUILD"/fuzz/replay_*; do
    [ -x "$r" ] || continue
    n=${r##*/replay_}
    printf 'replay/%s\t%s tests/fuzz/corpus/%s\n' "$n" "$r" "$n" >>"$list"
done
for s in tests/cli/t_*.sh; do [ -f "$s" ] && printf 'cli/%s\tsh %s\n' "$(basename "$s" .sh)" "$s" >>"$list"; done
# (issue 9) the Python package's pytest suite, one test here
[ -f tests/python/run.sh ] && printf 'python/pytest\tsh tests/python/run.sh\n' >>"$list"

# Each test writes OUT/N.log and OUT/N.rc (exit status, then seconds).
# The slowest scripts start first, so two long ones do not end up last.
n=0
while IFS='	' read -r name cmd; do
    n=$((n + 1))
    printf '%s\t%s\t%s\n' "$n" "$name" "$cmd"
done <"$list" >"$out/numbered"
slow='cli/t_fault_matrix cli/t_concurrency cli/t_signals cli/t_many_tensors cli/t_readonly cli/t_full_disk'
{
    for s in $slow; do awk -F'\t' -v s="$s" '$2 == s' "$out/numbered"; done
    awk -F'\t' -v slow=" $slow " 'index(slow, " " $2 " ") == 0' "$out/numbered"
} | OUT=$out xargs -d '\n' -P "$jobs" -n 1 sh -c '
    IFS="	" read -r i name cmd <<EOT
$1
EOT
    start=$(date +%s)
    sh -c "$cmd" >"$OUT/$i.log" 2>&1 </dev/null
    echo "$? $(( $(date +%s) - start ))" >"$OUT/$i.rc"
' run1

passed=0 failed=0 failures=""
while IFS='	' read -r i name cmd; do
    read -r rc secs <"$out/$i.rc" 2>/dev/null || { rc=1; secs=0; }
    if [ "$rc" = 0 ]; then
        passed=$((passed + 1)); printf 'ok   %-28s %4ss\n' "$name" "$secs"
    else
        failed=$((failed + 1)); failures="$failures $name"; printf 'FAIL %-28s %4ss\n' "$name" "$secs"
        sed 's/^/    /' "$out/$i.log" | tail -n 40
    fi
done <"$out/numbered"
[ -n "$failures" ] && echo "failed:$failures"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
