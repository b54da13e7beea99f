#!/bin/sh
# t_signals.sh - Ctrl-C, SIGTERM or SIGHUP in the middle of checkout,
# load-delta, save-delta or export removes the temporaries and ends wdrepo by
# that signal (status 128+N), leaving the output as it was (issue 7,
# defect 5). A signal ignored when wdrepo starts (nohup) stays ignored.
#
# No timing is assumed: the helper below waits for the command's temporary
# to appear, stops the command (SIGSTOP) and checks the temporary is still
# there, which proves the command is mid-way, then sends the signal and lets
# it go on (SIGCONT). A command that finished before it could be caught is
# run again.
. tests/cli/lib.sh
GEN=${WD_BUILD:?}/tools/gen_model
[ -x "$GEN" ] || case $GEN in /*) ;; *) GEN=$PWD/$GEN ;; esac
"$GEN" -q --preset small --dtype bf16 --seed 5 "$T/big" --finetune "$T/bigft" || fail "gen_model failed"
expect 0 wd init
expect 0 wd add-base "$T/big" --name big
expect 0 wd commit "$T/bigft" --on big --strategy sparse --name sp
expect 0 wd export sp "$T/e.wdelta"

# interrupt SIG MODE OUT CMD...: runs CMD (MODE dfl: SIG handled as
# wdrepo sets it up; ign: SIG ignored from the start), interrupts it with SIG
# while its temporary exists in $T, and sets rc to its exit status as a
# shell reports it. OUT is removed before each attempt; OUT ending in "/keep"
# is instead made a folder holding keep/mine.txt.
interrupt() {
    python3 - "$T" "$@" >"$T/sig.rc" 2>"$T/sig.err" <<'EOF'
import os, shutil, signal, subprocess, sys, time
d, sig, mode, out, cmd = sys.argv[1], getattr(signal, sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]

def temps():
    return [n for n in os.listdir(d) if ".wdrepo-tmp-" in n]

def stopped(pid):
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
            if f.read().rsplit(")", 1)[1].split()[0] not in "tTZX":
                return False
    return True

def child_signals():
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN if mode == "ign" and s == sig else signal.SIG_DFL)

for attempt in range(20):
    shutil.rmtree(out, ignore_errors=True) if os.path.isdir(out) and not os.path.islink(out) else None
    if os.path.lexists(out) and not os.path.isdir(out):
        os.unlink(out)
    if out.endswith("/keep"):
        os.mkdir(out)
        with open(os.path.join(out, "mine.txt"), "w") as f:
            f.write("mine\n")
    with open(os.path.join(d, "out"), "wb") as o, open(os.path.join(d, "err"), "wb") as e:
        p = subprocess.Popen(cmd, stdout=o, stderr=e, preexec_fn=child_signals)
        caught = False
        while p.poll() is None:
            if temps():
                p.send_signal(signal.SIGSTOP)
                t0 = time.monotonic()
                while p.poll() is None and not stopped(p.pid) and time.monotonic() - t0 < 30:
                    time.sleep(0.001)
                caught = p.poll() is None and bool(temps())
                if caught:
                    p.send_signal(sig)
                p.send_signal(signal.SIGCONT)
                break
            time.sleep(0.001)
        try:
            rc = p.wait(timeout=300)
        except subprocess.TimeoutExpired:
            p.kill()
            sys.exit("the command did not end after the signal")
    if caught:
        print(128 - rc if rc < 0 else rc)
        sys.exit(0)
sys.exit("the command always ended before it could be interrupted")
EOF
    [ $? -eq 0 ] || fail "interrupt $*: $(cat "$T/sig.err")"
    rc=$(cat "$T/sig.rc")
}

# after_signal N WHAT: the command ended by signal N, printed nothing more,
# and left no temporary.
after_signal() {
    [ "$rc" -eq $((128 + $1)) ] || fail "$2: exit status $rc, expected $((128 + $1)): $(cat "$T/err")"
    [ -s "$T/err" ] && fail "$2: printed after the signal: $(cat "$T/err")"
    ls -A "$T" | grep -q 'wdrepo-tmp' && fail "$2: temporaries left: $(ls -A "$T" | grep wdrepo-tmp)"
    return 0
}

interrupt SIGINT dfl "$T/co" "$WDREPO" -q -j 1 -R "$REPO" checkout big "$T/co"
after_signal 2 "checkout, SIGINT"
[ -e "$T/co" ] && fail "an interrupted checkout left its output"

interrupt SIGTERM dfl "$T/keep" "$WDREPO" -q -j 1 -R "$REPO" checkout big "$T/keep" --force
after_signal 15 "checkout --force, SIGTERM"
# The old folder, untouched; or, when the signal came in the instant after
# the exchange (while the old folder was being deleted), the new one whole.
if [ "$(ls -A "$T/keep")" != mine.txt ] || [ "$(cat "$T/keep/mine.txt")" != mine ]; then
    same_tree "$T/big" "$T/keep"
fi

interrupt SIGTERM dfl "$T/lo" "$WDREPO" -q -j 1 load-delta "$T/e.wdelta" "$T/big" "$T/lo"
after_signal 15 "load-delta, SIGTERM"
[ -e "$T/lo" ] && fail "an interrupted load-delta left its output"

interrupt SIGHUP dfl "$T/s.wdelta" "$WDREPO" -q -j 1 save-delta "$T/s.wdelta" "$T/bigft" "$T/big"
after_signal 1 "save-delta, SIGHUP"
[ -e "$T/s.wdelta" ] && fail "an interrupted save-delta left its output"

interrupt SIGINT dfl "$T/x.wdelta" "$WDREPO" -q -j 1 -R "$REPO" export sp "$T/x.wdelta"
after_signal 2 "export, SIGINT"
[ -e "$T/x.wdelta" ] && fail "an interrupted export left its output"

# Ignored at the start (nohup): the command goes on and completes.
interrupt SIGHUP ign "$T/co" "$WDREPO" -q -j 1 -R "$REPO" checkout big "$T/co"
[ "$rc" -eq 0 ] || fail "checkout with SIGHUP ignored: exit $rc: $(cat "$T/err")"
[ -f "$T/co/config.json" ] || fail "checkout with SIGHUP ignored: no output"
ls -A "$T" | grep -q 'wdrepo-tmp' && fail "checkout with SIGHUP ignored left a temporary"
exit 0
