#!/bin/sh
# t_safe_outputs.sh - outputs never destroy what they must keep (issue 7,
# defects 1 and 2). --force never replaces the repository, an input or the
# current directory, however they are spelled; file outputs behave like
# zstd's: an existing file only with -f, '-' and devices or fifos written in
# place, symbolic links followed, folders refused, inputs never written over,
# a failed run leaves the output as it was. Temporaries a killed writer left
# are removed by the next writer of the same output; live ones and anything
# not provably ours stay.
. tests/cli/lib.sh
BF=$MODELS/base-bf16
FT=$MODELS/ft-bf16

expect 0 wd init
expect 0 wd add-base "$BF" --name base
expect 0 wd commit "$FT" --on base --strategy sparse --name sp
expect 0 wd export sp "$T/ref.wdelta"

# repo_ok DIR: the repository in DIR still answers with its two objects.
repo_ok() {
    "$WDREPO" -R "$1" log --json >"$T/log.json" 2>"$T/log.err" || fail "repository $1 broken: $(cat "$T/log.err")"
    [ "$(py "$T/log.json" 'len(d)')" -ge 1 ] || fail "repository $1 lost its objects"
}
no_temps() { # DIR WHEN
    ls -A "$1" | grep -q 'wdrepo-tmp' && fail "temporary left in $1 after $2: $(ls -A "$1" | grep wdrepo-tmp)"
    return 0
}

# ---- defect 1: checkout --force never replaces the repository ------------------
mkdir "$T/work"
cd "$T/work" || fail "cd"
expect 0 "$WDREPO" init
expect 0 "$WDREPO" add-base "$BF" --name base
echo keep >"$T/work/mine.txt"
ln -s .wdrepo "$T/work/rlink"
for out in .wdrepo .wdrepo/ ./.wdrepo "$T/work/.wdrepo" "$T/work/../work/.wdrepo" rlink; do
    expect_fail_line "$WDREPO" checkout base "$out" -f
    grep -q 'is the repository' "$T/err" || fail "checkout into '$out': unclear message: $(cat "$T/err")"
    repo_ok "$T/work/.wdrepo"
done
expect_fail_line "$WDREPO" checkout base .wdrepo/sub
grep -q 'lies inside the repository' "$T/err" || fail "checkout inside the repository: $(cat "$T/err")"
[ -e .wdrepo/sub ] && fail "checkout created a folder inside the repository"
# ... nor the current directory or a folder above it
for out in "$PWD" . "$T/work/" "$T/work/../work" .. "$T" /; do
    expect_fail_line "$WDREPO" checkout base "$out" -f
    grep -q 'current directory\|contains the repository' "$T/err" ||
        fail "checkout into '$out': unclear message: $(cat "$T/err")"
done
[ "$(cat "$T/work/mine.txt")" = keep ] || fail "the working folder was touched"
repo_ok "$T/work/.wdrepo"
mkdir "$T/cwd" && cd "$T/cwd" && echo keep >mine.txt
expect_fail_line wd checkout base "$PWD" -f
grep -q 'is the current directory' "$T/err" || fail "checkout into \$PWD: $(cat "$T/err")"
expect_fail_line wd checkout base "$T/cwd/../cwd/" -f
[ "$(cat mine.txt)" = keep ] || fail "the current directory was replaced"
cd "$T" || fail "cd"
no_temps "$T" "refused checkouts"
no_temps "$T/work" "refused checkouts"
# An ordinary --force replacement still works and leaves nothing beside it.
expect 0 wd checkout base "$T/co"
expect 0 wd checkout sp "$T/co" -f
ls -A "$T" | grep -q '\.old' && fail "--force left the old folder"
no_temps "$T" "checkout --force"

# ---- defect 1: load-delta --force never replaces its inputs --------------------
mkdir "$T/lw" && cp "$T/ref.wdelta" "$T/lw/d.wdelta" && cp -r "$BF" "$T/lb"
ln -s lb "$T/lblink"
cd "$T" || fail "cd"
for out in lb ./lb/ "$T/lb" "$T/lw/../lb" lblink; do
    expect_fail_line "$WDREPO" load-delta lw/d.wdelta lb "$out" --force
    grep -q 'is the base folder' "$T/err" || fail "load-delta into '$out': $(cat "$T/err")"
