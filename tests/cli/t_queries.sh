#!/bin/sh
# t_queries.sh - the read-only query commands on tiny generated models:
# stats (by kind, sums, page size of a new repository), diff (checked
# against the tensors read back in Python; -j independent; dtype, missing
# tensor and file changes), show (byte-exact, streamed over several chunks,
# refusals), checkout --only and --dtype (what is written, rewritten and
# reported), and sql (every view, JSON, refusals, nothing written).
. tests/cli/lib.sh

GEN=${WD_BUILD:?}/tools/gen_model
case $GEN in /*) ;; *) GEN=$PWD/$GEN ;; esac
[ -x "$GEN" ] || fail "$GEN is not built (make all builds it)"
"$GEN" --preset tiny --dtype bf16 --shards 2 --seed 7 -q "$T/base" --finetune "$T/ft" >/dev/null 2>&1 ||
    fail "gen_model bf16"
"$GEN" --preset tiny --dtype f32 --layers 1 --seed 7 -q "$T/b32" >/dev/null 2>&1 || fail "gen_model f32"
# A second folder of the base's weights with a binary file over two chunks.
cp -R "$T/base" "$T/base2"
"$PY" -c "import random,sys; sys.stdout.buffer.write(random.Random(5).randbytes(2500000))" \
    >"$T/base2/blob.bin"

# ---- stats: a new repository is small (16 KiB pages), then bytes by kind.
expect 0 wd init
expect 0 wd stats --json
pycheck "$T/out" '
assert d["page_size"] == 16384, d["page_size"]
assert d["db_bytes"] <= 256 * 1024, d["db_bytes"]
assert d["n_objects"] == 0 and d["stored_bytes"] == 0'
expect 0 wd -q add-base "$T/base" --name base
expect 0 wd -q commit "$T/ft" --on base --name ft
expect 0 wd -q commit "$T/ft" --on base --strategy sparse --name fts
expect 0 wd -q add-base "$T/base2" --name base2
expect 0 wd -q add-base "$T/b32" --name b32
expect 0 wd stats --json
cp "$T/out" "$T/stats.json"
folder_bytes=$(cat "$T"/base/* "$T"/ft/* "$T"/ft/* "$T"/base2/* "$T"/b32/* | wc -c | tr -d ' ')
pycheck "$T/stats.json" "
k = {x['kind']: x for x in d['kinds']}
assert [x['kind'] for x in d['kinds']] == ['base', 'lossless', 'sparse', 'files', 'shard headers', 'unreferenced'], list(k)
assert (k['base']['n_objects'], k['lossless']['n_objects'], k['sparse']['n_objects']) == (3, 1, 1)
assert d['n_objects'] == 5 and d['n_bases'] == 3 and d['n_deltas'] == 2 and d['n_names'] == 5
assert sum(x['stored_bytes'] for x in d['kinds']) == d['stored_bytes']
assert sum(x['n_chunks'] for x in d['kinds']) == d['n_chunks']
assert k['base']['stored_bytes'] > 0 and k['sparse']['stored_bytes'] > 0 and k['files']['n_chunks'] >= 4
assert k['files']['stored_bytes'] >= 2500000 * 0.99   # blob.bin does not compress
assert d['logical_bytes'] == $folder_bytes, (d['logical_bytes'], $folder_bytes)
# base2 shares base's tensor chunks: the references add up to more than what is stored
assert d['referenced_bytes'] > d['stored_bytes'] - k['unreferenced']['stored_bytes']
assert d['free_pages'] * d['page_size'] < d['db_bytes']"
expect 0 wd stats
head -n 1 "$T/out" | grep -q '^KIND  *OBJECTS  *CHUNKS  *STORED  *RAW  *RATIO$' || fail "stats: table header"
grep -q '^total ' "$T/out" || fail "stats: total row"
grep -q '^database  repo.db ' "$T/out" || fail "stats: database line"

# ---- diff, checked against the folders read in Python.
expect 0 wd diff base ft --json
cp "$T/out" "$T/diff.json"
expect 0 wd -j 1 diff base ft --json
cmp -s "$T/out" "$T/diff.json" || fail "diff: -j 1 gives another result"
"$PY" - "$T/base" "$T/ft" "$T/diff.json" <<'EOF' || fail "diff disagrees with the folders"
import glob, json, math, os, struct, sys
def load(d):
    out = {}
    for f in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
        b = open(f, "rb").read()
        n = struct.unpack("<Q", b[:8])[0]
        for k, v in json.loads(b[8:8 + n]).items():
            if k != "__metadata__":
                s, e = v["data_offsets"]
                raw = b[8 + n + s:8 + n + e]
                h = struct.unpack("<%dH" % (len(raw) // 2), raw)
                out[k] = (h, [struct.unpack("<f", struct.pack("<I", x << 16))[0] for x in h])
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
d = {t["name"]: t for t in json.load(open(sys.argv[3]))["tensors"]}
assert set(d) == set(a), "tensor names"
changed = 0
for name, (ha, fa) in a.items():
    hb, fb = b[name]
    t = d[name]
    n = sum(x != y for x, y in zip(ha, hb))
    mx = max([abs(y - x) for x, y in zip(fa, fb)] + [0.0])
    num = math.sqrt(sum((y - x) ** 2 for x, y in zip(fa, fb)))
    den = math.sqrt(sum(x * x for x in fa))
    assert t["n_changed"] == n, (name, t["n_changed"], n)
    assert t["n_elements"] == len(ha)
    assert t["status"] == ("changed" if n else "same"), name
    assert t["max_abs_diff"] == mx, (name, t["max_abs_diff"], mx)
    assert abs(t["rel_norm"] - num / den) <= 1e-9 * max(1.0, num / den), (name, t["rel_norm"], num / den)
    changed += n > 0
assert changed > 5, changed
EOF
pycheck "$T/diff.json" '
f = {x["path"]: x for x in d["files"]}
assert f["config.json"]["status"] == "changed" and f["tokenizer.json"]["status"] == "same"
assert d["differ"] is True'
expect 0 wd diff base ft
head -n 1 "$T/out" | grep -q '^TENSOR  *CHANGE  *ELEMENTS  *MAX_DIFF  *REL_NORM$' || fail "diff: table header"
grep -q '^config.json  *changed' "$T/out" || fail "diff: config.json not listed as changed"
grep -q 'input_layernorm' "$T/out" && fail "diff: an unchanged tensor is listed"
grep -q '^diff .*: [0-9]* of 26 tensors and 1 of 5 files differ$' "$T/err" || fail "diff: summary line"
expect 1 wd diff base ft --exit-code
expect 1 wd diff base base2 --exit-code --json
pycheck "$T/out" '
assert all(t["status"] == "same" for t in d["tensors"])
assert [(f["path"], f["status"]) for f in d["files"] if f["status"] != "same"] == [("blob.bin", "only_b")]'
expect 0 wd diff base base --exit-code
[ -s "$T/out" ] && fail "diff of an object with itself printed something"
expect 0 wd diff base b32 --json
pycheck "$T/out" '
s = {t["name"]: t for t in d["tensors"]}
assert s["model.embed_tokens.weight"]["status"] == "retyped"
assert s["model.embed_tokens.weight"]["dtype_a"] == "BF16" and s["model.embed_tokens.weight"]["dtype_b"] == "F32"
assert s["model.layers.1.mlp.up_proj.weight"]["status"] == "only_a"
assert s["model.layers.1.mlp.up_proj.weight"]["dtype_b"] is None'
expect_fail_line wd diff base nosuchref

# ---- show: byte for byte, over several chunks; shards and unknown paths refused.
expect 0 wd show ft:config.json
cmp -s "$T/out" "$T/ft/config.json" || fail "show: config.json differs"
expect 0 wd show base2:blob.bin
cmp -s "$T/out" "$T/base2/blob.bin" || fail "show: a file of three chunks differs"
expect_fail_line wd show ft:model-00001-of-00002.safetensors
grep -q 'checkout ft OUT_DIR --only model-00001-of-00002.safetensors' "$T/err" || fail "show: shard message"
expect_fail_line wd show ft:nope.txt
grep -q "no file 'nope.txt'; its files: config.json, " "$T/err" || fail "show: unknown path lists no files"
expect_usage wd show ft

# ---- checkout --only and --dtype.
expect 0 wd checkout ft "$T/only1" --only config.json --only 'tokenizer*'
[ "$(ls "$T/only1" | tr '\n' ' ')" = "config.json tokenizer.json " ] || fail "--only wrote: $(ls "$T/only1")"
cmp -s "$T/only1/config.json" "$T/ft/config.json" && cmp -s "$T/only1/tokenizer.json" "$T/ft/tokenizer.json" ||
    fail "--only: files differ"
grep -q "2 of 5 files, 0 tensors, 0 B of weights, each file checked against its stored chunk ids" "$T/err" ||
    fail "--only: summary does not say what was verified"
expect 0 wd checkout ft "$T/only2" --only '*.safetensors'
[ "$(ls "$T/only2" | wc -l)" -eq 2 ] || fail "--only '*.safetensors' wrote $(ls "$T/only2")"
for f in "$T"/ft/*.safetensors; do cmp -s "$f" "$T/only2/${f##*/}" || fail "--only: ${f##*/} differs"; done
grep -q "2 of 5 files, 26 tensors, .* of weights, verified$" "$T/err" || fail "--only shards: not verified"
expect_usage wd checkout ft "$T/only3" --only config.json --only 'nomatch*'
grep -q "'nomatch\*' matches no file" "$T/err" || fail "--only: the glob matching nothing is not named"
[ -e "$T/only3" ] && fail "--only with a bad glob left OUT_DIR"
expect 0 wd checkout ft "$T/f32" --dtype float32
grep -q "written as float32, not verifiable against the model hash" "$T/err" || fail "--dtype: summary"
pycheck "$T/f32/model.safetensors.index.json" "
import glob, json, os, struct
total = 0
for f in glob.glob('$T/f32/*.safetensors'):
    b = open(f, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    total += sum(v['data_offsets'][1] - v['data_offsets'][0] for k, v in h.items() if k != '__metadata__')
    assert all(v['dtype'] == 'F32' for k, v in h.items() if k != '__metadata__')
assert d['metadata']['total_size'] == total, (d['metadata']['total_size'], total)
c = json.load(open('$T/f32/config.json'))
assert c['torch_dtype'] == 'float32', c['torch_dtype']"
cmp -s "$T/f32/tokenizer.json" "$T/ft/tokenizer.json" || fail "--dtype changed tokenizer.json"

# ---- sql: the views, JSON, refusals; the database is not written.
sum_before=$(cksum <"$REPO/repo.db")
expect 0 wd sql "SELECT * FROM objects LIMIT 0"
[ "$(cat "$T/out" | tr -s ' ')" = "id kind parent strategy options message created model_hash parent_model_hash n_tensors tensor_bytes new_bytes stored_bytes n_files folder_bytes max_rel_error names" ] ||
    fail "sql: objects columns: $(cat "$T/out")"
expect 0 wd sql --json "SELECT (SELECT count(*) FROM objects) AS o, (SELECT count(*) FROM names) AS n,
    (SELECT count(*) FROM tensors) AS t, (SELECT sum(n_tensors) FROM objects) AS t2,
    (SELECT count(*) FROM files) AS f, (SELECT count(*) FROM chunks) AS c,
    (SELECT count(*) FROM arrays) AS a, (SELECT sum(stored_size) FROM chunks) AS s,
    (SELECT names FROM objects WHERE strategy = 'sparse') AS sn,
    (SELECT parent FROM objects WHERE names = 'ft') AS p, x'00ff' AS b, NULL AS z"
pycheck "$T/out" "
s = json.load(open('$T/stats.json'))
r = d[0]
assert len(d) == 1 and r['o'] == 5 and r['n'] == 5 and r['t'] == r['t2'] and r['f'] == 24
assert r['c'] == s['n_chunks'] and r['s'] == s['stored_bytes'] and r['a'] > 0
assert r['sn'] == 'fts' and r['b'] == '00ff' and r['z'] is None
assert len(r['p']) == 64"
expect 0 wd sql "SELECT name, dtype, shape FROM tensors WHERE object = (SELECT object FROM names WHERE name = 'b32') ORDER BY name LIMIT 2"
[ "$(sed -n 2p "$T/out" | tr -s ' ')" = "model.embed_tokens.weight F32 [512,64]" ] || fail "sql: tensors row"
for q in "DELETE FROM chunk" "SELECT 1; SELECT 2" "ATTACH '$T/x.db' AS x" "PRAGMA journal_mode = DELETE" \
    "BEGIN" "SELECT load_extension('x')" "CREATE TEMP TABLE t(x)" ""; do
    expect_usage wd sql "$q"
done
[ -e "$T/x.db" ] && fail "sql: ATTACH created a file"
expect 0 wd sql "SELECT name FROM pragma_table_info('tensors') LIMIT 1 -- a comment"
[ "$(cksum <"$REPO/repo.db")" = "$sum_before" ] || fail "sql changed repo.db"
exit 0
