#!/bin/sh
# bench.sh - `make bench`: times wdrepo init/add-base/commit/checkout on a generated
# Qwen2.5-0.5B-shaped bf16 model and fine-tune (and on ../shared/realmodel when present)
# next to cp, zstd and openssl in the same run, and compares stored sizes with zstd -19.
# It then prints the issue's target table (each command's wall time against `zstd -T0 -3`
# of the fine-tune's safetensors or `zstd -d` of that .zst, timed in the same run, its peak
# RSS, PASS/MISS), and writes that table as a dated section into docs/BENCHMARKS.md.
# A missed target is reported, not fatal; only a checkout that is not byte-identical is.
#
# Run from the repository root. Environment:
#   BUILD=build              where wdrepo and tools/ live; scratch goes to $BUILD/bench
#   BENCH_PRESET=qwen0.5b    gen_model preset (small: a ~40 MB model, for a quick run)
#   BENCH_SHARDS=1           shards of the generated model (Qwen2.5-0.5B ships one file)
#   BENCH_SEED=1             generator seed
#   BENCH_ZSTD19=1           0 skips zstd -19 of the generated model (minutes on 1 GB;
#                            the sizes are cached next to the cached model)
#   BENCH_STRATEGIES="sparse quantized int4"   extra commit strategies to time ("" skips)
#   BENCH_REALMODEL=../shared/realmodel        real trained pair, read in place ("" skips)
#   BENCH_HF_RUNS=10         hyperfine runs per operation on models under 100 MB
#   BENCH_BASE_RUNS=3        hyperfine runs of the two zstd baselines on bigger models
#   BENCH_KEEP=0             1 keeps the scratch repositories and checkouts
#   BENCH_TARGETS=1          0 skips the target table and everything only it needs
#                            (save-delta, load-delta, import, the rows below)
#   BENCH_TAG=1              0 skips "wdrepo tag during a lossy (sparse) commit"
#   BENCH_TAG_AT=0.3         first tag after this share of the sparse commit's measured time
#   BENCH_CONCURRENCY=4      concurrent writers on one repository (0 skips); writers
#                            1-3 commit three fine-tunes of the base, later ones lossy
#   BENCH_FLAT_LAYERS=auto   layer count of the second model whose peak RSS is compared
#                            (auto: 24 if the preset has 6 layers, else 6; "" skips)
#   BENCH_RSS_MB=150         peak RSS target of every command, MB
#   BENCH_FLAT_MAX=1.25      "flat": the bigger model's peak RSS / the smaller one's
#   BENCH_DOC=docs/BENCHMARKS.md   where the target table goes ("" skips)
# Wall times use a warm page cache; peak RSS is GNU time's "Maximum resident set size".
# The target rows cache two more fine-tunes (ft2, ft3) and the other-layer-count model
# next to the generated model: about 3 GB more on disk for the qwen0.5b preset.
set -eu

BUILD=${BUILD:-build}
PRESET=${BENCH_PRESET:-qwen0.5b}
SHARDS=${BENCH_SHARDS:-1}
SEED=${BENCH_SEED:-1}
ZSTD19=${BENCH_ZSTD19:-1}
STRATEGIES=${BENCH_STRATEGIES-sparse quantized int4}
REAL=${BENCH_REALMODEL-../shared/realmodel}
HF_MAX=${BENCH_HF_RUNS:-10}
BASE_RUNS=${BENCH_BASE_RUNS:-3}
KEEP=${BENCH_KEEP:-0}
TARGETS=${BENCH_TARGETS:-1}
TAGTEST=${BENCH_TAG:-1}
CONC=${BENCH_CONCURRENCY:-4}
FLAT_LAYERS=${BENCH_FLAT_LAYERS-auto}
RSS_MB=${BENCH_RSS_MB:-150}
FLAT_MAX=${BENCH_FLAT_MAX:-1.25}
DOC=${BENCH_DOC-docs/BENCHMARKS.md}

WD=$BUILD/wdrepo
GEN=$BUILD/tools/gen_model
XOR=$BUILD/tools/st_xor
TIME=/usr/bin/time

die() { echo "bench: $*" >&2; exit 1; }

[ -n "$BUILD" ] || die "BUILD is empty"
case $CONC in '' | *[!0-9]*) die "BENCH_CONCURRENCY must be a number, not '$CONC'" ;; esac
for f in "$WD" "$GEN" "$XOR"; do
    [ -x "$f" ] || die "'$f' is missing; run 'make' first"
done
[ -x "$TIME" ] || die "$TIME (GNU time) is needed for peak RSS (Debian: apt-get install time)"
for t in zstd openssl tar cmp du od awk find date sleep; do
    command -v "$t" >/dev/null 2>&1 || die "'$t' is needed and not on PATH"
done
if command -v jq >/dev/null 2>&1; then JSON=jq
elif command -v python3 >/dev/null 2>&1; then JSON=python3
else JSON=none
fi
command -v hyperfine >/dev/null 2>&1 || HF_MAX=0

BENCH=$BUILD/bench
WORK=$BENCH/work.$$
RES=$WORK/results
mkdir -p "$WORK"
cleanup() {
    if [ "$KEEP" = 1 ]; then
        echo "bench: scratch kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
FAILED=0
HF_RUNS=0 # hyperfine runs for the section being measured (0: one timed run)

# ---- helpers --------------------------------------------------------------------

# json_num FILE FIELD: a top-level number of a JSON object (0 if absent).
json_num() {
    case $JSON in
    jq) jq -r --arg f "$2" '.[$f] // 0' "$1" ;;
    python3) python3 -c 'import json, sys
print(json.load(open(sys.argv[1])).get(sys.argv[2], 0))' "$1" "$2" ;;
    *) v=$(grep -o "\"$2\" *: *[0-9]*" "$1" | head -n 1 | sed 's/.*: *//'); echo "${v:-0}" ;;
    esac
}

