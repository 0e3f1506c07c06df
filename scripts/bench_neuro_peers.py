#!/usr/bin/env python3
"""The peers of Ember's neuro benchmark: the diffusion-MRI pipeline
(/work/shared/reference/neuro-pipeline.md) run by DIPY in one process, by
PySpark `local[N]` and by Dask (N threads), all calling DIPY's functions
exactly as scripts/make_goldens.py does.

Run with the peer venv (`bash scripts/python-peers.sh --with-bench`):

    .venv/bin/python scripts/bench_neuro_peers.py --system dipy|pyspark|dask
        [--threads 2] [--out DIR] [--json FILE] [--spark-conf K=V]... SUBJECT...
    .venv/bin/python scripts/bench_neuro_peers.py --measure [--json FILE] -- CMD ARG...
    .venv/bin/python scripts/bench_neuro_peers.py --compare REF_DIR OTHER_DIR [--json FILE]

A SUBJECT is a folder in HCP layout (data.nii.gz, bvals, bvecs), e.g. one
written by `neuro phantom`. Outputs go to OUT/<subject folder name>/
{mask,fa,md}.nii.gz, the layout of `neuro run --out OUT`.

--system prints ONE JSON object on stdout:
    {"system", "threads", "subjects", "steps": {"load", "mask", "denoise",
     "fit", "write"}, "total" (seconds from the first line of this script,
     i.e. interpreter start-up excluded but imports, JVM start etc. included),
     "peak_rss_mib" (process tree, sampled from /proc every 100 ms),
     "ru_maxrss_mib" ({"self", "children"} from getrusage), "versions",
     "notes"}

The systems:
  dipy     the study's short DIPY reference (its ref.py) in one process,
           subject after subject: nibabel load, gradient_table, mean b0,
           median_otsu, estimate_sigma + nlmeans of the whole 4-D image (DIPY
           loops over volumes; num_threads=THREADS, DIPY's OpenMP), one
           TensorModel fit of the whole image. BLAS/OpenMP get THREADS threads.
  pyspark  the study's Spark plan (spark/end_to_end.py) on PySpark local[THREADS]:
           RDD of ((subject, vol), volume), one partition per volume, cached;
           gradient tables broadcast; b0 filter, group by subject, mean,
           median_otsu, collect + broadcast the masks; a map denoising each
           volume (nlmeans num_threads=1: the parallelism is Spark's THREADS
           task slots); flatMap into a 4x4x4 grid of blocks keyed
           (subject, block) carrying (vol, data); groupByKey; a TensorModel fit
           per block; collect. Spark's default configuration except what
           --spark-conf sets. denoise and fit are one Spark job, as in
           the study; their times are the two stages' times (Spark REST API).
  dask     dask.delayed, threaded scheduler with THREADS workers: load per
           subject, mask per subject, denoise per volume (nlmeans
           num_threads=1), fit per 4x4x4 block; each step is computed before
           the next (a barrier per step, as in the study's Dask code).

--measure runs CMD, samples the RSS of CMD's whole process tree every 100 ms
and prints {"wall": s, "peak_rss_mib": MiB, "rc": code}; CMD's stdout/stderr
pass through. bench_neuro.sh wraps every system (Ember too) in it, so
end-to-end time and peak memory are measured the same way for all.

--compare prints, per subject, whether the masks are identical and the max
|dFA| and |dMD| inside REF's mask.
"""

from __future__ import annotations

import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1024.0 * 1024.0
GRID = (4, 4, 4)  # the study's block grid for the fit


# --------------------------------------------------------------------------
# process-tree RSS sampling


def _proc_table() -> tuple[dict[int, list[int]], dict[int, int]]:
    """(children of each pid, user+system clock ticks of each pid)."""
    kids: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name may contain spaces and parentheses: split after the last ')'
        rest = stat[stat.rfind(b")") + 2 :].split()
        pid = int(name)
        kids.setdefault(int(rest[1]), []).append(pid)
        ticks[pid] = int(rest[11]) + int(rest[12])  # utime + stime
    return kids, ticks


