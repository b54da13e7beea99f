#!/bin/sh
# bench.sh - `make bench`: times wdrepo init/add-base/commit/checkout on a generated
# Qwen2.5-0.5B-shaped bf16 model and fine-tune (and on ../shared/realmodel when present)
# next to cp, zstd and openssl in the same run, and compares stored sizes with zstd -19.
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
#   BENCH_KEEP=0             1 keeps the scratch repositories and checkouts
# Wall times use a warm page cache; peak RSS is GNU time's "Maximum resident set size".
set -eu

BUILD=${BUILD:-build}
PRESET=${BENCH_PRESET:-qwen0.5b}
SHARDS=${BENCH_SHARDS:-1}
SEED=${BENCH_SEED:-1}
ZSTD19=${BENCH_ZSTD19:-1}
STRATEGIES=${BENCH_STRATEGIES-sparse quantized int4}
REAL=${BENCH_REALMODEL-../shared/realmodel}
HF_MAX=${BENCH_HF_RUNS:-10}
KEEP=${BENCH_KEEP:-0}

WD=$BUILD/wdrepo
GEN=$BUILD/tools/gen_model
XOR=$BUILD/tools/st_xor
TIME=/usr/bin/time

die() { echo "bench: $*" >&2; exit 1; }

[ -n "$BUILD" ] || die "BUILD is empty"
for f in "$WD" "$GEN" "$XOR"; do
    [ -x "$f" ] || die "'$f' is missing; run 'make' first"
done
[ -x "$TIME" ] || die "$TIME (GNU time) is needed for peak RSS (Debian: apt-get install time)"
for t in zstd openssl tar cmp du od awk find; do
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

# timed SECTION LABEL PREPARE CMD...: runs CMD once under GNU time (peak RSS, and wall
# time), then, when HF_RUNS > 0, HF_RUNS more times under hyperfine with PREPARE (a
# command line, may be empty) before each run, whose mean replaces the wall time:
# 10 ms timer resolution says little about a 20 ms operation. Appends
# "T SECTION LABEL wall_s rss_kb" to the results; CMD's stdout goes to $WORK/out.
# Returns CMD's status (the caller decides whether a failure is fatal).
timed() {
    sec=$1 label=$2 prep=$3
    shift 3
    if "$TIME" -v -o "$WORK/time" "$@" >"$WORK/out" 2>"$WORK/err"; then st=0; else st=$?; fi
    if [ "$st" -ne 0 ]; then
        echo "bench: '$label' failed (exit $st): $(head -n 1 "$WORK/err")" >&2
        printf 'T\t%s\t%s\tFAILED\t-\n' "$sec" "$label" >>"$RES"
        return "$st"
    fi
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($NF, p, ":"); s = 0;
        for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$WORK/time")
    rss=$(awk -F': ' '/Maximum resident set size/ { print $NF }' "$WORK/time")
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
    snap=$WORK/repo-$sec.snap
    [ "$HF_RUNS" -eq 0 ] || cp -a "$repo" "$snap"
    reset="sh -c $(shq "rm -rf $(shq "$repo") && cp -a $(shq "$snap") $(shq "$repo")")"
    timed "$sec" "wdrepo commit (lossless)" "$reset" "$WD" -q -R "$repo" commit "$ft" --on base --name ft
    rm -rf "$snap"
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
            rm -f "$WORK/$s.wdelta"
        fi
    done
    HF_RUNS=$hf
    rm -rf "$repo"
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
                if ($3 ~ /zstd -T0 -3/) z3w = $4 }
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

# ---- the runs ---------------------------------------------------------------------

MODELS=$BENCH/models/$PRESET-s$SHARDS-seed$SEED
STAMP="$(openssl dgst -sha256 "$GEN" | sed 's/.*= //') $PRESET $SHARDS $SEED"
if [ -f "$MODELS/stamp" ] && [ "$(cat "$MODELS/stamp")" = "$STAMP" ] &&
    [ -d "$MODELS/base" ] && [ -d "$MODELS/ft" ]; then
    echo "bench: reusing the generated model in $MODELS" >&2
else
    echo "bench: generating a $PRESET bf16 base and fine-tune into $MODELS" >&2
    rm -rf "$MODELS"
    mkdir -p "$MODELS"
    "$GEN" --preset "$PRESET" --dtype bf16 --shards "$SHARDS" --seed "$SEED" \
        --finetune "$MODELS/ft" "$MODELS/base"
    echo "$STAMP" >"$MODELS/stamp"
fi

bench_pair gen "$MODELS/base" "$MODELS/ft" "$ZSTD19" "$MODELS"

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
if [ "$FAILED" != 0 ]; then
    echo "bench: a checkout was not byte-identical" >&2
    exit 1
fi
