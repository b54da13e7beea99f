#!/bin/sh
# t_wdelta_files.sh - save-delta / load-delta / inspect on .wdelta files with no
# repository: every fixture reconstructs onto its base to deltatensors'
# expected float32 tensors (chain-2 onto chain-1's float32 output) and bf16
# folders; save-delta on the fixture models gives deltatensors' parent_hash and
# arrays; bad files, wrong bases and usage errors are refused cleanly.
. tests/cli/lib.sh
CMP="python3 tests/cli/st_compare.py"
W=$WD_FIXTURES/wdelta
E=$WD_FIXTURES/expected
BF=$MODELS/base-bf16

# Nothing may be left beside an output folder after a failure.
no_leftovers() {
    ls -A "$T" | grep -q 'wdrepo-tmp' && fail "a temporary folder was left in $T after $1"
    return 0
}

# ---- help and usage ---------------------------------------------------------
for c in save-delta load-delta; do
    expect 0 "$WDREPO" "$c" -h
    grep -q "^usage: wdrepo $c" "$T/out" || fail "$c -h does not print its usage on stdout"
done
expect_usage "$WDREPO" load-delta "$W/v2/int4.wdelta" "$BF"
expect_usage "$WDREPO" load-delta "$W/v2/int4.wdelta" "$BF" "$T/o" --dtype int8
expect_usage "$WDREPO" save-delta "$T/x.wdelta" "$MODELS/ft-bf16" "$BF" --strategy lossless
expect_usage "$WDREPO" save-delta "$T/x.wdelta" "$MODELS/ft-bf16" "$BF" --sparsity 1
expect_usage "$WDREPO" save-delta "$T/x.wdelta" "$MODELS/ft-bf16" "$BF" --sparsity 0.5 --strategy int4
expect_usage "$WDREPO" save-delta "$T/x.wdelta" "$MODELS/ft-bf16" "$BF" --strategy int4 --outlier-fraction 0
expect_usage "$WDREPO" save-delta "$T/x.wdelta" "$MODELS/ft-bf16" "$BF" --format-version 3
[ -e "$T/x.wdelta" ] && fail "a refused save-delta wrote a file"

