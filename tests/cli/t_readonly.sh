#!/bin/sh
# t_readonly.sh - a repository the user may read but not write: log, inspect,
# checkout and tag -l work and create nothing in it (no repo.db-wal/-shm
# left behind, by the owner either); commands that write say in one line
# that they cannot. Cases: another user's repository, chmod -R a-w, a
# read-only database in a writable directory, a writer active (or killed)
# meanwhile, a read-only bind mount and a tmpfs remounted read-only.
# "Another user" needs root (setpriv to nobody); mounts need root too: the
# cases that cannot run say so with a note.
. tests/cli/lib.sh
# The interpreter itself, not a version manager's shim around it (pyenv's
# costs a second a call here, and these scripts call python3 often).
PY3=$(python3 -c 'import sys; print(sys.executable)') || fail "python3 not found"
python3() { "$PY3" "$@"; }

listing() { (cd "$1" && ls -A | sort | tr '\n' ' '); }

expect 0 wd init
expect 0 wd add-base "$MODELS/base-bf16" --name base
expect 0 wd commit "$MODELS/ft-bf16" --on base --name ft
base=$(model_hash base-bf16)

# --- the owner reading leaves nothing behind -----------------------------------
before=$(listing "$REPO")
for cmd in "log" "log --json" "inspect ft" "tag -l"; do
    # shellcheck disable=SC2086
    expect 0 wd $cmd
    [ "$(listing "$REPO")" = "$before" ] || fail "'$cmd' left files in the repository: $(listing "$REPO")"
done
expect 0 wd checkout ft "$T/co-owner"
same_tree "$MODELS/ft-bf16" "$T/co-owner"
[ "$(listing "$REPO")" = "$before" ] || fail "checkout left files in the repository: $(listing "$REPO")"
case $before in *repo.db-wal*|*repo.db-shm*) fail "writers left repo.db-wal/-shm: $before" ;; esac

# --- another user ----------------------------------------------------------------
if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null 2>&1; then
    note "not root or no setpriv: the other-user cases were not run"
    other=""
else
    other="setpriv --reuid=65534 --regid=65534 --clear-groups"
fi
# as_other CMD...: CMD as user nobody (the test's files must be reachable).
as_other() { $other "$@"; }

# reads_work LABEL: log, inspect, tag -l and checkout as the other user work
# and leave the repository exactly as it was.
reads_work() {
    _before=$(listing "$REPO")
    expect 0 as_other "$WDREPO" -R "$REPO" log --json
    pycheck "$T/out" 'assert len(d) == 2, d'
    expect 0 as_other "$WDREPO" -R "$REPO" inspect ft --json
    expect 0 as_other "$WDREPO" -R "$REPO" tag -l
    grep -q '^ft ' "$T/out" || fail "$1: tag -l does not list ft"
    rm -rf "$T/pub/co"
    expect 0 as_other "$WDREPO" -R "$REPO" checkout ft "$T/pub/co"
    same_tree "$MODELS/ft-bf16" "$T/pub/co"
    [ "$(listing "$REPO")" = "$_before" ] || fail "$1: a reader left files: $(listing "$REPO")"
}

# writes_refused LABEL WHY: tag as the other user fails in one line naming it.
writes_refused() {
    expect_fail_line as_other "$WDREPO" -R "$REPO" tag other-name ft
    grep -q "cannot write to repository" "$T/err" || fail "$1: unclear refusal: $(cat "$T/err")"
    grep -q "$2" "$T/err" || fail "$1: refusal does not say '$2': $(cat "$T/err")"
}

