#!/usr/bin/env bash
# The neuro pipeline benchmark (issue 5): Ember local[2] against the study's
# DIPY reference (one process, 2 threads), PySpark local[2] running the
# study's Spark plan with DIPY, and Dask (2 threads) with DIPY, on the SAME
# phantom data, in one go. Prints one table per size (per-step seconds, end
# to end, peak RSS of the process tree, peer/Ember ratios, machine load) and
# the agreement of every system's FA/MD/mask with DIPY's; writes it to
# bench-results/neuro.md (raw JSON, logs and outputs under
# bench-results/neuro-run/).
#
# Sizes (phantoms written once by `neuro phantom`, reused while their
# parameters do not change):
#   single  one subject, --shape 64 76 64 --b0 3 --dirs 15
#           --shells 1000,2000,3000 (48 volumes; DIPY takes 1-3 min here)
#   multi   MULTI subjects (default 4) of the same size
#
# Usage:
#   bash scripts/bench_neuro.sh                  # single and multi, all systems
#   bash scripts/bench_neuro.sh --sizes single   # one size only
#   bash scripts/bench_neuro.sh --systems ember,dipy
#   bash scripts/bench_neuro.sh --quick          # 32x38x32, 3+3x6 volumes, 2 subjects: smoke run
#
# Environment:
#   SHAPE ("64 76 64"), B0 (3), DIRS (15), SHELLS (1000,2000,3000), SNR (20),
#   SEED (1), MULTI (4), THREADS (2), EMBER_REPS (3: Ember runs this many
#   times per size, the median is shown), DATA (phantom folder, default
#   target/neuro-bench-data), SPARK_CONF ("k=v k=v": extra Spark settings,
#   none by default), WAIT_LOAD (wait up to 15 min, polling every minute,
#   until the 1-min load average is below this before each size; off by
#   default), NEURO (a prebuilt `neuro` binary; default: build
#   `cargo build --release -p ember-examples --bin neuro` here and run a
#   copy of it, so a concurrent rebuild cannot swap it mid-run).
# Needs the venv of `bash scripts/python-peers.sh --with-bench` and Java 17.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NAME="bench_neuro.sh"
# shellcheck source=bench-common.sh
source "$SCRIPT_DIR/bench-common.sh"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
VENV_PY="$REPO/.venv/bin/python"
PEERS="$SCRIPT_DIR/bench_neuro_peers.py"
OUT="$REPO/bench-results"
RUN="$OUT/neuro-run"

ARGS="$*"
SIZES="single,multi"
SYSTEMS="ember,dipy,pyspark,dask"
QUICK=0
while [ "$#" -gt 0 ]; do
    case "$1" in
        --sizes) SIZES="$2"; shift ;;
        --systems) SYSTEMS="$2"; shift ;;
        --quick) QUICK=1 ;;
        -h|--help)
            bench_usage "${BASH_SOURCE[0]}"
            exit 0 ;;
        *) echo "bench_neuro.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

if [ "$QUICK" = 1 ]; then
    : "${SHAPE:=32 38 32}" "${B0:=3}" "${DIRS:=6}" "${MULTI:=2}" "${EMBER_REPS:=1}"
fi
: "${SHAPE:=64 76 64}" "${B0:=3}" "${DIRS:=15}" "${SHELLS:=1000,2000,3000}" "${SNR:=20}"
: "${SEED:=1}" "${MULTI:=4}" "${THREADS:=2}" "${EMBER_REPS:=3}" "${SPARK_CONF:=}" "${WAIT_LOAD:=}"
: "${DATA:=$REPO/target/neuro-bench-data}"
MASTER="local[$THREADS]"

bench_need_venv
bench_need_java

mkdir -p "$OUT" "$RUN" "$DATA"
cd "$REPO"

# --- the Ember binary ---------------------------------------------------------
if [ -z "${NEURO:-}" ]; then
    echo "== building neuro (release)" >&2
    cargo build --release -p ember-examples --bin neuro >&2
    cp target/release/neuro "$RUN/neuro"
    NEURO="$RUN/neuro"
    EMBER_DESC="built here from $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' + uncommitted changes in the checkout')"
else
    EMBER_DESC="prebuilt $NEURO"
fi

wait_for_load() {
    [ -n "$WAIT_LOAD" ] || return 0
    local i
    for i in $(seq 0 15); do
        local l
        l="$(cut -d' ' -f1 /proc/loadavg)"
        if awk -v l="$l" -v m="$WAIT_LOAD" 'BEGIN { exit !(l < m) }'; then
            echo "== load $l < $WAIT_LOAD" >&2
            return 0
        fi
        [ "$i" = 15 ] && break
        echo "== load $l >= $WAIT_LOAD; waiting a minute ($i/15)" >&2
        sleep 60
    done
    echo "== load still $(cut -d' ' -f1 /proc/loadavg) after 15 min; running anyway" >&2
}

# --- phantoms, written once ---------------------------------------------------
PARAMS="shape=$SHAPE b0=$B0 dirs=$DIRS shells=$SHELLS snr=$SNR seed=$SEED subjects=$MULTI"
PH="$DATA/phantom-$(echo "$PARAMS" | md5sum | cut -c1-10)"
if [ "$(cat "$PH/PARAMS" 2>/dev/null || true)" != "$PARAMS" ]; then
    echo "== writing phantoms: $PARAMS -> $PH" >&2
    rm -rf "$PH"
    # shellcheck disable=SC2086
    "$NEURO" phantom --shape $SHAPE --b0 "$B0" --dirs "$DIRS" --shells "$SHELLS" --snr "$SNR" \
        --seed "$SEED" --subjects "$MULTI" --out "$PH" >/dev/null
    echo "$PARAMS" > "$PH/PARAMS"
