#!/bin/sh
# t_bad_input.sh - what must be refused and how: broken safetensors, unknown
# or too-short references, unsafe names, checkout over a non-empty folder,
# usage errors. Every failure is exit 1 (2 for usage) with one line on stderr
# and leaves the repository exactly as it was.
. tests/cli/lib.sh

snap() { "$WDREPO" -R "$REPO" log --json >"$T/snap.before" 2>&1 || fail "log failed"; }
unchanged() { # what: the last command must not have changed the repository
    "$WDREPO" -R "$REPO" log --json >"$T/snap.after" 2>&1 || fail "log failed after $1"
    cmp -s "$T/snap.before" "$T/snap.after" || fail "repository changed after failed $1"
    # no temporary files left behind (the SQLite -wal/-shm files may come and go)
    leftovers=$(cd "$REPO" && find . -type f ! -name '*-wal' ! -name '*-shm' | sort | tr '\n' ' ')
    [ "$leftovers" = "$repo_files" ] || fail "files in the repository changed after $1: $leftovers"
}

expect 0 wd init
expect 0 wd -q add-base "$MODELS/base-f32" --name base
base=$(cat "$T/out")
repo_files=$(cd "$REPO" && find . -type f ! -name '*-wal' ! -name '*-shm' | sort | tr '\n' ' ')

# ---- broken safetensors ---------------------------------------------------
n=0
for f in "$WD_FIXTURES"/bad/st-*.safetensors; do
    case $f in *st-valid.safetensors) continue ;; esac
    n=$((n + 1))
    d=$T/$(basename "$f" .safetensors)
    mkdir "$d" && cp "$f" "$d/model.safetensors" && cp "$MODELS/base-f32/config.json" "$d/"
    snap
    expect_fail_line wd add-base "$d" --name broken
    grep -q 'model.safetensors' "$T/err" || fail "the error does not name the file: $(cat "$T/err")"
    unchanged "add-base of $(basename "$f")"
    expect_fail_line wd commit "$d" --on base --name broken
    unchanged "commit of $(basename "$f")"
    expect_fail_line "$WDREPO" hash "$d"
done
[ "$n" -ge 3 ] || fail "expected at least 3 bad safetensors fixtures, found $n"

d=$T/st-valid
mkdir "$d" && cp "$WD_FIXTURES/bad/st-valid.safetensors" "$d/model.safetensors"
expect 0 wd -q add-base "$d" --name valid
grep -Eq '^[0-9a-f]{64}$' "$T/out" || fail "add-base of st-valid printed '$(cat "$T/out")'"
expect 0 wd commit "$d" --on base --json
pycheck "$T/out" '
# a, b, c are not in the base: stored whole; the 13 base tensors are dropped
assert d["n_tensors"] == 3, d
assert d["n_whole"] == 3, d
assert d["n_dropped"] == 13, d
'
expect 0 wd -q checkout valid "$T/valid-out"
same_tree "$d" "$T/valid-out"

# ---- folders that are not models ------------------------------------------
snap
expect_fail_line wd add-base "$T/does-not-exist"
unchanged "add-base of a missing folder"
mkdir "$T/no-shards" && echo '{}' >"$T/no-shards/config.json"
expect_fail_line wd add-base "$T/no-shards"
unchanged "add-base of a folder without shards"
expect_fail_line wd add-base "$MODELS/base-f32/model.safetensors"
unchanged "add-base of a file"
# Subfolders are stored (t_subfolders.sh), but a symbolic link to a folder
# is refused (it may lead out of the folder, or loop); hidden folders (.git,
# .cache) are ignored.
cp -R "$MODELS/base-bf16" "$T/with-sub" && ln -s "$T" "$T/with-sub/sub"
expect_fail_line wd add-base "$T/with-sub"
grep -q 'sub' "$T/err" || fail "the error does not name the subdirectory"
unchanged "add-base of a folder with a subdirectory"
expect_fail_line wd commit "$T/with-sub" --on base
unchanged "commit of a folder with a subdirectory"
cp -R "$MODELS/base-bf16" "$T/with-hidden" && mkdir "$T/with-hidden/.cache" && echo x >"$T/with-hidden/.cache/x"
expect 0 wd -q add-base "$T/with-hidden" --name hidden
[ "$(cat "$T/out")" = "$(model_hash base-bf16)" ] || fail "a hidden subdirectory changed the model hash"
expect 0 wd -q checkout hidden "$T/hidden-out"
same_tree "$MODELS/base-bf16" "$T/hidden-out"
repo_files=$(cd "$REPO" && find . -type f ! -name '*-wal' ! -name '*-shm' | sort | tr '\n' ' ')