# Bytes of tensor data in safetensors files: file size minus 8 minus the header
# length (u64 LE at offset 0; od prints it in host order, little-endian here).
tensor_bytes() {
    total=0
    for f in "$@"; do
        hl=$(od -An -tu8 -N8 "$f" | tr -d ' ')
        sz=$(wc -c <"$f" | tr -d ' ')
        total=$((total + sz - 8 - hl))
    done
    echo "$total"
}

file_bytes() { cat "$@" | wc -c | tr -d ' '; }
dir_bytes() { du -sb "$1" | cut -f1; }

# shq ARG: ARG single-quoted for a shell (or hyperfine -N) command line.
shq() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

# time_wall FILE, time_rss FILE: wall seconds and peak RSS (kB) from GNU time -v's report.
time_wall() {
    awk -F': ' '/Elapsed \(wall clock\)/ { n = split($NF, p, ":"); s = 0;
        for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$1"
}
time_rss() { awk -F': ' '/Maximum resident set size/ { print $NF }' "$1"; }

# now: seconds since the epoch, with nanoseconds where date has %N.
now() { date +%s.%N | sed 's/\.%*N$//'; }

# timed SECTION LABEL PREPARE CMD...: runs CMD once under GNU time (peak RSS, and wall
# time), then, when HF_RUNS > 0, HF_RUNS more times under hyperfine with PREPARE (a
# command line, may be empty) before each run, whose mean replaces the wall time:
# 10 ms timer resolution says little about a 20 ms operation. Appends
# "T SECTION LABEL wall_s rss_kb" to the results; CMD's stdout goes to $WORK/out.
# Returns CMD's status (the caller decides whether a failure is fatal).
timed() {
    sec=$1 label=$2 prep=$3
    shift 3
    # Dirty pages an earlier step left (a 1 GB copy, a repository snapshot)
    # would be written back during this command and bill it for the disk:
    # runs of the same command moved by 1-2 s. Every command, baseline or
    # not, starts with none.
    sync
    if "$TIME" -v -o "$WORK/time" "$@" >"$WORK/out" 2>"$WORK/err"; then st=0; else st=$?; fi
    if [ "$st" -ne 0 ]; then
        echo "bench: '$label' failed (exit $st): $(head -n 1 "$WORK/err")" >&2
        printf 'T\t%s\t%s\tFAILED\t-\n' "$sec" "$label" >>"$RES"
        return "$st"
    fi
    wall=$(time_wall "$WORK/time")
    rss=$(time_rss "$WORK/time")
    if [ "$HF_RUNS" -gt 0 ]; then
        line=""
        for a in "$@"; do line="$line $(shq "$a")"; done
        set -- hyperfine -N --style none --runs "$HF_RUNS" --export-csv "$WORK/hf.csv"
        [ -z "$prep" ] || set -- "$@" --prepare "$prep"
        "$@" "$line" >/dev/null 2>"$WORK/err" ||
            die "hyperfine of '$label' failed: $(head -n 1 "$WORK/err")"
        # The command column may hold commas; the seven numbers after it do not.
        wall=$(awk -F, 'NR == 2 { print $(NF - 6) }' "$WORK/hf.csv")
    fi
    printf 'T\t%s\t%s\t%s\t%s\n' "$sec" "$label" "${wall:-0}" "${rss:-0}" >>"$RES"
}

