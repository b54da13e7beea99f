#!/bin/sh
# t_lowbit.sh - commit --strategy lowbit (issue 11): the same delta for any
# -j (and the id recorded below, so a change of the stored bytes is seen),
# checkout verifying the sealed model hash, fidelity per tensor, chains with
# and onto other lossy strategies, export re-encoding or refusing in one
# line, option errors, fsck, and damaged stored parameters and arrays
# refused with one line, never a crash. The embedding (1.28M elements) spans
# three pieces and two codec units.
. tests/cli/lib.sh

GEN=${WD_BUILD:?}/tools/gen_model
case $GEN in /*) ;; *) GEN=$PWD/$GEN ;; esac
"$GEN" --preset tiny --hidden 320 --vocab 2000 --layers 1 --seed 5 -q "$T/base" --finetune "$T/ft" \
    >/dev/null 2>&1 || fail "gen_model failed"

want_id=1da3b9ae82d4c63417003b7141c1ca2b34e1f1bd7a32e619abf1a19b358af529
for j in 1 3; do
    rm -rf "$REPO"
    expect 0 wd init
    expect 0 wd -q -j $j add-base "$T/base" --name base
    expect 0 wd -q -j $j commit "$T/ft" --on base --strategy lowbit --quality 2 --name lb
    id=$(cat "$T/out")
    [ $j = 1 ] && id1=$id
    [ "$id" = "$id1" ] || fail "-j $j: id $id, -j 1 gave $id1"
    [ "$id" = "$want_id" ] || note "-j $j: id $id, expected $want_id"
    [ "$id" = "$want_id" ] || fail "lowbit's stored bytes changed"
done
expect 0 wd -q checkout lb "$T/co"
# inspect: every float tensor lowbit, with its reconstruction error
expect 0 wd inspect lb --json
pycheck "$T/out" '
ts = d["tensors"]
assert all(t["encoding"] == "lowbit" for t in ts.values()), ts
for n, t in ts.items():
    # vectors (norms, biases) near-lossless, matrices coarser
    assert 0 <= t["rel_error"] < (0.01 if len(t["shape"]) == 1 else 0.5), (n, t)
assert d["strategy"] == "lowbit" and d["options"] == {"quality": 2}, (d["strategy"], d["options"])
'
# the default quality, and chains: lowbit on int4, int4 on lowbit, lowbit on lowbit
expect 0 wd -q commit "$T/ft" --on base --strategy int4 --name i4
expect 0 wd -q commit "$T/ft" --on i4 --strategy lowbit --name lb-on-i4
expect 0 wd -q commit "$T/ft" --on lb --strategy int4 --name i4-on-lb
expect 0 wd -q commit "$T/ft" --on lb --strategy lowbit --quality 1 --name lb-on-lb
for r in lb-on-i4 i4-on-lb lb-on-lb; do
    expect 0 wd -q checkout $r "$T/co-$r"
done
expect 0 wd fsck
# export: lowbit is wdrepo's own; re-encoding it is what works
expect_fail_line wd export lb "$T/lb.wdelta"
grep -q "lowbit.*--strategy" "$T/err" || fail "the refusal does not say how to re-encode"
expect 0 wd -q export lb "$T/lb.wdelta" --strategy int4
expect 0 wd -q export i4-on-lb "$T/i4.wdelta"
# option errors
expect_usage wd commit "$T/ft" --on base --strategy lowbit --quality 0.1
expect_usage wd commit "$T/ft" --on base --strategy lowbit --quality x
expect_usage wd commit "$T/ft" --on base --strategy int4 --quality 2
expect_usage wd save-delta "$T/base" "$T/ft" "$T/x.wdelta" --strategy lowbit

# Damage: each edit on its own copy of the repository (made by one python
# process); checkout must refuse in one line.
cp -R "$REPO" "$T/good"
Q="name = 'model.layers.0.self_attn.q_proj.weight'"
QA="tensor = 'model.layers.0.self_attn.q_proj.weight'"
"$PY" - "$T" <<PYEOF || fail "could not damage the repositories"
import shutil, sqlite3, sys
t = sys.argv[1]
edits = [
    "UPDATE tensor SET params = '{\"strategy\":\"lowbit\",\"seg\":1,\"step\":1065353216}' WHERE object = LB",
    "UPDATE tensor SET params = '{\"strategy\":\"lowbit\",\"seg\":320,\"step\":2143289344}' WHERE object = LB",
    "UPDATE tensor SET params = '{\"strategy\":\"lowbit\",\"seg\":320}' WHERE object = LB",
    "UPDATE tensor SET params = 'not json' WHERE object = LB",
    "UPDATE tensor_array SET count = count - 1 WHERE object = LB AND field = 'packed'",
    "UPDATE tensor_array SET count = count + 1 WHERE object = LB AND field = 'scales'",
    "UPDATE tensor_array SET dtype = 'float32' WHERE object = LB AND field = 'packed'",
    "UPDATE tensor_array SET chunks = substr(chunks, 1, 32) WHERE object = LB AND field = 'packed' AND count > 600000",
    "DELETE FROM tensor_array WHERE object = LB AND field = 'scales'",
    "UPDATE chunk SET data = zeroblob(length(data)) WHERE id IN (SELECT substr(chunks, 1, 32) FROM tensor_array WHERE object = LB AND field = 'packed' AND count > 600000)",
    # the low-rank part of q_proj (rank 8: gen_model's fine-tune is a rank-8 update plus noise)
    "UPDATE tensor SET params = json_set(params, '\$.rank', 40) WHERE object = LB AND $Q",
    "UPDATE tensor SET params = json_set(params, '\$.rank', 7) WHERE object = LB AND $Q",
    "UPDATE tensor SET params = json_remove(params, '\$.sa[0]') WHERE object = LB AND $Q",
    "UPDATE tensor SET params = json_set(params, '\$.sv', -1) WHERE object = LB AND $Q",
    "UPDATE tensor_array SET count = count - 1 WHERE object = LB AND $QA AND field = 'values'",
    "UPDATE tensor_array SET count = 0, chunks = x'' WHERE object = LB AND $QA AND field = 'indices'",
]
for i, e in enumerate(edits):
    d = "%s/bad%d" % (t, i)
    shutil.copytree(t + "/good", d)
    db = sqlite3.connect(d + "/repo.db")
    n = db.execute(e.replace("LB", "(SELECT object FROM name WHERE name = 'lb')")).rowcount
    assert n > 0, e
    db.commit()
    db.close()
PYEOF
i=0
while [ -d "$T/bad$i" ]; do
    expect_fail_line "$WDREPO" -R "$T/bad$i" checkout lb "$T/co-bad$i"
    i=$((i + 1))
done
[ $i = 16 ] || fail "expected 16 damaged repositories, made $i"