# ---- references -------------------------------------------------------------
snap
short=$(echo "$base" | cut -c1-3)
expect_fail_line wd inspect "$short"
expect_fail_line wd inspect 0000000000
expect_fail_line wd inspect 0000000000000000000000000000000000000000000000000000000000000000
expect_fail_line wd inspect no-such-name
expect_fail_line wd commit "$MODELS/ft-f32" --on no-such-name
unchanged "commit on an unknown reference"
expect_fail_line wd commit "$MODELS/ft-f32" --on "$short"
unchanged "commit on a too-short prefix"
expect_usage wd commit "$MODELS/ft-f32"
grep -q -- '--on' "$T/err" || fail "missing --on is not named"
expect_usage wd commit "$MODELS/ft-f32" --on
unchanged "usage errors"
# 4 digits is the shortest prefix accepted.
expect 0 wd inspect "$(echo "$base" | cut -c1-4)" --json
[ "$(py "$T/out" 'd["id"]')" = "$base" ] || fail "a 4-digit prefix did not resolve"
# Prefixes are case-insensitive hex.
expect 0 wd inspect "$(echo "$base" | cut -c1-10 | tr a-f A-F)" --json

# Ambiguous prefix: two bases whose ids share their first 4 hex digits. The
# model hash is computable, so search (deterministically) for two variants of
# st-valid, differing in tensor c, whose hashes collide on 4 digits.
python3 - "$WD_FIXTURES/bad/st-valid.safetensors" "$T/amb1" "$T/amb2" >"$T/amb" <<'PY' || fail "no prefix collision found"
import hashlib, json, os, struct, sys
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr, data = json.loads(raw[8:8 + n]), raw[8 + n:]
names = sorted(k for k in hdr if k != "__metadata__")
c0 = hdr["c"]["data_offsets"][0]
def variant(i):
    return data[:c0] + struct.pack("<f", float(i)) + data[c0 + 4:]
def model_hash(d):
    h = hashlib.sha256()
    for k in names:
        b, e = hdr[k]["data_offsets"]
        h.update(k.encode()); h.update(d[b:e])
    return h.hexdigest()
seen = {}
for i in range(1, 100000):
    d = variant(i)
    x = model_hash(d)
    if x[:4] in seen:
        for out, dd in ((sys.argv[2], variant(seen[x[:4]])), (sys.argv[3], d)):
            os.mkdir(out)
            open(os.path.join(out, "model.safetensors"), "wb").write(raw[:8 + n] + dd)
        print(x[:4], model_hash(variant(seen[x[:4]])), x)
        break
    seen[x[:4]] = i
else:
    sys.exit(1)
PY
read -r amb_prefix amb_id1 amb_id2 <"$T/amb"
expect 0 wd -q add-base "$T/amb1"
[ "$(cat "$T/out")" = "$amb_id1" ] || fail "variant 1: wdrepo and python disagree on the model hash"
expect 0 wd -q add-base "$T/amb2"
[ "$(cat "$T/out")" = "$amb_id2" ] || fail "variant 2: wdrepo and python disagree on the model hash"
snap
expect_fail_line wd inspect "$amb_prefix"
grep -q ambiguous "$T/err" || fail "an ambiguous prefix is not called ambiguous"
grep -q "$(echo "$amb_id1" | cut -c1-12)" "$T/err" || fail "the ambiguity message does not list the candidates"
expect_fail_line wd checkout "$amb_prefix" "$T/co-amb"
[ -e "$T/co-amb" ] && fail "a failed checkout left $T/co-amb behind"
expect_fail_line wd commit "$MODELS/ft-f32" --on "$amb_prefix"
expect_fail_line wd tag amb "$amb_prefix"
unchanged "ambiguous references"
# one digit more than they share (at most) tells them apart
i=5
while [ "$(echo "$amb_id1" | cut -c1-$i)" = "$(echo "$amb_id2" | cut -c1-$i)" ]; do i=$((i + 1)); done
expect 0 wd inspect "$(echo "$amb_id2" | cut -c1-$i)" --json
[ "$(py "$T/out" 'd["id"]')" = "$amb_id2" ] || fail "a distinguishing prefix did not resolve"

