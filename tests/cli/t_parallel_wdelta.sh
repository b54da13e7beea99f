#!/bin/sh
# t_parallel_wdelta.sh - save-delta encodes on the thread pool and
# load-delta decodes and writes pieces on it while hashing the base: -j 1,
# 2 and 5 write the same .wdelta and the same output folder, and those are
# the bytes the serial code of earlier releases wrote for this generated pair
# (SHA-256s recorded below). The embedding (2.56M elements) spans several
# codec chunks and load pieces, so pieces of one tensor go to several
# workers (sorted entries found by binary search).
. tests/cli/lib.sh

GEN=${WD_BUILD:?}/tools/gen_model
case $GEN in /*) ;; *) GEN=$PWD/$GEN ;; esac
"$GEN" --preset tiny --hidden 320 --vocab 8000 --layers 2 --seed 3 -q "$T/base" --finetune "$T/ft" \
    >/dev/null 2>&1 || fail "gen_model failed"
"$GEN" --preset tiny --hidden 320 --vocab 8000 --layers 2 --seed 3 --shards 2 -q "$T/sbase" \
    --finetune "$T/sft" >/dev/null 2>&1 || fail "gen_model failed"

sha() { sha256sum <"$1" | cut -c1-64; }

# check NAME FT BASE WDELTA_SHA OUT_SHA SAVE_ARGS -- LOAD_ARGS
check() {
    name=$1 ft=$2 base=$3 want_w=$4 want_o=$5
    shift 5
    save_args="" load_args=""
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do save_args="$save_args $1"; shift; done
    [ $# -gt 0 ] && shift
    load_args="$*"
    for j in 1 2 5; do
        # shellcheck disable=SC2086
        expect 0 "$WDREPO" -q -j $j save-delta "$T/$name-$j.wdelta" "$ft" "$base" $save_args
        [ "$(sha "$T/$name-$j.wdelta")" = "$want_w" ] || fail "$name -j $j: .wdelta differs from the serial writer's"
        [ $j = 1 ] || cmp -s "$T/$name-1.wdelta" "$T/$name-$j.wdelta" || fail "$name -j $j: .wdelta differs from -j 1"
        # shellcheck disable=SC2086
        expect 0 "$WDREPO" -q -j $j load-delta "$T/$name-1.wdelta" "$base" "$T/out-$name-$j" $load_args
        [ "$(sha "$T/out-$name-$j/model.safetensors")" = "$want_o" ] ||
            fail "$name -j $j: loaded weights differ from the serial loader's"
        [ $j = 1 ] || diff -r "$T/out-$name-1" "$T/out-$name-$j" >/dev/null ||
            fail "$name -j $j: load-delta folder differs from -j 1"
    done
}

check sparse-1 "$T/ft" "$T/base" 41ad353bc7e5ab8757c215ffa7211383ea3e2ad69fd5dc81ee67c4a5d7057884 \
    2a7992fa6c035f05cd345b0ea0c6fe461dc99902941076057bb404f63160a94d --strategy sparse --format-version 1
check quantized-1 "$T/ft" "$T/base" 0709899ee27c0de024555a617150a2faa285e922c8e2b3aadfefbbc270ec9dc3 \
    7eb23bc2b28cb069d2e55b6fb08ac88e34a570afd436e76e1fc82874a24d8753 --strategy quantized --format-version 1
check int4-1 "$T/ft" "$T/base" bbb1fe66ed949f49903a334ac0ee1062c4bd478958e6e4158eb02ecf21d2ddac \
    be7a7e80b4fd01d4371fa97601f22f1be84ca94ab9bd7961312412e2acbcb931 --strategy int4 --format-version 1
check sparse-2 "$T/ft" "$T/base" 5a6227592252b2418b574e95b6b0e64cdebe44fc9f8c654aa75c0c7d365b2d09 \
    2a7992fa6c035f05cd345b0ea0c6fe461dc99902941076057bb404f63160a94d --strategy sparse
check quantized-2 "$T/ft" "$T/base" f51cd220d1021db7f87776a424d7ae9b31c2394b7f9a981eab8a2727d38fbc43 \
    7eb23bc2b28cb069d2e55b6fb08ac88e34a570afd436e76e1fc82874a24d8753 --strategy quantized
check int4-2 "$T/ft" "$T/base" 49b52b740d3d529049a3f0260421038ba810ac54b3545feb9a4184428b6450e9 \
    715bdd97b6a7c34428d8c84699fc8e3ae2eebe3c78ae7f49b995b0e65fb5454f --strategy int4
# converted outputs (no raw copies), and a sharded pair
check int4-f32 "$T/ft" "$T/base" 49b52b740d3d529049a3f0260421038ba810ac54b3545feb9a4184428b6450e9 \
    5492347928b1087240ba730fb3993bb77c75425da9ea9d7e2f025548945c29f6 --strategy int4 -- --dtype float32
check shards "$T/sft" "$T/sbase" bbb1fe66ed949f49903a334ac0ee1062c4bd478958e6e4158eb02ecf21d2ddac \
    213410591e8583d909843d7cfb2bab20d784890ecd32c33cfaca2c2c4d72e029 --strategy int4 --format-version 1 \
    -- --dtype float16

# a wrong base still fails before anything is kept, and with the old message
expect 1 "$WDREPO" -q -j 5 load-delta "$T/int4-2-1.wdelta" "$T/ft" "$T/wrong"
grep -q "wrong base" "$T/err" || fail "wrong base: unhelpful error: $(cat "$T/err")"
[ ! -e "$T/wrong" ] || fail "wrong base: an output folder was left"
# A well-formed file (valid checksum) whose embedding's sorted index array
# has two entries swapped: the pieces find their entries by binary search,
# and the error is still the serial reader's, naming the first bad entry.
for s in int4 sparse; do
    python3 tests/cli/wdelta_swap.py "$T/$s-2-1.wdelta" "$T/bad-$s.wdelta" longest indices,outlier_idx ||
        fail "cannot make a bad file"
    expect_fail_line "$WDREPO" -j 5 load-delta "$T/bad-$s.wdelta" "$T/base" "$T/bad"
    grep -q "model.embed_tokens.weight': [a-z_]*\[[0-9]*\] = [0-9]* does not increase" "$T/err" ||
        fail "$s: unsorted indices: unexpected error: $(cat "$T/err")"
    [ ! -e "$T/bad" ] || fail "$s: a failed load-delta left its output"
done
# The file's checksum is checked on a thread while the output is made: a
# flipped data byte (the file parses) still fails with the checksum error,
# also when the base is wrong too, and nothing is kept.
python3 -c '
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[len(b) - 100] ^= 1
open(sys.argv[2], "wb").write(b)' "$T/int4-2-1.wdelta" "$T/flip.wdelta" || fail "cannot make a bad file"
for base in "$T/base" "$T/ft"; do
    expect_fail_line "$WDREPO" -j 5 load-delta "$T/flip.wdelta" "$base" "$T/bad"
    grep -q "checksum mismatch" "$T/err" || fail "flipped byte: unexpected error: $(cat "$T/err")"
    [ ! -e "$T/bad" ] || fail "flipped byte: a failed load-delta left its output"
done
# A float32 pair (9.4 MB): the verification hashes the base pieces the
# workers read, a batch of at most 8 MiB behind them, so this load runs in
# two batches (sorted entries found by interpolation over skewed
# embedding rows); same bytes as the loader that read the base twice, and
# a bad entry in the last tensor (a later batch) still loses to a wrong
# base, whose hash is completed from the files.
"$GEN" --preset tiny --hidden 320 --vocab 5000 --layers 2 --seed 3 --dtype f32 -q "$T/fbase" \
    --finetune "$T/fft" >/dev/null 2>&1 || fail "gen_model failed"
expect 0 "$WDREPO" -q save-delta "$T/f.wdelta" "$T/fft" "$T/fbase" --strategy sparse
expect 0 "$WDREPO" -q -j 5 load-delta "$T/f.wdelta" "$T/fbase" "$T/fout"
[ "$(sha "$T/fout/model.safetensors")" = 9e130cf85cbe0b31f2ffb1cc27d2ef48c63e3fb3efd608756b0a7101c41e53b5 ] ||
    fail "float32 pair: loaded weights differ from the two-read loader's"
"$PY" tests/cli/wdelta_swap.py "$T/f.wdelta" "$T/fbad.wdelta" last indices || fail "cannot make a bad file"
expect_fail_line "$WDREPO" -j 5 load-delta "$T/fbad.wdelta" "$T/fbase" "$T/bad"
grep -q "model.norm.weight': indices\[16\] = 15 does not increase" "$T/err" ||
    fail "float32 pair: unsorted last indices: unexpected error: $(cat "$T/err")"
expect_fail_line "$WDREPO" -j 5 load-delta "$T/fbad.wdelta" "$T/fft" "$T/bad"
grep -q "wrong base" "$T/err" || fail "float32 pair: bad entry and wrong base: $(cat "$T/err")"
[ ! -e "$T/bad" ] || fail "float32 pair: a failed load-delta left its output"
echo "ok"
