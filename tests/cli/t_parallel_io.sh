#!/bin/sh
# t_parallel_io.sh - import and export run on the thread pool (array
# compression, the parent search, the new delta's hashes, re-encoding): -j 1,
# 2 and 5 import a .wdelta as the same object with the same hashes, export it
# byte for byte as the file that was imported, and re-encode (v1 int4,
# --strategy on a lossless delta) to the same bytes. The embedding (2.56M
# elements) spans several pieces, array chunks and codec units.
. tests/cli/lib.sh

GEN=${WD_BUILD:?}/tools/gen_model
case $GEN in /*) ;; *) GEN=$PWD/$GEN ;; esac
"$GEN" --preset tiny --hidden 320 --vocab 8000 --layers 2 --seed 5 -q "$T/base" --finetune "$T/ft" \
    >/dev/null 2>&1 || fail "gen_model failed"

for s in int4 sparse quantized; do
    expect 0 "$WDREPO" -q save-delta "$T/$s.wdelta" "$T/ft" "$T/base" --strategy $s
    for j in 1 2 5; do
        rm -rf "$REPO"
        expect 0 wd init
        expect 0 wd -q -j $j add-base "$T/base" --name base
        expect 0 wd -q -j $j import "$T/$s.wdelta" --name d
        id=$(cat "$T/out")
        expect 0 wd inspect d --json
        mh=$(py "$T/out" 'd["model_hash"]')
        if [ $j = 1 ]; then
            id1=$id
            mh1=$mh
        else
            [ "$id" = "$id1" ] || fail "$s -j $j: import id $id, with -j 1 $id1"
            [ "$mh" = "$mh1" ] || fail "$s -j $j: model hash $mh, with -j 1 $mh1"
        fi
        expect 0 wd -q -j $j export d "$T/$s-$j.wdelta"
        cmp -s "$T/$s.wdelta" "$T/$s-$j.wdelta" || fail "$s -j $j: export differs from the imported file"
        expect 0 wd -q -j $j export d "$T/$s-v1-$j.wdelta" --format-version 1
        [ $j = 1 ] || cmp -s "$T/$s-v1-1.wdelta" "$T/$s-v1-$j.wdelta" || fail "$s -j $j: v1 export differs"
        # checkout verifies the model hash the import recorded
        expect 0 wd -q -j $j checkout d "$T/co-$s-$j"
        expect 0 "$WDREPO" hash "$T/co-$s-$j"
        [ "$(cat "$T/out")" = "$mh" ] || fail "$s -j $j: checkout does not hash to the recorded model hash"
    done
done

# Re-encoding a lossless delta on the pool.
for j in 1 2 5; do
    rm -rf "$REPO"
    expect 0 wd init
    expect 0 wd -q -j $j add-base "$T/base" --name base
    expect 0 wd -q -j $j commit "$T/ft" --on base --name ll
    for s in int4 sparse quantized; do
        expect 0 wd -q -j $j export ll "$T/re-$s-$j.wdelta" --strategy $s
        [ $j = 1 ] || cmp -s "$T/re-$s-1.wdelta" "$T/re-$s-$j.wdelta" || fail "re-encode $s -j $j differs from -j 1"
    done
    # the re-encoded file imports onto the base it names
    expect 0 wd -q -j $j import "$T/re-int4-$j.wdelta"
done
echo "ok"
