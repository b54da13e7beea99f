#!/bin/sh
# t_voice.sh - the command line speaks with one voice: an option that does
# not apply is a usage error, range errors share one wording, --dtype takes
# every common spelling, -j 0 means all cores, a command's flags bundle with
# the globals in front of it, mistyped commands get a suggestion, -R finds
# the repository in a project folder, errors name their file, inspect shows
# options readably and moving a name says where it was. The man page renders
# without warnings and names every option; the bash completion completes.
. tests/cli/lib.sh
GEN=${WD_BUILD:?}/tools/gen_model
"$GEN" -q --preset tiny --seed 3 "$T/base" --finetune "$T/ft" || fail "gen_model failed"

# ---- options that do not apply, range errors ------------------------------------
expect 0 wd init
expect 0 wd -q add-base "$T/base" --name b
expect_usage wd commit "$T/ft" --on b --sparsity 0.5
grep -q "^wdrepo: --sparsity applies to strategy sparse, not lossless$" "$T/err" || fail "commit --sparsity without sparse"
expect_usage wd commit "$T/ft" --on b --strategy int4 --sparsity 0.5
expect_usage wd commit "$T/ft" --on b --strategy sparse --sparsity 1.5
grep -qx "wdrepo: --sparsity 1.5: expected a number in \[0, 1)" "$T/err" || fail "sparsity range wording"
expect_usage wd --level 23 commit "$T/ft" --on b
grep -qx "wdrepo: --level 23: expected an integer in \[1, 22\]" "$T/err" || fail "level range wording"
expect_usage wd export b "$T/x.wdelta" --format-version 3
grep -qx "wdrepo: --format-version 3: expected 1 or 2" "$T/err" || fail "export format-version wording"
expect_usage "$WDREPO" save-delta "$T/x.wdelta" "$T/ft" "$T/base" --format-version 3
grep -qx "wdrepo: --format-version 3: expected 1 or 2" "$T/err" || fail "save-delta format-version wording"
# --level only where chunks are compressed; -R only where a repository is used
expect_usage wd import "$T/x.wdelta" --level 5
grep -q "does not apply to 'import'" "$T/err" || fail "import --level"
expect_usage wd hash "$T/base"
grep -q "option -R does not apply to 'hash'" "$T/err" || fail "hash -R"
expect 0 "$WDREPO" hash -h
grep -q -- '--level\|--repo' "$T/out" && fail "hash -h lists -R or --level"
expect 0 "$WDREPO" commit -h
grep -q -- '--level N *zstd level of new chunks, 1-22 (default 1' "$T/out" || fail "commit -h: level default"

# ---- -j 0, --dtype spellings, bundles in front of the command -------------------------
expect 0 wd -j 0 -q commit "$T/ft" --on b --name f
ft=$(cat "$T/out")
for dt in BF16 f32 torch.float16 Float16 np.float32 fp16; do
    expect 0 wd -qf checkout f "$T/out-dt" --dtype "$dt"
done
expect_usage wd checkout f "$T/out-dt2" --dtype int8
grep -q "^wdrepo: --dtype int8: expected float32, bfloat16 or float16" "$T/err" || fail "--dtype wording"
mkdir -p "$T/full" && : >"$T/full/x"
expect 0 "$WDREPO" -qfR "$REPO" checkout f "$T/full"
[ -s "$T/err" ] && fail "-qfR in front of checkout printed on stderr"
[ -f "$T/full/config.json" ] || fail "-qf in front of checkout did not replace the folder"

# ---- did you mean -------------------------------------------------------------------
expect_usage "$WDREPO" chekout
grep -q "did you mean 'checkout'?" "$T/err" || fail "no suggestion for chekout"
expect_usage "$WDREPO" lgo
grep -q "did you mean 'log'?" "$T/err" || fail "no suggestion for lgo"
expect_usage wd log --jsno
grep -q "did you mean '--json'?" "$T/err" || fail "no suggestion for --jsno"

