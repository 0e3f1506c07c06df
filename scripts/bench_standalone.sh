#!/usr/bin/env bash
# Standalone-cluster overhead: the neuro pipeline at the reduced size of
# scripts/bench_neuro.sh (one subject, 64x76x64, 3 b0 + 3 shells x 15
# directions) run with `neuro run --master local[2]` and submitted with
# `ember submit` to a master and two 1-core workers started by
# sbin/start-cluster.sh on this machine. Runs alternate (local, cluster,
# local, ...) so both see the same machine; prints each run's wall time,
# the medians and the cluster's overhead, and writes the table to
# bench-results/standalone.md. Target: overhead <= 10%.
#
# Usage:
#   bash scripts/bench_standalone.sh            # 3 runs of each
#   bash scripts/bench_standalone.sh --quick    # 32x38x32, 1 run each: smoke run
#
# Environment: SHAPE ("64 76 64"), B0 (3), DIRS (15), SHELLS
# (1000,2000,3000), SEED (1), REPS (3), DATA (phantom folder, default
# target/neuro-bench-data), PORT (17077: master port; the master web UI
# takes PORT+1000, workers' UIs PORT+1001 and up).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NAME="bench_standalone.sh"
# shellcheck source=bench-common.sh
source "$SCRIPT_DIR/bench-common.sh"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
QUICK=0
while [ "$#" -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        -h|--help)
            bench_usage "${BASH_SOURCE[0]}"
            exit 0 ;;
        *) echo "bench_standalone.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
if [ "$QUICK" = 1 ]; then
    : "${SHAPE:=32 38 32}" "${DIRS:=6}" "${REPS:=1}"
fi
: "${SHAPE:=64 76 64}" "${B0:=3}" "${DIRS:=15}" "${SHELLS:=1000,2000,3000}" "${SEED:=1}" "${REPS:=3}"
: "${DATA:=$REPO/target/neuro-bench-data}" "${PORT:=17077}"

cd "$REPO"
echo "== building ember and neuro (release)" >&2
cargo build --release -p ember-driver --bin ember -p ember-examples --bin neuro >&2
RUN="$REPO/target/standalone-bench"
rm -rf "$RUN"
mkdir -p "$RUN" "$DATA" bench-results
# The submitted binary is copied out of target/ so a rebuild during the
# run cannot change it under the workers.
cp target/release/neuro target/release/ember "$RUN/"
NEURO="$RUN/neuro"
EMBER="$RUN/ember"

PARAMS="shape=$SHAPE b0=$B0 dirs=$DIRS shells=$SHELLS seed=$SEED"
PH="$DATA/standalone-$(echo "$PARAMS" | md5sum | cut -c1-10)"
if [ "$(cat "$PH/PARAMS" 2>/dev/null || true)" != "$PARAMS" ]; then
    echo "== writing the phantom: $PARAMS -> $PH" >&2
    rm -rf "$PH"
    # shellcheck disable=SC2086
    "$NEURO" phantom --shape $SHAPE --b0 "$B0" --dirs "$DIRS" --shells "$SHELLS" \
        --seed "$SEED" --subjects 1 --out "$PH" >/dev/null
    echo "$PARAMS" > "$PH/PARAMS"
fi
SUBJECT="$(find "$PH" -mindepth 1 -maxdepth 1 -type d -name 'subject-*' | sort | head -n1)"

export EMBER_CLUSTER_DIR="$RUN/cluster"
stop_cluster() { bash "$REPO/sbin/stop-cluster.sh" >/dev/null 2>&1 || true; }
trap stop_cluster EXIT
EMBER="$EMBER" EMBER_MASTER_PORT="$PORT" EMBER_MASTER_WEBUI_PORT=$((PORT + 1000)) \
    EMBER_WORKER_WEBUI_PORT=$((PORT + 1001)) EMBER_WORKER_CORES=1 EMBER_WORKER_MEMORY=4g \
    bash "$REPO/sbin/start-cluster.sh" 2 >&2
URL="ember://127.0.0.1:$PORT"

seconds() { # seconds CMD...: runs CMD quietly, prints its wall time
    local t0 t1
    t0="$(date +%s.%N)"
    "$@" >"$RUN/last.out" 2>"$RUN/last.log" || { tail -n 20 "$RUN/last.log" >&2; exit 1; }
    t1="$(date +%s.%N)"
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}

LOCAL=()
CLUSTER=()
LOADS=()
for rep in $(seq 1 "$REPS"); do
    rm -rf "$RUN/out-local" "$RUN/out-cluster"
    l="$(seconds "$NEURO" run --master 'local[2]' --out "$RUN/out-local" "$SUBJECT")"
    c="$(seconds "$EMBER" submit --master "$URL" "$NEURO" run --out "$RUN/out-cluster" "$SUBJECT")"
    load="$(cut -d' ' -f1 /proc/loadavg)"
    echo "== run $rep: local[2] $l s, standalone $c s (load $load)" >&2
    # Same outputs, or the comparison means nothing.
    for f in mask.nii.gz fa.nii.gz md.nii.gz; do
        cmp -s "$RUN/out-local/$(basename "$SUBJECT")/$f" "$RUN/out-cluster/$(basename "$SUBJECT")/$f" ||
            { echo "bench_standalone.sh: $f differs between local[2] and the cluster" >&2; exit 1; }
    done
    LOCAL+=("$l")
    CLUSTER+=("$c")
    LOADS+=("$load")
done

median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ML="$(median "${LOCAL[@]}")"
MC="$(median "${CLUSTER[@]}")"
OVER="$(awk -v l="$ML" -v c="$MC" 'BEGIN { printf "%+.1f%%", (c / l - 1) * 100 }')"
VOLS=$((B0 + 3 * DIRS))
{
    echo "# Standalone cluster overhead (neuro pipeline)"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(nproc) cores;" \
        "ember $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' + uncommitted changes')"
    echo
    echo "One subject, ${SHAPE// /x} x $VOLS volumes; \`neuro run --master local[2]\` against"
    echo "\`ember submit --master $URL neuro run\` on a master and two 1-core workers"
    echo "(sbin/start-cluster.sh, 4g each) on the same machine; wall time of the whole command,"
    echo "runs alternating; outputs compared byte for byte."
    echo
    echo "| run | local[2] s | standalone s | load avg after |"
    echo "|----:|-----------:|-------------:|---------------:|"
    for i in "${!LOCAL[@]}"; do
        echo "| $((i + 1)) | ${LOCAL[$i]} | ${CLUSTER[$i]} | ${LOADS[$i]} |"
    done
    echo "| median | $ML | $MC | |"
    echo
    echo "Cluster overhead (median standalone / median local[2] - 1): **$OVER** (target <= +10%)."
} | tee "$RUN/standalone.md"
[ "$QUICK" = 1 ] || cp "$RUN/standalone.md" bench-results/standalone.md
