#!/usr/bin/env bash
# Engine benchmark, Ember against Spark, same machine, same data, one go:
# builds the Ember bench (examples/benches/engine.rs) in release, runs it
# (which generates the word count text once into the data folder), then
# runs scripts/bench_spark.py on the same text and sizes, and prints one
# table of Ember seconds, Spark seconds and Spark/Ember ratios, with the
# versions and the machine load. The table also goes to
# bench-results/engine.md (with both raw JSON files next to it).
#
# Usage:
#   bash scripts/bench_engine.sh                 # full sizes (several minutes)
#   bash scripts/bench_engine.sh --quick         # small sizes, smoke run
#   bash scripts/bench_engine.sh --rdd-pairs 20000000  # Spark RDD groupByKey on all pairs
#                                                      # (default 5 M: Python workers are slow)
#   bash scripts/bench_engine.sh --skip-spark    # Ember only (reuses the last Spark JSON)
#
# Environment: DATA (input folder, default target/bench-data), TEXT_MB,
# VOCAB, PAIRS, RDD_PAIRS, KEYS, TASKS, LATENCY_RUNS override the sizes.
# Needs the venv of `bash scripts/python-peers.sh --with-bench` and a Java
# (JAVA_HOME is detected from `java` on the PATH when unset).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NAME="bench_engine.sh"
# shellcheck source=bench-common.sh
source "$SCRIPT_DIR/bench-common.sh"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
VENV_PY="$REPO/.venv/bin/python"
OUT="$REPO/bench-results"

QUICK=0
SKIP_SPARK=0
RDD_PAIRS="${RDD_PAIRS:-}"
while [ "$#" -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --skip-spark) SKIP_SPARK=1 ;;
        --rdd-pairs) RDD_PAIRS="$2"; shift ;;
        -h|--help)
            bench_usage "${BASH_SOURCE[0]}"
            exit 0 ;;
        *) echo "bench_engine.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

if [ "$QUICK" = 1 ]; then
    : "${TEXT_MB:=8}" "${VOCAB:=10000}" "${PAIRS:=200000}" "${KEYS:=10000}" "${TASKS:=1000}" "${LATENCY_RUNS:=100}"
    : "${RDD_PAIRS:=$PAIRS}"
else
    : "${TEXT_MB:=256}" "${VOCAB:=100000}" "${PAIRS:=20000000}" "${KEYS:=1000000}" "${TASKS:=10000}" "${LATENCY_RUNS:=1000}"
    # PySpark's RDD groupByKey moves every pair through Python workers
    # (pickled): minutes at 20 M pairs on 2 cores. It runs on 5 M pairs, and
    # Ember runs that size too, so its row compares like with like.
    : "${RDD_PAIRS:=5000000}"
fi
: "${DATA:=$REPO/target/bench-data}"
REPS=3

bench_need_venv
bench_need_java

mkdir -p "$OUT" "$DATA"
cd "$REPO"

echo "== building the Ember bench (release)" >&2
cargo bench -p ember-examples --bench engine --no-run >&2

LOAD_BEFORE="$(cat /proc/loadavg)"
echo "== load before: $LOAD_BEFORE" >&2

echo "== Ember" >&2
EXTRA=()
if [ "$RDD_PAIRS" != "$PAIRS" ]; then
    EXTRA=(--extra-pairs "$RDD_PAIRS")
fi
cargo bench -q -p ember-examples --bench engine -- \
    --data "$DATA" --json "$OUT/ember.json" \
    --text-mb "$TEXT_MB" --vocabulary "$VOCAB" --pairs "$PAIRS" --keys "$KEYS" \
    --tasks "$TASKS" --reps "$REPS" --latency-runs "$LATENCY_RUNS" "${EXTRA[@]}" >&2
LOAD_MID="$(cat /proc/loadavg)"

TEXT="$("$VENV_PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["wordcount"]["input"])' "$OUT/ember.json")"

if [ "$SKIP_SPARK" = 0 ]; then
    echo "== Spark (load now: $LOAD_MID)" >&2
    "$VENV_PY" "$SCRIPT_DIR/bench_spark.py" --text "$TEXT" --pairs "$PAIRS" --rdd-pairs "$RDD_PAIRS" \
        --keys "$KEYS" --tasks "$TASKS" --reps "$REPS" --latency-runs "$LATENCY_RUNS" \
        --json "$OUT/spark.json" >/dev/null
elif [ ! -f "$OUT/spark.json" ]; then
    echo "bench_engine.sh: --skip-spark but no $OUT/spark.json from an earlier run" >&2
    exit 1
fi
LOAD_AFTER="$(cat /proc/loadavg)"

RUSTC="$(rustc --version)"
CPU="$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
NPROC="$(nproc)"

"$VENV_PY" - "$OUT/ember.json" "$OUT/spark.json" "$OUT/engine.md" <<EOF
import json, sys
ember = json.load(open(sys.argv[1]))
spark = json.load(open(sys.argv[2]))
quick = ${QUICK}
lines = []
out = lines.append

def ratio(s, e):
    return f"{s / e:.1f}x" if e > 0 else "n/a"

def check(name, keys, e, s):
    same = all(e.get(k) == s.get(k) for k in keys)
    return ("same result" if same else "RESULTS DIFFER: " + ", ".join(f"{k} {e.get(k)} vs {s.get(k)}" for k in keys))