# size SECTION LABEL BYTES [base|ft]: the last field names whose raw tensor bytes
# the ratio divides.
size() { printf 'S\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:-}" >>"$RES"; }
note() { printf 'N\t%s\t%s\n' "$1" "$2" >>"$RES"; }

# zstd19 CACHE_FILE OUT FILES...: bytes of zstd -19 -T0 of FILES (one frame per file,
# as `zstd FILE` writes them). CACHE_FILE (may be empty) remembers the answer.
zstd19() {
    key=$1 out=$2
    shift 2
    if [ -n "$key" ] && [ -s "$key" ]; then cat "$key"; return; fi
    zstd -19 -T0 -q -c "$@" >"$out"
    b=$(wc -c <"$out" | tr -d ' ')
    rm -f "$out"
    [ -z "$key" ] || echo "$b" >"$key"
    echo "$b"
}

# verify_checkout SECTION LABEL SRC OUT: every file of SRC byte-identical in OUT, no extras.
verify_checkout() {
    n=0 bad=""
    for f in "$3"/*; do
        n=$((n + 1))
        cmp -s "$f" "$4/${f##*/}" || bad="$bad ${f##*/}"
    done
    m=$(find "$4" -mindepth 1 -maxdepth 1 | wc -l | tr -d ' ')
    [ "$m" -eq "$n" ] || bad="$bad (it has $m files, expected $n)"
    if [ -z "$bad" ]; then
        note "$1" "$2: byte-identical to the committed folder ($n files compared with cmp)"
    else
        note "$1" "$2: MISMATCH in:$bad"
        FAILED=1
    fi
}

# ---- one base/fine-tune pair ------------------------------------------------------

# bench_pair SECTION BASE FT ZSTD19 CACHE_DIR
#   ZSTD19=1 measures zstd -19 sizes, cached in CACHE_DIR when it is not empty.
bench_pair() {
    sec=$1 base=$2 ft=$3 z19=$4 cache=$5
    repo=$WORK/repo-$sec
    bfiles=$(ls "$base"/*.safetensors)
    ffiles=$(ls "$ft"/*.safetensors)
    # Files are named by the generator or by HF conventions: no blanks to split on.
    # shellcheck disable=SC2086
    tb=$(tensor_bytes $bfiles)
    # shellcheck disable=SC2086
    ftb=$(tensor_bytes $ffiles)
    size "$sec" "tensor bytes, base" "$tb"
    size "$sec" "tensor bytes, fine-tune" "$ftb"
    echo "$tb" >"$WORK/tb-$sec"
    # One timed run says enough about a 1 GB model; small ones get hyperfine.
    if [ "$tb" -lt 100000000 ]; then HF_RUNS=$HF_MAX; else HF_RUNS=0; fi
    if [ "$HF_RUNS" -gt 0 ]; then
        echo "wall: hyperfine mean of $HF_RUNS runs after one GNU time run" >"$WORK/how-$sec"
    else
        echo "wall and RSS: one GNU time run each" >"$WORK/how-$sec"
    fi
    # Everything below reads from the page cache, including the first cp, and no
    # writeback of a just-generated model competes with the timed commands.
    cat "$base"/* "$ft"/* >/dev/null
    sync

    echo "bench: [$sec] baselines: cp, zstd -3, openssl" >&2
    timed "$sec" "cp -r base" "rm -rf $(shq "$WORK/cp-copy")" cp -r "$base" "$WORK/cp-copy"
    rm -rf "$WORK/cp-copy"
    # shellcheck disable=SC2016 # $1 and $2 belong to the inner sh
    timed "$sec" "tar | zstd -T0 -3 (base folder)" "" \
        sh -c 'tar -cf - -C "$1" . | zstd -T0 -3 -q -c >"$2"' sh "$base" "$WORK/base.tar.zst"
    v=$(file_bytes "$WORK/base.tar.zst")
    rm -f "$WORK/base.tar.zst"
    size "$sec" "tar | zstd -T0 -3 of base folder" "$v" base
    # shellcheck disable=SC2086
    timed "$sec" "openssl dgst -sha256 (base)" "" openssl dgst -sha256 $bfiles
    if [ "$TARGETS" = 1 ]; then
        # The targets' baselines: zstd -T0 -3 of the fine-tune's safetensors, zstd -d of that.
        # Every target row divides by one of them, and one run of zstd -d moved between
        # 1.2 and 2.4 s from run to run (how much of its 1 GB output the kernel wrote back
        # meanwhile): a 1 GB model gets the mean of BASE_RUNS more runs too.
        hf=$HF_RUNS
        [ "$HF_RUNS" -gt 0 ] || [ "$HF_MAX" -eq 0 ] || HF_RUNS=$BASE_RUNS
        echo "$HF_RUNS" >"$WORK/bruns-$sec"
        # shellcheck disable=SC2016,SC2086 # $1 and $@ belong to the inner sh
        timed "$sec" "zstd -T0 -3 (fine-tune safetensors)" "" \
            sh -c 'o=$1; shift; zstd -T0 -3 -q -c "$@" >"$o"' sh "$WORK/ft.zst" $ffiles
        size "$sec" "zstd -T0 -3 of fine-tune safetensors" "$(file_bytes "$WORK/ft.zst")" ft
        timed "$sec" "zstd -d (fine-tune .zst)" "rm -f $(shq "$WORK/ft.dec")" \
            zstd -d -q "$WORK/ft.zst" -o "$WORK/ft.dec"
        rm -f "$WORK/ft.zst" "$WORK/ft.dec"
        HF_RUNS=$hf
    fi

    if [ "$z19" = 1 ]; then
        c1="" c2="" c3=""
        if [ -n "$cache" ]; then
            zv=$(zstd -V | sed 's/.* v\([0-9.]*\).*/\1/')
            c1=$cache/zstd$zv-19.base c2=$cache/zstd$zv-19.ft c3=$cache/zstd$zv-19.xor
        fi
        [ -n "$c1" ] && [ -s "$c1" ] && [ -s "$c2" ] && [ -s "$c3" ] ||
            echo "bench: [$sec] zstd -19 -T0 of base, fine-tune and raw XOR" \
                "(slow: minutes per GB; cached next to the model)" >&2
        # shellcheck disable=SC2086
        v=$(zstd19 "$c1" "$WORK/z.zst" $bfiles)
        size "$sec" "zstd -19 -T0 of base safetensors" "$v" base
    fi

    echo "bench: [$sec] wdrepo init, add-base, commit, checkout" >&2
    wq="$(shq "$WD") -q -R $(shq "$repo")"
    timed "$sec" "wdrepo init" "rm -rf $(shq "$repo")" "$WD" -q -R "$repo" init
    timed "$sec" "wdrepo add-base" "sh -c $(shq "rm -rf $(shq "$repo") && $wq init")" \
        "$WD" -q -R "$repo" add-base "$base" --name base
    repo_after_base=$(dir_bytes "$repo")
    "$WD" -q -R "$repo" inspect base --json >"$WORK/ib.json"
    v=$(json_num "$WORK/ib.json" stored_bytes)
    size "$sec" "wdrepo repository after add-base (du -b)" "$repo_after_base" base
    size "$sec" "wdrepo stored_bytes of base (inspect)" "$v" base

    # Repeated commits must start from the repository as add-base left it.
    # The targets' import, tag and writer runs start from it too.
    snap=$WORK/repo-$sec.snap
    if [ "$HF_RUNS" -gt 0 ] || [ "$TARGETS" = 1 ]; then cp -a "$repo" "$snap"; fi
    reset="sh -c $(shq "rm -rf $(shq "$repo") && cp -a $(shq "$snap") $(shq "$repo")")"
    timed "$sec" "wdrepo commit (lossless)" "$reset" "$WD" -q -R "$repo" commit "$ft" --on base --name ft
    repo_after_ft=$(dir_bytes "$repo")
    "$WD" -q -R "$repo" inspect ft --json >"$WORK/if.json"
    v=$(json_num "$WORK/if.json" stored_bytes)
    size "$sec" "wdrepo lossless delta stored_bytes (inspect)" "$v" ft
    v=$(json_num "$WORK/if.json" new_bytes)
    size "$sec" "wdrepo lossless delta new_bytes (inspect)" "$v" ft
    size "$sec" "wdrepo repository growth from commit (du -b)" "$((repo_after_ft - repo_after_base))" ft

    timed "$sec" "wdrepo checkout ft" "rm -rf $(shq "$WORK/co-ft")" \
        "$WD" -q -R "$repo" checkout ft "$WORK/co-ft"
    verify_checkout "$sec" "checkout ft" "$ft" "$WORK/co-ft"
    rm -rf "$WORK/co-ft"
    timed "$sec" "wdrepo checkout base" "rm -rf $(shq "$WORK/co-base")" \
        "$WD" -q -R "$repo" checkout base "$WORK/co-base"
    verify_checkout "$sec" "checkout base" "$base" "$WORK/co-base"
    rm -rf "$WORK/co-base"

    if [ "$z19" = 1 ]; then
        # shellcheck disable=SC2086
        v=$(zstd19 "$c2" "$WORK/z.zst" $ffiles)
        size "$sec" "zstd -19 -T0 of fine-tune safetensors" "$v" ft
        if [ -n "$c3" ] && [ -s "$c3" ]; then
            v=$(cat "$c3")
        else
            "$XOR" -q "$base" "$ft" "$WORK/xor.bin"
            v=$(zstd19 "$c3" "$WORK/z.zst" "$WORK/xor.bin")
            rm -f "$WORK/xor.bin"
        fi
        size "$sec" "zstd -19 -T0 of raw XOR base^ft (st_xor)" "$v" ft
    fi

    # Lossy strategies are timed once each (their repeated commits would dedupe).
    hf=$HF_RUNS
    once=""
    [ "$HF_RUNS" -eq 0 ] || once=", 1 run"
    HF_RUNS=0
    for s in $STRATEGIES; do
        echo "bench: [$sec] wdrepo commit --strategy $s" >&2
        if timed "$sec" "wdrepo commit ($s$once)" "" "$WD" -q -R "$repo" commit "$ft" --on base \
            --strategy "$s" --name "ft-$s"; then
            if "$WD" -q -R "$repo" inspect "ft-$s" --json >"$WORK/is.json" &&
                v=$(json_num "$WORK/is.json" stored_bytes); then
                size "$sec" "wdrepo $s delta stored_bytes (inspect)" "$v" ft
            fi
            if timed "$sec" "wdrepo export ($s$once)" "" \
                "$WD" -q -R "$repo" export "ft-$s" "$WORK/$s.wdelta"; then
                v=$(file_bytes "$WORK/$s.wdelta")
                size "$sec" "deltatensors .wdelta file ($s)" "$v" ft
            fi
            if [ "$s" = int4 ] && [ "$TARGETS" = 1 ] && [ -f "$WORK/$s.wdelta" ]; then
                mv "$WORK/$s.wdelta" "$WORK/export-int4.wdelta" # imported below
            fi
            rm -f "$WORK/$s.wdelta"
        fi
    done
    HF_RUNS=$hf
    rm -rf "$repo"
    [ "$TARGETS" != 1 ] || bench_files "$sec" "$base" "$ft" "$snap" "$once"
    # The tag and writer runs (main part below) still need the snapshot.
    [ "$sec" = gen ] || rm -rf "$snap"
}

# bench_files SECTION BASE FT SNAPSHOT ONCE: save-delta (each strategy, one run), load-delta
# of the int4 file (the base verified in full, as by default) and import of the exported
# int4 .wdelta into a repository holding only the base.
bench_files() {
    sec=$1 base=$2 ft=$3 snap=$4 once=$5
    echo "bench: [$sec] wdrepo save-delta, load-delta, import" >&2
    hf=$HF_RUNS
    HF_RUNS=0
    for s in int4 sparse quantized; do
        if timed "$sec" "wdrepo save-delta ($s$once)" "" \
            "$WD" -q save-delta "$WORK/sd-$s.wdelta" "$ft" "$base" --strategy "$s"; then
            size "$sec" "save-delta .wdelta file ($s)" "$(file_bytes "$WORK/sd-$s.wdelta")" ft
        fi
        [ "$s" = int4 ] || rm -f "$WORK/sd-$s.wdelta"
    done
    HF_RUNS=$hf
    if [ -f "$WORK/sd-int4.wdelta" ]; then
        timed "$sec" "wdrepo load-delta (int4, verified)" "rm -rf $(shq "$WORK/ld")" \
            "$WD" -q load-delta "$WORK/sd-int4.wdelta" "$base" "$WORK/ld" || true
        rm -rf "$WORK/ld"
    fi
    imp=$WORK/export-int4.wdelta
    [ -f "$imp" ] || imp=$WORK/sd-int4.wdelta
    if [ -f "$imp" ]; then
        r=$WORK/repo-import
        rm -rf "$r"
        cp -a "$snap" "$r"
        timed "$sec" "wdrepo import (int4 .wdelta)" \
            "sh -c $(shq "rm -rf $(shq "$r") && cp -a $(shq "$snap") $(shq "$r")")" \
            "$WD" -q -R "$r" import "$imp" --name ft-int4 || true
        rm -rf "$r"
    fi
    rm -f "$WORK/sd-int4.wdelta" "$WORK/export-int4.wdelta"
}

# bench_tag SECTION SNAPSHOT FT: `wdrepo tag` while `wdrepo commit --strategy sparse` runs on
# the same repository. The first tag starts at BENCH_TAG_AT (0.3) of the sparse commit's
# wall time measured above, then one every 0.1 of it while the commit runs (at most 8);
# the slowest tag started while the commit ran is reported (a tag that waits for the
# commit's write lock ends with or after the commit). Record:
# K SECTION max_wall max_rss_kb overlapped tags commit_status idle_tag_wall
bench_tag() {
    sec=$1 snap=$2 ft=$3
    echo "bench: [$sec] wdrepo tag during wdrepo commit --strategy sparse" >&2
    r=$WORK/repo-tag
    rm -rf "$r"
    cp -a "$snap" "$r"
    est=$(awk -F'\t' -v s="$sec" '$1 == "T" && $2 == s && $3 ~ /^wdrepo commit \(sparse/ &&
        $4 != "FAILED" { w = $4 } END { print (w > 0) ? w : 2 }' "$RES")
    first=$(awk -v e="$est" -v f="${BENCH_TAG_AT:-0.3}" 'BEGIN { printf "%.3f", e * f }')
    step=$(awk -v e="$est" 'BEGIN { printf "%.3f", e * 0.1 }')
    # For comparison: the same tag on the idle repository.
    idle=FAILED
    if "$TIME" -v -o "$WORK/time-tag" "$WD" -q -R "$r" tag tag0 base >/dev/null 2>&1; then
        idle=$(time_wall "$WORK/time-tag")
    fi
    # The commit's status file says when it has ended (kill -0 also finds an unreaped zombie).
    rm -f "$WORK/bg.rc"
    (
        if "$TIME" -v -o "$WORK/time-bg" "$WD" -q -R "$r" commit "$ft" --on base \
            --strategy sparse --name bg >/dev/null 2>"$WORK/err-bg"; then st=0; else st=$?; fi
        echo "$st" >"$WORK/bg.rc"
    ) &
    bgpid=$!
    sleep "$first"
    # Each pass starts a tag only while the commit runs: every tag overlaps it.
    k=0 over=0 maxw=0 maxr=0
    while [ "$k" -lt 8 ] && [ ! -f "$WORK/bg.rc" ]; do
        k=$((k + 1))
        over=$((over + 1))
        if "$TIME" -v -o "$WORK/time-tag" "$WD" -q -R "$r" tag "tag$k" base \
            >/dev/null 2>"$WORK/err-tag"; then
            w=$(time_wall "$WORK/time-tag")
            rs=$(time_rss "$WORK/time-tag")
        else
            echo "bench: wdrepo tag failed during the commit: $(head -n 1 "$WORK/err-tag")" >&2
            w=FAILED rs=0
        fi
        maxw=$(awk -v a="$maxw" -v b="$w" 'BEGIN { print (b == "FAILED" || a == "FAILED") ? "FAILED" : (b > a) ? b : a }')
        maxr=$(awk -v a="$maxr" -v b="$rs" 'BEGIN { print (b > a) ? b : a }')
        sleep "$step"
    done
    wait "$bgpid" || true
    if [ "$(cat "$WORK/bg.rc" 2>/dev/null)" = 0 ]; then cst=ok; else
        cst=FAILED
        echo "bench: the sparse commit during the tags failed: $(head -n 1 "$WORK/err-bg")" >&2
    fi
    printf 'K\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sec" "$maxw" "$maxr" "$over" "$k" "$cst" "$idle" \
        >>"$RES"
    rm -rf "$r"
}

# bench_writers SECTION SNAPSHOT N FT_DIR...: N writers at once on one repository holding the
# base: writer i commits fine-tune ((i-1) mod #FT_DIRs)+1, lossless in the first round, then
# quantized, int4, sparse. A writer fails when it exits non-zero or its delta is missing after.
# Record: C SECTION N failed wall_of_all max_rss_kb description
bench_writers() {
    sec=$1 snap=$2 n=$3
    shift 3
    echo "bench: [$sec] $n concurrent writers on one repository" >&2
    r=$WORK/repo-writers
    rm -rf "$r"
    cp -a "$snap" "$r"
    nft=$#
    t0=$(now)
    i=1 desc="" d="" p=""
    while [ "$i" -le "$n" ]; do
        k=$(((i - 1) % nft + 1))
        eval "d=\${$k}"
        case $(((i - 1) / nft)) in 0) st=lossless ;; 1) st=quantized ;; 2) st=int4 ;; *) st=sparse ;; esac
        desc="$desc, ft$k $st"
        "$TIME" -v -o "$WORK/time-w$i" "$WD" -q -R "$r" commit "$d" --on base --strategy "$st" \
            --name "w$i" >/dev/null 2>"$WORK/err-w$i" &
        eval "wpid$i=\$!"
        i=$((i + 1))
    done
    failed=0 maxr=0 i=1
    while [ "$i" -le "$n" ]; do
        eval "p=\$wpid$i"
        if wait "$p" && "$WD" -q -R "$r" inspect "w$i" >/dev/null 2>&1; then :; else
            failed=$((failed + 1))
            echo "bench: writer $i failed: $(head -n 1 "$WORK/err-w$i")" >&2
        fi
        rs=$(time_rss "$WORK/time-w$i")
        maxr=$(awk -v a="$maxr" -v b="${rs:-0}" 'BEGIN { print (b > a) ? b : a }')
        i=$((i + 1))
    done
    t1=$(now)
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    printf 'C\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sec" "$n" "$failed" "$wall" "$maxr" "${desc#, }" >>"$RES"
    rm -rf "$r"
}