done
expect_fail_line "$WDREPO" load-delta lw/d.wdelta lb lb/sub
grep -q 'lies inside the base folder' "$T/err" || fail "load-delta inside the base: $(cat "$T/err")"
same_tree "$BF" "$T/lb"
cd "$T/lw" || fail "cd"
expect_fail_line "$WDREPO" load-delta d.wdelta ../lb "$PWD" --force
expect_fail_line "$WDREPO" load-delta d.wdelta ../lb . --force
cd "$T" || fail "cd"
expect_fail_line "$WDREPO" load-delta lw/d.wdelta lb lw -f
grep -q "contains the .wdelta file" "$T/err" || fail "load-delta over its .wdelta's folder: $(cat "$T/err")"
cmp -s "$T/lw/d.wdelta" "$T/ref.wdelta" || fail "load-delta destroyed its own .wdelta file"
same_tree "$BF" "$T/lb"
no_temps "$T" "refused load-deltas"
expect 0 "$WDREPO" load-delta lw/d.wdelta lb "$T/co" -f
[ -f "$T/co/model.safetensors" ] || fail "load-delta --force did not replace an ordinary folder"

# ---- defect 2: file outputs ----------------------------------------------------
# An existing file is replaced only with -f; a failed run leaves it as it was.
echo old >"$T/e.wdelta"
expect_fail_line wd export sp "$T/e.wdelta"
grep -q 'already exists; use --force' "$T/err" || fail "export over a file: $(cat "$T/err")"
[ "$(cat "$T/e.wdelta")" = old ] || fail "export overwrote a file without -f"
expect_fail_line wd export base "$T/e.wdelta" -f
[ "$(cat "$T/e.wdelta")" = old ] || fail "a failed export changed its output"
expect 0 wd export sp "$T/e.wdelta" -f
cmp -s "$T/e.wdelta" "$T/ref.wdelta" || fail "export -f did not write the file"
# '-' is standard output, streamed.
wd export sp - >"$T/s.wdelta" 2>"$T/err" || fail "export to -: $(cat "$T/err")"
cmp -s "$T/s.wdelta" "$T/ref.wdelta" || fail "export to - differs"
n=$(wd export sp - 2>/dev/null | wc -c | tr -d ' ')
[ "$n" -eq "$(wc -c <"$T/ref.wdelta" | tr -d ' ')" ] || fail "export - | wc -c gave $n"
on_tty "$WDREPO" -R "$REPO" export sp -
[ "$rc" -eq 1 ] && grep -q 'terminal' "$T/out" || fail "export to a terminal: exit $rc: $(cat "$T/out")"
# /dev/stdout is a link to /proc/self/fd/1; the same link of our own keeps
# this test independent of the machine's /dev.
ln -s /proc/self/fd/1 "$T/stdout"
n=$(wd export sp "$T/stdout" 2>/dev/null | wc -c | tr -d ' ')
[ "$n" -eq "$(wc -c <"$T/ref.wdelta" | tr -d ' ')" ] || fail "export to a link to stdout | wc -c gave $n"
[ -L "$T/stdout" ] || fail "export replaced the link to standard output"
ln -s /dev/null "$T/null"
expect 0 wd export sp "$T/null"
[ -L "$T/null" ] && [ -c /dev/null ] || fail "export replaced the link to /dev/null"
mkfifo "$T/fifo" || fail "mkfifo"
cat "$T/fifo" >"$T/fifo.out" &
expect 0 wd export sp "$T/fifo"
wait
[ -p "$T/fifo" ] || fail "export replaced a fifo"
cmp -s "$T/fifo.out" "$T/ref.wdelta" || fail "export through a fifo differs"
# A symbolic link is followed: the link stays, its target gets the content.
echo old >"$T/target.wdelta"
ln -s target.wdelta "$T/link.wdelta"
expect_fail_line wd export sp "$T/link.wdelta"
expect 0 wd export sp "$T/link.wdelta" -f
[ -L "$T/link.wdelta" ] || fail "export replaced a symbolic link"
cmp -s "$T/target.wdelta" "$T/ref.wdelta" || fail "export did not write through a symbolic link"
ln -s nowhere/x "$T/dangling.wdelta"
expect_fail_line wd export sp "$T/dangling.wdelta" -f
mkdir "$T/adir"
expect_fail_line wd export sp "$T/adir" -f
grep -q 'is a folder' "$T/err" || fail "export onto a folder: $(cat "$T/err")"
# Never inside the repository.
expect_fail_line wd export sp "$REPO/repo.db" -f
expect_fail_line wd export sp "$REPO/x.wdelta" -f
grep -q 'lies inside the repository' "$T/err" || fail "export into the repository: $(cat "$T/err")"
repo_ok "$REPO"
no_temps "$T" "exports"

