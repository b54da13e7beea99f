#!/bin/sh
# t_sparse_chunks.sh - a sparse commit's index and value arrays are gathered
# into 1 MiB chunks and compressed on the pool (lossy_encode.c): the chunks,
# and so the ids, are those the serial writer of earlier releases cut
# (recorded below). The embedding has 2^20 elements, so at sparsity 0 its
# arrays are exactly 8 and 4 chunks and at 0.5 exactly 4 and 2 (a gather
# that fills all its slots with nothing left over); the norms' arrays are
# shorter than a chunk. -j 1 has 2 slots an array, -j 5 six.
. tests/cli/lib.sh

GEN=${WD_BUILD:?}/tools/gen_model
case $GEN in /*) ;; *) GEN=$PWD/$GEN ;; esac
"$GEN" --preset tiny --hidden 256 --vocab 4096 --intermediate 256 --layers 1 --seed 5 -q "$T/base" \
    --finetune "$T/ft" >/dev/null 2>&1 || fail "gen_model failed"

for j in 1 5; do
    rm -rf "$REPO"
    expect 0 wd init
    expect 0 wd -q -j $j add-base "$T/base" --name base
    for s in 0 0.5; do
        case $s in
        0) want=02b4f58c983f479fd6e9839063382cba050a6ec591d48611358ad2c245d46d54 ;;
        0.5) want=80a227d5bb8f5d6a85bcaa6adcad8b3810069610817edec689606bb7fe5dfd35 ;;
        esac
        expect 0 wd -q -j $j commit "$T/ft" --on base --strategy sparse --sparsity $s
        [ "$(cat "$T/out")" = "$want" ] || fail "sparsity $s -j $j: id $(cat "$T/out"), expected $want"
    done
done
# checkout verifies the model hash sealed at commit
expect 0 wd -q checkout 80a227d5bb8f "$T/co"
echo "ok"
