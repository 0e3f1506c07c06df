#!/usr/bin/env bash
# Scaling of Ember's neuro pipeline, as in the study's figure: `neuro run
# --master local[2]` end to end for 1, 2, 4 and 8 subjects at the reduced
# size of scripts/bench_neuro.sh (64x76x64, 3 b0 + 3 shells x 15 directions).
# Prints a table (subjects, seconds, seconds per subject, per subject
# relative to 1 subject, peak RSS, machine load) and writes
# bench-results/neuro_scaling.{md,json,png} (chart by scripts/plot_scaling.py).
# The target: seconds per subject flat within 15% from 1 to 8 subjects.
#
# By default every run reads copies of one phantom subject (folders that
# link to the same files), so the time per subject measures how the engine
# scales, not how the seeded phantoms differ (their brains, hence the
# masked voxels the denoiser works on, differ in size by several percent).
# --distinct runs on MAXN different subjects instead.
#
# Usage:
#   bash scripts/bench_neuro_scaling.sh
#   bash scripts/bench_neuro_scaling.sh --counts 1,2,4      # other subject counts
#   bash scripts/bench_neuro_scaling.sh --distinct          # different subjects
#
# Environment: SHAPE, B0, DIRS, SHELLS, SNR, SEED as in bench_neuro.sh;
# REPS (3: runs per count, the median is used), DATA
# (target/neuro-bench-data), WAIT_LOAD (as in bench_neuro.sh), NEURO (a
# prebuilt `neuro`; default: build it here and run a copy).
# Needs the venv of `bash scripts/python-peers.sh --with-bench` (matplotlib).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NAME="bench_neuro_scaling.sh"
# shellcheck source=bench-common.sh
source "$SCRIPT_DIR/bench-common.sh"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
VENV_PY="$REPO/.venv/bin/python"
PEERS="$SCRIPT_DIR/bench_neuro_peers.py"
OUT="$REPO/bench-results"
RUN="$OUT/neuro-scaling-run"

COUNTS="1,2,4,8"
DISTINCT=0
while [ "$#" -gt 0 ]; do
    case "$1" in
        --counts) COUNTS="$2"; shift ;;
        --distinct) DISTINCT=1 ;;
        -h|--help)
            bench_usage "${BASH_SOURCE[0]}"
            exit 0 ;;
        *) echo "bench_neuro_scaling.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
IFS=',' read -r -a COUNT_LIST <<< "$COUNTS"
MAXN=0
for n in "${COUNT_LIST[@]}"; do [ "$n" -gt "$MAXN" ] && MAXN="$n"; done

: "${SHAPE:=64 76 64}" "${B0:=3}" "${DIRS:=15}" "${SHELLS:=1000,2000,3000}" "${SNR:=20}"
: "${SEED:=1}" "${REPS:=3}" "${WAIT_LOAD:=}"
: "${DATA:=$REPO/target/neuro-bench-data}"
MASTER="local[2]"

bench_need_venv
mkdir -p "$OUT" "$DATA"
rm -rf "$RUN"
mkdir -p "$RUN"
cd "$REPO"

if [ -z "${NEURO:-}" ]; then
    echo "== building neuro (release)" >&2
    cargo build --release -p ember-examples --bin neuro >&2
    cp target/release/neuro "$RUN/neuro"
    NEURO="$RUN/neuro"
    EMBER_DESC="built here from $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' + uncommitted changes in the checkout')"
else
    EMBER_DESC="prebuilt $NEURO"
fi

# Phantoms: MAXN subjects, written once (the same folder naming as bench_neuro.sh).
PARAMS="shape=$SHAPE b0=$B0 dirs=$DIRS shells=$SHELLS snr=$SNR seed=$SEED subjects=$MAXN"
PH="$DATA/phantom-$(echo "$PARAMS" | md5sum | cut -c1-10)"
if [ "$(cat "$PH/PARAMS" 2>/dev/null || true)" != "$PARAMS" ]; then
    echo "== writing phantoms: $PARAMS -> $PH" >&2
    rm -rf "$PH"
    # shellcheck disable=SC2086
    "$NEURO" phantom --shape $SHAPE --b0 "$B0" --dirs "$DIRS" --shells "$SHELLS" --snr "$SNR" \
        --seed "$SEED" --subjects "$MAXN" --out "$PH" >/dev/null
    echo "$PARAMS" > "$PH/PARAMS"
else
    echo "== reusing phantoms $PH ($PARAMS)" >&2
fi
mapfile -t ALL_SUBJECTS < <(find "$PH" -mindepth 1 -maxdepth 1 -type d -name 'subject-*' | sort)
SUBJECTS_DESC="$MAXN different subjects"
if [ "$DISTINCT" = 0 ]; then
    mkdir -p "$RUN/subjects"
    COPIES=()
    for i in $(seq 0 $((MAXN - 1))); do
        link="$RUN/subjects/$(printf 'subject-%03d' "$i")"
        ln -s "${ALL_SUBJECTS[0]}" "$link"
        COPIES+=("$link")
    done
    ALL_SUBJECTS=("${COPIES[@]}")
    SUBJECTS_DESC="copies of $(basename "$PH")/subject-000"