# save-delta never writes over its inputs, -f or not, whatever the name.
cp -r "$FT" "$T/ft"
shard=$(cd "$T/ft" && ls | grep safetensors$ | head -n 1)
for f in "" -f; do
    expect_fail_line "$WDREPO" save-delta "$T/ft/$shard" "$T/ft" "$BF" $f
    grep -q 'lies inside the fine-tune folder' "$T/err" || fail "save-delta over a shard: $(cat "$T/err")"
done
expect_fail_line "$WDREPO" save-delta "$T/ft/new.wdelta" "$T/ft" "$BF"
ln "$T/ft/config.json" "$T/hard.json"
expect_fail_line "$WDREPO" save-delta "$T/hard.json" "$T/ft" "$BF" -f
grep -q 'is a file of the fine-tune folder' "$T/err" || fail "save-delta over a hard link: $(cat "$T/err")"
ln -s "$T/ft/$shard" "$T/soft.safetensors"
expect_fail_line "$WDREPO" save-delta "$T/soft.safetensors" "$T/ft" "$BF" -f
expect_fail_line "$WDREPO" save-delta "$BF/config.json" "$T/ft" "$BF" -f
grep -q 'the base folder' "$T/err" || fail "save-delta over the base: $(cat "$T/err")"
"$WDREPO" save-delta - "$T/ft" "$BF" >>"$T/ft/config.json" 2>"$T/err" && fail "save-delta appended to an input"
grep -q 'standard output is a file of the fine-tune folder' "$T/err" || fail "stdout onto an input: $(cat "$T/err")"
same_tree "$FT" "$T/ft"
# ... and writes like export otherwise.
expect 0 "$WDREPO" save-delta "$T/sd.wdelta" "$T/ft" "$BF"
hash=$(cat "$T/out")
expect_fail_line "$WDREPO" save-delta "$T/sd.wdelta" "$T/ft" "$BF"
expect 0 "$WDREPO" save-delta "$T/sd.wdelta" "$T/ft" "$BF" --force
"$WDREPO" save-delta - "$T/ft" "$BF" >"$T/sd2.wdelta" 2>"$T/err" || fail "save-delta to -: $(cat "$T/err")"
cmp -s "$T/sd.wdelta" "$T/sd2.wdelta" || fail "save-delta to - differs from the file"
grep -q "parent_hash $hash" "$T/err" || fail "save-delta to - does not report the parent_hash: $(cat "$T/err")"
n=$("$WDREPO" save-delta "$T/stdout" "$T/ft" "$BF" 2>/dev/null | wc -c | tr -d ' ')
[ "$n" -eq $(($(wc -c <"$T/sd.wdelta" | tr -d ' ') + 65)) ] || fail "save-delta to a link to stdout gave $n bytes"
no_temps "$T" "save-deltas"

