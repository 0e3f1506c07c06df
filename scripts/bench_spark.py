#!/usr/bin/env python3
"""PySpark side of the engine benchmark (see examples/benches/engine.rs).

Runs the same workloads as the Ember bench, in Spark `local[2]`, and prints
one JSON object:

* ``wordcount``: the DataFrame API, ``explode(split(value, '[^A-Za-z]+'))``,
  empty strings dropped, ``lower``, ``groupBy('w').count()``, collected; words
  are runs of ASCII letters, lowercased, exactly as Ember tokenizes. Summary:
  total words, distinct words and the checksum sum(FNV-1a(word) * count)
  mod 2**64, as the Ember bench computes it.
* ``groupby_df``: pairs ``k = ((id * 2654435761) mod 2**32 * keys) >> 32``,
  ``v = (id mod 1009) / 8`` from ``spark.range``, grouped with
  ``groupBy('k').agg(collect_list('v'))``, then one aggregation: number of
  groups, sum of sizes, sum of squared sizes, sum of key * size.
* ``groupby_rdd``: the same pairs through the RDD API, ``groupByKey``
  (``--rdd-pairs`` may be smaller than ``--pairs``: Python workers are slow).
* ``tasks``: ``sc.parallelize(range(n), n).count()``, best and median of
  ``--reps``.
* ``latency``: ``sc.parallelize([1], 1).count()`` repeated; median and p99.

Every workload runs in a fresh Python process with its own JVM, so its
``start_s`` (import of pyspark, JVM launch, SparkSession) is measured
separately from ``job_s``; ``e2e_s`` = start + job + stop.

Run with the venv made by ``scripts/python-peers.sh --with-bench``:

    .venv/bin/python scripts/bench_spark.py --text FILE [--pairs N] ...

JAVA_HOME is detected from ``java`` on the PATH when unset.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

MASK64 = (1 << 64) - 1
WORKLOADS = ("wordcount", "groupby_df", "groupby_rdd", "tasks", "latency")


def detect_java_home():
    """JAVA_HOME, or the installation of ``java`` on the PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and os.path.isfile(os.path.join(home, "bin", "java")):
        return home
    java = shutil.which("java")
    if not java:
        sys.exit("bench_spark.py: no java on the PATH and JAVA_HOME is not set")
    return os.path.dirname(os.path.dirname(os.path.realpath(java)))


def java_version(home):
    out = subprocess.run([os.path.join(home, "bin", "java"), "-version"], capture_output=True, text=True)
    return (out.stderr or out.stdout).splitlines()[0].strip()


def fnv1a(word):
    h = 0xCBF29CE484222325
    for b in word.encode("ascii"):
        h = ((h ^ b) * 0x100000001B3) & MASK64
    return h


