#!/bin/sh
# t_strategy_opts.sh - --strategy, --sparsity and --outlier-fraction mean the
# same in commit, save-delta and export: an explicit 0 is 0 (never the
# default), out-of-range values and unknown strategies are refused by every
# command with the same message, and an option for another strategy is a
# usage error.
. tests/cli/lib.sh
CMP="python3 tests/cli/st_compare.py"
BF=$MODELS/base-bf16
FT=$MODELS/ft-bf16

expect 0 wd init
expect 0 wd add-base "$BF" --name base
expect 0 wd commit "$FT" --on base --name lossless

# The first stderr line of each command, for one set of options.
refused_alike() { # what, options...
    what=$1
    shift
    expect_usage wd commit "$FT" --on base "$@"
    c=$(sed -n 1p "$T/err")
    expect_usage "$WDREPO" save-delta "$T/x.wdelta" "$FT" "$BF" "$@"
    s=$(sed -n 1p "$T/err")
    expect_usage wd export lossless "$T/x.wdelta" "$@"
    e=$(sed -n 1p "$T/err")
    [ "$c" = "$s" ] && [ "$s" = "$e" ] ||
        fail "$what: commit, save-delta and export disagree: '$c' / '$s' / '$e'"
    echo "$c" | grep -q -- "$what" || fail "$what: message '$c'"
    [ -e "$T/x.wdelta" ] && fail "$what: a refused save-delta or export left a file"
    return 0
}
refused_alike "^wdrepo: --sparsity 1: expected a number in \[0, 1)$" --strategy sparse --sparsity 1
refused_alike "^wdrepo: --sparsity -0.1: expected a number in \[0, 1)$" --strategy sparse --sparsity -0.1
refused_alike "^wdrepo: --sparsity nan: expected a number in \[0, 1)$" --strategy sparse --sparsity nan
refused_alike "^wdrepo: --outlier-fraction 0: expected a number in (0, 1\]$" --strategy int4 --outlier-fraction 0
refused_alike "^wdrepo: --outlier-fraction 1.5: expected a number in (0, 1\]$" --strategy int4 --outlier-fraction 1.5
refused_alike "expected a number" --strategy sparse --sparsity 0.5x
refused_alike "--sparsity applies to strategy sparse" --strategy quantized --sparsity 0.5
refused_alike "--outlier-fraction applies to strategy int4" --strategy sparse --outlier-fraction 0.1
# unknown strategies: commit also knows lossless, the .wdelta commands do not
expect_usage wd commit "$FT" --on base --strategy bogus
grep -q "unknown strategy 'bogus' (valid: lossless, sparse, quantized, int4, lowbit)" "$T/err" ||
    fail "commit --strategy bogus"
for cmd in "save-delta $T/x.wdelta $FT $BF" "-R $REPO export lossless $T/x.wdelta"; do
    # shellcheck disable=SC2086 # the words are the command line
    expect_usage "$WDREPO" $cmd --strategy bogus
    grep -q "unknown strategy 'bogus' (valid: sparse, quantized, int4)" "$T/err" ||
        fail "$cmd --strategy bogus"
done
# export without --strategy keeps the stored arrays: an option has nothing to apply to
expect_usage wd export lossless "$T/x.wdelta" --sparsity 0.5
[ -e "$T/x.wdelta" ] && fail "a refused export left a file"

# --sparsity 0 keeps every element in save-delta...
expect 0 "$WDREPO" save-delta "$T/s0.wdelta" "$FT" "$BF" --sparsity 0
expect 0 "$WDREPO" inspect "$T/s0.wdelta" --json
python3 - "$T/out" <<'PY' || fail "save-delta --sparsity 0 did not keep every element"
import json, sys
d = json.load(open(sys.argv[1]))
for name, t in d["tensors"].items():
    assert t["options"] == {"sparsity": 0.0}, (name, t["options"])
    n = 1
    for s in t["shape"]:
        n *= s
    assert t["arrays"]["indices"]["count"] == n, (name, t["arrays"], n)
PY
expect 0 "$WDREPO" load-delta "$T/s0.wdelta" "$BF" "$T/s0" --dtype float32

# ...and in commit, which records it as given and reconstructs the same.
expect 0 wd commit "$FT" --on base --strategy sparse --sparsity 0 --name s0
expect 0 wd inspect s0 --json
python3 - "$T/out" <<'PY' || fail "commit --sparsity 0 did not record sparsity 0"
import json, sys
assert json.load(open(sys.argv[1]))["options"] == {"sparsity": 0}
PY
expect 0 wd checkout s0 "$T/c0" --dtype float32
$CMP "$T/c0" "$T/s0/model.safetensors" >"$T/cmp" ||
    { cat "$T/cmp"; fail "commit and save-delta --sparsity 0 reconstruct differently"; }

# Omitted options take the defaults, in commit as in save-delta.
expect 0 wd commit "$FT" --on base --strategy int4 --name i4
expect 0 wd inspect i4 --json
python3 -c 'import json, sys; assert json.load(open(sys.argv[1]))["options"] == {"outlier_fraction": 0.01}' \
    "$T/out" || fail "commit int4 does not default to 0.01"
expect 0 "$WDREPO" save-delta "$T/i4.wdelta" "$FT" "$BF" --strategy int4
expect 0 "$WDREPO" inspect "$T/i4.wdelta" --json
python3 -c 'import json, sys; assert all(t["options"]["outlier_fraction"] == 0.01 for t in json.load(open(sys.argv[1]))["tensors"].values())' \
    "$T/out" || fail "save-delta int4 does not default to 0.01"
echo "ok"
