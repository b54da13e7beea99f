#!/bin/sh
# t_same_weights.sh - folders holding the same weights with other files
# (an added README, a fixed tokenizer), another shard layout or other
# header metadata are different bases: each checks out exactly as it was
# added; the first one stored keeps the model hash as its id, the others get
# a folder id (FORMAT.md section 3) and store nothing but their own files;
# adding any of them again stores nothing. add-base prints the model hash
# (and names the folder's id in its summary and --json); --name names the
# folder stored; --on takes either; import attaches to the base whose id is
# the file's parent_hash.
. tests/cli/lib.sh

A=$MODELS/base-bf16
H=$(model_hash base-bf16)

# The variants, all with A's weights.
cp -R "$A" "$T/readme" && printf '# A model\n' >"$T/readme/README.md"
cp -R "$A" "$T/tokenizer" && printf '{"version":"1.0","fixed":true}\n' >"$T/tokenizer/tokenizer.json"
python3 - "$A" "$T/onefile" "$T/meta" <<'EOF' || fail "cannot build the layout variants"
import json, os, shutil, struct, sys
src, onefile, meta = sys.argv[1:4]
def read(p):
    raw = open(p, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]
def write(p, hdr, data):
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    open(p, "wb").write(struct.pack("<Q", len(h)) + h + data)
shards = sorted(f for f in os.listdir(src) if f.endswith(".safetensors"))
# one shard holding every tensor, no index
os.mkdir(onefile)
hdr, data, off = {"__metadata__": {"format": "pt"}}, b"", 0
for s in shards:
    h, d = read(os.path.join(src, s))
    for k, v in sorted((k, v) for k, v in h.items() if k != "__metadata__"):
        b, e = v["data_offsets"]
        hdr[k] = {"dtype": v["dtype"], "shape": v["shape"], "data_offsets": [off, off + e - b]}
        data += d[b:e]
        off += e - b
write(os.path.join(onefile, "model.safetensors"), hdr, data)
shutil.copy(os.path.join(src, "config.json"), onefile)
# the same shards, one header carrying other metadata
shutil.copytree(src, meta)
h, d = read(os.path.join(meta, shards[0]))
h["__metadata__"] = {"format": "pt", "source": "another export"}
write(os.path.join(meta, shards[0]), h, d)
EOF
for v in readme tokenizer onefile meta; do
    expect 0 "$WDREPO" hash "$T/$v"
    [ "$(cat "$T/out")" = "$H" ] || fail "variant $v does not hold the same weights"
done

expect 0 wd init
expect 0 wd add-base "$A" --name a --json
pycheck "$T/out" "assert d['id'] == d['model_hash'] == '$H' and d['already_present'] is False, d"
a_new=$(py "$T/out" 'd["new_bytes"]')
a_stored=$(py "$T/out" 'd["stored_bytes"]')

# Each variant: a base of its own, printing the model hash, naming its id.
for v in readme tokenizer onefile meta; do
    expect 0 wd add-base "$T/$v" --name "$v"
    [ "$(cat "$T/out")" = "$H" ] || fail "add-base of $v printed '$(cat "$T/out")', not the model hash"
    grep -q "^added base [0-9a-f]\{12\} '$v' (same weights as $(echo "$H" | cut -c1-12), other files): " "$T/err" ||
        fail "the summary of $v does not say it is another folder of the same weights"
    expect 0 wd add-base "$T/$v" --json
    pycheck "$T/out" "
assert d['model_hash'] == '$H', d
assert d['id'] != '$H', 'the model hash is the first folder\'s id'
assert d['already_present'] is True and d['new_bytes'] == 0, d
assert d['stored_bytes'] == $a_stored, d
"
    id=$(py "$T/out" 'd["id"]')
    eval "id_$v=$id"
    expect 0 wd inspect "$v" --json
    pycheck "$T/out" "assert d['id'] == '$id' and d['model_hash'] == '$H' and d['kind'] == 'base', d"
    expect 0 wd -q checkout "$v" "$T/co-$v"
    same_tree "$T/$v" "$T/co-$v"