# ---- checkout safety --------------------------------------------------------
expect_fail_line wd checkout no-such-name "$T/co-missing"
[ -e "$T/co-missing" ] && fail "a failed checkout left $T/co-missing behind"
expect_fail_line wd checkout "$short" "$T/co-short"
[ -e "$T/co-short" ] && fail "a failed checkout left $T/co-short behind"
mkdir "$T/busy" && echo keep >"$T/busy/keep.txt"
expect_fail_line wd checkout base "$T/busy"
[ "$(ls -A "$T/busy")" = keep.txt ] || fail "refused checkout touched the folder"
[ "$(cat "$T/busy/keep.txt")" = keep ] || fail "refused checkout changed keep.txt"
expect 0 wd checkout base "$T/busy" --force
same_tree "$MODELS/base-f32" "$T/busy"
echo x >"$T/a-file"
expect_fail_line wd checkout base "$T/a-file"
[ "$(cat "$T/a-file")" = x ] || fail "checkout over a file changed it"
ls -A "$T" | grep busy | grep -qvx busy && fail "checkout left temporary folders beside the output: $(ls -A "$T")"
unchanged "checkouts"

# ---- names ------------------------------------------------------------------
# Library rule: letters, digits and . _ - + /, at most 200 bytes, no leading
# '-' or '.', no "..", and not 4+ hex digits alone (it would shadow prefixes).
for bad in ../escape a/../b 'two words' abcd DEADBEEF .hidden -dash '' 'semi;colon' "$base"; do
    expect_fail_line wd tag -- "$bad" base
done
unchanged "invalid tag names"
expect_fail_line wd add-base "$MODELS/base-f32" --name ../escape
unchanged "add-base with an invalid name"
expect 0 wd tag team/ft-v1.2_x+y base
expect 0 wd inspect team/ft-v1.2_x+y --json
[ "$(py "$T/out" 'd["id"]')" = "$base" ] || fail "a name with / . _ + did not resolve"
expect 0 wd tag abc base # short hex-like names are allowed; a name wins over a prefix
expect 0 wd inspect abc --json
[ "$(py "$T/out" 'd["id"]')" = "$base" ] || fail "name 'abc' did not resolve"

# ---- usage errors -------------------------------------------------------------
snap
expect_usage "$WDREPO"
expect_usage "$WDREPO" frobnicate
expect_usage "$WDREPO" --frobnicate log
expect_usage wd log --frobnicate
expect_usage wd log a-ref extra-argument
expect_usage wd add-base
expect_usage wd add-base "$MODELS/base-f32" --name
expect_usage wd add-base "$MODELS/base-f32" --json=yes
expect_usage wd checkout base
expect_usage wd tag only-a-name
expect_usage wd inspect
expect_usage wd hash
expect_usage wd -j abc log
expect_usage wd -j -1 log
expect_usage wd --level 99 log
expect_usage wd -j
expect_usage wd commit "$MODELS/ft-f32" --on base --strategy bogus
grep -q lossless "$T/err" || fail "the strategy error does not name the valid strategies"

# ---- help and version -----------------------------------------------------------
for c in init add-base commit checkout log inspect tag hash help; do
    for h in -h --help; do
        expect 0 "$WDREPO" "$c" "$h"
        head -n 1 "$T/out" | grep -q "^usage: wdrepo $c" || fail "$c $h: no usage line on stdout"
        [ -s "$T/err" ] && fail "$c $h wrote to stderr"
    done
done
expect 0 "$WDREPO" help commit
grep -q -- '--on' "$T/out" || fail "help commit does not describe --on"
expect 0 "$WDREPO" -h
grep -q 'add-base' "$T/out" || fail "wdrepo -h does not list the commands"
expect 0 "$WDREPO" --version
grep -Eq '^wdrepo [0-9]+\.[0-9]+' "$T/out" || fail "--version printed '$(cat "$T/out")'"

# ---- repositories -----------------------------------------------------------------
expect_fail_line wd init
mkdir "$T/plain"
expect_fail_line "$WDREPO" -R "$T/plain" log
unchanged "usage errors and failed opens"
exit 0