# ---- -R PROJECT (holding .wdrepo), stale -R and $WDREPO_DIR --------------------------
mkdir -p "$T/proj" && (cd "$T/proj" && "$WDREPO" init 2>/dev/null) || fail "init in proj"
expect 0 "$WDREPO" -R "$T/proj" log --json
[ "$(cat "$T/out")" = "[]" ] || fail "-R PROJECT did not open PROJECT/.wdrepo"
expect_fail_line "$WDREPO" -R "$T/proj" init
grep -q "already holds a repository" "$T/err" || fail "init -R PROJECT would make a second repository"
expect_fail_line "$WDREPO" -R "$T/nowhere" log
grep -q "'$T/nowhere', which is not a wdrepo repository" "$T/err" || fail "stale -R"
grep -q "run 'wdrepo init'$" "$T/err" && fail "stale -R: advice to init blindly"
expect_fail_line env WDREPO_DIR="$T/stale" "$WDREPO" log
grep -q "WDREPO_DIR names '$T/stale'" "$T/err" || fail "stale WDREPO_DIR not named"

# ---- errors name their file; inspect of a missing file ---------------------------------
printf 'not a wdelta file at all' >"$T/bad.wdelta"
expect_fail_line "$WDREPO" inspect "$T/bad.wdelta"
grep -q "'$T/bad.wdelta': not a .wdelta file" "$T/err" || fail "bad magic does not name the file"
expect_fail_line wd import "$T/bad.wdelta"
grep -q "'$T/bad.wdelta'" "$T/err" || fail "import: bad magic does not name the file"
expect_fail_line wd inspect "$T/missing.wdelta"
grep -q "cannot read '$T/missing.wdelta': No such file" "$T/err" || fail "inspect missing.wdelta"

# ---- inspect options; names that move ---------------------------------------------------
expect 0 wd -q commit "$T/ft" --on b --strategy sparse --sparsity 0.9 --name sp
expect 0 wd inspect sp
grep -q "^options  *sparsity 0.9$" "$T/out" || fail "inspect options not readable"
expect 0 wd tag v1 f
grep -q "^'v1' -> ${ft%"${ft#????????????}"}$" "$T/err" || fail "tag of a new name"
expect 0 wd tag v1 b
grep -q "(was ${ft%"${ft#????????????}"})$" "$T/err" || fail "tag moving a name does not say where it was"
expect 0 wd commit "$T/ft" --on b --name v1
grep -q "'v1' (was " "$T/err" || fail "commit --name moving a name does not say so"
expect 0 wd add-base "$T/base" --name v1
grep -q "'v1' (was ${ft%"${ft#????????????}"})" "$T/err" || fail "add-base --name moving a name"
# ---- the man page and the bash completion -----------------------------------------------
if command -v groff >/dev/null; then
    groff -ww -man -z wdrepo.1 >"$T/out" 2>"$T/err" || fail "groff cannot read wdrepo.1"
    [ -s "$T/err" ] && fail "wdrepo.1 renders with warnings"
else
    note "groff missing (tests/deps.sh installs groff-base): man page not rendered"
fi
# every long option of every command's table, and every command, is in the man page
for o in $(sed -n 's/^ *{"\([a-z][a-z-]*\)", [^"]*CLI_OPT_.*/\1/p' cli/*.c cli/cli.h | sort -u); do
    grep -qF -- "\\-\\-$(echo "$o" | sed 's/-/\\-/g')" wdrepo.1 || fail "wdrepo.1 does not describe --$o"
done
for c in $(sed -n 's/^    {"\([a-z-]*\)", cmd_.*/\1/p' cli/main.c); do
    grep -q "^\.BR* $(echo "$c" | sed 's/-/\\\\-/g')\( \|$\)" wdrepo.1 || fail "wdrepo.1 does not describe the command $c"
done
PATH="${WDREPO%/*}:$PATH" REPO="$REPO" bash -c '
. completion/wdrepo.bash
c() { COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=(); _wdrepo; echo "${COMPREPLY[*]}"; }
c wdrepo chec
c wdrepo -R "$REPO" checkout s
c wdrepo commit ft --strategy q
c wdrepo log --on' >"$T/out" 2>"$T/err" || fail "the completion script fails"
[ "$(sed -n 1p "$T/out")" = checkout ] || fail "completion of a command"
[ "$(sed -n 2p "$T/out")" = sp ] || fail "completion of a reference: $(sed -n 2p "$T/out")"
[ "$(sed -n 3p "$T/out")" = quantized ] || fail "completion of --strategy"
[ "$(sed -n 4p "$T/out")" = --oneline ] || fail "completion of log's options"
exit 0