def quantile(sorted_values, q):
    """Nearest-rank quantile, as the Ember bench computes it."""
    rank = min(max(int(-(-q * len(sorted_values) // 1)), 1), len(sorted_values))
    return sorted_values[rank - 1]


def start_session(args, app):
    """(session, seconds to import pyspark and start the JVM and session)."""
    t0 = time.perf_counter()
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master(args.master)
        .appName(app)
        .config("spark.driver.memory", args.driver_memory)
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark, time.perf_counter() - t0


def stop_session(spark):
    t = time.perf_counter()
    spark.stop()
    return time.perf_counter() - t


def run_wordcount(spark, args):
    from pyspark.sql import functions as F

    t = time.perf_counter()
    words = (
        spark.read.text(args.text)
        .select(F.explode(F.split(F.col("value"), "[^A-Za-z]+")).alias("w"))
        .where(F.col("w") != "")
        .select(F.lower(F.col("w")).alias("w"))
    )
    rows = words.groupBy("w").count().collect()
    total = sum(r["count"] for r in rows)
    checksum = 0
    for r in rows:
        checksum = (checksum + fnv1a(r["w"]) * r["count"]) & MASK64
    job = time.perf_counter() - t
    return {
        "input": args.text,
        "input_bytes": os.path.getsize(args.text),
        "job_s": job,
        "total_words": total,
        "distinct_words": len(rows),
        "checksum": checksum,
    }


def run_groupby_df(spark, args):
    from pyspark.sql import functions as F

    t = time.perf_counter()
    pairs = spark.range(0, args.pairs).select(
        F.shiftright(F.pmod(F.col("id") * F.lit(2654435761), F.lit(1 << 32)) * F.lit(args.keys), 32).alias("k"),
        ((F.col("id") % 1009) / F.lit(8.0)).alias("v"),
    )
    groups = pairs.groupBy("k").agg(F.collect_list("v").alias("vs")).select("k", F.size("vs").alias("n"))
    row = groups.agg(
        F.count(F.lit(1)).alias("groups"),
        F.sum("n").alias("values"),
        F.sum(F.col("n") * F.col("n")).alias("sq"),
        F.sum(F.col("k") * F.col("n")).alias("kn"),
    ).collect()[0]
    job = time.perf_counter() - t
    return {
        "pairs": args.pairs,
        "keys": args.keys,
        "job_s": job,
        "groups": row["groups"],
        "values": row["values"],
        "sum_size_sq": row["sq"],
        "sum_key_size": row["kn"] & MASK64,
    }


def run_groupby_rdd(spark, args):
    sc = spark.sparkContext
    keys = args.keys
    n_pairs = args.rdd_pairs

    def pair(i):
        return ((((i * 2654435761) & 0xFFFFFFFF) * keys) >> 32, (i % 1009) / 8.0)

    def summary(kv):
        n = len(kv[1])
        return (1, n, n * n, kv[0] * n)

    t = time.perf_counter()
    stats = (
        sc.range(0, n_pairs)
        .map(pair)
        .groupByKey()
        .map(summary)
        .reduce(lambda a, b: (a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]))
    )
    job = time.perf_counter() - t
    return {
        "pairs": n_pairs,
        "keys": keys,
        "job_s": job,
        "groups": stats[0],
        "values": stats[1],
        "sum_size_sq": stats[2],
        "sum_key_size": stats[3] & MASK64,
    }


def run_tasks(spark, args):
    sc = spark.sparkContext
    n = args.tasks
    times = []
    for _ in range(max(args.reps, 1)):
        t = time.perf_counter()
        got = sc.parallelize(range(n), n).count()
        times.append(time.perf_counter() - t)
        assert got == n, got
    times.sort()
    median = times[len(times) // 2]
    return {
        "tasks": n,
        "job_s_best": times[0],
        "job_s_median": median,
        "job_s_all": times,
        "tasks_per_s": n / median,
        "tasks_per_s_best": n / times[0],
    }


def run_latency(spark, args):
    sc = spark.sparkContext
    for _ in range(10):
        sc.parallelize([1], 1).count()
    micros = []
    for _ in range(max(args.latency_runs, 1)):
        t = time.perf_counter()
        got = sc.parallelize([1], 1).count()
        micros.append((time.perf_counter() - t) * 1e6)
        assert got == 1
    micros.sort()
    return {
        "runs": len(micros),
        "median_us": quantile(micros, 0.5),
        "p99_us": quantile(micros, 0.99),
        "min_us": micros[0],
    }


RUNNERS = {
    "wordcount": run_wordcount,
    "groupby_df": run_groupby_df,
    "groupby_rdd": run_groupby_rdd,
    "tasks": run_tasks,
    "latency": run_latency,
}


def run_one(args):
    """Runs one workload in this process and prints its JSON."""
    spark, start = start_session(args, "bench-" + args.one)
    result = RUNNERS[args.one](spark, args)
    stop = stop_session(spark)
    result["start_s"] = start
    result["stop_s"] = stop
    if "job_s" in result:
        result["e2e_s"] = start + result["job_s"] + stop
    print(json.dumps(result))


def child_args(args, workload):
    out = [sys.executable, os.path.abspath(__file__), "--one", workload]
    for name in ("master", "driver_memory", "text", "pairs", "rdd_pairs", "keys", "tasks", "reps", "latency_runs"):
        value = getattr(args, name)
        if value is not None:
            out += ["--" + name.replace("_", "-"), str(value)]
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--master", default="local[2]")
    p.add_argument("--driver-memory", default="4g", help="spark.driver.memory (the JVM heap in local mode)")
    p.add_argument("--text", help="the word count input (generated by the Ember bench)")
    p.add_argument("--pairs", type=int, default=20_000_000)
    p.add_argument("--rdd-pairs", type=int, default=None, help="pairs of the RDD groupByKey run [default: --pairs]")
    p.add_argument("--keys", type=int, default=1_000_000)
    p.add_argument("--tasks", type=int, default=10_000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--latency-runs", type=int, default=1000)
    p.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated: " + ", ".join(WORKLOADS))
    p.add_argument("--json", help="also write the JSON to this file")
    p.add_argument("--one", choices=WORKLOADS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.rdd_pairs is None:
        args.rdd_pairs = args.pairs

    java_home = detect_java_home()
    os.environ["JAVA_HOME"] = java_home
    # Local mode: bind the driver to the loopback interface (the host name
    # may resolve to it anyway; Spark then warns and picks another one).
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Python workers must be this interpreter (the one with pyspark).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)

    if args.one:
        run_one(args)
        return

    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    for w in wanted:
        if w not in WORKLOADS:
            p.error(f"unknown workload {w!r}")
    if "wordcount" in wanted and not args.text:
        p.error("wordcount needs --text FILE")

    import pyspark

    report = {
        "engine": "spark",
        "master": args.master,
        "pyspark": pyspark.__version__,
        "java": java_version(java_home),
        "java_home": java_home,
        "python": sys.version.split()[0],
        "driver_memory": args.driver_memory,
    }
    for w in wanted:
        print(f"spark: running {w}", file=sys.stderr, flush=True)
        out = subprocess.run(child_args(args, w), stdout=subprocess.PIPE, text=True)
        if out.returncode != 0:
            sys.exit(f"bench_spark.py: {w} failed (exit {out.returncode})")
        report[w] = json.loads(out.stdout.strip().splitlines()[-1])
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
