#!/usr/bin/env bash
# PageRank benchmark, one go, same machine, same edge list: Spark's
# SparkPageRank (10 iterations) in Ember local[2]
# (examples/benches/pagerank_ember.rs), in PySpark local[2]
# (scripts/bench_pagerank_spark.py, Spark's pagerank.py job), and as a
# single-threaded Rust loop over arrays, the "COST" baseline
# (examples/benches/pagerank_cost.rs). Builds the benches
# in release, generates the edge list once into the data folder (reused
# when present), runs the three, checks that their results agree (pages
# ranked equal, rank sums within 1e-6 relative, the same ten top pages
# with ranks within 1e-6 relative) and prints one table of seconds and
# ratios, with the versions and the machine load. The table also goes to
# bench-results/pagerank.md (the three raw JSON files next to it).
#
# Usage:
#   bash scripts/bench_pagerank.sh               # 10 M edges, 1 M nodes (several minutes)
#   bash scripts/bench_pagerank.sh --quick       # 200 k edges, smoke run
#   bash scripts/bench_pagerank.sh --skip-spark  # Ember and COST only (reuses the last Spark JSON)
#
# Environment: DATA (edge list folder, default target/bench-data), EDGES,
# NODES (default EDGES / 10), REPS (Ember and COST runs, default 3),
# SPARK_REPS (default 3 with --quick, else 1), PARTITIONS (Ember's, default
# its default parallelism). Needs the venv of
# `bash scripts/python-peers.sh --with-bench` and a Java (JAVA_HOME is
# detected from `java` on the PATH when unset).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NAME="bench_pagerank.sh"
# shellcheck source=bench-common.sh
source "$SCRIPT_DIR/bench-common.sh"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
VENV_PY="$REPO/.venv/bin/python"
OUT="$REPO/bench-results"

QUICK=0
SKIP_SPARK=0
while [ "$#" -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --skip-spark) SKIP_SPARK=1 ;;
        -h|--help)
            bench_usage "${BASH_SOURCE[0]}"
            exit 0 ;;
        *) echo "bench_pagerank.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

if [ "$QUICK" = 1 ]; then
    : "${EDGES:=200000}" "${SPARK_REPS:=3}"
else
    : "${EDGES:=10000000}" "${SPARK_REPS:=1}"
fi
: "${NODES:=$((EDGES / 10))}" "${REPS:=3}" "${DATA:=$REPO/target/bench-data}"
ITERATIONS=10
EMBER_EXTRA=()
if [ -n "${PARTITIONS:-}" ]; then
    EMBER_EXTRA=(--partitions "$PARTITIONS")
fi

bench_need_venv
bench_need_java

mkdir -p "$OUT" "$DATA"
cd "$REPO"

echo "== building the benches (release)" >&2
cargo bench -p ember-examples --bench pagerank_ember --bench pagerank_cost --no-run >&2

echo "== edge list" >&2
EDGE_FILE="$(cargo bench -q -p ember-examples --bench pagerank_ember -- \
    --generate-only --data "$DATA" --edges "$EDGES" --nodes "$NODES")"

LOAD_BEFORE="$(cat /proc/loadavg)"
echo "== load before: $LOAD_BEFORE" >&2

echo "== COST (one thread, no engine)" >&2
cargo bench -q -p ember-examples --bench pagerank_cost -- "$EDGE_FILE" \
    --iterations "$ITERATIONS" --reps "$REPS" --json "$OUT/pagerank-cost.json" >/dev/null

echo "== Ember" >&2
cargo bench -q -p ember-examples --bench pagerank_ember -- \
    --data "$DATA" --edges "$EDGES" --nodes "$NODES" --iterations "$ITERATIONS" \
    --reps "$REPS" --json "$OUT/pagerank-ember.json" "${EMBER_EXTRA[@]}" >/dev/null
LOAD_MID="$(cat /proc/loadavg)"

if [ "$SKIP_SPARK" = 0 ]; then
    echo "== Spark (load now: $LOAD_MID)" >&2
    "$VENV_PY" "$SCRIPT_DIR/bench_pagerank_spark.py" --edges "$EDGE_FILE" \
        --iterations "$ITERATIONS" --reps "$SPARK_REPS" --json "$OUT/pagerank-spark.json" >/dev/null
elif [ ! -f "$OUT/pagerank-spark.json" ]; then
    echo "bench_pagerank.sh: --skip-spark but no $OUT/pagerank-spark.json from an earlier run" >&2
    exit 1
fi
LOAD_AFTER="$(cat /proc/loadavg)"

RUSTC="$(rustc --version)"
CPU="$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
NPROC="$(nproc)"
MEM="$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"

"$VENV_PY" - "$OUT" "$EDGE_FILE" "$QUICK" "$RUSTC" "$CPU" "$NPROC" "$MEM" \
    "$LOAD_BEFORE" "$LOAD_MID" "$LOAD_AFTER" <<'EOF'
import json, os, sys

out_dir, edge_file, quick, rustc, cpu, nproc, mem, load_before, load_mid, load_after = sys.argv[1:]
quick = quick == "1"
ember = json.load(open(os.path.join(out_dir, "pagerank-ember.json")))
cost = json.load(open(os.path.join(out_dir, "pagerank-cost.json")))
spark = json.load(open(os.path.join(out_dir, "pagerank-spark.json")))