# ---- stale temporaries: removed when provably dead, else kept -------------------
# A writer killed mid-way (the fault hook's SIGKILL) leaves its temporary;
# the next writer of the same output removes it.
run env WDREPO_FAULT=write:1 "$WDREPO" -R "$REPO" export sp "$T/k.wdelta"
[ "$rc" -eq 137 ] || fail "the fault hook did not kill export (exit $rc)"
ls -A "$T" | grep -q '^\.k\.wdelta\.wdrepo-tmp-' || fail "the killed export left no temporary to sweep"
[ -e "$T/k.wdelta" ] && fail "a killed export left a partial output"
run env WDREPO_FAULT=write:1 "$WDREPO" -R "$REPO" checkout base "$T/kc"
[ "$rc" -eq 137 ] || fail "the fault hook did not kill checkout (exit $rc)"
ls -A "$T" | grep -q '^\.kc\.wdrepo-tmp-' || fail "the killed checkout left no temporary to sweep"
run env WDREPO_FAULT=write:1 "$WDREPO" save-delta "$T/ks.wdelta" "$T/ft" "$BF"
[ "$rc" -eq 137 ] || fail "the fault hook did not kill save-delta (exit $rc)"
run env WDREPO_FAULT=write:1 "$WDREPO" load-delta "$T/ref.wdelta" "$BF" "$T/kl"
[ "$rc" -eq 137 ] || fail "the fault hook did not kill load-delta (exit $rc)"
# Around them: a live writer's temporary (locked), names that only look
# like ours, another output's, and (as root) another user's.
python3 -c 'import fcntl, os, subprocess, sys
fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
sys.exit(subprocess.call(sys.argv[2:]))' "$T/.k.wdelta.wdrepo-tmp-LIVE01" \
    "$WDREPO" -R "$REPO" export sp "$T/k.wdelta" >"$T/out" 2>"$T/err" || fail "export after a kill: $(cat "$T/err")"
[ -e "$T/.k.wdelta.wdrepo-tmp-LIVE01" ] || fail "a live writer's temporary was removed"
ls -A "$T" | grep '^\.k\.wdelta\.wdrepo-tmp-' | grep -qv LIVE01 && fail "the killed export's temporary is still there"
for n in .k.wdelta.wdrepo-tmp-abc .k.wdelta.wdrepo-tmp-abcdefg .kx.wdelta.wdrepo-tmp-abcdef; do
    echo x >"$T/$n"
done
if [ "$(id -u)" -eq 0 ] && id nobody >/dev/null 2>&1; then
    echo x >"$T/.k.wdelta.wdrepo-tmp-NOBODY" && chown nobody "$T/.k.wdelta.wdrepo-tmp-NOBODY"
fi
expect 0 wd export sp "$T/k.wdelta" -f
expect 0 wd checkout base "$T/kc"
expect 0 "$WDREPO" save-delta "$T/ks.wdelta" "$T/ft" "$BF"
expect 0 "$WDREPO" load-delta "$T/ref.wdelta" "$BF" "$T/kl"
cmp -s "$T/k.wdelta" "$T/ref.wdelta" || fail "export after a kill differs"
left=$(ls -A "$T" | grep 'wdrepo-tmp' | sort | tr '\n' ' ')
# (LIVE01 is not locked any more: the export -f took it)
want=".k.wdelta.wdrepo-tmp-abc .k.wdelta.wdrepo-tmp-abcdefg .kx.wdelta.wdrepo-tmp-abcdef "
[ -e "$T/.k.wdelta.wdrepo-tmp-NOBODY" ] && want=".k.wdelta.wdrepo-tmp-NOBODY $want"
[ "$left" = "$want" ] || fail "after the re-runs, temporaries are: $left (expected: $want)"
rm -f "$T"/.k*.wdelta.wdrepo-tmp-*
# A folder a killed --force replacement had moved aside goes back into its
# place when the target is missing (and is then not empty).
mkdir "$T/.ro.wdrepo-tmp-OLD001.old" && echo mine >"$T/.ro.wdrepo-tmp-OLD001.old/mine.txt"
expect_fail_line wd checkout base "$T/ro"
grep -q 'not empty' "$T/err" || fail "restored folder: $(cat "$T/err")"
[ "$(cat "$T/ro/mine.txt")" = mine ] || fail "the moved-aside folder was not put back"
no_temps "$T" "the sweeps"
exit 0