done
[ "$id_readme" != "$id_tokenizer" ] && [ "$id_onefile" != "$id_meta" ] && [ "$id_readme" != "$id_meta" ] ||
    fail "two different folders got one id"

# The first folder is still what its id gives back, and is found again.
expect 0 wd -q checkout "$H" "$T/co-a"
same_tree "$A" "$T/co-a"
expect 0 wd add-base "$A" --json
pycheck "$T/out" "assert d['id'] == '$H' and d['already_present'] is True and d['new_bytes'] == 0, d"
grep -q "^base $(echo "$H" | cut -c1-12) already stored: " "$T/err" || fail "re-adding the first folder says: $(cat "$T/err")"

# Only the variants' own files were stored: the weights' chunks are shared.
expect 0 wd log --json
pycheck "$T/out" "
assert len(d) == 5, len(d)
assert all(o['model_hash'] == '$H' and o['kind'] == 'base' for o in d), d
assert len({o['id'] for o in d}) == 5
news = {o['names'][0]: o['new_bytes'] for o in d}
assert news['a'] == $a_new, news
for v in ('readme', 'tokenizer'):
    assert 0 < news[v] < 200, news          # one small file
for v in ('onefile', 'meta'):
    assert 0 < news[v] < 4096, news         # a header (and a config seen before)
"

# The same folder from another place is the same base.
cp -R "$T/readme" "$T/readme-copy"
expect 0 wd add-base "$T/readme-copy" --name readme2 --json
pycheck "$T/out" "assert d['id'] == '$id_readme' and d['already_present'] is True and d['new_bytes'] == 0, d"
expect 0 wd inspect readme2 --json
[ "$(py "$T/out" 'd["id"]')" = "$id_readme" ] || fail "--name did not name the folder found"

# --on takes the model hash (the first folder) or a variant's id or name;
# the fine-tune comes back whole either way.
expect 0 wd -q commit "$MODELS/ft-bf16" --on "$H" --name on-a
expect 0 wd -q commit "$MODELS/ft-bf16" --on readme --name on-readme
expect 0 wd inspect on-a --json
pycheck "$T/out" "assert d['parent'] == '$H' and d['parent_hash'] == '$H', d"
expect 0 wd inspect on-readme --json
pycheck "$T/out" "assert d['parent'] == '$id_readme' and d['parent_hash'] == '$H', d"
for d in on-a on-readme; do
    expect 0 wd -q checkout $d "$T/co-$d"
    same_tree "$MODELS/ft-bf16" "$T/co-$d"
done

# import: the file names its base by the model hash; of the five bases
# with those weights, the one whose id that is.
expect 0 "$WDREPO" -q save-delta "$T/ft.wdelta" "$MODELS/ft-bf16" "$A"
[ "$(cat "$T/out")" = "$H" ] || fail "save-delta's parent_hash is not the model hash"
expect 0 wd -q import "$T/ft.wdelta" --name imported
expect 0 wd inspect imported --json
pycheck "$T/out" "assert d['parent'] == '$H', d['parent']"

# Whichever folder comes first keeps the model hash as its id.
rm -rf "$REPO"
expect 0 wd init
expect 0 wd add-base "$T/readme" --json
pycheck "$T/out" "assert d['id'] == '$H' and d['already_present'] is False, d"
expect 0 wd add-base "$A" --json
pycheck "$T/out" "assert d['id'] not in ('$H', '$id_readme') and d['already_present'] is False, d"
expect 0 wd -q checkout "$H" "$T/co2-readme"
same_tree "$T/readme" "$T/co2-readme"
# fsck knows a base's id may be its folder id: the repository is sound,
# also after a full rebuild.
expect 0 wd fsck
expect 0 wd fsck --full
exit 0
