#!/usr/bin/env python3
"""Single-threaded timings of the DIPY / scipy kernels of the neuro pipeline.

The Python half of the kernel benchmark (Ember's Rust kernels are the other
half). Run with the peer venv (scripts/python-peers.sh):

    .venv/bin/python scripts/bench_kernels_dipy.py [--shape X Y Z] [--seed N]
        [--input VOL.nii.gz | --write-input VOL.nii.gz]
        [--dti-input DWI.nii.gz --bvals F --bvecs F | --write-dti-input DWI.nii.gz]
        [--dti-shape X Y Z] [--only k1,k2] [--budget SECONDS]

Prints ONE JSON object on stdout:
    {"median_filter": s, "otsu": s, "binary_dilation": s, "estimate_sigma": s,
     "nlmeans": s, "dti_fit": s, "versions": {...}, "meta": {...}}
Each value is the median seconds per call over the repetitions in
meta.repeats (short kernels are repeated until --budget seconds are spent, at
least 3 and at most 50 calls, after one untimed warm-up call; a kernel whose
first call takes longer than the budget runs once).

Inputs, so the Rust side can time the very same data:
  * 3-D volume: --input reads any NIfTI (nibabel get_fdata(dtype=float32),
    first volume if 4-D). Otherwise it is built (and written by
    --write-input): synthetic_phantom() of scripts/make_goldens.py with one b0
    (b=5, zero vector), i.e. a soft-edged ellipsoid, S0 ~ 900..1100, Rician
    noise sigma 20, numpy default_rng(seed); float32; written as float32.
  * 4-D DTI set: --dti-input with --bvals/--bvecs (FSL files). Otherwise
    build_synthetic_dwi(dti_shape, seed, n_per_shell=30) of make_goldens.py:
    3 b0 (b=5) + 30 directions at b=1000 + 30 at b=2000 = 63 volumes,
    default 32 x 32 x 20; --write-dti-input P.nii.gz writes it with P.bval
    and P.bvec beside it (".nii.gz" replaced).

Kernel chain on the 3-D volume v (float32) and v64 = float64(v):
  median_filter   scipy.ndimage.median_filter(v64, size=9, mode='reflect')  (one pass, radius 4)
  otsu            dipy.segment.threshold.otsu(filtered)                      (256 bins)
  binary_dilation scipy binary_dilation(filtered > thr, 6-connected cross, iterations=1) -> mask
  estimate_sigma  dipy estimate_sigma(v, N=0)                                 (float32 sigma)
  nlmeans         dipy nlmeans(v, sigma, mask=mask, patch_radius=1, block_radius=5,
                                rician=True, method='classic', num_threads=1)
  dti_fit         TensorModel(gtab(b0_threshold=10), min_signal=1).fit(dwi, mask=all voxels)  (WLS)
"""

import os

# Single-threaded BLAS/OpenMP: must be set before numpy is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.dont_write_bytecode = True  # no scripts/__pycache__ from importing make_goldens
sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_goldens as mg  # noqa: E402  (synthetic data builders, versions())

import nibabel as nib  # noqa: E402
from dipy.core.gradients import gradient_table  # noqa: E402
from dipy.denoise.nlmeans import nlmeans  # noqa: E402
from dipy.denoise.noise_estimate import estimate_sigma  # noqa: E402
from dipy.io.gradients import read_bvals_bvecs  # noqa: E402
from dipy.reconst.dti import TensorModel  # noqa: E402
from dipy.segment.threshold import otsu  # noqa: E402
from scipy.ndimage import binary_dilation, generate_binary_structure, median_filter  # noqa: E402

KERNELS = ["median_filter", "otsu", "binary_dilation", "estimate_sigma", "nlmeans", "dti_fit"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def time_kernel(fn, budget: float, min_reps: int = 3, max_reps: int = 50):
    """Returns (result, per-call median seconds, all timings)."""
    t = time.perf_counter()
    result = fn()
    first = time.perf_counter() - t
    if first > budget:
        return result, first, [first]
    times = []  # the first call was the warm-up
    spent = 0.0
    while len(times) < min_reps or (spent < budget and len(times) < max_reps):
        t = time.perf_counter()
        result = fn()
        dt = time.perf_counter() - t
        times.append(dt)
        spent += dt
    return result, statistics.median(times), times


def sibling(path: Path, ext: str) -> Path:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ext)
    return path.with_name(name + ext)


