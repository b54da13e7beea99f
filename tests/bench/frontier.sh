#!/bin/sh
# frontier.sh - `make frontier`: the size/quality frontier of commit --strategy lowbit on the
# real trained pair in ../shared/realmodel (ft_b over base, bf16). For each quality it commits
# ft_b, checks it out, scores the checkout with the held-out loss evaluator
# (../shared/realmodel/eval/eval_loss.py --domain ft, about a minute each on 2 cores) and prints
# the size ratio (bf16 tensor bytes / the delta's stored tensor bytes) and the loss increase
# over ft_b's own loss, next to deltatensors' anchors. Not part of CI: it needs the model and
# Debian's python3-torch and python3-numpy.
#
# Run from the repository root. Environment:
#   BUILD=build                          where wdrepo lives; scratch in $BUILD/frontier
#   REALMODEL=../shared/realmodel        the pair and its evaluator
#   QUALITIES="4 3 2 1.5 1 0.5"          --quality values to measure
#   EXTRA="int4"                         deltatensors strategies committed by wdrepo too ("" skips)
#   PY=/usr/bin/python3                  Debian's python with torch
set -eu
BUILD=${BUILD:-build}
REALMODEL=${REALMODEL:-../shared/realmodel}
QUALITIES=${QUALITIES:-4 3 2 1.5 1 0.5}
EXTRA=${EXTRA-int4}
PY=${PY:-/usr/bin/python3}
W=$(cd "$BUILD" && pwd)/wdrepo
RM=$(cd "$REALMODEL" && pwd)
[ -x "$W" ] || { echo "frontier: $W missing: run make first" >&2; exit 2; }
[ -d "$RM/ft_b-bf16" ] || { echo "frontier: no $RM/ft_b-bf16 (set REALMODEL)" >&2; exit 2; }
"$PY" -c 'import torch, numpy' 2>/dev/null ||
    { echo "frontier: $PY lacks torch/numpy: apt-get install python3-torch python3-numpy" >&2; exit 2; }
S=$(cd "$BUILD" && pwd)/frontier
rm -rf "$S"
mkdir -p "$S"
cd "$S"
"$W" init -q
"$W" add-base -q "$RM/base-bf16" --name base >/dev/null
FT_LOSS=2.4197   # ft_b-bf16 on --domain ft (eval/README.md); measured below when EVAL_FT=1
if [ "${EVAL_FT:-0}" = 1 ]; then
    FT_LOSS=$(nice "$PY" "$RM/eval/eval_loss.py" "$RM/ft_b-bf16" --domain ft | "$PY" -c 'import json,sys; print(json.loads(sys.stdin.read())["ft"]["loss"])')
fi
TENSOR_BYTES=9871360
loss_of() {
    nice "$PY" "$RM/eval/eval_loss.py" "$1" --domain ft |
        "$PY" -c 'import json,sys; print(json.loads(sys.stdin.read())["ft"]["loss"])'
}
row() { # name strategy-args...
    name=$1; shift
    "$W" commit -q "$RM/ft_b-bf16" --on base "$@" --name "$name" >/dev/null
    bytes=$("$W" sql "SELECT sum(t.stored_bytes) AS b FROM tensor t JOIN name n ON n.object = t.object WHERE n.name = '$name'" --json |
        "$PY" -c 'import json,sys; print(json.load(sys.stdin)[0]["b"])')
    rm -rf "out-$name"
    "$W" checkout -q "$name" "out-$name"
    loss=$(loss_of "out-$name")
    rm -rf "out-$name"
    "$PY" -c "b=$bytes; l=$loss; print('| %-22s | %10s | %6.2fx | %+.4f |' % ('$*', format(b, ','), $TENSOR_BYTES / b, l - $FT_LOSS))"
}
echo "| wdrepo commit | stored tensor bytes | x vs bf16 | loss increase over ft_b ($FT_LOSS) |"
echo "|---|---|---|---|"
for q in $QUALITIES; do
    row "lowbit-q$q" --strategy lowbit --quality "$q"
done
for s in $EXTRA; do
    row "$s" --strategy "$s"
done
echo "| deltatensors int4 (anchor) | 2,841,906 | 3.47x | +0.0006 |"
echo "| deltatensors quantized (anchor) | 685,305 | 14.4x | +0.134 |"
echo "| deltatensors sparse 0.9 (anchor) | 5,957,725 | 1.66x | +0.355 |"
cd /
[ "${FRONTIER_KEEP:-0}" = 1 ] || rm -rf "$S"