# bench_flat SECTION BASE FT: peak RSS of add-base, commit (lossless, sparse) and checkout on
# a model with another layer count (one GNU time run each), for the "flat" rows.
bench_flat() {
    sec=$1 base=$2 ft=$3
    echo "bench: [$sec] peak RSS on the $FLAT_LAYERS-layer model" >&2
    r=$WORK/repo-$sec
    hf=$HF_RUNS
    HF_RUNS=0
    rm -rf "$r"
    "$WD" -q -R "$r" init
    if timed "$sec" "wdrepo add-base" "" "$WD" -q -R "$r" add-base "$base" --name base &&
        timed "$sec" "wdrepo commit (lossless)" "" "$WD" -q -R "$r" commit "$ft" --on base --name ft
    then
        timed "$sec" "wdrepo checkout ft" "" "$WD" -q -R "$r" checkout ft "$WORK/co-$sec" || true
        timed "$sec" "wdrepo commit (sparse)" "" \
            "$WD" -q -R "$r" commit "$ft" --on base --strategy sparse --name ft-sparse || true
    fi
    HF_RUNS=$hf
    rm -rf "$r" "$WORK/co-$sec"
}

# ---- report -----------------------------------------------------------------------

# report SECTION TITLE: one section's tables from the results file.
report() {
    awk -F'\t' -v sec="$1" -v title="$2 ($(cat "$WORK/how-$1"))" -v tb="$(cat "$WORK/tb-$1")" '
    function human(b) {
        if (b >= 1e9) return sprintf("%.2f GB", b / 1e9)
        if (b >= 1e6) return sprintf("%.1f MB", b / 1e6)
        if (b >= 1e3) return sprintf("%.1f kB", b / 1e3)
        return sprintf("%d B", b)
    }
    $2 != sec { next }
    $1 == "T" { nt++; tl[nt] = $3; tw[nt] = $4; tr[nt] = $5
                if ($3 == "cp -r base") cpw = $4
                if ($3 == "tar | zstd -T0 -3 (base folder)") z3w = $4 }
    $1 == "S" { ns++; sl[ns] = $3; sb[ns] = $4; sk[ns] = $5
                if ($3 == "tensor bytes, fine-tune") ftb = $4 }
    $1 == "N" { nn++; nl[nn] = $3 }
    END {
        printf "\n== %s ==\n\n", title
        printf "%-36s %9s %9s %10s %8s %9s\n", "operation", "wall s", "MB/s", "peak RSS", "/ cp", "/ zstd-3"
        for (i = 1; i <= nt; i++) {
            if (tw[i] == "FAILED") { printf "%-36s %9s\n", tl[i], "failed"; continue }
            quick = tl[i] ~ /init/
            mbs = (tw[i] > 0 && !quick) ? sprintf("%.0f", tb / 1e6 / tw[i]) : "-"
            rcp = (cpw > 0 && !quick) ? sprintf("%.2fx", tw[i] / cpw) : "-"
            rz3 = (z3w > 0 && !quick) ? sprintf("%.2fx", tw[i] / z3w) : "-"
            printf "%-36s %9.3f %9s %10s %8s %9s\n", tl[i], tw[i], mbs, human(tr[i] * 1024), rcp, rz3
        }
        printf "(MB/s = base tensor bytes / wall; / cp, / zstd-3 = wall relative to those baselines)\n"
        printf "\n%-46s %14s %10s %8s\n", "size", "bytes", "", "ratio"
        for (i = 1; i <= ns; i++) {
            raw = (sk[i] == "ft") ? ftb : tb
            r = (sk[i] != "" && sb[i] > 0) ? sprintf("%.3fx", raw / sb[i]) : ""
            printf "%-46s %14d %10s %8s\n", sl[i], sb[i], human(sb[i]), r
        }
        printf "(ratio = raw tensor bytes / stored bytes, of the base or of the fine-tune)\n\n"
        for (i = 1; i <= nn; i++) printf "%s\n", nl[i]
    }' "$RES"
}

