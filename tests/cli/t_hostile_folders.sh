#!/bin/sh
# t_hostile_folders.sh - a shard index (model.safetensors.index.json) must
# agree with the folder it sits in: an index pointing outside the folder
# (absolute path, '..'), at a shard that is missing or is not a shard, at
# the wrong shard, listing a tensor twice or not at all, or leaving a shard
# out is refused by every command that reads a model folder (add-base,
# commit, hash, save-delta, load-delta's base) with one line naming the
# index, exit 1, nothing stored or written. A folder whose index agrees is
# accepted, and a folder stored before this check with an index it would
# now refuse still checks out as it was.
. tests/cli/lib.sh

B=$MODELS/base-bf16
S1=model-00001-of-00002.safetensors
S2=model-00002-of-00002.safetensors

# variant NAME PYTHON [FOLDER]: a copy of FOLDER (base-bf16) whose index
# (as dict d, with weight_map m) the statements change; the file is
# rewritten as JSON unless they set raw (bytes) instead.
variant() {
    cp -R "${3:-$B}" "$T/$1" || fail "cp"
    python3 - "$T/$1/model.safetensors.index.json" "$2" <<'EOF' || fail "cannot make variant $1"
import json, sys
p = sys.argv[1]
d = json.load(open(p, encoding="utf-8"))
m = d["weight_map"]
raw = None
exec(sys.argv[2])
if raw is None:
    raw = json.dumps(d, indent=2).encode()
open(p, "wb").write(raw)
EOF
}

expect 0 wd init
expect 0 wd -q add-base "$MODELS/base-f32" --name other
snap() { "$WDREPO" -R "$REPO" log --json >"$T/snap" 2>&1 || fail "log failed"; }
unchanged() {
    "$WDREPO" -R "$REPO" log --json >"$T/snap2" 2>&1 || fail "log failed"
    cmp -s "$T/snap" "$T/snap2" || fail "the repository changed after a refused $1"
}

# name | what the index does | a word the message must hold
cat >"$T/cases" <<'EOF'
absolute|m["lm_head.scale"] = "/etc/passwd"|not a plain file name
absolute-shard|m["lm_head.scale"] = "/tmp/model-00001-of-00002.safetensors"|not a plain file name
dotdot|m["lm_head.scale"] = "../base-bf16/model-00001-of-00002.safetensors"|not a plain file name
dotdot-alone|m["lm_head.scale"] = ".."|not a plain file name
dot|m["lm_head.scale"] = "."|not a plain file name
empty-name|m["lm_head.scale"] = ""|not a plain file name
missing-shard|m["lm_head.scale"] = "model-00003-of-00003.safetensors"|not in the folder
not-a-shard|m["lm_head.scale"] = "config.json"|not a *.safetensors shard
wrong-shard|m["lm_head.scale"] = "model-00002-of-00002.safetensors"|but it is in 'model-00001-of-00002.safetensors'
unknown-tensor|m["no.such.tensor"] = "model-00001-of-00002.safetensors"|no shard in the folder holds it
left-out-tensor|del m["model.position_ids"]|does not list tensor 'model.position_ids'
left-out-shard|d["weight_map"] = {k: v for k, v in m.items() if v == "model-00001-of-00002.safetensors"}|does not list shard 'model-00002-of-00002.safetensors'
twice|raw = b'{"weight_map": {"lm_head.scale": "model-00001-of-00002.safetensors", ' + json.dumps(m)[1:].encode() + b'}'|more than once
not-a-string|m["lm_head.scale"] = 3|is not a string
no-weight-map|del d["weight_map"]|no "weight_map"
weight-map-array|d["weight_map"] = list(m)|not a JSON object
two-weight-maps|raw = b'{"weight_map": {}, "weight_map": ' + json.dumps(m).encode() + b'}'|more than one "weight_map"
not-json|raw = b'{"weight_map": {'|not valid JSON
not-object|raw = b'[]'|not a JSON object
trailing|raw = json.dumps(d).encode() + b' x'|unexpected text
nul-escape|raw = json.dumps(d).encode().replace(b'"lm_head.scale"', b'"lm_head.scale\\u0000"')|escaped NUL
EOF
# All variants in one python run (a process per case costs more than the case).
python3 - "$B" "$T" "$T/cases" <<'EOF' || fail "cannot make the variants"
import json, shutil, sys
src, out, cases = sys.argv[1:4]
for line in open(cases, encoding="utf-8"):
    name, code, _ = line.rstrip("\n").split("|")
    shutil.copytree(src, f"{out}/{name}")
    p = f"{out}/{name}/model.safetensors.index.json"
    d = json.load(open(p, encoding="utf-8"))
    m = d["weight_map"]
    raw = None
    exec(code)
    open(p, "wb").write(raw if raw is not None else json.dumps(d, indent=2).encode())