else
    echo "== reusing phantoms $PH ($PARAMS)" >&2
fi
mapfile -t ALL_SUBJECTS < <(find "$PH" -mindepth 1 -maxdepth 1 -type d -name 'subject-*' | sort)

# --- versions and environment ------------------------------------------------
VERSIONS="$("$VENV_PY" -c '
import dipy, pyspark, dask, numpy, scipy, nibabel, sys
print(f"dipy {dipy.__version__}, pyspark {pyspark.__version__}, dask {dask.__version__}, "
      f"numpy {numpy.__version__}, scipy {scipy.__version__}, nibabel {nibabel.__version__}, "
      f"python {sys.version.split()[0]}")'), $(java -version 2>&1 | head -n1), $(rustc --version)"
CPU="$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
MEM="$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"

IFS=',' read -r -a SIZE_LIST <<< "$SIZES"
IFS=',' read -r -a SYSTEM_LIST <<< "$SYSTEMS"
SIZES_JSON=""
for size in "${SIZE_LIST[@]}"; do
    case "$size" in
        single) n=1; title="One subject, ${SHAPE// /x} x $((B0 + 3 * DIRS)) volumes" ;;
        multi) n="$MULTI"; title="$MULTI subjects, ${SHAPE// /x} x $((B0 + 3 * DIRS)) volumes each" ;;
        *) echo "bench_neuro.sh: unknown size $size (single, multi)" >&2; exit 2 ;;
    esac
    [ "$(echo "$SHELLS" | tr ',' '\n' | wc -l)" = 3 ] || title="$size, shells $SHELLS"
    SIZES_JSON+="${SIZES_JSON:+,}{\"name\": \"$size\", \"title\": \"$title\", \"subjects\": $n, \"data\": \"$PH\"}"
done
DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" MACHINE="$CPU, $(nproc) cores, $MEM; master $MASTER, $THREADS threads for every system" \
COMMAND="bash scripts/bench_neuro.sh $ARGS" PHANTOM="neuro phantom $PARAMS" EMBER="$EMBER_DESC" \
VERSIONS="$VERSIONS" SIZES_JSON="[$SIZES_JSON]" "$VENV_PY" -c '
import json, os, sys
e = os.environ
json.dump({"date": e["DATE"], "machine": e["MACHINE"], "command": e["COMMAND"], "phantom": e["PHANTOM"],
           "ember": e["EMBER"], "versions": e["VERSIONS"], "sizes": json.loads(e["SIZES_JSON"])},
          open(sys.argv[1], "w"), indent=1)' "$RUN/env.json"

measure() {
    # measure NAME DIR CMD... : runs CMD under the tree sampler; logs to DIR/NAME.log
    local name="$1" dir="$2"
    shift 2
    echo "== $(basename "$dir") / $name (loadavg $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    if ! "$VENV_PY" "$PEERS" --measure --json "$dir/$name.measure.json" -- "$@" \
        > "$dir/$name.stdout" 2> "$dir/$name.log"; then
        echo "   $name FAILED; see $dir/$name.log" >&2
        tail -n 5 "$dir/$name.log" >&2 || true
        return 0
    fi
    "$VENV_PY" -c '
import json, sys
m = json.load(open(sys.argv[1]))
print("   %.2f s, peak RSS %.0f MiB, other load %.2f cores"
      % (m["wall"], m["peak_rss_mib"], m["machine"]["other_cores"]))' "$dir/$name.measure.json" >&2
}

for size in "${SIZE_LIST[@]}"; do
    case "$size" in
        single) SUBJ=("${ALL_SUBJECTS[0]}") ;;
        multi) SUBJ=("${ALL_SUBJECTS[@]}") ;;
    esac
    D="$RUN/$size"
    rm -rf "$D"
    mkdir -p "$D"
    wait_for_load
    for sys_ in "${SYSTEM_LIST[@]}"; do
        case "$sys_" in
            ember)
                for rep in $(seq 1 "$EMBER_REPS"); do
                    rm -rf "$D/ember"
                    measure "ember-$rep" "$D" "$NEURO" run --master "$MASTER" --out "$D/ember" "${SUBJ[@]}"
                done ;;
            dipy|dask)
                measure "$sys_" "$D" "$VENV_PY" "$PEERS" --system "$sys_" --threads "$THREADS" \
                    --out "$D/$sys_" --json "$D/$sys_.json" "${SUBJ[@]}" ;;
            pyspark)
                CONF=()
                for kv in $SPARK_CONF; do CONF+=(--spark-conf "$kv"); done
                measure pyspark "$D" "$VENV_PY" "$PEERS" --system pyspark --threads "$THREADS" \
                    --out "$D/pyspark" --json "$D/pyspark.json" "${CONF[@]}" "${SUBJ[@]}" ;;
            *) echo "bench_neuro.sh: unknown system $sys_" >&2; exit 2 ;;
        esac
    done
    if [ -d "$D/dipy" ]; then
        for sys_ in ember pyspark dask; do
            [ -d "$D/$sys_" ] || continue
            "$VENV_PY" "$PEERS" --compare "$D/dipy" "$D/$sys_" --json "$D/compare-$sys_.json" >/dev/null
        done
    fi
done

"$VENV_PY" "$PEERS" --report "$RUN" --json "$OUT/neuro.md"
echo "(written to $OUT/neuro.md; raw results in $RUN)" >&2