if [ -n "$other" ]; then
    chmod 755 "$T"
    mkdir "$T/pub" && chmod 777 "$T/pub"

    # A repository owned by root: directory 755, database 644.
    reads_work "other user's repository"
    writes_refused "other user's repository" "Permission denied"

    # chmod -R a-w.
    chmod -R a-w "$REPO"
    reads_work "chmod -R a-w"
    writes_refused "chmod -R a-w" "Permission denied"

    # A read-only database in a directory anyone may write (SQLite would
    # create repo.db-wal/-shm there, owned by the reader, mode 0444).
    chmod 1777 "$REPO"
    reads_work "read-only database, writable directory"
    chmod 755 "$REPO"
    chmod 644 "$REPO/repo.db"

    # A writer active meanwhile: its repo.db-wal holds a committed name the
    # database file does not have yet. The reader must see it, and must
    # still read after the writer is killed (a log left to recover).
    "$PY3" - "$REPO/repo.db" "$T/writer-ready" <<'EOF' &
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA wal_autocheckpoint = 0")
oid = c.execute("SELECT object FROM name WHERE name = 'base'").fetchone()[0]
c.execute("INSERT INTO name(name, object, created) VALUES ('in-the-log', ?, 0)", (oid,))
open(sys.argv[2], "w").close()
time.sleep(60)
EOF
    writer=$!
    while [ ! -e "$T/writer-ready" ]; do sleep 0.05; done
    [ -s "$REPO/repo.db-wal" ] || fail "the simulated writer left no log"
    reads_work "writer active"
    expect 0 as_other "$WDREPO" -R "$REPO" tag -l
    grep -q '^in-the-log ' "$T/out" || fail "a reader beside an active writer misses its commit"
    kill -9 $writer
    wait $writer 2>/dev/null
    reads_work "writer killed"
    expect 0 as_other "$WDREPO" -R "$REPO" tag -l
    grep -q '^in-the-log ' "$T/out" || fail "a reader after a killed writer misses its commit"

    # A log without its -shm cannot be read without creating one: refused
    # in one line, and nothing created.
    mv "$REPO/repo.db-shm" "$T/shm.saved"
    _before=$(listing "$REPO")
    expect_fail_line as_other "$WDREPO" -R "$REPO" log
    grep -q "write-ahead log" "$T/err" || fail "unclear message for a log without -shm: $(cat "$T/err")"
    [ "$(listing "$REPO")" = "$_before" ] || fail "a refused reader created files: $(listing "$REPO")"
    mv "$T/shm.saved" "$REPO/repo.db-shm"
    # The owner's next command recovers the log and cleans up.
    expect 0 wd tag -l
    grep -q '^in-the-log ' "$T/out" || fail "the owner lost the killed writer's commit"
    case $(listing "$REPO") in *repo.db-wal*|*repo.db-shm*) fail "the owner left the log behind: $(listing "$REPO")" ;; esac

    # What an older wdrepo left behind: another user's read-only -wal/-shm in
    # a repository nobody owns. nobody still reads; its writes are refused
    # naming the file (not "attempt to write a readonly database"), and work
    # once it is gone.
    chown -R 65534:65534 "$REPO"
    : >"$REPO/repo.db-wal"
    head -c 32768 /dev/zero >"$REPO/repo.db-shm"
    chmod 444 "$REPO/repo.db-wal" "$REPO/repo.db-shm"
    expect 0 as_other "$WDREPO" -R "$REPO" log --json
    expect_fail_line as_other "$WDREPO" -R "$REPO" tag other-name ft
    grep -q "repo.db-wal': Permission denied; .* remove it" "$T/err" || fail "unclear refusal beside a foreign log: $(cat "$T/err")"
    rm -f "$REPO/repo.db-wal" "$REPO/repo.db-shm"
    expect 0 as_other "$WDREPO" -R "$REPO" tag other-name ft
    expect 0 as_other "$WDREPO" -R "$REPO" tag -d other-name
    case $(listing "$REPO") in *repo.db-wal*|*repo.db-shm*) fail "nobody's writes left the log behind" ;; esac
    chown -R 0:0 "$REPO"
fi

# --- read-only mounts (root) --------------------------------------------------------
mkdir "$T/ro"
if [ "$(id -u)" -eq 0 ] && mount --bind "$REPO" "$T/ro" 2>/dev/null; then
    trap 'umount "$T/ro" 2>/dev/null; umount "$T/small" 2>/dev/null; rm -rf "$T"' EXIT
    if mount -o remount,bind,ro "$T/ro" 2>/dev/null; then
        _before=$(listing "$REPO")
        expect 0 "$WDREPO" -R "$T/ro" log --json
        pycheck "$T/out" 'assert len(d) == 2, d'
        expect 0 "$WDREPO" -R "$T/ro" checkout ft "$T/co-ro"
        same_tree "$MODELS/ft-bf16" "$T/co-ro"
        expect_fail_line "$WDREPO" -R "$T/ro" tag x base
        grep -q "cannot write to repository.*Read-only file system" "$T/err" || fail "unclear refusal on a read-only mount: $(cat "$T/err")"
        [ "$(listing "$REPO")" = "$_before" ] || fail "reading through a read-only bind mount left files"
    else
        note "cannot remount the bind mount read-only: that case was not run"
    fi
    umount "$T/ro"
else
    note "no bind mount (not root?): the read-only bind mount case was not run"
fi

mkdir "$T/small"
if [ "$(id -u)" -eq 0 ] && mount -t tmpfs -o size=8m tmpfs "$T/small" 2>/dev/null; then
    trap 'umount "$T/small" 2>/dev/null; rm -rf "$T"' EXIT
    R2=$T/small/repo
    expect 0 "$WDREPO" -R "$R2" init
    expect 0 "$WDREPO" -R "$R2" add-base "$MODELS/base-bf16" --name base
    mount -o remount,ro "$T/small" || fail "cannot remount the tmpfs read-only"
    expect 0 "$WDREPO" -R "$R2" inspect base --json
    [ "$(py "$T/out" 'd["id"]')" = "$base" ] || fail "inspect on a read-only tmpfs gave another id"
    expect 0 "$WDREPO" -R "$R2" checkout base "$T/co-tmpfs"
    same_tree "$MODELS/base-bf16" "$T/co-tmpfs"
    expect_fail_line "$WDREPO" -R "$R2" add-base "$MODELS/ft-bf16"
    grep -q "Read-only file system" "$T/err" || fail "unclear refusal on a read-only tmpfs: $(cat "$T/err")"
    umount "$T/small"
else
    note "no tmpfs mount (not root?): the read-only tmpfs case was not run"
fi
exit 0
