#!/bin/sh
# demo.sh - `make demo`: a guided tour on a small generated model. Makes a
# base and a fine-tune, then runs init, add-base, commit, checkout, log and
# inspect, printing each command before running it.
set -e
BUILD=${BUILD:-build}
W="$PWD/$BUILD/wdrepo"
GEN="$PWD/$BUILD/tools/gen_model"
work=$(mktemp -d "${TMPDIR:-/tmp}/wdrepo-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
run() { printf '\n$ %s\n' "$*"; "$@"; }

printf '# a small Qwen2.5-shaped bf16 base model in two shards, and a fine-tune of it\n'
run "$GEN" --preset tiny --dtype bf16 --shards 2 --seed 7 base --finetune finetune
ls -l base finetune

run "$W" init
run "$W" add-base base --name base
run "$W" commit finetune --on base -m "demo fine-tune" --name demo-ft
run "$W" checkout demo-ft restored
printf '\n# every file comes back byte for byte:\n'
for f in finetune/*; do cmp "$f" "restored/$(basename "$f")" && echo "identical: $(basename "$f")"; done
printf '\n# the same fine-tune, lossy like deltatensors, and as a .wdelta file:\n'
run "$W" commit finetune --on base --strategy int4 --name demo-int4
run "$W" export demo-int4 demo-int4.wdelta
run "$W" inspect demo-int4.wdelta
run "$W" log
run "$W" inspect demo-ft
printf '\ndemo done (its files were in %s, now removed)\n' "$work"
