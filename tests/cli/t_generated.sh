#!/bin/sh
# t_generated.sh - round trips on models made by tests/tools/gen_model (bf16,
# f16 and f32, several shards): add-base = hash, a lossless commit checks out
# byte-identical; plus the terminal behaviour (progress on stderr, -q silent).
. tests/cli/lib.sh

GEN=${WD_BUILD:?}/tools/gen_model
case $GEN in /*) ;; *) GEN=$PWD/$GEN ;; esac
[ -x "$GEN" ] || fail "$GEN is not built (make all builds it)"

expect 0 wd init
for dt in bf16 f16 f32; do
    "$GEN" --preset tiny --dtype $dt --shards 2 --seed 7 -q "$T/base-$dt" --finetune "$T/ft-$dt" \
        >"$T/out" 2>"$T/err" || fail "gen_model --dtype $dt failed"
    expect 0 "$WDREPO" hash "$T/base-$dt"
    h=$(cat "$T/out")
    expect 0 wd -q add-base "$T/base-$dt" --name "base-$dt"
    [ "$(cat "$T/out")" = "$h" ] || fail "$dt: add-base and hash disagree"
    expect 0 wd -q commit "$T/ft-$dt" --on "base-$dt" --name "ft-$dt"
    expect 0 wd inspect "ft-$dt" --json
    expect 0 "$WDREPO" hash "$T/ft-$dt"
    fth=$(cat "$T/out")
    expect 0 wd inspect "ft-$dt" --json
    [ "$(py "$T/out" 'd["model_hash"]')" = "$fth" ] || fail "$dt: the delta's model hash is not the fine-tune's"
    expect 0 wd -q checkout "ft-$dt" "$T/co-ft-$dt"
    same_tree "$T/ft-$dt" "$T/co-ft-$dt"
    expect 0 wd -q checkout "base-$dt" "$T/co-base-$dt"
    same_tree "$T/base-$dt" "$T/co-base-$dt"
done

# Threads and level are accepted and change nothing in what is stored.
expect 0 wd -q -j 1 --level 19 add-base "$T/base-bf16"
[ "$(cat "$T/out")" = "$(cd "$T" && "$WDREPO" hash base-bf16)" ] || fail "-j 1 --level 19 add-base"

# On a terminal: -q prints the id and nothing else (no progress, no summary);
# without -q the summary follows, and the progress line, if any, is erased.
REPO2=$T/repo2
"$WDREPO" -R "$REPO2" init >/dev/null 2>&1 || fail "init repo2"
on_tty "$WDREPO" -R "$REPO2" -q add-base "$T/base-f32" --name base-f32
[ "$rc" -eq 0 ] || fail "add-base -q on a terminal failed"
printf '%s\n' "$(cd "$T" && "$WDREPO" hash base-f32)" | cmp -s - "$T/out" || fail "-q on a terminal printed more than the hash: $(od -c "$T/out" | head -n 5)"
on_tty "$WDREPO" -R "$REPO2" commit "$T/ft-f32" --on base-f32
[ "$rc" -eq 0 ] || fail "commit on a terminal failed"
grep -q 'committed delta ' "$T/out" || fail "no summary on a terminal"
# whatever progress was drawn ends with a carriage return before the summary
if grep -q '%' "$T/out"; then
    python3 - "$T/out" <<'PY' || fail "progress line not erased before the summary"
import sys
s = open(sys.argv[1], encoding="utf-8", newline="").read()
i = s.index("committed delta")
assert s[i - 1] == "\r", repr(s[max(0, i - 80):i + 20])
PY
fi
exit 0