def build_volume(shape, seed):
    rng = np.random.default_rng(seed)
    bvals = np.array([5.0])
    bvecs = np.zeros((1, 3))
    data, _, _, _ = mg.synthetic_phantom(tuple(shape), bvals, bvecs, rng, sigma=20.0)
    return data[..., 0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=int, nargs=3, default=[96, 96, 60], metavar=("X", "Y", "Z"))
    ap.add_argument("--seed", type=int, default=mg.DEFAULT_SEED)
    ap.add_argument("--input", type=Path, help="read the 3-D volume from this NIfTI")
    ap.add_argument("--write-input", type=Path, help="write the built 3-D volume here (float32 NIfTI)")
    ap.add_argument("--dti-input", type=Path, help="4-D DWI NIfTI for the DTI fit")
    ap.add_argument("--bvals", type=Path)
    ap.add_argument("--bvecs", type=Path)
    ap.add_argument("--dti-shape", type=int, nargs=3, default=[32, 32, 20], metavar=("X", "Y", "Z"))
    ap.add_argument("--write-dti-input", type=Path, help="write the built DTI set here (+ .bval/.bvec)")
    ap.add_argument("--only", default=",".join(KERNELS), help="comma-separated subset of " + ",".join(KERNELS))
    ap.add_argument("--budget", type=float, default=2.0, help="seconds to spend repeating a short kernel")
    args = ap.parse_args()

    only = [k.strip() for k in args.only.split(",") if k.strip()]
    for k in only:
        if k not in KERNELS:
            sys.exit(f"unknown kernel {k!r}; known: {', '.join(KERNELS)}")
    if args.input and args.write_input:
        sys.exit("--input and --write-input are exclusive")
    if args.dti_input and not (args.bvals and args.bvecs):
        sys.exit("--dti-input needs --bvals and --bvecs")

    meta = {"seed": args.seed, "threads": 1,
            "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                    "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}}
    results = {}

    # ---- 3-D volume
    if args.input:
        img = nib.load(str(args.input))
        vol = img.get_fdata(dtype=np.float32)
        if vol.ndim == 4:
            vol = vol[..., 0]
        meta["input"] = str(args.input)
    else:
        vol = build_volume(args.shape, args.seed)
        meta["input"] = "built: make_goldens.synthetic_phantom, one b0, sigma 20"
        if args.write_input:
            mg.save_nii(args.write_input, vol, np.eye(4), np.float32)
            meta["input_written"] = str(args.write_input)
    vol = np.ascontiguousarray(vol, dtype=np.float32)
    vol64 = vol.astype(np.float64)
    meta["shape"] = list(vol.shape)
    repeats = {}
    cross = generate_binary_structure(3, 1)

    needs_chain = any(k in only for k in ("median_filter", "otsu", "binary_dilation", "nlmeans"))
    filtered = thr = mask = sigma = None
    if needs_chain:
        fn = lambda: median_filter(vol64, size=9, mode="reflect")  # noqa: E731
        if "median_filter" in only:
            log("median_filter ...")
            filtered, results["median_filter"], ts = time_kernel(fn, args.budget)
            repeats["median_filter"] = len(ts)
        else:
            filtered = fn()
        fn = lambda: otsu(filtered)  # noqa: E731
        if "otsu" in only:
            thr, results["otsu"], ts = time_kernel(fn, args.budget)
            repeats["otsu"] = len(ts)
        else:
            thr = fn()
        raw = filtered > thr
        fn = lambda: binary_dilation(raw, cross, iterations=1)  # noqa: E731
        if "binary_dilation" in only:
            mask, results["binary_dilation"], ts = time_kernel(fn, args.budget)
            repeats["binary_dilation"] = len(ts)
        else:
            mask = fn()
        meta["otsu_threshold"] = float(thr)
        meta["mask_voxels"] = int(mask.sum())

    if "estimate_sigma" in only or "nlmeans" in only:
        fn = lambda: estimate_sigma(vol, N=0)  # noqa: E731
        if "estimate_sigma" in only:
            sigma, results["estimate_sigma"], ts = time_kernel(fn, args.budget)
            repeats["estimate_sigma"] = len(ts)
        else:
            sigma = fn()
        meta["sigma"] = float(sigma[0])

    if "nlmeans" in only:
        log(f"nlmeans on {vol.shape}, {int(mask.sum())} mask voxels ...")
        fn = lambda: nlmeans(vol, sigma=sigma[0], mask=mask, patch_radius=1, block_radius=5,  # noqa: E731
                             rician=True, method="classic", num_threads=1)
        _, results["nlmeans"], ts = time_kernel(fn, args.budget)
        repeats["nlmeans"] = len(ts)

    # ---- 4-D DTI set
    if "dti_fit" in only:
        if args.dti_input:
            dwi = nib.load(str(args.dti_input)).get_fdata(dtype=np.float32)
            bvals, bvecs = read_bvals_bvecs(str(args.bvals), str(args.bvecs))
            meta["dti_input"] = str(args.dti_input)
        else:
            dwi, bvals, bvecs, affine, _, _, _ = mg.build_synthetic_dwi(tuple(args.dti_shape), args.seed,
                                                                        n_per_shell=30)
            meta["dti_input"] = "built: make_goldens.build_synthetic_dwi(dti_shape, seed, n_per_shell=30)"
            if args.write_dti_input:
                mg.save_nii(args.write_dti_input, dwi, affine, np.float32)
                mg.write_fsl_gradients_to(sibling(args.write_dti_input, ".bval"),
                                          sibling(args.write_dti_input, ".bvec"), bvals, bvecs)
                meta["dti_input_written"] = str(args.write_dti_input)
        gtab = gradient_table(bvals, bvecs=bvecs, b0_threshold=mg.B0_THRESHOLD)
        dmask = np.ones(dwi.shape[:3], dtype=bool)
        model = TensorModel(gtab, min_signal=mg.MIN_SIGNAL)
        log(f"dti_fit on {dwi.shape} ...")
        _, results["dti_fit"], ts = time_kernel(lambda: model.fit(dwi, mask=dmask), args.budget)
        repeats["dti_fit"] = len(ts)
        meta["dti_shape"] = list(dwi.shape)

    meta["repeats"] = repeats
    out = {k: round(results[k], 6) for k in KERNELS if k in results}
    out["versions"] = mg.versions()
    out["meta"] = meta
    print(json.dumps(out))


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        main()
