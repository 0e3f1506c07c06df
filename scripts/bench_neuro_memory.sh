#!/usr/bin/env bash
# Input larger than memory, out of the box: runs `neuro run` (no flag
# besides --out) inside a memory-limited control group on subjects whose
# float32 data is several times the limit, and prints the data size, the
# limit, the group's peak memory use, whether the kernel had to reclaim or
# kill (OOM), the job summaries (with their spill) and the wall time. This is
# the issue's "4 full-size subjects (17 GB) on a 24 GiB machine" scaled
# down to fit a benchmark run: Ember reads the group's limit as the
# machine's memory (ember_core::conf::physical_memory), so its defaults
# follow the limit just as they would follow a smaller machine.
#
# Needs root, a writable cgroup file system (v2, or v1's memory
# controller) and GNU time (/usr/bin/time, Debian package `time`) for the
# process's own peak RSS (the group's peak also counts page cache, which
# the kernel reclaims). Writes bench-results/neuro_memory.md.
#
# Usage:
#   sudo bash scripts/bench_neuro_memory.sh
#
# Environment: LIMIT_MIB (768), SUBJECTS (4), SHAPE ("96 114 96"), B0 (3),
# DIRS (20), SEED (1), DATA (phantom folder, default
# target/neuro-bench-data).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
: "${LIMIT_MIB:=768}" "${SUBJECTS:=4}" "${SHAPE:=96 114 96}" "${B0:=3}" "${DIRS:=20}" "${SEED:=1}"
: "${DATA:=$REPO/target/neuro-bench-data}"
cd "$REPO"

echo "== building neuro (release)" >&2
cargo build --release -p ember-examples --bin neuro >&2
RUN="$REPO/target/neuro-memory-bench"
rm -rf "$RUN"
mkdir -p "$RUN" "$DATA" bench-results
cp target/release/neuro "$RUN/neuro"

PARAMS="shape=$SHAPE b0=$B0 dirs=$DIRS seed=$SEED subjects=$SUBJECTS"
PH="$DATA/memory-$(echo "$PARAMS" | md5sum | cut -c1-10)"
if [ "$(cat "$PH/PARAMS" 2>/dev/null || true)" != "$PARAMS" ]; then
    echo "== writing phantoms: $PARAMS -> $PH" >&2
    rm -rf "$PH"
    # shellcheck disable=SC2086
    "$RUN/neuro" phantom --shape $SHAPE --b0 "$B0" --dirs "$DIRS" --seed "$SEED" \
        --subjects "$SUBJECTS" --out "$PH" >/dev/null
    echo "$PARAMS" > "$PH/PARAMS"
fi
mapfile -t SUBJ < <(find "$PH" -mindepth 1 -maxdepth 1 -type d -name 'subject-*' | sort)
read -r X Y Z <<< "$SHAPE"
VOLS=$((B0 + 3 * DIRS))
DATA_MIB=$(( X * Y * Z * VOLS * 4 * SUBJECTS / 1048576 ))

# A fresh group with the limit; the run is moved into it before exec.
LIMIT=$((LIMIT_MIB * 1048576))
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    CG="/sys/fs/cgroup/ember-memory-bench-$$"
    mkdir "$CG"
    echo "$LIMIT" > "$CG/memory.max"
    echo 0 > "$CG/memory.swap.max" 2>/dev/null || true
    peak() { cat "$CG/memory.peak" 2>/dev/null || echo 0; }
    ooms() { awk '/^oom_kill / { print $2 }' "$CG/memory.events"; }
else
    parent="/sys/fs/cgroup/memory$(awk -F: '$2 ~ /(^|,)memory(,|$)/ { print $3 }' /proc/self/cgroup)"
    CG="$parent/ember-memory-bench-$$"
    mkdir "$CG"
    echo "$LIMIT" > "$CG/memory.limit_in_bytes"
    echo "$LIMIT" > "$CG/memory.memsw.limit_in_bytes" 2>/dev/null || true
    peak() { cat "$CG/memory.max_usage_in_bytes"; }
    ooms() { awk '/^oom_kill / { print $2 }' "$CG/memory.oom_control"; }
fi
cleanup() { rmdir "$CG" 2>/dev/null || true; }
trap cleanup EXIT

echo "== neuro run on $SUBJECTS subjects (${DATA_MIB} MiB as float32) in a ${LIMIT_MIB} MiB group" >&2
t0="$(date +%s.%N)"
status=0
sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh "$CG" \
    env EMBER_UI_SHOWJOBSUMMARY=true /usr/bin/time -v -o "$RUN/time.txt" "$RUN/neuro" run --out "$RUN/out" "${SUBJ[@]}" >"$RUN/run.out" 2>"$RUN/run.log" || status=$?
t1="$(date +%s.%N)"
WALL="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
PEAK_MIB=$(( $(peak) / 1048576 ))
RSS_MIB=$(( $(awk -F': ' '/Maximum resident/ { print $2 }' "$RUN/time.txt" 2>/dev/null || echo 0) / 1024 ))
OOM="$(ooms || echo '?')"
SPILL="$(grep -h '^job ' "$RUN/run.log" || true)"
[ "$status" = 0 ] || tail -n 20 "$RUN/run.log" >&2
{
    echo "# Neuro pipeline on input larger than memory"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(nproc) cores;" \
        "ember $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' + uncommitted changes')"
    echo
    echo "\`neuro run --out OUT\` (no other flag: master local[*], memory from the group's limit) on"
    echo "$SUBJECTS phantom subjects of ${SHAPE// /x} x $VOLS volumes, inside a control group limited to ${LIMIT_MIB} MiB (swap off)."
    echo
    echo "| data as float32 MiB | group limit MiB | data / limit | peak RSS MiB | group peak MiB (with page cache) | OOM kills | exit status | wall s |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
    echo "| $DATA_MIB | $LIMIT_MIB | $(awk -v d="$DATA_MIB" -v l="$LIMIT_MIB" 'BEGIN { printf "%.1f", d / l }') | $RSS_MIB | $PEAK_MIB | $OOM | $status | $WALL |"
    echo
    echo "Job summaries (printed by the driver with EMBER_UI_SHOWJOBSUMMARY=true, observation only):"
    echo
    echo '```'
    echo "${SPILL:-(none printed)}"
    echo '```'
} | tee "$RUN/neuro_memory.md"
cp "$RUN/neuro_memory.md" bench-results/neuro_memory.md
exit "$status"
