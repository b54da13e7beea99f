#!/bin/sh
# t_subfolders.sh - model folders with subfolders (Hugging Face's original/,
# onnx/): their files are stored with relative paths and come back on
# checkout and load-delta; a subfolder's *.safetensors is a plain file, not
# weights; --exclude leaves files and folders out; special files and
# unsafe stored paths are refused; fsck and gc understand the rows.
. tests/cli/lib.sh

# hf: base-bf16 plus subfolders, a hidden folder and a hidden file.
mk_hf() {
    cp -R "$MODELS/$1" "$2" || fail "copy $1"
    mkdir -p "$2/original/deep" "$2/onnx" "$2/.git" || fail "mkdir"
    echo '{"dim": 24}' >"$2/original/params.json"
    printf 'raw\001bytes' >"$2/original/deep/x.bin"
    cp "$MODELS/base-f32/model.safetensors" "$2/onnx/model.safetensors"
    echo ref >"$2/.git/HEAD"
    echo '*.bin lfs' >"$2/.gitattributes"
}
mk_hf base-bf16 "$T/hf"
mk_hf ft-bf16 "$T/hf-ft"
echo '{"dim": 25}' >"$T/hf-ft/original/params.json"
# What checkout must give back: all but the hidden folder.
cp -R "$T/hf" "$T/hf-expect" && rm -rf "$T/hf-expect/.git"
cp -R "$T/hf-ft" "$T/hf-ft-expect" && rm -rf "$T/hf-ft-expect/.git"

expect 0 wd init
# The weights are the top level's shards only: the model hash is base-bf16's.
expect 0 "$WDREPO" hash "$T/hf"
[ "$(cat "$T/out")" = "$(model_hash base-bf16)" ] || fail "a subfolder's safetensors entered the model hash"
expect 0 wd add-base "$T/hf" --name hf --json
[ "$(py "$T/out" 'd["model_hash"]')" = "$(model_hash base-bf16)" ] || fail "add-base: wrong model hash"
expect 0 wd inspect hf --json
pycheck "$T/out" '
files = {f["path"]: f for f in d["files"]}
assert "original/params.json" in files and "original/deep/x.bin" in files, sorted(files)
assert files["onnx/model.safetensors"]["is_shard"] is False, files["onnx/model.safetensors"]
assert ".gitattributes" in files and not any(p.startswith(".git/") for p in files), sorted(files)'
expect 0 wd -q checkout hf "$T/co"
same_tree "$T/hf-expect" "$T/co"
expect 0 wd -q commit "$T/hf-ft" --on hf --name hf-ft
expect 0 wd -q checkout hf-ft "$T/co-ft"
same_tree "$T/hf-ft-expect" "$T/co-ft"

# --exclude: a folder as 'original/', a glob over a folder's files, a glob
# over names anywhere ('*' crosses '/'); with every extra left out the
# folder is base-bf16's, so the name lands on that base.
expect 0 wd -q add-base "$T/hf" --exclude original/ --exclude='onnx/*' --exclude .gitattributes --name plain
expect 0 wd -q add-base "$MODELS/base-bf16" --json
plain_id=$(py "$T/out" 'd["id"]')
expect 0 wd inspect plain --json
[ "$(py "$T/out" 'd["id"]')" = "$plain_id" ] || fail "--exclude did not leave the subfolders out"
expect 0 wd -q commit "$T/hf-ft" --on hf --exclude '*.bin' -m --exclude --name no-bin
expect 0 wd inspect no-bin --json
pycheck "$T/out" '
paths = [f["path"] for f in d["files"]]
assert "original/deep/x.bin" not in paths and "original/params.json" in paths, paths
assert d["message"] == "--exclude", d["message"]'
expect_usage wd add-base "$T/hf" --exclude

# load-delta copies the base's subfolder files too (but, as deltatensors,
# none with a weight suffix such as .bin).
expect 0 "$WDREPO" -q save-delta "$T/d.wdelta" "$T/hf-ft" "$T/hf"
expect 0 "$WDREPO" -q load-delta "$T/d.wdelta" "$T/hf" "$T/ld"
cmp "$T/hf/original/params.json" "$T/ld/original/params.json" || fail "load-delta lost a subfolder file"

# Special files and links to folders are refused, in subfolders too.
cp -R "$T/hf-expect" "$T/fifo" && mkfifo "$T/fifo/original/pipe"
expect_fail_line wd add-base "$T/fifo"
grep -q 'original/pipe' "$T/err" || fail "the error does not name the fifo"
cp -R "$T/hf-expect" "$T/loop" && ln -s .. "$T/loop/original/up"
expect_fail_line wd add-base "$T/loop"

# A stored path that would leave the output folder is refused by checkout
# and reported by fsck.
expect 0 wd fsck
cp -R "$REPO" "$T/bad-repo"
python3 - "$T/bad-repo/repo.db" <<'PYEOF' || fail "cannot edit the copy"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE file SET path = 'original/../../evil' WHERE path = 'original/params.json'")
db.commit()
PYEOF
run "$WDREPO" -R "$T/bad-repo" checkout hf "$T/evil-out"
[ "$rc" -eq 1 ] && grep -q 'unsafe' "$T/err" || fail "checkout wrote an unsafe stored path"
[ -e "$T/evil" ] && fail "a file was written outside the output folder"
run "$WDREPO" -R "$T/bad-repo" fsck
[ "$rc" -eq 3 ] || fail "fsck did not report the unsafe path (exit $rc)"

# gc keeps what the subfolder files need, and frees it when they go.
expect 0 wd -q rm -r hf
expect 0 wd -q gc
expect 0 wd fsck
expect 0 wd -q checkout plain "$T/co-plain"
same_tree "$MODELS/base-bf16" "$T/co-plain"
echo "ok"

# A repository inside the model folder (-R model/repo) is never read as part
# of the model: it is being written while the model is read.
cp -r "$MODELS/base-bf16" "$T/inner"
expect 0 "$WDREPO" -R "$T/inner/repo" init
expect 0 "$WDREPO" -R "$T/inner/repo" add-base "$T/inner" --name inner --json
py "$T/out" 'd["id"]' >"$T/inner-id"
expect 0 "$WDREPO" -R "$T/inner/repo" sql "SELECT path FROM files" --json
grep -q 'repo/' "$T/out" && fail "the repository inside the model folder was stored as model files"
[ "$(cat "$T/inner-id")" = "$(model_hash base-bf16)" ] || fail "the repository changed the model's id"
echo "ok"