def _tree(root: int, kids: dict[int, list[int]]) -> list[int]:
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, ()))
    return out


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _busy_ticks() -> int:
    """Busy clock ticks of the whole machine (all CPUs) from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]


def _loadavg() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


class TreeSampler(threading.Thread):
    """Every `interval` s: the summed RSS of a process and all its
    descendants (peak kept), the CPU ticks each of them used (last value
    kept, so exited processes still count) and the 1-minute load average."""

    def __init__(self, root: int, interval: float = 0.1):
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.peak = 0
        self.ticks: dict[int, int] = {}
        self.loads: list[float] = []
        self.busy0 = _busy_ticks()
        self.t0 = time.perf_counter()
        self._stop_event = threading.Event()

    def sample(self) -> None:
        kids, ticks = _proc_table()
        pids = _tree(self.root, kids)
        self.peak = max(self.peak, sum(_rss(p) for p in pids))
        for p in pids:
            if p in ticks:
                self.ticks[p] = ticks[p]
        self.loads.append(_loadavg())

    def run(self) -> None:
        n = 0
        while not self._stop_event.is_set():
            self.sample()
            n += 1
            self._stop_event.wait(self.interval)

    def stop(self, final_sample: bool = True) -> float:
        self._stop_event.set()
        self.join()
        if final_sample:
            self.sample()
        return self.peak / MIB

    def machine(self) -> dict:
        """CPU use of the tree and of everything else during the run, in cores."""
        wall = time.perf_counter() - self.t0
        hz = os.sysconf("SC_CLK_TCK")
        busy = (_busy_ticks() - self.busy0) / hz
        mine = sum(self.ticks.values()) / hz  # includes CPU used before sampling began (tiny)
        loads = self.loads or [_loadavg()]
        return {"tree_cpu_s": mine, "tree_cores": mine / wall if wall else 0.0,
                "other_cores": max(busy - mine, 0.0) / wall if wall else 0.0,
                "loadavg1_mean": sum(loads) / len(loads), "loadavg1_max": max(loads)}


def measure(cmd: list[str]) -> dict:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    sampler = TreeSampler(proc.pid)
    sampler.start()
    rc = proc.wait()
    wall = time.perf_counter() - start
    sampler.stop(final_sample=False)
    return {"wall": wall, "peak_rss_mib": sampler.peak / MIB, "rc": rc, "cmd": cmd,
            "machine": sampler.machine()}


# --------------------------------------------------------------------------
# the pipeline's pieces, DIPY called as in scripts/make_goldens.py


def load_gtab(subject: str):
    from dipy.core.gradients import gradient_table
    from dipy.io.gradients import read_bvals_bvecs

    bvals, bvecs = read_bvals_bvecs(str(Path(subject) / "bvals"), str(Path(subject) / "bvecs"))
    return gradient_table(bvals, bvecs=bvecs, b0_threshold=10)


def load_image(subject: str):
    """(float32 4-D data, affine): nibabel get_fdata(dtype=float32)."""
    import nibabel as nib
    import numpy as np

    img = nib.load(str(Path(subject) / "data.nii.gz"))
    return img.get_fdata(dtype=np.float32), img.affine


def image_header(subject: str):
    """(shape, affine) without reading the voxels."""
    import nibabel as nib

    img = nib.load(str(Path(subject) / "data.nii.gz"))
    return tuple(int(n) for n in img.shape), img.affine


def mean_b0(volumes):
    """Mean of float32 volumes, float64 accumulation in volume order (spec)."""
    import numpy as np

    acc = None
    n = 0
    for v in volumes:
        acc = v.astype(np.float64) if acc is None else acc + v
        n += 1
    return acc / n


def brain_mask(mean):
    import warnings

    from dipy.segment.mask import median_otsu

    with warnings.catch_warnings():  # autocrop is deprecated in dipy 1.12 (still as the spec says)
        warnings.simplefilter("ignore")
        _, mask = median_otsu(mean, median_radius=4, numpass=2, autocrop=False, dilate=1)
    return mask


def denoise_volume(vol, mask, num_threads: int = 1):
    """estimate_sigma(N=0) then classic nlmeans of one 3-D float32 volume."""
    from dipy.denoise.nlmeans import nlmeans
    from dipy.denoise.noise_estimate import estimate_sigma

    sigma = estimate_sigma(vol, N=0)
    return nlmeans(vol, sigma, mask=mask, patch_radius=1, block_radius=5, rician=True,
                   num_threads=num_threads, method="classic")


def fit_tensor(gtab, data, mask):
    """(FA, MD) of TensorModel(gtab, min_signal=1).fit(data, mask)."""
    from dipy.reconst.dti import TensorModel

    fit = TensorModel(gtab, min_signal=1).fit(data, mask=mask)
    return fit.fa, fit.md


def block_slices(shape3):
    """The GRID blocks of a volume: list of (slice, slice, slice)."""
    edges = [[i * n // g for i in range(g + 1)] for n, g in zip(shape3, GRID)]
    out = []
    for i in range(GRID[0]):
        for j in range(GRID[1]):
            for k in range(GRID[2]):
                out.append((slice(edges[0][i], edges[0][i + 1]),
                            slice(edges[1][j], edges[1][j + 1]),
                            slice(edges[2][k], edges[2][k + 1])))
    return out


def write_outputs(out: Path, name: str, affine, mask, fa, md) -> None:
    import nibabel as nib
    import numpy as np

    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(mask, dtype=np.uint8), affine), str(d / "mask.nii.gz"))
    nib.save(nib.Nifti1Image(np.asarray(fa, dtype=np.float32), affine), str(d / "fa.nii.gz"))
    nib.save(nib.Nifti1Image(np.asarray(md, dtype=np.float32), affine), str(d / "md.nii.gz"))


def subject_name(subject: str) -> str:
    return Path(subject).resolve().name


class Steps:
    def __init__(self):
        self.t: dict[str, float] = {}

    def add(self, name: str, secs: float) -> None:
        self.t[name] = self.t.get(name, 0.0) + secs


# --------------------------------------------------------------------------
# dipy: the study's short reference, one process


def run_dipy(subjects: list[str], out: Path | None, threads: int, steps: Steps, notes: list[str]):
    import numpy as np

    notes.append(f"nlmeans num_threads={threads} (DIPY's OpenMP); OMP/BLAS threads={threads}; "
                 "median_otsu, estimate_sigma and the tensor fit are single-threaded in DIPY")
    for subject in subjects:
        t = time.perf_counter()
        data, affine = load_image(subject)
        gtab = load_gtab(subject)
        steps.add("load", time.perf_counter() - t)

        t = time.perf_counter()
        b0 = np.flatnonzero(gtab.b0s_mask)
        mask = brain_mask(mean_b0(data[..., i] for i in b0))
        steps.add("mask", time.perf_counter() - t)

        t = time.perf_counter()
        from dipy.denoise.nlmeans import nlmeans
        from dipy.denoise.noise_estimate import estimate_sigma

        sigma = estimate_sigma(data, N=0)  # one value per volume
        denoised = nlmeans(data, sigma, mask=mask, patch_radius=1, block_radius=5, rician=True,
                           num_threads=threads, method="classic")
        steps.add("denoise", time.perf_counter() - t)

        t = time.perf_counter()
        fa, md = fit_tensor(gtab, denoised, mask)
        steps.add("fit", time.perf_counter() - t)
        del data, denoised

        t = time.perf_counter()
        if out is not None:
            write_outputs(out, subject_name(subject), affine, mask, fa, md)
        steps.add("write", time.perf_counter() - t)


# --------------------------------------------------------------------------
# pyspark: the study's Spark plan


def _spark_stage_seconds(sc, job_group: str) -> list[float] | None:
    """Wall seconds of each stage that ran in the jobs of job_group, in stage
    order, from Spark's REST API (submissionTime .. completionTime). The UI
    learns of stage ends asynchronously: poll until every stage is done."""
    import urllib.request
    from datetime import datetime

    fmt = "%Y-%m-%dT%H:%M:%S.%f%Z"
    deadline = time.monotonic() + 120
    last_error = "no answer"
    while time.monotonic() < deadline:
        try:
            tracker = sc.statusTracker()
            stage_ids: set[int] = set()
            for jid in tracker.getJobIdsForGroup(job_group):
                info = tracker.getJobInfo(jid)
                if info is not None:
                    stage_ids.update(info.stageIds)
            base = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/stages"
            with urllib.request.urlopen(base, timeout=60) as r:
                stages = [st for st in json.load(r) if st["stageId"] in stage_ids]
            if stage_ids and {st["stageId"] for st in stages} == stage_ids and all(
                    st.get("status") in ("COMPLETE", "SKIPPED") for st in stages):
                secs: dict[int, float] = {}
                for st in stages:
                    if st["status"] == "COMPLETE":
                        a = datetime.strptime(st["submissionTime"], fmt)
                        b = datetime.strptime(st["completionTime"], fmt)
                        secs[st["stageId"]] = secs.get(st["stageId"], 0.0) + (b - a).total_seconds()
                return [secs[s] for s in sorted(secs)]
            last_error = "stages not complete yet"
        except Exception as exc:  # the REST API is best effort
            last_error = str(exc)
        time.sleep(0.5)
    print(f"bench_neuro_peers: no stage times from the Spark UI: {last_error}", file=sys.stderr)
    return None


def run_pyspark(subjects: list[str], out: Path | None, threads: int, steps: Steps,
                notes: list[str], versions: dict, spark_conf: list[str]):
    import numpy as np

    t = time.perf_counter()
    # Python workers run this interpreter (the venv's), not the PATH's python3.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark import SparkConf, SparkContext

    conf = SparkConf().setMaster(f"local[{threads}]").setAppName("neuro-bench")
    for kv in spark_conf:
        k, _, v = kv.partition("=")
        conf.set(k, v)
    sc = SparkContext(conf=conf)
    sc.setLogLevel("ERROR")
    versions["spark"] = sc.version
    startup = time.perf_counter() - t
    notes.append(f"SparkContext start-up {startup:.2f} s (counted in load); "
                 "nlmeans num_threads=1 per task, THREADS task slots; "
                 f"spark conf: {spark_conf or 'defaults'}")

    headers = [image_header(s) for s in subjects]
    nvols = [h[0][3] for h in headers]
    keys = [(s, v) for s, n in enumerate(nvols) for v in range(n)]
    index = {k: i for i, k in enumerate(keys)}
    paths = list(subjects)

    def read_volumes(s):
        data, _ = load_image(paths[s])
        for v in range(data.shape[3]):
            yield (s, v), np.ascontiguousarray(data[..., v])

    # load: ((subject, vol), volume), one partition per volume, cached
    volumes = (sc.parallelize(list(range(len(subjects))), len(subjects))
               .flatMap(read_volumes)
               .partitionBy(len(keys), lambda k: index[k])
               .cache())
    volumes.count()
    gtabs = sc.broadcast({s: load_gtab(p) for s, p in enumerate(paths)})
    steps.add("load", time.perf_counter() - t)

    # mask: b0 filter, group by subject, mean, median_otsu; collect, broadcast
    t = time.perf_counter()

    def is_b0(kv):
        (s, v), _ = kv
        return bool(gtabs.value[s].b0s_mask[v])

    def subject_mask(pieces):
        pieces = sorted(pieces, key=lambda p: p[0])
        return brain_mask(mean_b0(vol for _, vol in pieces))

    masks_map = (volumes.filter(is_b0)
                 .map(lambda kv: (kv[0][0], (kv[0][1], kv[1])))
                 .groupByKey()
                 .mapValues(subject_mask)
                 .collectAsMap())
    masks = sc.broadcast(masks_map)
    steps.add("mask", time.perf_counter() - t)

    # denoise (map per volume), cut into blocks, groupByKey, fit per block
    t = time.perf_counter()
    shapes = {s: h[0][:3] for s, h in enumerate(headers)}
    blocks_of = {s: block_slices(shape) for s, shape in shapes.items()}

    def denoise(kv):
        (s, v), vol = kv
        return (s, v), denoise_volume(vol, masks.value[s], num_threads=1)

    def cut(kv):
        (s, v), vol = kv
        return [((s, b), (v, np.ascontiguousarray(vol[sl])))
                for b, sl in enumerate(blocks_of[s])]

    def fit_block(kv):
        (s, b), pieces = kv
        pieces = sorted(pieces, key=lambda p: p[0])
        series = np.stack([d for _, d in pieces], axis=-1)
        mask = masks.value[s][blocks_of[s][b]]
        fa, md = fit_tensor(gtabs.value[s], series, mask)
        return (s, b), (fa.astype(np.float32), md.astype(np.float32))

    sc.setJobGroup("denoise-fit", "denoise and fit")
    fitted = (volumes.map(denoise)
              .flatMap(cut)
              .groupByKey()
              .map(fit_block)
              .collect())
    total = time.perf_counter() - t
    stage_secs = _spark_stage_seconds(sc, "denoise-fit")
    if stage_secs is not None and len(stage_secs) == 2:
        steps.add("denoise", stage_secs[0])
        steps.add("fit", stage_secs[1])
        notes.append(f"denoise+fit job {total:.2f} s wall; stage times from the Spark UI")
    else:
        steps.add("denoise+fit", total)
    volumes.unpersist()

    t = time.perf_counter()
    fa_maps = {s: np.zeros(shapes[s], np.float32) for s in shapes}
    md_maps = {s: np.zeros(shapes[s], np.float32) for s in shapes}
    for (s, b), (fa, md) in fitted:
        fa_maps[s][blocks_of[s][b]] = fa
        md_maps[s][blocks_of[s][b]] = md
    if out is not None:
        for s, subject in enumerate(subjects):
            write_outputs(out, subject_name(subject), headers[s][1], masks_map[s], fa_maps[s], md_maps[s])
    steps.add("write", time.perf_counter() - t)
    sc.stop()


# --------------------------------------------------------------------------
# dask: delayed tasks on the threaded scheduler


def run_dask(subjects: list[str], out: Path | None, threads: int, steps: Steps, notes: list[str]):
    import dask
    import numpy as np
    from dask import delayed

    notes.append(f"dask threaded scheduler, num_workers={threads}; nlmeans num_threads=1 per task; "
                 "one dask.compute per step (barriers)")
    with dask.config.set(scheduler="threads", num_workers=threads):
        t = time.perf_counter()
        loaded = dask.compute(*[delayed(load_image)(s) for s in subjects])
        gtabs = [load_gtab(s) for s in subjects]
        steps.add("load", time.perf_counter() - t)

        t = time.perf_counter()
        masks = dask.compute(*[
            delayed(brain_mask)(delayed(mean_b0)([data[..., i] for i in np.flatnonzero(g.b0s_mask)]))
            for (data, _), g in zip(loaded, gtabs)])
        steps.add("mask", time.perf_counter() - t)

        t = time.perf_counter()
        tasks = [[delayed(denoise_volume)(data[..., v], mask, 1) for v in range(data.shape[3])]
                 for (data, _), mask in zip(loaded, masks)]
        denoised = dask.compute(*[tuple(ts) for ts in tasks])
        steps.add("denoise", time.perf_counter() - t)

        def fit_block(vols, sl, gtab, mask):
            series = np.stack([v[sl] for v in vols], axis=-1)
            return fit_tensor(gtab, series, mask[sl])

        t = time.perf_counter()
        plans = []
        for vols, gtab, mask in zip(denoised, gtabs, masks):
            sls = block_slices(mask.shape)
            plans.append((sls, [delayed(fit_block)(vols, sl, gtab, mask) for sl in sls]))
        fits = dask.compute(*[tuple(p[1]) for p in plans])
        steps.add("fit", time.perf_counter() - t)

    t = time.perf_counter()
    for s, subject in enumerate(subjects):
        shape = masks[s].shape
        fa, md = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
        for sl, (bfa, bmd) in zip(plans[s][0], fits[s]):
            fa[sl], md[sl] = bfa, bmd
        if out is not None:
            write_outputs(out, subject_name(subject), loaded[s][1], masks[s], fa, md)
    steps.add("write", time.perf_counter() - t)


# --------------------------------------------------------------------------
# compare


def compare(ref: Path, other: Path) -> dict:
    import nibabel as nib
    import numpy as np

    res = {}
    for d in sorted(p for p in ref.iterdir() if (p / "fa.nii.gz").exists()):
        o = other / d.name
        if not (o / "fa.nii.gz").exists():
            res[d.name] = {"missing": str(o)}
            continue
        m_ref = np.asarray(nib.load(str(d / "mask.nii.gz")).dataobj) > 0
        m_oth = np.asarray(nib.load(str(o / "mask.nii.gz")).dataobj) > 0
        fa_r = np.asarray(nib.load(str(d / "fa.nii.gz")).dataobj, dtype=np.float64)
        fa_o = np.asarray(nib.load(str(o / "fa.nii.gz")).dataobj, dtype=np.float64)
        md_r = np.asarray(nib.load(str(d / "md.nii.gz")).dataobj, dtype=np.float64)
        md_o = np.asarray(nib.load(str(o / "md.nii.gz")).dataobj, dtype=np.float64)
        dfa = np.abs(fa_r - fa_o)[m_ref]
        dmd = np.abs(md_r - md_o)[m_ref]
        res[d.name] = {
            "mask_voxels": int(m_ref.sum()),
            "masks_identical": bool(np.array_equal(m_ref, m_oth)),
            "mask_voxels_differing": int((m_ref != m_oth).sum()),
            "max_abs_dfa": float(dfa.max()) if dfa.size else 0.0,
            "mean_abs_dfa": float(dfa.mean()) if dfa.size else 0.0,
            "voxels_dfa_gt_1e-4": int((dfa > 1e-4).sum()),
            "max_abs_dmd": float(dmd.max()) if dmd.size else 0.0,
        }
    return res


# --------------------------------------------------------------------------
# report (bench_neuro.sh's table)

SYSTEMS = ["ember", "dipy", "pyspark", "dask"]
STEP_COLS = ["load", "mask", "denoise", "fit", "write"]


def ember_steps(log: Path) -> dict[str, float]:
    """The per-step table `neuro run` prints on stderr."""
    steps, inside = {}, False
    for line in log.read_text(errors="replace").splitlines():
        if line.split()[:2] == ["step", "seconds"]:
            inside, steps = True, {}
            continue
        if inside:
            parts = line.rsplit(None, 1)
            if len(parts) != 2:
                continue
            try:
                secs = float(parts[1])
            except ValueError:
                continue
            if parts[0].strip() != "total":
                steps[parts[0].strip()] = secs
    return steps


def _load_json(p: Path):
    return json.loads(p.read_text()) if p.exists() else None


def report(run: Path) -> str:
    env = _load_json(run / "env.json") or {}
    lines: list[str] = []
    out = lines.append
    out("# Ember neuro pipeline vs DIPY, PySpark and Dask")
    out("")
    for k in ("date", "machine", "command", "phantom", "ember", "versions"):
        if k in env:
            out(f"- {k}: {env[k]}")
    targets = []
    for size in env.get("sizes", []):
        d = run / size["name"]
        if not d.exists():
            continue
        out("")
        out(f"## {size['title']}")
        out("")
        out(f"Subjects: {size['subjects']}; data: {size['data']}")
        out("")
        rows = {}
        ember_runs = sorted(d.glob("ember-*.measure.json"))
        if ember_runs:
            ms = [(_load_json(p), p) for p in ember_runs]
            ms.sort(key=lambda mp: mp[0]["wall"])
            m, p = ms[len(ms) // 2]  # median wall
            log = p.with_name(p.name.replace(".measure.json", ".log"))
            rows["ember"] = {"steps": ember_steps(log), "m": m,
                             "walls": [x[0]["wall"] for x in ms],
                             "rss_all": [x[0]["peak_rss_mib"] for x in ms]}
        for sys_ in SYSTEMS[1:]:
            m = _load_json(d / f"{sys_}.measure.json")
            j = _load_json(d / f"{sys_}.json")
            if m is not None:
                rows[sys_] = {"steps": (j or {}).get("steps", {}), "m": m, "inner": j}
        out("| system | load s | mask s | denoise s | fit s | write s | end to end s | peak RSS MiB "
            "| time peer/Ember | RSS peer/Ember | CPU s (cores used) | other load (cores) | loadavg1 mean/max |")
        out("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        e = rows.get("ember")
        for sys_ in SYSTEMS:
            r = rows.get(sys_)
            if r is None:
                continue
            st = r["steps"]
            cells = []
            for c in STEP_COLS:
                if c in st:
                    cells.append(f"{st[c]:.2f}")
                elif c in ("denoise", "fit") and "denoise + fit" in st:
                    cells.append(f"{st['denoise + fit']:.2f} (d+f)" if c == "denoise" else "")
                elif c in ("denoise", "fit") and "denoise+fit" in st:
                    cells.append(f"{st['denoise+fit']:.2f} (d+f)" if c == "denoise" else "")
                else:
                    cells.append("-")
            m = r["m"]
            failed = m.get("rc", 0) != 0
            wall = f"{m['wall']:.2f}" + (f" (FAILED rc={m['rc']})" if failed else "")
            if sys_ == "ember" and len(r.get("walls", [])) > 1:
                wall += " (median of " + ", ".join(f"{w:.2f}" for w in r["walls"]) + ")"
            if e and sys_ != "ember" and not failed:
                tr = f"{m['wall'] / e['m']['wall']:.1f}x"
                rr = f"{m['peak_rss_mib'] / e['m']['peak_rss_mib']:.1f}x"
            else:
                tr = rr = "1x" if sys_ == "ember" else "-"
            mc = m.get("machine", {})
            cpu = mc.get("tree_cpu_s", float("nan"))
            out(f"| {sys_} | " + " | ".join(cells) + f" | {wall} | {m['peak_rss_mib']:.0f} | {tr} | {rr} "
                f"| {cpu:.1f} ({cpu / m['wall']:.2f}) | {mc.get('other_cores', float('nan')):.2f} "
                f"| {mc.get('loadavg1_mean', float('nan')):.1f}/{mc.get('loadavg1_max', float('nan')):.1f} |")
        out("")
        if e:
            ed = e["steps"].get("denoise")
            for sys_ in SYSTEMS[1:]:
                r = rows.get(sys_)
                if not r or r["m"].get("rc", 0) != 0:
                    continue
                pd = r["steps"].get("denoise")
                ratio_e2e = r["m"]["wall"] / e["m"]["wall"]
                need = 15.0 if sys_ == "pyspark" else 10.0
                lower_mem = r["m"]["peak_rss_mib"] > e["m"]["peak_rss_mib"]
                extra = f"; denoise step {pd / ed:.1f}x" if ed and pd else ""
                targets.append(f"{size['name']}: Ember vs {sys_}: {ratio_e2e:.1f}x faster end to end "
                               f"(target >= {need:g}x: {'met' if ratio_e2e >= need else 'MISSED'}){extra}; "
                               f"peak RSS {e['m']['peak_rss_mib']:.0f} vs {r['m']['peak_rss_mib']:.0f} MiB "
                               f"(lower: {'met' if lower_mem else 'MISSED'})")
        notes = [f"{s}: " + "; ".join(rows[s]["inner"].get("notes", [])) for s in SYSTEMS[1:]
                 if s in rows and rows[s].get("inner")]
        if notes:
            out("Notes: " + " | ".join(notes))
            out("")
        out("Agreement with the DIPY reference (inside DIPY's mask):")
        out("")
        out("| system | subject | masks identical | max abs dFA | voxels dFA > 1e-4 | max abs dMD mm2/s |")
        out("|---|---|---|---:|---:|---:|")
        for sys_ in ("ember", "pyspark", "dask"):
            c = _load_json(d / f"compare-{sys_}.json")
            if not c:
                continue
            for subj, v in c.items():
                if "missing" in v:
                    out(f"| {sys_} | {subj} | missing | | | |")
                    continue
                out(f"| {sys_} | {subj} | {v['masks_identical']} ({v['mask_voxels']} voxels) "
                    f"| {v['max_abs_dfa']:.2e} | {v['voxels_dfa_gt_1e-4']} | {v['max_abs_dmd']:.2e} |")
    if targets:
        out("")
        out("## Targets")
        out("")
        for t in targets:
            out(f"- {t}")
    out("")
    out("End to end and peak RSS are measured from outside (bench_neuro_peers.py --measure: wall time of "
        "the whole command, process start-up, JVM and Python imports included; RSS summed over the "
        "process tree every 100 ms). 'CPU s' is the user+system CPU time of the measured process tree "
        "(and its average number of busy cores). 'other load' is the CPU used by processes outside the measured "
        "tree during the run, in cores (from /proc/stat), i.e. the other engineers' work on this "
        "2-core machine.")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------


def versions_of(system: str) -> dict:
    import dipy
    import nibabel
    import numpy
    import scipy

    v = {"python": sys.version.split()[0], "dipy": dipy.__version__, "numpy": numpy.__version__,
         "scipy": scipy.__version__, "nibabel": nibabel.__version__}
    if system == "pyspark":
        import pyspark

        v["pyspark"] = pyspark.__version__
        try:
            out = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
            v["java"] = out.splitlines()[0] if out else "?"
        except OSError:
            v["java"] = "?"
    if system == "dask":
        import dask

        v["dask"] = dask.__version__
    return v


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--system", choices=["dipy", "pyspark", "dask"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--json", type=Path, help="also write the JSON here")
    ap.add_argument("--spark-conf", action="append", default=[], metavar="K=V")
    ap.add_argument("--measure", action="store_true", help="run the command after -- and measure it")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("REF", "OTHER"))
    ap.add_argument("--report", type=Path, metavar="RUN_DIR", help="print bench_neuro.sh's markdown table")
    ap.add_argument("rest", nargs="*")
    args = ap.parse_args()

    if args.report:
        text = report(args.report)
        print(text, end="")
        if args.json:
            args.json.write_text(text)
        return 0
    if args.measure:
        if not args.rest:
            ap.error("--measure needs a command after --")
        result = measure(args.rest)
    elif args.compare:
        result = compare(*args.compare)
    else:
        if not args.system or not args.rest:
            ap.error("--system and at least one SUBJECT are needed")
        result = run_system(args)
    text = json.dumps(result, indent=1)
    print(text, flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return int(result.get("rc", 0)) if args.measure else 0


def run_system(args) -> dict:
    # Thread counts of the numeric libraries are fixed before numpy loads.
    lib_threads = str(args.threads) if args.system == "dipy" else "1"
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = lib_threads
    sampler = TreeSampler(os.getpid())
    sampler.start()
    import warnings

    warnings.filterwarnings("ignore")
    subjects = [str(Path(s).resolve()) for s in args.rest]
    steps, notes = Steps(), []
    versions = versions_of(args.system)
    if args.system == "dipy":
        run_dipy(subjects, args.out, args.threads, steps, notes)
    elif args.system == "pyspark":
        run_pyspark(subjects, args.out, args.threads, steps, notes, versions, args.spark_conf)
    else:
        run_dask(subjects, args.out, args.threads, steps, notes)
    total = time.perf_counter() - T_START
    peak = sampler.stop()
    ru_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    ru_kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    return {"system": args.system, "threads": args.threads, "subjects": subjects,
            "steps": steps.t, "total": total, "peak_rss_mib": peak,
            "ru_maxrss_mib": {"self": ru_self, "children": ru_kids},
            "versions": versions, "notes": notes}


if __name__ == "__main__":
    sys.exit(main())