# report_targets SECTION TITLE LAYERS FLAT_SECTION FLAT_LAYERS: the issue's target table.
# Wall times are divided by the baselines of the same section and run: zstd -T0 -3 of
# the fine-tune's safetensors ("zstd -3") or zstd -d of that .zst ("zstd -d").
report_targets() {
    awk -F'\t' -v sec="$1" -v title="$2" -v L="$3" -v fsec="$4" -v FL="$5" \
        -v rmb="$RSS_MB" -v fmax="$FLAT_MAX" -v bruns="$(cat "$WORK/bruns-$1" 2>/dev/null || echo 0)" '
    function mb(kb) { return sprintf("%.1f MB", kb * 1024 / 1e6) }
    function row(name, wall, bname, bwall, ratio, target, rss, result,   line) {
        line = sprintf("%-40s %8s  %-8s %8s %7s  %-10s %9s  %s", name, wall, bname, bwall, ratio,
            target, rss, result)
        sub(/ +$/, "", line)
        print line
    }
    # rsscheck KB RESULT: RESULT with the peak RSS target applied; tracks the maximum.
    function rsscheck(kb, res) {
        if (kb + 0 > maxrss) maxrss = kb + 0
        if (kb * 1024 <= rmb * 1e6) return res
        return (res == "PASS") ? "MISS RSS" : res "+RSS"
    }
    function ratio_row(name, label, bkey, f,   w, b, r, res) {
        if (!(label in tw)) { row(name, "-", "", "", "", "", "", "not run"); return }
        w = tw[label]
        if (w == "FAILED") { row(name, "-", "", "", "", "", "", "FAILED"); nmiss++; return }
        b = (bkey == "z3") ? tw[Z3] : tw[ZD]
        if (b == "" || b == "FAILED" || b <= 0) {
            row(name, sprintf("%.3f", w), "-", "-", "-", "", mb(tr[label]), "no baseline"); return
        }
        r = w / b
        res = rsscheck(tr[label], (r <= f + 1e-9) ? "PASS" : "MISS time")
        if (res != "PASS") nmiss++
        row(name, sprintf("%.3f", w), (bkey == "z3") ? "zstd -3" : "zstd -d", sprintf("%.3f", b),
            sprintf("%.2fx", r), sprintf("<= %.1fx", f), mb(tr[label]), res)
    }
    function base_row(name, label) {
        if (!(label in tw) || tw[label] == "FAILED") return
        row(name, sprintf("%.3f", tw[label]), "", "", "1.00x", "baseline", mb(tr[label]), "")
    }
    BEGIN {
        Z3 = "zstd -T0 -3 (fine-tune safetensors)"; ZD = "zstd -d (fine-tune .zst)"
    }
    $1 == "T" { l = $3; sub(/, 1 run\)$/, ")", l)
                if ($2 == sec) { tw[l] = $4; tr[l] = $5 }
                else if ($2 == fsec && $4 != "FAILED") { fr[l] = $5 } }
    $1 == "K" && $2 == sec { havetag = 1; kw = $3; kr = $4; kover = $5; kn = $6; kst = $7; kidle = $8 }
    $1 == "C" && $2 == sec { havec = 1; cn = $3; cf = $4; cw = $5; cr = $6; cd = $7 }
    END {
        printf "\n== targets: %s ==\n\n", title
        row("command", "wall s", "baseline", "base s", "ratio", "target", "peak RSS", "result")
        base_row("baseline: zstd -T0 -3 of the ft file", Z3)
        base_row("baseline: zstd -d of that .zst", ZD)
        ratio_row("save-delta --strategy int4", "wdrepo save-delta (int4)", "z3", 1.0)
        ratio_row("save-delta --strategy sparse", "wdrepo save-delta (sparse)", "z3", 1.0)
        ratio_row("save-delta --strategy quantized", "wdrepo save-delta (quantized)", "z3", 1.0)
        ratio_row("load-delta int4 (base verified)", "wdrepo load-delta (int4, verified)", "zd", 1.5)
        ratio_row("commit --strategy int4", "wdrepo commit (int4)", "z3", 1.5)
        ratio_row("commit --strategy sparse", "wdrepo commit (sparse)", "z3", 1.5)
        ratio_row("commit --strategy quantized", "wdrepo commit (quantized)", "z3", 1.5)
        ratio_row("commit (lossless)", "wdrepo commit (lossless)", "z3", 1.0)
        ratio_row("add-base", "wdrepo add-base", "z3", 1.2)
        ratio_row("checkout lossless delta (verified)", "wdrepo checkout ft", "zd", 1.5)
        ratio_row("import int4 .wdelta", "wdrepo import (int4 .wdelta)", "z3", 1.0)
        ratio_row("export int4 .wdelta", "wdrepo export (int4)", "z3", 1.0)
        if (havetag) {
            if (kst != "ok") res = "MISS (commit failed)"
            else if (kover == 0) res = "n/a (commit ended before the first tag)"
            else if (kw == "FAILED") res = "MISS (tag failed)"
            else res = rsscheck(kr, (kw < 0.5) ? "PASS" : "MISS time")
            if (res != "PASS") nmiss++
            row(sprintf("tag during a sparse commit (max of %d)", kover),
                (kover > 0 && kw != "FAILED") ? sprintf("%.3f", kw) : "-", "idle tag",
                (kidle == "FAILED") ? "failed" : sprintf("%.3f", kidle), "",
                "< 0.5 s", (kover > 0) ? mb(kr) : "-", res)
        }
        if (havec) {
            res = rsscheck(cr, (cf == 0) ? "PASS" : "MISS")
            if (res != "PASS") nmiss++
            row(sprintf("%d concurrent writers, one repository", cn), sprintf("%.3f", cw), "", "",
                "", "0 failed", mb(cr), sprintf("%s (%d of %d failed)", res, cf, cn))
        }
        res = (maxrss * 1024 <= rmb * 1e6) ? "PASS" : "MISS"
        if (res != "PASS") nmiss++
        row(sprintf("peak RSS, every command above (%d layers)", L), "-", "", "", "",
            sprintf("<= %d MB", rmb), mb(maxrss), res)
        if (fsec != "") {
            split("wdrepo add-base|wdrepo commit (lossless)|wdrepo commit (sparse)|wdrepo checkout ft", fl, "|")
            split("add-base|commit lossless|commit sparse|checkout ft", fn, "|")
            big = (FL > L) ? "f" : "m"
            for (i = 1; i <= 4; i++) {
                l = fl[i]
                if (!(l in fr) || !(l in tw) || tw[l] == "FAILED") {
                    row(sprintf("RSS flat %d/%d layers: %s", (L < FL) ? L : FL, (L < FL) ? FL : L, fn[i]),
                        "-", "", "", "", "", "", "not run")
                    continue
                }
                rb = (big == "f") ? fr[l] : tr[l]; rs = (big == "f") ? tr[l] : fr[l]
                r = (rs > 0) ? rb / rs : 0
                res = (rb * 1024 <= rmb * 1e6 && rs * 1024 <= rmb * 1e6) ? "" : "RSS"
                if (r > fmax + 1e-9) res = res (res == "" ? "" : "+") "not flat"
                res = (res == "") ? "PASS" : "MISS " res
                if (res != "PASS") nmiss++
                row(sprintf("RSS flat %d/%d layers: %s", (L < FL) ? L : FL, (L < FL) ? FL : L, fn[i]),
                    "-", sprintf("%d layers", (L < FL) ? L : FL), mb(rs), sprintf("%.2fx", r),
                    sprintf("<=%.2fx", fmax), mb(rb), res)
            }
        }
        printf "(ratio = wall / the baseline'"'"'s wall, same run; zstd -3 = zstd -T0 -3 of the fine-tune'"'"'s\n"
        printf " safetensors, zstd -d = zstd -d of that .zst"
        if (bruns > 0) printf ", each the mean of %d runs after one", bruns
        printf ";\n every row also needs peak RSS <= %d MB", rmb
        if (fsec != "") printf ";\n"
        if (fsec != "")
            printf " RSS flat: peak RSS on the %d- and %d-layer models, ratio = bigger / smaller one", L, FL
        printf ")\n"
        printf "%d row(s) missed their target\n", nmiss
    }' "$RES"
}