# ---- load-delta: every fixture onto its base, as float32 --------------------
for v in v1 v2; do
    for f in "$W/$v"/*.wdelta; do
        b=$(basename "$f" .wdelta)
        base=$BF
        case $b in *f32-mem) base=$MODELS/base-f32 ;; chain-2) continue ;; esac
        expect 0 "$WDREPO" load-delta "$f" "$base" "$T/f32" --dtype float32
        [ -s "$T/out" ] && fail "load-delta wrote to stdout"
        grep -q "base verified" "$T/err" || fail "$v/$b: no verification reported"
        $CMP "$T/f32" "$E/$b-$v.f32.safetensors" >"$T/cmp" || { cat "$T/cmp"; fail "$v/$b float32 output differs"; }
        # integer tensors keep their dtype (deltatensors does the same)
        python3 -c 'import json,struct,sys; b=open(sys.argv[1],"rb").read(); h=json.loads(b[8:8+struct.unpack("<Q",b[:8])[0]]); sys.exit(h["model.position_ids"]["dtype"]!="I64")' \
            "$T/f32/model.safetensors" || fail "$v/$b: the I64 tensor changed dtype"
        rm -rf "$T/f32"
    done
done

# The chain: link 2's parent_hash is the float32 model after link 1, which a
# float32 folder of that model verifies; the plain base folder cannot.
expect 0 "$WDREPO" -q load-delta "$W/v2/chain-1.wdelta" "$BF" "$T/chain1" --dtype float32
expect 0 "$WDREPO" load-delta "$W/v2/chain-2.wdelta" "$T/chain1" "$T/chain2" --dtype float32
$CMP "$T/chain2" "$E/chain-2-v2.f32.safetensors" >"$T/cmp" || { cat "$T/cmp"; fail "chain-2 output differs"; }
expect_fail_line "$WDREPO" load-delta "$W/v2/chain-2.wdelta" "$BF" "$T/chain2b"
grep -q "wrong base.*65b9e71d8dd1.*chain link.*--no-verify" "$T/err" || fail "chain-2 on the base: unhelpful error: $(cat "$T/err")"
[ -e "$T/chain2b" ] && fail "a refused load-delta left its output"
no_leftovers "a refused chain link"
expect 0 "$WDREPO" load-delta "$W/v2/chain-2.wdelta" "$BF" "$T/chain2b" --no-verify
grep -q "not verified" "$T/err" || fail "--no-verify is not reported"

# ---- load-delta without --dtype: deltatensors' bf16 folders, file for file ---
for b in sparse int4; do
    expect 0 "$WDREPO" -q load-delta "$W/v2/$b.wdelta" "$BF" "$T/folder-$b"
    same_tree "$E/$b-v2-folder" "$T/folder-$b"
done
# An output dtype rewrites config.json as Python's json.dump(indent=2) does.
expect 0 "$WDREPO" -q load-delta "$W/v2/int4.wdelta" "$BF" "$T/f16" --dtype float16
python3 - "$BF/config.json" "$T/want.json" <<'EOF'
import json, sys
cfg = json.load(open(sys.argv[1], encoding="utf-8"))
cfg["torch_dtype"] = "float16"
open(sys.argv[2], "w", encoding="utf-8").write(json.dumps(cfg, indent=2) + "\n")
EOF
cmp "$T/want.json" "$T/f16/config.json" || fail "config.json not rewritten as deltatensors does"
cmp "$BF/tokenizer.json" "$T/f16/tokenizer.json" || fail "tokenizer.json not copied"
[ -e "$T/f16/model.safetensors.index.json" ] && fail "the base's shard index was copied"

# A non-empty output folder is refused, then replaced with --force.
expect_fail_line "$WDREPO" load-delta "$W/v2/sparse.wdelta" "$BF" "$T/folder-int4"
grep -q "not empty" "$T/err" || fail "no 'not empty' in: $(cat "$T/err")"
same_tree "$E/int4-v2-folder" "$T/folder-int4"
expect 0 "$WDREPO" -q load-delta "$W/v2/sparse.wdelta" "$BF" "$T/folder-int4" --force
same_tree "$E/sparse-v2-folder" "$T/folder-int4"
no_leftovers "load-delta --force"

# ---- wrong base, bad files --------------------------------------------------
expect_fail_line "$WDREPO" load-delta "$W/v2/int4.wdelta" "$MODELS/ft-bf16" "$T/wrong"
grep -q "wrong base.*0c18befee99d" "$T/err" || fail "wrong base: unhelpful error: $(cat "$T/err")"
expect_fail_line "$WDREPO" load-delta "$W/v2/int4-f32-mem.wdelta" "$BF" "$T/wrong"
[ -e "$T/wrong" ] && fail "a refused load-delta left its output"
for f in "$WD_FIXTURES"/bad/*.wdelta; do
    expect_fail_line "$WDREPO" inspect "$f"
    expect_fail_line "$WDREPO" inspect "$f" --json
    expect_fail_line "$WDREPO" load-delta "$f" "$BF" "$T/bad" --no-verify
    [ -e "$T/bad" ] && fail "load-delta of $(basename "$f") left its output"
done
no_leftovers "bad files"
expect_fail_line "$WDREPO" save-delta "$T/x.wdelta" "$MODELS/ft-bf16" "$T/does-not-exist"
[ -e "$T/x.wdelta" ] && fail "a failed save-delta left its output"

# ---- inspect FILE.wdelta --json: deltatensors' inspect() fields -------------
for f in "$W"/v1/*.wdelta "$W"/v2/*.wdelta; do
    rel=${f#"$WD_FIXTURES"/}
    expect 0 "$WDREPO" inspect "$f" --json
    pycheck "$T/out" '
import os
rel = "'"$rel"'"
facts = h["wdelta"][rel]
assert d["path"].endswith(rel), d["path"]
assert d["size"] == facts["size"] and d["size_mb"] == round(facts["size"] / 1e6, 2), d
assert d["version"] == facts["version"] and d["strategy"] == facts["strategy"], d
assert d["parent_hash"] == facts["parent_hash"] and d["n_tensors"] == facts["n_tensors"], d
assert len(d["tensors"]) == d["n_tensors"]
base = h["models"][facts.get("base", "models/base-bf16").split("/")[-1]]
for name, t in d["tensors"].items():
    want = {"BF16": "bfloat16", "F32": "float32", "I64": "int64"}[base["dtypes"][name]]
    assert t["dtype"] == (want if d["version"] == 2 else "float32"), (name, t)
    assert isinstance(t["shape"], list) and t["strategy"] == d["strategy"], (name, t)
    assert sum(a["bytes"] for a in t["arrays"].values()) == t["nbytes"], (name, t)
'
done
expect 0 "$WDREPO" inspect "$W/v2/sparse.wdelta"
grep -q "model.layers.2.mlp.weight .*bfloat16 .*\[3,9000\] .*sparse" "$T/out" || fail "inspect table lacks a tensor line"

# ---- save-delta on the fixture models ---------------------------------------
# deltatensors left out what it crashed on (the 0-d bf16 scalar in 0.3.0,
# tensors under 2 elements in 0.2.0's int4); wdrepo encodes them, so these
# files name every tensor (quantized: all but the empty one) and their
# parent_hash covers that set. v1 hashes in 0.2.0's shard-grouped order.
hash_of() { # folder order-file: SHA-256 over the named tensors in that order
    python3 - "$1" "$2" <<'EOF'
import glob, hashlib, json, os, struct, sys
t = {}
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*.safetensors"))):
    b = open(f, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    for k, v in json.loads(b[8:8 + n]).items():
        if k != "__metadata__":
            t[k] = b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]
h = hashlib.sha256()
for name in json.load(open(sys.argv[2], encoding="utf-8")):
    h.update(name.encode("utf-8")); h.update(t[name])
print(h.hexdigest())
EOF
}
identical=""
for spec in "sparse:0.9:2:sparse" "sparse:0.5:2:sparse-s05" "quantized:-:2:quantized" \
    "int4:0.01:2:int4" "int4:0.05:2:int4-o05" "sparse:0.9:1:sparse" "quantized:-:1:quantized" \
    "int4:0.01:1:int4"; do
    IFS=: read -r s x v b <<EOF
$spec
EOF
    case $s in sparse) opt="--sparsity $x" ;; int4) opt="--outlier-fraction $x" ;; *) opt= ;; esac
    out=$T/save-$b-v$v.wdelta
    expect 0 "$WDREPO" save-delta "$out" "$MODELS/ft-bf16" "$BF" --strategy "$s" $opt --format-version "$v"
    ph=$(cat "$T/out")
    expect 0 "$WDREPO" inspect "$out" --json
    [ "$(py "$T/out" 'd["parent_hash"]')" = "$ph" ] || fail "save-delta printed another hash than the file holds"
    n=$(py "$T/out" 'd["n_tensors"]')
    if [ "$s" = quantized ]; then [ "$n" = 12 ] || fail "$b v$v: $n tensors, want 12"; else [ "$n" = 13 ] || fail "$b v$v: $n tensors, want 13"; fi
    if [ "$v" = 2 ]; then
        py "$T/out" 'json.dumps(sorted(d["tensors"]))' >"$T/order.json"
    else
        # 0.2.0's order for this layout (README "Hash rules"), as in v1/sparse.wdelta
        python3 -c 'import json,sys; h=json.load(open(sys.argv[1])); o=h["wdelta"]["wdelta/v1/sparse.wdelta"]["hash_order"]; d=json.load(open(sys.argv[2])); print(json.dumps([n for n in o if n in d["tensors"]]))' \
            "$WD_FIXTURES/hashes.json" "$T/out" >"$T/order.json"
    fi
    [ "$(hash_of "$BF" "$T/order.json")" = "$ph" ] || fail "$b v$v: parent_hash $ph is not the base's hash over the file's tensors"
    # The arrays deltatensors would write: the reconstruction equals the
    # fixture's except in the degenerate tensors (ties in |delta|) and the
    # tensors only wdrepo encodes.
    expect 0 "$WDREPO" -q load-delta "$out" "$BF" "$T/mine" --dtype float32
    $CMP "$T/mine" "$E/$b-v$v.f32.safetensors" --skip model.layers.10.attn.k_proj.weight \
        --skip model.layers.2.attn.bias --skip model.position_ids >"$T/cmp" ||
        { cat "$T/cmp"; fail "save-delta $b v$v reconstructs differently from deltatensors' file"; }
    rm -rf "$T/mine"
    cmp -s "$out" "$W/v$v/$b.wdelta" && identical="$identical v$v/$b"
done
# With the same tensor set and no tie, the file is deltatensors' byte for byte.
case "$identical" in *v1/quantized*) ;; *) fail "save-delta quantized v1 is not byte-identical to deltatensors'" ;; esac
note "byte-identical to deltatensors' files:$identical"

# The same names are required (deltatensors: "Key mismatch").
mkdir "$T/half" && cp "$MODELS/ft2-bf16/config.json" "$T/half/"
python3 - "$MODELS/ft2-bf16/model.safetensors" "$T/half/model.safetensors" <<'EOF'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
keep = {k: v for k, v in h.items() if k in ("__metadata__", "model.layers.0.norm.weight")}
s, e = keep["model.layers.0.norm.weight"]["data_offsets"]
keep["model.layers.0.norm.weight"]["data_offsets"] = [0, e - s]
hb = json.dumps(keep, separators=(",", ":")).encode()
hb += b" " * (-len(hb) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(hb)) + hb + b[8 + n + s:8 + n + e])
EOF
expect_fail_line "$WDREPO" save-delta "$T/x.wdelta" "$T/half" "$BF"
grep -q "key mismatch" "$T/err" || fail "no key mismatch reported: $(cat "$T/err")"
[ -e "$T/x.wdelta" ] && fail "a failed save-delta left its output"
ls -A "$T" | grep -q '\.wdelta\.' && fail "a failed save-delta left a temporary file"
exit 0
