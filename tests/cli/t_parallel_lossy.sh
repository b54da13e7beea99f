#!/bin/sh
# t_parallel_lossy.sh - lossy commits run their codec passes and their seal on
# the thread pool: -j 1, 2 and 5 store the same delta (same id, same model
# hash, same exported .wdelta), and those are the ids and hashes the serial
# encoder of earlier releases produced for this generated pair (recorded
# below), so the refactor changed no byte. The embedding (2.56M elements)
# spans several pieces and codec units.
. tests/cli/lib.sh

GEN=${WD_BUILD:?}/tools/gen_model
case $GEN in /*) ;; *) GEN=$PWD/$GEN ;; esac
"$GEN" --preset tiny --hidden 320 --vocab 8000 --layers 2 --seed 3 -q "$T/base" --finetune "$T/ft" \
    >/dev/null 2>&1 || fail "gen_model failed"

expect 0 wd init
expect 0 wd -q add-base "$T/base" --name base
for s in sparse quantized int4; do
    case $s in
    sparse) want_id=e62ff7dee824f30980af2977386b4bfee68aa89aa167b8715dd0a5544d9b8b2b
            want_mh=aefd710a408f08de8424f8b1c758aa773939e8aa971934f7a3b26d6e00397277 ;;
    quantized) want_id=b0952d94e711b02d80d127dbabc19b750caec153f1181537bc4a5aff49521eef
            want_mh=d2c1ef5971c7416728cc82b73f502f713a0e488d65c78db7d3501024b08883ae ;;
    int4) want_id=b463cd3590a67845b5554cc884d902cd687669546b7bad5e77e15938a7f1061a
            want_mh=d626c1128562f9653410d745915ee2be1815a66a66a0c7c1cc6c130b66425167 ;;
    esac
    for j in 1 2 5; do
        rm -rf "$REPO"
        expect 0 wd init
        expect 0 wd -q -j $j add-base "$T/base" --name base
        expect 0 wd -q -j $j commit "$T/ft" --on base --strategy $s
        [ "$(cat "$T/out")" = "$want_id" ] || fail "$s -j $j: id $(cat "$T/out"), expected $want_id"
        expect 0 wd inspect "$want_id" --json
        [ "$(py "$T/out" 'd["model_hash"]')" = "$want_mh" ] || fail "$s -j $j: model hash differs"
        expect 0 wd -q -j $j export "$want_id" "$T/$s-$j.wdelta"
        [ $j = 1 ] || cmp -s "$T/$s-1.wdelta" "$T/$s-$j.wdelta" || fail "$s -j $j: export differs from -j 1"
        # checkout verifies the sealed hash
        expect 0 wd -q -j $j checkout "$want_id" "$T/co-$s-$j"
    done
    expect 0 "$WDREPO" hash "$T/co-$s-1"
    [ "$(cat "$T/out")" = "$want_mh" ] || fail "$s: checkout does not hash to the sealed model hash"
done
# A chain of lossy commits: its links export with parent_hash = the float32
# hash of the parent's reconstruction (computed on demand, as commits do not
# record it) and import elsewhere onto the same chain, rebuilding the same
# weights.
rm -rf "$REPO"
expect 0 wd init
expect 0 wd -q add-base "$T/base" --name base
expect 0 wd -q commit "$T/ft" --on base --strategy int4 --name a
expect 0 wd -q commit "$T/ft" --on a --strategy sparse --name b
expect 0 wd -q export a "$T/a.wdelta"
expect 0 wd -q export b "$T/b.wdelta"
expect 0 wd -q checkout b "$T/co-b"
REPO2=$T/repo2
"$WDREPO" -R "$REPO2" init >/dev/null 2>&1 || fail "init repo2"
"$WDREPO" -R "$REPO2" -q add-base "$T/base" >/dev/null 2>&1 || fail "add-base repo2"
"$WDREPO" -R "$REPO2" -q import "$T/a.wdelta" >/dev/null 2>&1 || fail "import a"
"$WDREPO" -R "$REPO2" -q import "$T/b.wdelta" >"$T/bid" 2>"$T/err" || { cat "$T/err"; fail "import b onto a"; }
"$WDREPO" -R "$REPO2" -q checkout "$(cat "$T/bid")" "$T/co-b2" >/dev/null 2>&1 || fail "checkout b in repo2"
cmp -s "$T/co-b/model.safetensors" "$T/co-b2/model.safetensors" || fail "the imported chain rebuilds other weights"
echo "ok"