# write_doc FILE TABLES_FILE: puts TABLES_FILE into FILE as the section "## DATE, CPU, N cores"
# at the top (under the title and its introduction), replacing a section of that heading.
write_doc() {
    doc=$1 tables=$2
    day=$(date +%Y-%m-%d)
    model=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)
    [ -n "$model" ] || model=${CPU:-unknown CPU}
    head="## $day, $model, $CPUS cores"
    new=$WORK/doc-section
    {
        echo "$head"
        echo
        echo "\`make bench\` target table, written by tests/bench/bench.sh on $day."
        echo "lscpu: \`Model name: $model\`; $CPUS cores;" \
            "zstd $ZV; preset $PRESET, $SHARDS shard(s), seed $SEED;" \
            "wdrepo $(git rev-parse --short HEAD 2>/dev/null || echo '(no git)')."
        echo
        echo '```'
        sed '1{/^$/d;}' "$tables"
        echo '```'
        echo
    } >"$new"
    if [ ! -f "$doc" ]; then printf '# Benchmarks\n\n' >"$doc"; fi
    awk -v head="$head" -v new="$new" '
        BEGIN { while ((getline l < new) > 0) sec = sec l "\n" }
        /^## / { if (!done) { printf "%s", sec; done = 1 }
                 skip = ($0 == head) }
        !skip { print }
        END { if (!done) { printf "\n%s", sec } }' "$doc" >"$WORK/doc.new"
    cat "$WORK/doc.new" >"$doc"
    echo "bench: wrote the target table to $doc ($head)" >&2
}

