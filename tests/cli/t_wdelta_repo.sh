#!/bin/sh
# t_wdelta_repo.sh - .wdelta files through a repository: every fixture
# imports onto its base (chain-2 onto chain-1), exports byte for byte, and
# checks out to deltatensors' expected tensors (float32 bit for bit, bf16
# folders tensor for tensor); lossy commits reproduce deltatensors' results;
# bad files and missing bases are refused cleanly.
. tests/cli/lib.sh
CMP="python3 tests/cli/st_compare.py"
W=$WD_FIXTURES/wdelta
E=$WD_FIXTURES/expected

expect 0 wd init
expect 0 wd add-base "$MODELS/base-bf16" --name base
expect 0 wd add-base "$MODELS/base-f32" --name basef
"$WDREPO" -R "$REPO" log --json >"$T/log.before"

# A file whose base is not stored is refused, naming the hash; nothing changes.
expect_fail_line wd import "$W/v2/chain-2.wdelta"
grep -q "65b9e71d8dd1" "$T/err" || fail "missing-parent error does not name the hash"
for f in "$WD_FIXTURES"/bad/*.wdelta; do
    expect_fail_line wd import "$f"
done
# The checksum is checked beside the copy and the hash walk (-j 2), which
# start on the file before it is known good: its error still wins, and an
# unsorted index array that the walk reads before the copy refuses it gives
# the copy's error.
expect_fail_line wd -j 2 import "$WD_FIXTURES/bad/checksum-flip.wdelta"
grep -q "checksum mismatch" "$T/err" || fail "flipped byte: unexpected error: $(cat "$T/err")"
"$PY" tests/cli/wdelta_swap.py "$W/v2/sparse.wdelta" "$T/uns.wdelta" longest indices "$T/unsflip.wdelta" ||
    fail "cannot make a bad file"
expect_fail_line wd -j 2 import "$T/uns.wdelta"
grep -q "'model.layers.2.mlp.weight': indices\[1350\] = 13247 does not increase" "$T/err" ||
    fail "unsorted indices: unexpected error: $(cat "$T/err")"
expect_fail_line wd -j 2 import "$T/unsflip.wdelta"
grep -q "checksum mismatch" "$T/err" || fail "unsorted indices, flipped byte: unexpected error: $(cat "$T/err")"
"$WDREPO" -R "$REPO" log --json >"$T/log.after"
cmp -s "$T/log.before" "$T/log.after" || fail "a refused import changed the repository"

for v in v1 v2; do
    for f in "$W/$v"/*.wdelta; do
        b=$(basename "$f" .wdelta)
        expect 0 wd import "$f" --name "$v-$b"
        id=$(cat "$T/out")
        # Importing again stores nothing and gives the same id.
        expect 0 wd import "$f" --json
        python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(not (d["id"] == sys.argv[2] and d["new_bytes"] == 0 and d["already_present"]))' \
            "$T/out" "$id" || fail "re-import of $v/$b gave another id or stored bytes"
        expect 0 wd export "$v-$b" "$T/$v-$b.wdelta" --format-version "${v#v}"
        cmp "$T/$v-$b.wdelta" "$f" || fail "export of $v/$b is not byte-identical"
        expect 0 wd checkout "$v-$b" "$T/f32" --dtype float32
        $CMP "$T/f32" "$E/$b-$v.f32.safetensors" >"$T/cmp" || { cat "$T/cmp"; fail "$v/$b float32 output differs"; }
        rm -rf "$T/f32"
    done
done
# The chain hash of a lossy object is computed when a chain link needs it
# (importing chain-2 onto chain-1) and recorded then; an import does not
# compute it for every object up front.
expect 0 wd inspect "$W/v2/chain-2.wdelta" --json
want=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["parent_hash"])' "$T/out")
oid() { "$WDREPO" -R "$REPO" inspect "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }
chain1=$(oid v2-chain-1) && int4=$(oid v2-int4) || fail "cannot read ids"
python3 - "$REPO/repo.db" "$chain1" "$int4" "$want" <<'EOF' || fail "chain hashes not recorded as expected"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
f32 = lambda i: db.execute("SELECT f32_hash FROM object WHERE id = ?", (bytes.fromhex(i),)).fetchone()[0]
got = f32(sys.argv[2])
assert got is not None and got.hex() == sys.argv[4], ("chain-1", got)
assert f32(sys.argv[3]) is None, "int4: computed without need"
EOF

for b in int4 sparse; do
    expect 0 wd checkout "v2-$b" "$T/folder"
    $CMP "$T/folder" "$E/$b-v2-folder" >"$T/cmp" || { cat "$T/cmp"; fail "v2/$b bf16 folder differs"; }
    cmp "$T/folder/tokenizer.json" "$E/$b-v2-folder/tokenizer.json" || fail "tokenizer.json differs"
    rm -rf "$T/folder"
done

# Lossy commits encode like deltatensors: the reconstructions match the
# expected folders (lm_head.scale aside: deltatensors 0.3.0 cannot encode a
# 0-d bf16 tensor and passes it through; wdrepo encodes it).
expect 0 wd commit "$MODELS/ft-bf16" --on base --strategy int4 --name c-int4
expect 0 wd checkout c-int4 "$T/ci"
$CMP "$T/ci" "$E/int4-v2-folder" --skip lm_head.scale >"$T/cmp" || { cat "$T/cmp"; fail "commit int4 differs"; }
expect 0 wd inspect c-int4 --json
grep -q '"rel_error"' "$T/out" || fail "inspect shows no reconstruction error"
# Exported, re-imported: the same reconstruction.
expect 0 wd export c-int4 "$T/c-int4.wdelta"
expect 0 wd commit "$MODELS/ft-bf16" --on base --strategy sparse --name c-sparse
expect 0 wd checkout c-sparse "$T/cs" --dtype float32
# The constant-delta tensor has ties at the cut, where deltatensors'
# introselect picks other (equal) entries.
$CMP "$T/cs" "$E/sparse-v2.f32.safetensors" --skip lm_head.scale --skip model.layers.2.attn.bias >"$T/cmp" ||
    { cat "$T/cmp"; fail "commit sparse differs"; }
expect 0 wd commit "$MODELS/ft-bf16" --on base --strategy quantized --name c-quant
expect 0 wd checkout c-quant "$T/cq" --dtype float32
$CMP "$T/cq" "$E/quantized-v2.f32.safetensors" --skip lm_head.scale >"$T/cmp" || { cat "$T/cmp"; fail "commit quantized differs"; }

# A lossless delta exports only when asked to re-encode.
expect 0 wd commit "$MODELS/ft-bf16" --on base --name c-lossless
expect_fail_line wd export c-lossless "$T/x.wdelta"
[ -e "$T/x.wdelta" ] && fail "refused export left a file"
expect 0 wd export c-lossless "$T/x.wdelta" --strategy int4
grep -q "added error" "$T/err" || fail "re-encoding does not report its error"
# int4 (layout 2) as v1 re-encodes, and says so.
expect 0 wd export v2-int4 "$T/v1.wdelta" --format-version 1
grep -q "re-encoded" "$T/err" || fail "v1 export of layout-2 int4 does not say it re-encodes"
exit 0