def rel(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def agree(ref, other):
    """Problems of `other` against `ref` (empty when they agree)."""
    problems = []
    if other["input"] != ref["input"]:
        problems.append(f"input {other['input']} vs {ref['input']}")
    if other["iterations"] != ref["iterations"]:
        problems.append(f"iterations {other['iterations']} vs {ref['iterations']}")
    if other["pages"] != ref["pages"]:
        problems.append(f"pages {other['pages']} vs {ref['pages']}")
    if rel(other["rank_sum"], ref["rank_sum"]) > 1e-6:
        problems.append(f"rank sum {other['rank_sum']!r} vs {ref['rank_sum']!r}")
    top_ref = {p: r for p, r in ref["top"]}
    top_other = {p: r for p, r in other["top"]}
    if set(top_ref) != set(top_other):
        problems.append(f"top pages {sorted(top_other)} vs {sorted(top_ref)}")
    elif any(rel(top_ref[p], top_other[p]) > 1e-6 for p in top_ref):
        problems.append("top ranks differ by more than 1e-6 relative")
    return problems


problems = {name: agree(cost, r) for name, r in (("Ember", ember), ("PySpark", spark))}
all_agree = not any(problems.values())

edges = ember["edges"]
lines = []
out = lines.append
size = f"{edges / 1e6:g} M" if edges >= 1e6 else f"{edges / 1e3:g} k"
out(f"# PageRank: Ember vs PySpark vs a single-threaded loop{' (quick size)' if quick else ''}")
out("")
out(f"SparkPageRank, {ember['iterations']} iterations, on `{os.path.basename(edge_file)}` "
    f"({size} edge lines, {os.path.getsize(edge_file) / 2**20:.0f} MiB; {cost['pages']} pages ranked at the end).")
out(f"Machine: {cpu}, {nproc} cores, {mem}. Ember and PySpark: master {ember['master']} "
    f"(Ember {ember['partitions']} partitions); COST: one thread.")
out(f"Versions: {rustc}; pyspark {spark['pyspark']}; {spark['java']}; Python {spark['python']}; "
    f"Spark driver memory {spark['driver_memory']}.")
out(f"Load average (1/5/15 min) before: {load_before.split()[:3]}, after COST and Ember: "
    f"{load_mid.split()[:3]}, after PySpark: {load_after.split()[:3]}.")
out("")


def secs(r, key="e2e_s"):
    return f"{r[key + '_min']:.2f} / {r[key + '_median']:.2f}"


def ratio(a, b):
    if b <= 0:
        return "n/a"
    r = a / b
    return f"{r:.1f}x" if r >= 1 else f"{r:.3f}x"


out("| contender | runs | end to end, s (min / median) | ÷ Ember (median) | result |")
out("|---|---:|---:|---:|---|")
check = "agrees" if all_agree else "DIFFERS"
e_med = ember["e2e_s_median"]
out(f"| Ember `{ember['master']}` | {len(ember['runs'])} | {secs(ember)} | 1.0x | "
    f"Σ rank {ember['rank_sum']:.6f} |")
out(f"| COST: one thread, CSR arrays (reading the file included) | {len(cost['runs'])} | {secs(cost)} | "
    f"{ratio(cost['e2e_s_median'], e_med)} | Σ rank {cost['rank_sum']:.6f} |")
out(f"| COST: the iterations only | {len(cost['runs'])} | {secs(cost, 'compute_s')} | "
    f"{ratio(cost['compute_s_median'], e_med)} | |")
out(f"| PySpark `{spark['master']}` (pagerank.py) | {len(spark['runs'])} | {secs(spark)} | "
    f"{ratio(spark['e2e_s_median'], e_med)} | Σ rank {spark['rank_sum']:.6f} |")
out("")
if all_agree:
    out("Results agree: the same pages ranked, rank sums within 1e-6 relative, the same ten "
        "top pages with ranks within 1e-6 relative.")
else:
    for name, p in problems.items():
        if p:
            out(f"RESULTS DIFFER ({name} vs COST): " + "; ".join(p))
out("")
e_start = sorted(r["start_s"] for r in ember["runs"])
s_start = sorted(r["start_s"] for r in spark["runs"])
out(f"End to end = context (session) start + job + stop; context start medians: Ember "
    f"{e_start[len(e_start) // 2]:.4f} s, PySpark {s_start[len(s_start) // 2]:.2f} s (JVM launch "
    "and pyspark import included). Each Ember and PySpark run has a fresh context (PySpark: a fresh "
    "process and JVM); the COST runs read the file again each time. Ratios are the contender's "
    "median over Ember's median.")
job = ember.get("job")
if job:
    out("")
    out(f"Ember's first run, its job: {job['seconds']:.2f} s, {job['stages']} stages, {job['tasks']} tasks "
        f"busy {job['task_s']:.2f} s in all ({job['task_s'] / job['seconds']:.2f} of {nproc} cores on average); "
        f"shuffle write {job['shuffle_records_written']} records / {job['shuffle_bytes_written'] / 2**20:.1f} MiB; "
        f"spilled {job['spill_disk_bytes'] / 2**20:.1f} MiB; seconds per stage in launch order: "
        + ", ".join(f"{x:.2f}" for x in job["stage_s"]) + ".")
targets = [
    ("PySpark / Ember >= 10x end to end", spark["e2e_s_median"] / e_med >= 10),
    ("Ember beats COST end to end", cost["e2e_s_median"] > e_med),
]
out("")
out("Targets: " + "; ".join(f"{name}: {'met' if ok else 'MISSED'}" for name, ok in targets) + ".")
text = "\n".join(lines) + "\n"
print(text)
with open(os.path.join(out_dir, "pagerank.md"), "w") as f:
    f.write(text)
if not all_agree:
    sys.exit("bench_pagerank.sh: the results differ (see the table)")
EOF