# ---- the runs ---------------------------------------------------------------------

GENSUM=$(openssl dgst -sha256 "$GEN" | sed 's/.*= //')

# generate DIR [GEN_OPTION...]: DIR/base and DIR/ft from the preset, shards and seed (and
# the extra options), reused while the generator and the options are the same.
generate() {
    dir=$1
    shift
    stamp="$GENSUM $PRESET $SHARDS $SEED $*"
    if [ -f "$dir/stamp" ] && [ "$(cat "$dir/stamp")" = "$stamp" ] &&
        [ -d "$dir/base" ] && [ -d "$dir/ft" ]; then
        echo "bench: reusing the generated model in $dir" >&2
    else
        echo "bench: generating a $PRESET bf16 base and fine-tune${*:+ ($*)} into $dir" >&2
        rm -rf "$dir"
        mkdir -p "$dir"
        "$GEN" --preset "$PRESET" --dtype bf16 --shards "$SHARDS" --seed "$SEED" "$@" \
            --finetune "$dir/ft" "$dir/base"
        echo "$stamp" >"$dir/stamp"
    fi
}

# more_finetunes N: MODELS/ft2..ftN, fine-tunes of the same base (other --delta-scale).
more_finetunes() {
    k=2
    while [ "$k" -le "$1" ]; do
        if [ ! -d "$MODELS/ft$k" ]; then
            echo "bench: generating fine-tune $k of the base into $MODELS/ft$k" >&2
            rm -rf "$MODELS/tmp"
            mkdir -p "$MODELS/tmp"
            "$GEN" -q --preset "$PRESET" --dtype bf16 --shards "$SHARDS" --seed "$SEED" \
                --delta-scale "$(awk -v k="$k" 'BEGIN { print 0.5 * (k - 1) + (k > 2) }')" \
                --finetune "$MODELS/tmp/ft" "$MODELS/tmp/base"
            for f in "$MODELS/base"/*; do
                cmp -s "$f" "$MODELS/tmp/base/${f##*/}" ||
                    die "gen_model --delta-scale changed the base ($f)"
            done
            mv "$MODELS/tmp/ft" "$MODELS/ft$k"
            rm -rf "$MODELS/tmp"
        fi
        k=$((k + 1))
    done
}

