#!/bin/sh
# t_export_dtypes.sh - export of a delta whose fine-tune and parent differ in
# dtype (bf16 over f32 and f32 over bf16), with a tensor spanning several
# pieces on both sides: the re-encoded .wdelta holds exactly the float32
# delta f32(ft) - f32(parent), names the parent's dtype as base_dtype,
# equals what save-delta writes from the folders, and reconstructs. A
# reshaped tensor with the same element count is left out, not encoded
# against the parent's differently shaped values.
. tests/cli/lib.sh

GEN=${WD_BUILD:?}/tools/gen_model
case $GEN in /*) ;; *) GEN=$PWD/$GEN ;; esac
[ -x "$GEN" ] || fail "$GEN is not built (make all builds it)"

# model.embed_tokens.weight is 10000 x 64 = 640000 elements: 3 pieces as f32
# (262144 a piece), 2 as bf16 (524288 a piece), so the pieces of the two
# sides never line up. gen_model's values do not depend on the dtype.
for dt in f32 bf16; do
    "$GEN" --preset tiny --vocab 10000 --dtype $dt --seed 11 -q "$T/base-$dt" --finetune "$T/ft-$dt" \
        >"$T/out" 2>"$T/err" || fail "gen_model --dtype $dt failed"
done

# The bug made one direction loop forever: a guard, not a time measurement.
guard() {
    if command -v timeout >/dev/null 2>&1; then timeout 600 "$@"; else "$@"; fi
}

# check_wdelta FILE FT_DIR BASE_DIR: every tensor's sparse arrays are the top
# k = max(1, floor(n * 0.1)) of |f32(ft) - f32(base)|, values exact, and
# base_dtype is the base's dtype. Python's double arithmetic rounded once to
# float32 is the float32 result for a subtraction (53 >= 2 x 24 + 2).
check_wdelta() {
    python3 - "$1" "$2/model.safetensors" "$3/model.safetensors" <<'EOF' || fail "$1 is not the exact delta"
import json, struct, sys

def load_st(path):
    b = open(path, "rb").read()
    n = struct.unpack_from("<Q", b)[0]
    out = {}
    for k, v in json.loads(b[8:8 + n]).items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        raw = b[8 + n + s:8 + n + e]
        if v["dtype"] == "F32":
            vals = struct.unpack("<%df" % (len(raw) // 4), raw)
        elif v["dtype"] == "BF16":
            vals = struct.unpack("<%df" % (len(raw) // 2),
                                 b"".join(b"\0\0" + raw[i:i + 2] for i in range(0, len(raw), 2)))
        else:
            continue
        out[k] = (v["dtype"], v["shape"], vals)
    return out

def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]

b = open(sys.argv[1], "rb").read()
assert b[:7] == b"wdelta\0", "magic"
ver, hl = struct.unpack_from("<II", b, 7)
assert ver == 2, ver
hdr = json.loads(b[15:15 + hl])
pos, end = 15 + hl, len(b) - 32
rec = {}
while pos < end:
    parts = []
    for _ in range(3):
        (ln,) = struct.unpack_from("<I", b, pos)
        parts.append(b[pos + 4:pos + 4 + ln].decode())
        pos += 4 + ln
    (nd,) = struct.unpack_from("<I", b, pos)
    pos += 4 + 8 * nd
    (dl,) = struct.unpack_from("<Q", b, pos)
    rec[(parts[0], parts[1])] = (parts[2], b[pos + 8:pos + 8 + dl])
    pos += 8 + dl
ft, base = load_st(sys.argv[2]), load_st(sys.argv[3])
npy = {"F32": "float32", "BF16": "bfloat16"}
assert sorted(hdr["tensors"]) == sorted(ft), "tensor set"
big = 0
for name, ent in hdr["tensors"].items():
    fdt, shape, fv = ft[name]
    bdt, _, bv = base[name]
    assert ent["shape"] == shape, (name, ent["shape"], shape)
    assert ent["dtype"] == "float32", (name, ent["dtype"])
    assert ent["base_dtype"] == npy[bdt], (name, ent["base_dtype"], bdt)
    n = len(fv)
    big = max(big, n)
    d = [f32(x - y) for x, y in zip(fv, bv)]
    it, idx = rec[(name, "indices")]
    vt, val = rec[(name, "values")]
    assert (it, vt) == ("int64", "float32"), (it, vt)
    idx = struct.unpack("<%dq" % (len(idx) // 8), idx)
    val = struct.unpack("<%df" % (len(val) // 4), val)
    k = max(1, int(n * (1 - 0.9)))
    assert len(idx) == k == len(val), (name, len(idx), k)
    assert list(idx) == sorted(set(idx)) and 0 <= idx[0] and idx[-1] < n, name
    for i, v in zip(idx, val):
        assert v == d[i], (name, i, v, d[i])
    chosen = set(idx)
    lo = min(abs(d[i]) for i in idx)
    hi = max((abs(x) for i, x in enumerate(d) if i not in chosen), default=0)
    assert lo >= hi, (name, lo, hi)
assert big >= 600000, big
EOF
}

# check_f32 DIR FILE BASE_DIR: DIR (float32 tensors) is BASE plus FILE's
# sparse delta, float32 arithmetic; untouched positions keep the base bits.
check_f32() {
    python3 - "$1" "$2" "$3/model.safetensors" <<'EOF' || fail "$1 is not base + delta"
import glob, json, os, struct, sys

def tensors(path, widen):
    b = open(path, "rb").read()
    n = struct.unpack_from("<Q", b)[0]
    out = {}
    for k, v in json.loads(b[8:8 + n]).items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        raw = b[8 + n + s:8 + n + e]
        if v["dtype"] == "BF16" and widen:
            raw = b"".join(b"\0\0" + raw[i:i + 2] for i in range(0, len(raw), 2))
        elif v["dtype"] != "F32":
            continue
        out[k] = raw
    return out

b = open(sys.argv[2], "rb").read()
hl = struct.unpack_from("<I", b, 11)[0]
pos, end = 15 + hl, len(b) - 32
rec = {}
while pos < end:
    parts = []
    for _ in range(3):
        (ln,) = struct.unpack_from("<I", b, pos)
        parts.append(b[pos + 4:pos + 4 + ln].decode())
        pos += 4 + ln
    (nd,) = struct.unpack_from("<I", b, pos)
    pos += 4 + 8 * nd
    (dl,) = struct.unpack_from("<Q", b, pos)
    rec[(parts[0], parts[1])] = b[pos + 8:pos + 8 + dl]
    pos += 8 + dl
got = {}
for f in glob.glob(os.path.join(sys.argv[1], "*.safetensors")):
    got.update(tensors(f, False))
base = tensors(sys.argv[3], True)
names = {k[0] for k in rec}
for name in names:
    exp = bytearray(base[name])
    idx = struct.unpack("<%dq" % (len(rec[(name, "indices")]) // 8), rec[(name, "indices")])
    val = struct.unpack("<%df" % (len(rec[(name, "values")]) // 4), rec[(name, "values")])
    for i, v in zip(idx, val):
        (x,) = struct.unpack_from("<f", exp, 4 * i)
        struct.pack_into("<f", exp, 4 * i, x + v)
    assert got[name] == bytes(exp), name
EOF
}

expect 0 wd init
for dt in f32 bf16; do
    expect 0 wd -q add-base "$T/base-$dt" --name "base-$dt"
done
# up: a bf16 fine-tune of the f32 base; down: an f32 fine-tune of the bf16 one.
expect 0 wd -q commit "$T/ft-bf16" --on base-f32 --name up
expect 0 wd -q commit "$T/ft-f32" --on base-bf16 --name down

for pair in up:bf16:f32 down:f32:bf16; do
    ref=${pair%%:*}
    rest=${pair#*:}
    ftd=${rest%%:*}
    bd=${rest#*:}
    note "$ref: $ftd fine-tune over a $bd base"
    expect 0 guard "$WDREPO" -R "$REPO" export "$ref" "$T/$ref.wdelta" --strategy sparse
    check_wdelta "$T/$ref.wdelta" "$T/ft-$ftd" "$T/base-$bd"
    # The folder path encodes the same input: the same bytes.
    expect 0 "$WDREPO" save-delta "$T/sd-$ref.wdelta" "$T/ft-$ftd" "$T/base-$bd" --strategy sparse
    cmp "$T/$ref.wdelta" "$T/sd-$ref.wdelta" || fail "$ref: export and save-delta disagree"
    # Imported onto its base, it checks out as base + delta.
    expect 0 wd import "$T/$ref.wdelta" --name "imp-$ref"
    expect 0 wd checkout "imp-$ref" "$T/co-$ref" --dtype float32
    check_f32 "$T/co-$ref" "$T/$ref.wdelta" "$T/base-$bd"
    expect 0 "$WDREPO" load-delta "$T/$ref.wdelta" "$T/base-$bd" "$T/ld-$ref"
    # The other strategies take the same path through the exact delta.
    for s in quantized int4; do
        expect 0 guard "$WDREPO" -R "$REPO" export "$ref" "$T/$ref-$s.wdelta" --strategy $s
        expect 0 "$WDREPO" save-delta "$T/sd-$ref-$s.wdelta" "$T/ft-$ftd" "$T/base-$bd" --strategy $s
        cmp "$T/$ref-$s.wdelta" "$T/sd-$ref-$s.wdelta" || fail "$ref: $s export and save-delta disagree"
    done
done

# a: [2,3] -> [3,2] (same element count, committed whole); b changes in place.
mkdir -p "$T/rs-base" "$T/rs-ft"
python3 - "$T" <<'EOF' || fail "cannot write the reshape models"
import json, struct, sys
def write(path, tensors):
    hdr, data = {}, b""
    for name, (shape, vals) in tensors.items():
        raw = struct.pack("<%df" % len(vals), *vals)
        hdr[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + data)
write(sys.argv[1] + "/rs-base/model.safetensors", {"a": ([2, 3], [1, 2, 3, 4, 5, 6]), "b": ([4], [1, 1, 1, 1])})
write(sys.argv[1] + "/rs-ft/model.safetensors", {"a": ([3, 2], [1, 2, 3, 4, 5, 7]), "b": ([4], [1, 1.5, 1, 1])})
EOF
expect 0 wd -q add-base "$T/rs-base" --name rs-base
expect 0 wd -q commit "$T/rs-ft" --on rs-base --name rs-ft
expect 0 wd export rs-ft "$T/rs.wdelta" --strategy sparse
expect 0 "$WDREPO" inspect "$T/rs.wdelta" --json
pycheck "$T/out" 'assert sorted(d["tensors"]) == ["b"], sorted(d["tensors"]); assert d["tensors"]["b"]["base_dtype"] == "float32"'
expect 0 "$WDREPO" load-delta "$T/rs.wdelta" "$T/rs-base" "$T/rs-out"
exit 0
