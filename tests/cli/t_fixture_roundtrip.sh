#!/bin/sh
# t_fixture_roundtrip.sh - every fixture model folder: `hash` and `add-base`
# print the model hash of hashes.json, and checkout gives back every file
# byte for byte; the lossless chain base-bf16 -> ft-bf16 -> ft2-bf16 and
# base-f32 -> ft-f32 comes back byte-identical too.
. tests/cli/lib.sh

# hash needs no repository.
for m in "$MODELS"/*/; do
    m=${m%/}
    name=${m##*/}
    want=$(model_hash "$name")
    expect 0 "$WDREPO" hash "$m"
    [ "$(cat "$T/out")" = "$want" ] || fail "hash $name: got $(cat "$T/out"), want $want"
done

# Every folder as a base: stdout is exactly the hash, one line.
expect 0 wd init
for m in "$MODELS"/*/; do
    m=${m%/}
    name=${m##*/}
    want=$(model_hash "$name")
    expect 0 wd add-base "$m" --name "$name"
    printf '%s\n' "$want" | cmp -s - "$T/out" || fail "add-base $name printed '$(cat "$T/out")', want $want"
done
for m in "$MODELS"/*/; do
    m=${m%/}
    name=${m##*/}
    expect 0 wd checkout "$name" "$T/out-$name"
    [ -s "$T/out" ] && fail "checkout wrote to stdout"
    same_tree "$m" "$T/out-$name"
    # by full id as well
    expect 0 wd -q checkout "$(model_hash "$name")" "$T/id-$name"
    same_tree "$m" "$T/id-$name"
done

# Deltas in a fresh repository: one chain of two links, one plain delta.
REPO=$T/repo2
expect 0 wd init
expect 0 wd -q add-base "$MODELS/base-bf16" --name base-bf16
base_bf16=$(cat "$T/out")
expect 0 wd -q add-base "$MODELS/base-f32" --name base-f32
expect 0 wd -q commit "$MODELS/ft-bf16" --on base-bf16 -m "ft on bf16" --name ft-bf16
ft_bf16=$(cat "$T/out")
echo "$ft_bf16" | grep -Eq '^[0-9a-f]{64}$' || fail "commit printed '$ft_bf16', not a 64-hex id"
[ "$ft_bf16" = "$base_bf16" ] && fail "a delta id must differ from its base's hash"
expect 0 wd -q commit "$MODELS/ft-f32" --on "$(model_hash base-f32)" --name ft-f32
ft_f32=$(cat "$T/out")
# The chain link names its parent by a unique 8-digit prefix.
prefix=$(echo "$ft_bf16" | cut -c1-8)
expect 0 wd -q commit "$MODELS/ft2-bf16" --on "$prefix" -m "chain link" --name ft2-bf16
ft2_bf16=$(cat "$T/out")

# A lossless delta reconstructs the fine-tune exactly: its model hash is the
# fine-tune's own hash, and its parent is what --on named.
for pair in "ft-bf16 $ft_bf16 $base_bf16" "ft-f32 $ft_f32 $(model_hash base-f32)" \
    "ft2-bf16 $ft2_bf16 $ft_bf16"; do
    set -- $pair
    expect 0 wd inspect "$2" --json
    [ "$(py "$T/out" 'd["model_hash"]')" = "$(model_hash "$1")" ] || fail "$1: model_hash is not the fine-tune's hash"
    [ "$(py "$T/out" 'd["parent"]')" = "$3" ] || fail "$1: parent is $(py "$T/out" 'd["parent"]'), want $3"
    [ "$(py "$T/out" 'd["kind"]')" = delta ] || fail "$1: kind is not delta"
    [ "$(py "$T/out" 'd["strategy"]')" = lossless ] || fail "$1: strategy is not lossless"
done

for name in base-bf16 base-f32 ft-bf16 ft-f32 ft2-bf16; do
    expect 0 wd checkout "$name" "$T/co-$name"
    same_tree "$MODELS/$name" "$T/co-$name"
done
# The chain's tip by id too, into an existing empty folder.
mkdir "$T/empty"
expect 0 wd -q checkout "$ft2_bf16" "$T/empty"
same_tree "$MODELS/ft2-bf16" "$T/empty"
exit 0