out(f"# Ember vs Spark engine benchmark{' (quick sizes)' if quick else ''}")
out("")
out(f"Machine: {'$CPU'}, {$NPROC} cores; master local[2] for both.")
out(f"Versions: {'$RUSTC'}; pyspark {spark['pyspark']}; {spark['java']}; Python {spark['python']}; Spark driver memory {spark['driver_memory']}.")
out(f"Load average (1/5/15 min) before: {'$LOAD_BEFORE'.split()[:3]}, after Ember: {'$LOAD_MID'.split()[:3]}, after Spark: {'$LOAD_AFTER'.split()[:3]}.")
out("")
out("| workload | measure | Ember | Spark | Spark/Ember | check |")
out("|---|---|---:|---:|---:|---|")
wc_e, wc_s = ember["wordcount"], spark["wordcount"]
mib = wc_e["input_bytes"] / 2**20
wc_check = check("wordcount", ["total_words", "distinct_words", "checksum"], wc_e, wc_s)
out(f"| word count {mib:.0f} MiB (DataFrame) | end to end, s | {wc_e['e2e_s']:.2f} | {wc_s['e2e_s']:.2f} | {ratio(wc_s['e2e_s'], wc_e['e2e_s'])} | {wc_check}: {wc_e['total_words']} words, {wc_e['distinct_words']} distinct |")
out(f"| | job only, s | {wc_e['job_s']:.2f} | {wc_s['job_s']:.2f} | {ratio(wc_s['job_s'], wc_e['job_s'])} | |")
gb_e, gb_s = ember["groupby"], spark["groupby_df"]
keys = ["groups", "values", "sum_size_sq", "sum_key_size"]
out(f"| group-by-key {gb_e['pairs']/1e6:g} M pairs, {gb_e['keys']/1e6:g} M keys (DataFrame collect_list) | end to end, s | {gb_e['e2e_s']:.2f} | {gb_s['e2e_s']:.2f} | {ratio(gb_s['e2e_s'], gb_e['e2e_s'])} | {check('groupby', keys, gb_e, gb_s)}: {gb_e['groups']} groups |")
out(f"| | job only, s | {gb_e['job_s']:.2f} | {gb_s['job_s']:.2f} | {ratio(gb_s['job_s'], gb_e['job_s'])} | |")
rdd_s = spark["groupby_rdd"]
rdd_e = gb_e if rdd_s["pairs"] == gb_e["pairs"] else ember.get("groupby_extra", {})
if rdd_e:
    out(f"| group-by-key {rdd_s['pairs']/1e6:g} M pairs (RDD groupByKey) | end to end, s | {rdd_e['e2e_s']:.2f} | {rdd_s['e2e_s']:.2f} | {ratio(rdd_s['e2e_s'], rdd_e['e2e_s'])} | {check('groupby_rdd', keys, rdd_e, rdd_s)} |")
    out(f"| | job only, s | {rdd_e['job_s']:.2f} | {rdd_s['job_s']:.2f} | {ratio(rdd_s['job_s'], rdd_e['job_s'])} | |")
t_e, t_s = ember["tasks"], spark["tasks"]
out(f"| {t_e['tasks']} empty tasks | job (median of {len(t_s['job_s_all'])}), s | {t_e['job_s_median']:.3f} | {t_s['job_s_median']:.3f} | {ratio(t_s['job_s_median'], t_e['job_s_median'])} | |")
out(f"| | tasks/s (median run) | {t_e['tasks_per_s']:.0f} | {t_s['tasks_per_s']:.0f} | {ratio(t_e['tasks_per_s'], t_s['tasks_per_s'])} | |")
l_e, l_s = ember["latency"], spark["latency"]
out(f"| trivial 1-partition job, {l_e['runs']} runs | median, µs | {l_e['median_us']:.0f} | {l_s['median_us']:.0f} | {ratio(l_s['median_us'], l_e['median_us'])} | |")
out(f"| | p99, µs | {l_e['p99_us']:.0f} | {l_s['p99_us']:.0f} | {ratio(l_s['p99_us'], l_e['p99_us'])} | |")
out(f"| context / session start | s | {wc_e['start_s']:.4f} | {wc_s['start_s']:.2f} | {ratio(wc_s['start_s'], wc_e['start_s'])} | JVM + SparkSession incl. import |")
out("")
out("End to end = context (session) start + job + stop; Spark runs each workload in a fresh")
out("process and JVM. Ratios are Spark time / Ember time (for tasks/s: Ember rate / Spark rate).")
targets = [
    ("word count end to end >= 10x", wc_s["e2e_s"] / wc_e["e2e_s"] >= 10),
    ("group-by-key end to end >= 5x (DataFrame)", gb_s["e2e_s"] / gb_e["e2e_s"] >= 5),
    (">= 20,000 tasks/s", t_e["tasks_per_s"] >= 20000),
    ("trivial job < 1 ms (median)", l_e["median_us"] < 1000),
]
out("")
out("Targets: " + "; ".join(f"{name}: {'met' if ok else 'MISSED'}" for name, ok in targets) + ".")
text = "\n".join(lines) + "\n"
print(text)
open(sys.argv[3], "w").write(text)
EOF