EOF
snap
n=0
while IFS='|' read -r name code word; do
    n=$((n + 1))
    expect_fail_line wd add-base "$T/$name" --name "$name"
    grep -q "model.safetensors.index.json': " "$T/err" || fail "$name: the error does not name the index"
    grep -qF -- "$word" "$T/err" || fail "$name: the error does not say '$word'"
    unchanged "add-base of $name"
    expect_fail_line "$WDREPO" hash "$T/$name"
    grep -qF -- "$word" "$T/err" || fail "$name: hash does not say '$word'"
done <"$T/cases"
[ "$n" -ge 20 ] || fail "only $n cases ran"

# The other commands that read a model folder, on a few of the cases.
expect 0 wd -q add-base "$B" --name base
for name in absolute dotdot missing-shard left-out-shard; do
    snap
    expect_fail_line wd commit "$T/$name" --on base
    grep -q "index.json" "$T/err" || fail "commit of $name: the error does not name the index"
    unchanged "commit of $name"
    expect_fail_line "$WDREPO" save-delta "$T/$name.wdelta" "$T/$name" "$B"
    [ -e "$T/$name.wdelta" ] && fail "a refused save-delta wrote $name.wdelta"
    expect_fail_line "$WDREPO" save-delta "$T/$name.wdelta" "$MODELS/ft-bf16" "$T/$name"
    [ -e "$T/$name.wdelta" ] && fail "a refused save-delta wrote $name.wdelta"
done
expect 0 "$WDREPO" -q save-delta "$T/ok.wdelta" "$MODELS/ft-bf16" "$B"
expect_fail_line "$WDREPO" load-delta "$T/ok.wdelta" "$T/dotdot" "$T/ld-out"
[ -e "$T/ld-out" ] && fail "a refused load-delta wrote its output"

# A shard missing from the folder entirely, its index still naming it: the
# likely accident (an interrupted download) that would store half a model.
cp -R "$B" "$T/half" && rm "$T/half/$S2"
expect_fail_line wd add-base "$T/half"
grep -qF "is mapped to '$S2', which is not in the folder" "$T/err" || fail "a missing shard is not named"

# A shard the index does not know: a stray copy next to the real ones.
cp -R "$B" "$T/stray" && cp "$MODELS/ft2-bf16/model.safetensors" "$T/stray/extra.safetensors"
expect_fail_line wd add-base "$T/stray"

# Folders whose index agrees are fine, whatever the tensor names (the
# fixture has one outside ASCII), and so are folders without an index.
for m in base-bf16 ft-bf16 base-f32; do
    expect 0 "$WDREPO" hash "$MODELS/$m"
    [ "$(cat "$T/out")" = "$(model_hash $m)" ] || fail "hash of $m changed"
done
# Other keys of the index (metadata, anything else) are not checked.
variant extra-keys 'd["metadata"] = {"total_size": 1}; d["note"] = [1, {"x": None}]' "$MODELS/ft-bf16"
expect 0 wd -q add-base "$T/extra-keys" --name extra-keys
expect 0 wd -q checkout extra-keys "$T/co-extra"
same_tree "$T/extra-keys" "$T/co-extra"

# An object stored by an older wdrepo with an index it would now refuse
# (made here by rewriting the stored index in the database) still checks
# out as it was stored: checkout's own re-reading trusts the index.
variant legacy 'm["lm_head.scale"] = "../elsewhere.safetensors"' "$MODELS/ft-bf16"
(cd "$REPO" && python3 - "$T/legacy/model.safetensors.index.json" <<'EOF'
import hashlib, sqlite3, sys
text = open(sys.argv[1], "rb").read()
db = sqlite3.connect("repo.db")
cid = hashlib.sha256(text).digest()
db.execute("INSERT OR IGNORE INTO chunk(id, raw_size, codec, data) VALUES (?, ?, 0, ?)", (cid, len(text), text))
obj = db.execute("SELECT object FROM name WHERE name = 'extra-keys'").fetchone()[0]
db.execute("UPDATE file SET chunks = ?, size = ? WHERE object = ? AND path = 'model.safetensors.index.json'",
           (cid, len(text), obj))
db.commit()
EOF
) || fail "cannot rewrite the stored index"
expect 0 wd -q checkout extra-keys "$T/co-legacy"
cmp "$T/legacy/model.safetensors.index.json" "$T/co-legacy/model.safetensors.index.json" ||
    fail "checkout did not give back the stored index"
exit 0