MODELS=$BENCH/models/$PRESET-s$SHARDS-seed$SEED
generate "$MODELS"
# The fine-tunes beyond ft are kept in MODELS (generate empties it when the stamp changes).
LAYERS=$(sed -n 's/.*"num_hidden_layers": *\([0-9]*\).*/\1/p' "$MODELS/base/config.json")
[ "$FLAT_LAYERS" != auto ] || if [ "$LAYERS" = 6 ]; then FLAT_LAYERS=24; else FLAT_LAYERS=6; fi
[ "$FLAT_LAYERS" != "$LAYERS" ] || FLAT_LAYERS=""
[ "$TARGETS" = 1 ] || FLAT_LAYERS=""
FLATDIR=""
if [ -n "$FLAT_LAYERS" ]; then
    FLATDIR=$BENCH/models/$PRESET-l$FLAT_LAYERS-s$SHARDS-seed$SEED
    generate "$FLATDIR" --layers "$FLAT_LAYERS"
fi
NFT=0
if [ "$TARGETS" = 1 ] && [ "$CONC" -gt 0 ]; then
    NFT=3
    [ "$CONC" -ge 3 ] || NFT=$CONC
    more_finetunes "$NFT"
fi

bench_pair gen "$MODELS/base" "$MODELS/ft" "$ZSTD19" "$MODELS"
if [ "$TARGETS" = 1 ]; then
    [ "$TAGTEST" != 1 ] || bench_tag gen "$WORK/repo-gen.snap" "$MODELS/ft"
    if [ "$NFT" -gt 0 ]; then
        set -- "$MODELS/ft"
        k=2
        while [ "$k" -le "$NFT" ]; do set -- "$@" "$MODELS/ft$k"; k=$((k + 1)); done
        bench_writers gen "$WORK/repo-gen.snap" "$CONC" "$@"
    fi
    rm -rf "$WORK/repo-gen.snap"
    [ -z "$FLATDIR" ] || bench_flat flat "$FLATDIR/base" "$FLATDIR/ft"
fi

HAVE_REAL=0
if [ -n "$REAL" ] && [ -d "$REAL/base-bf16" ] && [ -d "$REAL/ft_b-bf16" ]; then
    HAVE_REAL=1
    bench_pair real "$REAL/base-bf16" "$REAL/ft_b-bf16" 1 ""
fi

CPUS=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo "?")
CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
echo
ZV=$(zstd -V | sed 's/.* v\([0-9.]*\).*/\1/')
echo "wdrepo bench: $CPUS cores${CPU:+ ($CPU)}, warm page cache," \
    "zstd $ZV, $(openssl version | cut -d' ' -f1-2)"
report gen "generated $PRESET bf16, $SHARDS shard(s), seed $SEED: $MODELS"
[ "$ZSTD19" = 1 ] || echo "(zstd -19 skipped: BENCH_ZSTD19=0)"
if [ "$HAVE_REAL" = 1 ]; then
    report real "real trained pair, read in place: $REAL/base-bf16 -> ft_b-bf16"
else
    echo
    if [ -n "$REAL" ]; then echo "(real trained pair not found in '$REAL'; skipped)"
    else echo "(real trained pair skipped: BENCH_REALMODEL is empty)"; fi
fi
if [ "$TARGETS" = 1 ]; then
    {
        report_targets gen "generated $PRESET bf16, $LAYERS layers, $SHARDS shard(s), seed $SEED" \
            "$LAYERS" "${FLAT_LAYERS:+flat}" "${FLAT_LAYERS:-0}"
        if [ "$HAVE_REAL" = 1 ]; then
            report_targets real "real trained pair $REAL/base-bf16 -> ft_b-bf16" \
                "$(sed -n 's/.*"num_hidden_layers": *\([0-9]*\).*/\1/p' "$REAL/base-bf16/config.json")" \
                "" 0
        fi
    } >"$WORK/targets"
    cat "$WORK/targets"
    [ -z "$DOC" ] || write_doc "$DOC" "$WORK/targets"
fi
if [ "$FAILED" != 0 ]; then
    echo "bench: a checkout was not byte-identical" >&2
    exit 1
fi