fi

if [ -n "$WAIT_LOAD" ]; then
    for i in $(seq 0 15); do
        l="$(cut -d' ' -f1 /proc/loadavg)"
        awk -v l="$l" -v m="$WAIT_LOAD" 'BEGIN { exit !(l < m) }' && break
        [ "$i" = 15 ] && { echo "== load still $l after 15 min; running anyway" >&2; break; }
        echo "== load $l >= $WAIT_LOAD; waiting a minute ($i/15)" >&2
        sleep 60
    done
fi

for n in "${COUNT_LIST[@]}"; do
    for rep in $(seq 1 "$REPS"); do
        echo "== $n subject(s), run $rep/$REPS (loadavg $(cut -d' ' -f1-3 /proc/loadavg))" >&2
        rm -rf "$RUN/out"
        "$VENV_PY" "$PEERS" --measure --json "$RUN/n$n-r$rep.json" -- \
            "$NEURO" run --master "$MASTER" --out "$RUN/out" "${ALL_SUBJECTS[@]:0:$n}" \
            > /dev/null 2> "$RUN/n$n-r$rep.log"
    done
done
rm -rf "$RUN/out"

VOLS=$((B0 + 3 * DIRS))
[ "$(echo "$SHELLS" | tr ',' '\n' | wc -l)" = 3 ] || VOLS="$B0 + shells $SHELLS x $DIRS"
TITLE="Ember neuro pipeline, $MASTER, ${SHAPE// /x} x $VOLS volumes per subject" \
EMBER_DESC="$EMBER_DESC" COUNTS="$COUNTS" REPS="$REPS" PARAMS="$PARAMS" SUBJECTS_DESC="$SUBJECTS_DESC" \
"$VENV_PY" - "$RUN" "$OUT/neuro_scaling.json" "$OUT/neuro_scaling.md" <<'EOF'
import json, os, statistics, sys
from pathlib import Path

run, js, md = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
e = os.environ
rows = []
for n in [int(x) for x in e["COUNTS"].split(",")]:
    ms = [json.loads((run / f"n{n}-r{r}.json").read_text()) for r in range(1, int(e["REPS"]) + 1)]
    bad = [m for m in ms if m["rc"] != 0]
    if bad:
        sys.exit(f"bench_neuro_scaling.sh: {n} subjects failed (rc {bad[0]['rc']}); see {run}/n{n}-r*.log")
    walls = [m["wall"] for m in ms]
    med = statistics.median(walls)
    rows.append({"subjects": n, "seconds": med, "per_subject": med / n, "all_seconds": walls,
                 "peak_rss_mib": max(m["peak_rss_mib"] for m in ms),
                 "other_cores": statistics.mean(m["machine"]["other_cores"] for m in ms),
                 "loadavg1_max": max(m["machine"]["loadavg1_max"] for m in ms)})
base = rows[0]["per_subject"]
lines = [f"# {e['TITLE']}", "",
         f"Phantom: neuro phantom {e['PARAMS']}; runs read {e['SUBJECTS_DESC']}; Ember: {e['EMBER_DESC']}; "
         f"seconds = median of {e['REPS']} end-to-end runs (process start to exit).", "",
         "| subjects | seconds | seconds per subject | per subject / 1 subject | peak RSS MiB "
         "| all runs s | other load (cores) | loadavg1 max |",
         "|---:|---:|---:|---:|---:|---|---:|---:|"]
for r in rows:
    lines.append(f"| {r['subjects']} | {r['seconds']:.2f} | {r['per_subject']:.2f} "
                 f"| {r['per_subject'] / base:.2f} | {r['peak_rss_mib']:.0f} "
                 f"| {', '.join(f'{w:.2f}' for w in r['all_seconds'])} | {r['other_cores']:.2f} "
                 f"| {r['loadavg1_max']:.1f} |")
per = [r["per_subject"] for r in rows]
spread = (max(per) - min(per)) / min(per)
lines += ["", f"Seconds per subject: {min(per):.2f} to {max(per):.2f}, spread {100 * spread:.1f}% "
          f"(target: flat within 15%: {'met' if spread <= 0.15 else 'MISSED'}). 'other load' = CPU "
          "used by processes outside the run, in cores."]
text = "\n".join(lines) + "\n"
print(text, end="")
md.write_text(text)
js.write_text(json.dumps({"title": e["TITLE"], "rows": rows}, indent=1) + "\n")
EOF
"$VENV_PY" "$SCRIPT_DIR/plot_scaling.py" "$OUT/neuro_scaling.json" "$OUT/neuro_scaling.png"
echo "(written to $OUT/neuro_scaling.md, .json and .png)" >&2
