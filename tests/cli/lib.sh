# lib.sh - helpers sourced by every tests/cli/t_*.sh: a private temp dir
# removed on exit, running wdrepo with captured output and exit status,
# JSON queries through python3 (stdlib only), and folder comparison.
# The scripts run from the repository root with WDREPO, WD_BUILD and
# WD_FIXTURES set by tests/run.sh.

: "${WDREPO:?WDREPO must name the wdrepo binary}"
: "${WD_FIXTURES:?WD_FIXTURES must name tests/fixtures}"
[ -x "$WDREPO" ] || { echo "FAIL: $WDREPO is not built" >&2; exit 1; }
case $WD_FIXTURES in /*) ;; *) WD_FIXTURES=$PWD/$WD_FIXTURES ;; esac
case $WDREPO in /*) ;; *) WDREPO=$PWD/$WDREPO ;; esac
MODELS=$WD_FIXTURES/models

# The caller's environment must not leak in: no repository from outside,
# no locale-dependent sorting.
unset WDREPO_DIR
LC_ALL=C
export LC_ALL

# The interpreter itself, not a version manager's shim in front of it
# (pyenv's costs about a second a call; the tests call python many times).
PY=$(python3 -c 'import sys; print(sys.executable)') || { echo "FAIL: python3 not found" >&2; exit 1; }
python3() { "$PY" "$@"; }

T=$(mktemp -d "${TMPDIR:-/tmp}/wdcli.XXXXXX") || { echo "FAIL: mktemp" >&2; exit 1; }
trap 'rm -rf "$T"' EXIT
trap 'exit 1' HUP INT TERM
REPO=$T/repo

fail() {
    echo "FAIL: $*" >&2
    if [ -s "$T/out" ]; then echo "--- stdout:" >&2; head -n 20 "$T/out" >&2; fi
    if [ -s "$T/err" ]; then echo "--- stderr:" >&2; head -n 20 "$T/err" >&2; fi
    exit 1
}
note() { echo "# $*"; }

# wd ARGS: wdrepo on the test's repository.
wd() { "$WDREPO" -R "$REPO" "$@"; }

# run CMD...: runs it with stdout in $T/out, stderr in $T/err, status in $rc.
run() {
    "$@" >"$T/out" 2>"$T/err"
    rc=$?
}

# expect N CMD...: run, and fail unless the exit status is N.
expect() {
    _expect_status=$1
    shift
    run "$@"
    [ "$rc" -eq "$_expect_status" ] || fail "exit status $rc, expected $_expect_status: $*"
}

nlines() { wc -l <"$1" | tr -d ' '; }

# expect_fail_line CMD...: exit 1, exactly one line on stderr, starting
# "wdrepo: ", nothing on stdout.
expect_fail_line() {
    expect 1 "$@"
    [ "$(nlines "$T/err")" -eq 1 ] || fail "expected exactly one line on stderr: $*"
    grep -q '^wdrepo: ' "$T/err" || fail "error line lacks the 'wdrepo: ' prefix: $*"
    [ -s "$T/out" ] && fail "expected nothing on stdout: $*"
    return 0
}

# expect_usage CMD...: exit 2, "wdrepo: ..." then "usage: ..." on stderr.
expect_usage() {
    expect 2 "$@"
    [ "$(nlines "$T/err")" -eq 2 ] || fail "a usage error prints two lines on stderr: $*"
    sed -n 1p "$T/err" | grep -q '^wdrepo: ' || fail "usage error line lacks 'wdrepo: ': $*"
    sed -n 2p "$T/err" | grep -q '^usage: wdrepo' || fail "second line is not the usage: $*"
    [ -s "$T/out" ] && fail "usage error wrote to stdout: $*"
    return 0
}

# py FILE EXPR: evaluates EXPR with d = the JSON in FILE (and h = hashes.json)
# and prints the result (strings bare, None as "null", the rest as JSON).
py() {
    "$PY" - "$1" "$2" "$WD_FIXTURES/hashes.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
h = json.load(open(sys.argv[3], encoding="utf-8"))
v = eval(sys.argv[2])
print("null" if v is None else v if isinstance(v, str) else json.dumps(v))
EOF
}

# pycheck FILE 'python statements': runs them with d and h as in py; a
# failing assert makes the test fail with its message.
pycheck() {
    "$PY" - "$1" "$2" "$WD_FIXTURES/hashes.json" <<'EOF' || fail "check failed on $1"
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
h = json.load(open(sys.argv[3], encoding="utf-8"))
exec(sys.argv[2])
EOF
}

# model_hash NAME: the expected model hash of fixture folder NAME.
model_hash() {
    "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["models"][sys.argv[2]]["model_hash"])' \
        "$WD_FIXTURES/hashes.json" "$1"
}

# same_tree A B: the two folders hold the same entries, files byte-identical.
same_tree() {
    (cd "$1" && find . ! -name . | sort) >"$T/tree.a" || fail "cannot list $1"
    (cd "$2" && find . ! -name . | sort) >"$T/tree.b" || fail "cannot list $2"
    if ! cmp -s "$T/tree.a" "$T/tree.b"; then
        diff "$T/tree.a" "$T/tree.b" >&2
        fail "file lists of $1 and $2 differ"
    fi
    while IFS= read -r f; do
        [ -d "$1/$f" ] && continue
        cmp "$1/$f" "$2/$f" || fail "$2/$f differs from $1/$f"
    done <"$T/tree.a"
}

# repo_bytes: total size of the files in the repository directory.
repo_bytes() {
    find "$REPO" -type f -exec cat {} + | wc -c | tr -d ' '
}

# (Helpers use _-prefixed globals: POSIX sh has no local variables.)

# on_tty CMD...: runs CMD with stdout and stderr on a pseudo-terminal;
# the combined output goes to $T/out, the status to $rc.
on_tty() {
    "$PY" - "$@" >"$T/out" <<'EOF'
import os, pty, sys
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
out = b""
while True:
    try:
        chunk = os.read(fd, 65536)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode("utf-8", "replace").replace("\r\n", "\n"))
sys.exit(os.waitstatus_to_exitcode(status))
EOF
    rc=$?
}
