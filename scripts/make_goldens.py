#!/usr/bin/env python3
"""Write DIPY golden outputs for ember-image's tests.

Run with the peer venv (see scripts/python-peers.sh):

    .venv/bin/python scripts/make_goldens.py [--seed N] [--out DIR]
                                             [--cases small_64D,S0_10slices,synthetic,edge,small_25,oneslice]

Writes image-ops/tests/golden/<case>/ following
/work/shared/reference/neuro-pipeline.md (the "neuro pipeline" spec):

  input.nii[.gz], input.bval, input.bvec   the case input (bvec in FSL 3xN layout)
  mean_b0.nii.gz   float64  mean of the b0 volumes, float64 accumulation in volume order
  median1.nii.gz   float64  mean_b0 after ONE median filter pass (radius 4, size 9^3, reflect)
  median2.nii.gz   float64  after TWO passes (what Otsu sees)
  mask.nii.gz      uint8    median_otsu(mean_b0, median_radius=4, numpass=2,
                            autocrop=False, dilate=1) mask
  otsu.json                 dipy.segment.threshold.otsu(median2) and histogram facts
  sigma.json                estimate_sigma(data, N=0), one value per volume (float32 values)
  denoised.nii.gz  float32  nlmeans classic, per volume (patch 1, block 5, rician, mask)
  fa.nii.gz, md.nii.gz  float64  TensorModel(gtab, min_signal=1).fit(denoised, mask)
  evals.nii.gz     float64  X x Y x Z x 3 eigenvalues (debugging)
  ga, ad, rd, mode .nii.gz  float32  X x Y x Z   the TensorFit's other maps (names as
                   DIPY's dipy_fit_dti workflow writes them; float32 as it saves them)
  rgb.nii.gz       float32  X x Y x Z x 3     TensorFit.color_fa (the workflow writes
                            uint8(255 * this); the float keeps the test's tolerance meaningful)
  evecs.nii.gz     float32  X x Y x Z x 3 x 3 evecs[..., j, i] = component j of eigenvector i
  tensors.nii.gz   float32  X x Y x Z x 1 x 6 lower_triangular(quadratic_form) in NIfTI
                            order Dxx, Dxy, Dyy, Dxz, Dyz, Dzz (nifti1_symmat, as the workflow,
                            which keeps float64)
  provenance.json           versions, command, seed, file list, spec self-checks

and image-ops/tests/golden/edge/ (tiny volumes for filter edge modes), plus a
top-level PROVENANCE.md. The thin cases small_25 (10 x 8 x 2) and oneslice
(16 x 16 x 1) have no denoised.nii.gz (DIPY's classic nlmeans is not
deterministic on so short an axis): their tensor maps are fitted on the input. All outputs are deterministic for a given seed and
package versions (nibabel writes gzip with mtime 0).

The script also re-implements two steps straight from the spec text in numpy
(classic NL-means, and the WLS tensor fit) and records the largest difference
from DIPY in provenance.json under "spec_check"; it fails if they exceed the
spec's tolerances.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np

# Imports below need the venv. Keep them after numpy so a wrong interpreter
# fails with a clear message.
try:
    import dipy
    import nibabel as nib
    import scipy
    from dipy.core.gradients import gradient_table
    from dipy.denoise.nlmeans import nlmeans
    from dipy.denoise.noise_estimate import estimate_sigma
    from dipy.io.gradients import read_bvals_bvecs
    from dipy.io.utils import nifti1_symmat
    from dipy.reconst.dti import TensorModel, design_matrix
    from dipy.segment.mask import median_otsu, multi_median
    from dipy.segment.threshold import otsu
    from scipy.ndimage import binary_dilation, generate_binary_structure, median_filter
except ImportError as exc:  # pragma: no cover
    sys.exit(f"make_goldens.py: {exc}; run `bash scripts/python-peers.sh` and use .venv/bin/python")

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "image-ops" / "tests" / "golden"
DEFAULT_SEED = 20170901  # arbitrary, fixed

MEDIAN_RADIUS = 4
NUMPASS = 2
PATCH_RADIUS = 1
BLOCK_RADIUS = 5
B0_THRESHOLD = 10
MIN_SIGNAL = 1

# Smallest compression for the committed files; nibabel's default is 1.
nib.openers.Opener.default_compresslevel = 9


def versions() -> dict:
    return {
        "python": sys.version.split()[0],
        "dipy": dipy.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "nibabel": nib.__version__,
    }


def skimage_absent() -> bool:
    try:
        import skimage  # noqa: F401
    except ImportError:
        return True
    return False


# --------------------------------------------------------------------------
# file helpers


def save_nii(path: Path, arr: np.ndarray, affine: np.ndarray, dtype) -> None:
    arr = np.asarray(arr).astype(dtype, copy=False)
    img = nib.Nifti1Image(arr, affine)
    img.header.set_data_dtype(dtype)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, str(path))


def gzip_copy(src: Path, dst: Path) -> None:
    """Byte-for-byte copy of src into a deterministic gzip file dst."""
    with open(src, "rb") as fin, open(dst, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as fout:
            shutil.copyfileobj(fin, fout)


def write_fsl_gradients_to(bval_path: Path, bvec_path: Path, bvals: np.ndarray, bvecs: np.ndarray) -> None:
    """bvals one row; bvecs FSL layout: 3 rows x N columns. NaN stays 'nan'."""
    np.savetxt(bval_path, np.asarray(bvals, float)[None, :], fmt="%.17g", delimiter=" ")
    np.savetxt(bvec_path, np.asarray(bvecs, float).T, fmt="%.17g", delimiter=" ")


def write_fsl_gradients(case_dir: Path, bvals: np.ndarray, bvecs: np.ndarray) -> None:
    write_fsl_gradients_to(case_dir / "input.bval", case_dir / "input.bvec", bvals, bvecs)


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=False) + "\n")


def fl(x) -> float:
    """A numpy scalar as a Python float (exact: float32 widens exactly)."""
    return float(x)


class Timer:
    def __init__(self):
        self.steps: dict[str, float] = {}

    def run(self, name, fn, *a, **kw):
        t = time.perf_counter()
        r = fn(*a, **kw)
        self.steps[name] = time.perf_counter() - t
        return r


# --------------------------------------------------------------------------
# synthetic diffusion data (also used by scripts/bench_kernels_dipy.py)


def fibonacci_hemisphere(n: int, offset: float = 0.0) -> np.ndarray:
    """n well-spread unit vectors with z >= 0 (golden-angle spiral)."""
    i = np.arange(n, dtype=np.float64) + 0.5
    z = 1.0 - i / n  # (0, 1]
    r = np.sqrt(1.0 - z * z)
    phi = np.pi * (3.0 - np.sqrt(5.0)) * i + offset
    v = np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def synthetic_gradients(n_per_shell: int = 10):
    """3 b0 (b=5) interleaved with two shells (b=1000, 2000).

    Volume order: b0, shell1[:h], shell2[:h], b0, shell1[h:], shell2[h:], b0
    with h = n_per_shell // 2. b0 #0 has a zero b-vector, b0 #1 and #2 have
    unit b-vectors (DIPY keeps b=5 for those rows; it zeroes b for rows whose
    vector is not unit).
    """
    s1 = fibonacci_hemisphere(n_per_shell, 0.0)
    s2 = fibonacci_hemisphere(n_per_shell, 0.7)
    h = n_per_shell // 2
    b0_vecs = [np.zeros(3), np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.6, 0.8])]
    vecs, vals = [], []
    chunks = [(s1[:h], 1000.0), (s2[:h], 2000.0), None, (s1[h:], 1000.0), (s2[h:], 2000.0)]
    vecs.append(b0_vecs[0]); vals.append(5.0)
    k = 1
    for c in chunks:
        if c is None:
            vecs.append(b0_vecs[k]); vals.append(5.0); k += 1
            continue
        for v in c[0]:
            vecs.append(v); vals.append(c[1])
    vecs.append(b0_vecs[k]); vals.append(5.0)
    return np.array(vals), np.array(vecs)


def rotation_to(d: np.ndarray) -> np.ndarray:
    """A rotation whose first column is the unit vector d."""
    d = d / np.linalg.norm(d)
    a = np.array([1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e2 = np.cross(d, a); e2 /= np.linalg.norm(e2)
    e3 = np.cross(d, e2)
    return np.stack([d, e2, e3], axis=1)


def synthetic_phantom(shape, bvals, bvecs, rng, sigma=20.0, s0_level=1000.0):
    """Ellipsoid 'brain' in zero background with a tensor field and Rician noise.

    Coordinates: x, y, z = numpy.linspace(-1, 1, n) along each axis (index
    order i, j, k); an axis of one voxel sits at 0 (the middle slice). Ellipsoid radius r = sqrt((x/1.15)^2 + (y/1.15)^2 + (z/1.1)^2);
    brain weight w = smoothstep(clip((1 - r) / 0.5 + 0.5, 0, 1)) with
    smoothstep(t) = t^2 (3 - 2t): 1 for r <= 0.75, 0 for r >= 1.25 (the box
    corners are background). A soft edge keeps estimate_sigma's Laplacian from
    being dominated by the brain boundary in so small a volume.
    Tensor regions (inside, later rules win):
      * default tissue: isotropic D = 0.8e-3 mm^2/s
      * |x| <= 0.35, y > 0.15 : fibre along x, evals (1.7, 0.3, 0.3)e-3
      * |y| <= 0.35, x < -0.15: fibre along y, evals (1.5, 0.35, 0.35)e-3
      * x > 0.15, y < -0.15   : fibre along (1,1,1)/sqrt(3), evals (1.4, 0.5, 0.3)e-3
      * x^2 + y^2 + z^2 < 0.09: CSF-like isotropic 2.5e-3
    S0 = s0_level * (0.9 + 0.1 * (z + 1)) * w.
    Signal S = S0 exp(-b g^T D g); Rician noise sqrt((S + n1)^2 + n2^2),
    n1 then n2 each drawn as rng.normal(0, sigma, size=shape + (N,)).
    Returns (data float32 X x Y x Z x N, brain = w > 0.5, true FA, true MD),
    FA/MD being 0 outside the brain.
    """
    X, Y, Z = shape
    gx, gy, gz = np.meshgrid(
        *(np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1) for n in shape), indexing="ij"
    )
    r = np.sqrt((gx / 1.15) ** 2 + (gy / 1.15) ** 2 + (gz / 1.1) ** 2)
    t = np.clip((1.0 - r) / 0.5 + 0.5, 0.0, 1.0)
    w = t * t * (3.0 - 2.0 * t)
    brain = w > 0.5
    evals = np.zeros(shape + (3,))
    rots = np.zeros(shape + (3, 3))
    evals[...] = [0.8e-3, 0.8e-3, 0.8e-3]
    rots[...] = np.eye(3)
    regions = [
        ((np.abs(gx) <= 0.35) & (gy > 0.15), [1.7e-3, 0.3e-3, 0.3e-3], [1, 0, 0]),
        ((np.abs(gy) <= 0.35) & (gx < -0.15), [1.5e-3, 0.35e-3, 0.35e-3], [0, 1, 0]),
        ((gx > 0.15) & (gy < -0.15), [1.4e-3, 0.5e-3, 0.3e-3], [1, 1, 1]),
        (gx**2 + gy**2 + gz**2 < 0.09, [2.5e-3, 2.5e-3, 2.5e-3], [1, 0, 0]),
    ]
    for sel, ev, d in regions:
        evals[sel] = ev
        rots[sel] = rotation_to(np.array(d, dtype=float))
    D = np.einsum("...ij,...j,...kj->...ik", rots, evals, rots)
    s0 = s0_level * (0.9 + 0.1 * (gz + 1.0)) * w
    g = bvecs * bvals[:, None] ** 0.5  # sqrt(b) g
    adc_b = np.einsum("ni,...ij,nj->...n", g, D, g)  # b g^T D g
    signal = s0[..., None] * np.exp(-adc_b)
    n1 = rng.normal(0.0, sigma, size=signal.shape)
    n2 = rng.normal(0.0, sigma, size=signal.shape)
    data = np.sqrt((signal + n1) ** 2 + n2**2).astype(np.float32)
    ev = np.where(brain[..., None], evals, 0.0)
    num = (ev[..., 0] - ev[..., 1]) ** 2 + (ev[..., 1] - ev[..., 2]) ** 2 + (ev[..., 2] - ev[..., 0]) ** 2
    den = (ev**2).sum(-1)
    fa = np.sqrt(0.5 * num / np.where(den > 0, den, 1.0))
    md = ev.mean(-1)
    return data, brain, fa, md


def build_synthetic_dwi(shape, seed, n_per_shell=10, sigma=20.0):
    """Data set of the 'synthetic' golden case: see synthetic_phantom()."""
    rng = np.random.default_rng(seed)
    bvals, bvecs = synthetic_gradients(n_per_shell)
    data, brain, fa, md = synthetic_phantom(tuple(shape), bvals, bvecs, rng, sigma=sigma)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -np.array(shape) + 1.0  # centre the grid on 0 mm
    return data, bvals, bvecs, affine, brain, fa, md


# --------------------------------------------------------------------------
# spec re-implementations (self-checks only; the goldens are DIPY's output)


def nlmeans_spec(vol: np.ndarray, sigma: float, mask: np.ndarray) -> np.ndarray:
    """Classic NL-means written from the spec text, vectorised over voxels."""
    B, P = BLOCK_RADIUS, PATCH_RADIUS
    R = B - P  # candidate centres within +-R
    v = vol.astype(np.float64)
    p = np.pad(v, B, mode="reflect")
    n = v.shape
    npatch = (2 * P + 1) ** 3
    num = np.zeros(n)
    den = np.zeros(n)
    # region of patch voxels around every output voxel: padded coords B-P .. B+n+P
    lo = B - P
    A = p[lo : lo + n[0] + 2 * P, lo : lo + n[1] + 2 * P, lo : lo + n[2] + 2 * P]
    s_over = (npatch * sigma) / npatch  # s/27 with a constant sigma map
    denom = np.sqrt(2.0) * s_over**2
    for dm in range(-R, R + 1):
        for dn in range(-R, R + 1):
            for do in range(-R, R + 1):
                S = p[lo + dm : lo + dm + n[0] + 2 * P,
                      lo + dn : lo + dn + n[1] + 2 * P,
                      lo + do : lo + do + n[2] + 2 * P]
                D2 = (A - S) ** 2
                d = np.zeros(n)
                for a in range(2 * P + 1):
                    for b in range(2 * P + 1):
                        for c in range(2 * P + 1):
                            d += D2[a : a + n[0], b : b + n[1], c : c + n[2]]
                w = np.exp(-(d / npatch) / denom)
                xc = p[B + dm : B + dm + n[0], B + dn : B + dn + n[1], B + do : B + do + n[2]]
                num += w * xc * xc
                den += w
    out = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    out = np.where(mask, out, 0.0)
    out = np.sqrt(np.maximum(out - 2.0 * sigma**2, 0.0))
    return out.astype(np.float32)


def spec_design_matrix(bvals, bvecs) -> np.ndarray:
    """Spec: rows -[b gx^2, 2b gx gy, b gy^2, 2b gx gz, 2b gy gz, b gz^2, 1];
    non-unit b-vectors (b0 rows) are zeroed."""
    g = np.where(np.isnan(bvecs), 0.0, bvecs)
    unit = np.abs(np.linalg.norm(g, axis=1) - 1.0) <= 1e-2
    g = np.where(unit[:, None], g, 0.0)
    b = bvals
    gx, gy, gz = g.T
    X = -np.stack([b * gx * gx, 2 * b * gx * gy, b * gy * gy, 2 * b * gx * gz,
                   2 * b * gy * gz, b * gz * gz, np.ones_like(b)], axis=1)
    return X


def dti_spec(data: np.ndarray, mask: np.ndarray, X: np.ndarray):
    """WLS tensor fit written from the spec text (float64 throughout)."""
    s = np.maximum(data[mask].astype(np.float64), MIN_SIGNAL)
    logs = np.log(s)
    U, _, _ = np.linalg.svd(X, full_matrices=False)
    H = U @ U.T
    w = np.exp(logs @ H.T)
    beta = np.einsum("vij,vj->vi", np.linalg.pinv(X[None] * w[..., None], rcond=1e-15), w * logs)
    T = np.zeros((beta.shape[0], 3, 3))
    T[:, 0, 0] = beta[:, 0]; T[:, 0, 1] = T[:, 1, 0] = beta[:, 1]; T[:, 1, 1] = beta[:, 2]
    T[:, 0, 2] = T[:, 2, 0] = beta[:, 3]; T[:, 1, 2] = T[:, 2, 1] = beta[:, 4]; T[:, 2, 2] = beta[:, 5]
    ev = np.linalg.eigvalsh(T)[:, ::-1]
    ev = np.maximum(ev, 1e-6 / np.abs(X).max())
    num = (ev[:, 0] - ev[:, 1]) ** 2 + (ev[:, 1] - ev[:, 2]) ** 2 + (ev[:, 2] - ev[:, 0]) ** 2
    den = (ev**2).sum(1)
    fa = np.where(den > 0, np.sqrt(0.5 * num / np.where(den > 0, den, 1.0)), 0.0)
    md = ev.mean(1)
    FA = np.zeros(mask.shape); MD = np.zeros(mask.shape)
    FA[mask] = fa; MD[mask] = md
    return FA, MD


# --------------------------------------------------------------------------
# the pipeline, DIPY calls exactly as the spec states


def mean_b0_f64(data: np.ndarray, b0_idx) -> np.ndarray:
    acc = np.zeros(data.shape[:3], dtype=np.float64)
    for i in b0_idx:
        acc += data[..., i]  # float32 -> float64 widening is exact
    return acc / len(b0_idx)


def mask_step(mean_b0: np.ndarray, T: Timer):
    median1 = T.run("median1", multi_median, mean_b0, MEDIAN_RADIUS, 1)
    # multi_median calls scipy.ndimage.median_filter(data, [9, 9, 9]) (mode
    # 'reflect' by default); check that is what we reproduce.
    assert np.array_equal(median1, median_filter(mean_b0, size=2 * MEDIAN_RADIUS + 1, mode="reflect"))
    median2 = T.run("median2", multi_median, mean_b0, MEDIAN_RADIUS, NUMPASS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # autocrop is deprecated since 1.11 but the spec passes it
        _, mask = T.run(
            "median_otsu",
            median_otsu,
            mean_b0,
            median_radius=MEDIAN_RADIUS,
            numpass=NUMPASS,
            autocrop=False,
            dilate=1,
        )
    thr = otsu(median2)  # median_otsu calls otsu(filtered) with the default nbins=256
    hist, edges = np.histogram(median2, 256)
    raw = median2 > thr
    cross = generate_binary_structure(3, 1)
    assert np.array_equal(mask, binary_dilation(raw, cross, iterations=1)), "mask recomposition"
    otsu_info = {
        "threshold": fl(thr),
        "called_as": "dipy.segment.threshold.otsu(median2) with nbins=256 (median_otsu's call)",
        "skimage_absent": skimage_absent(),
        "median2_min": fl(median2.min()),
        "median2_max": fl(median2.max()),
        "bin_index": int(np.searchsorted(edges, thr, side="left")),
        "voxels_above_threshold_before_dilation": int(raw.sum()),
        "voxels_in_mask": int(mask.sum()),
        "voxels_total": int(mask.size),
    }
    return median1, median2, mask.astype(bool), otsu_info


def save_tensor_maps(case_dir: Path, fit, affine, files: dict, fitted: str) -> None:
    """Every map of DIPY's dipy_fit_dti workflow other than fa, md, evals
    (written by run_pipeline), from the TensorFit itself, in the workflow's
    file names and array layouts."""
    for name, arr, what in (
        ("ga", fit.ga, "geodesic anisotropy, 0 where evals[0] == 0"),
        ("ad", fit.ad, "axial diffusivity evals[0] (mm^2/s)"),
        ("rd", fit.rd, "radial diffusivity (evals[1] + evals[2]) / 2 (mm^2/s)"),
        ("mode", fit.mode, "tensor mode of quadratic_form, 0 where the deviatoric norm is 0"),
    ):
        save_nii(case_dir / f"{name}.nii.gz", arr, affine, np.float32)
        files[f"{name}.nii.gz"] = f"float32 X*Y*Z: {what}, of the fit on {fitted}; 0 outside mask"
    save_nii(case_dir / "rgb.nii.gz", fit.color_fa, affine, np.float32)
    files["rgb.nii.gz"] = (f"float32 X*Y*Z*3: TensorFit.color_fa = abs(evecs[..., 0]) * clip(fa, 0, 1), fit on {fitted} "
                           "(the workflow saves uint8(255 * this))")
    save_nii(case_dir / "evecs.nii.gz", fit.evecs, affine, np.float32)
    files["evecs.nii.gz"] = (f"float32 X*Y*Z*3*3: evecs[x, y, z, j, i] = component j of eigenvector i (columns, "
                             f"evals order), fit on {fitted}; sign as LAPACK gives it")
    # float32 to keep the committed file small (the workflow keeps float64;
    # rounding moves a value of ~1e-3 by ~1e-10, far under the 1e-7 tolerance)
    tensors = np.asarray(fit.lower_triangular(), dtype=np.float32)
    img = nifti1_symmat(tensors, affine=affine)  # the workflow's call: X*Y*Z*1*6, symmetric-matrix intent
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, str(case_dir / "tensors.nii.gz"))
    files["tensors.nii.gz"] = (f"float32 X*Y*Z*1*6: lower_triangular(quadratic_form), Dxx, Dxy, Dyy, Dxz, Dyz, Dzz, "
                               f"quadratic_form = evecs diag(evals) evecs^T (clipped evals), fit on {fitted}")


def run_pipeline(case: str, case_dir: Path, data: np.ndarray, affine, bvals, bvecs,
                 meta: dict, do_spec_check: bool, log, denoise: bool = True) -> dict:
    T = Timer()
    files = {}
    has_grad = bvals is not None
    if has_grad:
        gtab = gradient_table(bvals, bvecs=bvecs, b0_threshold=B0_THRESHOLD)
        b0_idx = [int(i) for i in np.flatnonzero(gtab.b0s_mask)]
    else:
        gtab = None
        b0_idx = list(range(data.shape[3]))
    meta["b0_indices"] = b0_idx

    mean_b0 = T.run("mean_b0", mean_b0_f64, data, b0_idx)
    save_nii(case_dir / "mean_b0.nii.gz", mean_b0, affine, np.float64)
    files["mean_b0.nii.gz"] = "float64 X*Y*Z: mean of the b0 volumes (float64 sum in volume order, then / count)"

    median1, median2, mask, otsu_info = mask_step(mean_b0, T)
    save_nii(case_dir / "median1.nii.gz", median1, affine, np.float64)
    save_nii(case_dir / "median2.nii.gz", median2, affine, np.float64)
    save_nii(case_dir / "mask.nii.gz", mask, affine, np.uint8)
    write_json(case_dir / "otsu.json", otsu_info)
    files["median1.nii.gz"] = "float64 X*Y*Z: mean_b0 after one median pass, window 9^3, scipy 'reflect' edges"
    files["median2.nii.gz"] = "float64 X*Y*Z: after the second pass (reads median1), the input of Otsu"
    files["mask.nii.gz"] = "uint8 X*Y*Z: median_otsu(mean_b0, median_radius=4, numpass=2, autocrop=False, dilate=1)"
    files["otsu.json"] = "threshold = dipy.segment.threshold.otsu(median2); mask_raw = median2 > threshold"
    log(f"  mask: {otsu_info['voxels_in_mask']}/{otsu_info['voxels_total']} voxels, otsu {otsu_info['threshold']:.6g}")

    spec_check = {}
    if has_grad:
        sigma = T.run("estimate_sigma", estimate_sigma, data, N=0)
        assert sigma.dtype == np.float32
        write_json(case_dir / "sigma.json", {
            "sigma": [fl(s) for s in sigma],
            "dtype": "float32 (DIPY stores sigma in a float32 array; values here are those float32 values)",
            "call": "dipy.denoise.noise_estimate.estimate_sigma(data, N=0)",
        })
        files["sigma.json"] = "estimate_sigma(data, N=0): one float32 value per volume"

        def denoise_all():
            out = np.zeros(data.shape, dtype=np.float32)
            for i in range(data.shape[3]):
                out[..., i] = nlmeans(
                    data[..., i], sigma=sigma[i], mask=mask, patch_radius=PATCH_RADIUS,
                    block_radius=BLOCK_RADIUS, rician=True, method="classic",
                )
            return out

        if denoise:
            denoised = T.run("nlmeans", denoise_all)
            assert denoised.dtype == np.float32
            save_nii(case_dir / "denoised.nii.gz", denoised, affine, np.float32)
            files["denoised.nii.gz"] = ("float32 X*Y*Z*N: per volume nlmeans(vol, sigma=sigma[i], mask=mask, "
                                        "patch_radius=1, block_radius=5, rician=True, method='classic'); 0 outside mask")
            fitted = "denoised"
        else:
            # a dimension under 5: DIPY's classic nlmeans reads memory it did
            # not pad there, so the fit reads the input itself
            denoised = data
            fitted = "input"
        meta["fit_input"] = f"{fitted}.nii.gz"

        model = TensorModel(gtab, min_signal=MIN_SIGNAL)
        fit = T.run("dti_fit", model.fit, denoised, mask=mask)
        fa = np.asarray(fit.fa, dtype=np.float64)
        md = np.asarray(fit.md, dtype=np.float64)
        evals = np.asarray(fit.evals, dtype=np.float64)
        save_nii(case_dir / "fa.nii.gz", fa, affine, np.float64)
        save_nii(case_dir / "md.nii.gz", md, affine, np.float64)
        save_nii(case_dir / "evals.nii.gz", evals, affine, np.float64)
        files["fa.nii.gz"] = "float64 X*Y*Z: FA of TensorModel(gtab, min_signal=1).fit(denoised, mask) (WLS); 0 outside mask"
        files["md.nii.gz"] = "float64 X*Y*Z: MD (mm^2/s) of the same fit; 0 outside mask"
        files["evals.nii.gz"] = "float64 X*Y*Z*3: eigenvalues, descending, clipped below at 1e-6/max(-X); 0 outside mask"
        save_tensor_maps(case_dir, fit, affine, files, fitted)

        X = design_matrix(gtab)
        meta["design_matrix"] = {
            "dipy_min_diffusivity": fl(1e-6 / -X.min()),
            "spec_min_diffusivity_1e-6_over_max_abs_X": fl(1e-6 / np.abs(X).max()),
            "note": "DIPY clips eigenvalues at 1e-6 / -X.min() (X = design matrix, whose entries are -B)",
            "bvals_after_gradient_table": [fl(b) for b in gtab.bvals],
        }
        log(f"  sigma[0..3] {sigma[:3]}, fa max {fa.max():.4f}, md median-in-mask {np.median(md[mask]):.4g}")

        if do_spec_check:
            if denoise:
                # (a) NL-means from the spec text vs DIPY
                t = time.perf_counter()
                worst = 0.0
                for i in range(data.shape[3]):
                    ours = nlmeans_spec(data[..., i], float(sigma[i]), mask)
                    d = denoised[..., i][mask].astype(np.float64)
                    o = ours[mask].astype(np.float64)
                    rel = np.abs(o - d) / np.maximum(np.abs(d), 1e-30)
                    rel[(d == 0) & (o == 0)] = 0.0
                    worst = max(worst, float(rel.max()) if rel.size else 0.0)
                spec_check["nlmeans_max_rel_diff_in_mask"] = worst
                spec_check["nlmeans_seconds"] = round(time.perf_counter() - t, 3)
            # (b) DTI from the spec text (float64 log) vs DIPY, on the fit's input
            Xs = spec_design_matrix(np.asarray(bvals, float), np.asarray(bvecs, float))
            spec_check["design_matrix_max_abs_diff_vs_dipy"] = float(np.abs(Xs - X).max())
            FA, MD = dti_spec(denoised, mask, Xs)
            spec_check["fa_max_abs_diff_in_mask"] = float(np.abs(FA - fa)[mask].max())
            spec_check["md_max_abs_diff_in_mask"] = float(np.abs(MD - md)[mask].max())
            # DIPY takes np.log of the float32 clipped signal (log in float32);
            # redo the spec fit with that to show the source of the difference.
            s32 = np.maximum(denoised, np.float32(MIN_SIGNAL))
            FA32, MD32 = dti_spec(np.exp(np.log(s32).astype(np.float64)), mask, Xs)
            spec_check["fa_max_abs_diff_in_mask_with_float32_log"] = float(np.abs(FA32 - fa)[mask].max())
            spec_check["md_max_abs_diff_in_mask_with_float32_log"] = float(np.abs(MD32 - md)[mask].max())
            ok = (spec_check.get("nlmeans_max_rel_diff_in_mask", 0.0) <= 1e-4
                  and spec_check["fa_max_abs_diff_in_mask"] <= 1e-4
                  and spec_check["md_max_abs_diff_in_mask"] <= 1e-7)
            spec_check["within_spec_tolerances"] = bool(ok)
            log(f"  spec check: {spec_check}")
            if not ok:
                raise SystemExit(f"{case}: spec re-implementation disagrees with DIPY beyond tolerance")

    meta["files"] = files
    meta["step_seconds"] = {k: round(v, 3) for k, v in T.steps.items()}
    if spec_check:
        meta["spec_check"] = spec_check
    return meta


# --------------------------------------------------------------------------
# cases


def dipy_data_dir() -> Path:
    from dipy.data import get_fnames

    return Path(get_fnames(name="small_64D")[0]).parent


def case_small_64D(out: Path, seed: int, check: bool, log) -> dict:
    d = dipy_data_dir()
    src, bval_src, bvec_src = d / "small_64D.nii", d / "small_64D.bval", d / "small_64D.bvec"
    gzip_copy(src, out / "input.nii.gz")
    bvals, bvecs = read_bvals_bvecs(str(bval_src), str(bvec_src))  # file is N x 3; NaN first row
    write_fsl_gradients(out, bvals, bvecs)
    img = nib.load(str(out / "input.nii.gz"))
    data = img.get_fdata(dtype=np.float32)
    meta = {
        "source": "dipy wheel data file dipy/data/files/small_64D.nii (+ .bval, .bvec)",
        "input": {
            "input.nii.gz": f"byte-for-byte gzip of small_64D.nii: {img.get_data_dtype()} {list(img.shape)}, no scaling",
            "input.bval": "one row, 65 values (%.17g)",
            "input.bvec": "FSL layout 3 rows x 65 (the wheel's file is 65 x 3); first column is nan nan nan as in the source",
        },
        "seed": None,
    }
    return run_pipeline("small_64D", out, data, img.affine, bvals, bvecs, meta, check, log)


def case_S0_10slices(out: Path, seed: int, check: bool, log) -> dict:
    src = dipy_data_dir() / "S0_10slices.nii.gz"
    shutil.copyfile(src, out / "input.nii.gz")
    img = nib.load(str(out / "input.nii.gz"))
    data = img.get_fdata(dtype=np.float32)
    meta = {
        "source": "dipy wheel data file dipy/data/files/S0_10slices.nii.gz (copied unchanged)",
        "input": {"input.nii.gz": f"{img.get_data_dtype()} {list(img.shape)}; no gradients: mask path only"},
        "seed": None,
    }
    return run_pipeline("S0_10slices", out, data, img.affine, None, None, meta, check, log)


SYNTH_SHAPE = (12, 14, 10)


def case_synthetic(out: Path, seed: int, check: bool, log) -> dict:
    data, bvals, bvecs, affine, brain, fa_true, md_true = build_synthetic_dwi(SYNTH_SHAPE, seed)
    save_nii(out / "input.nii.gz", data, affine, np.float32)
    write_fsl_gradients(out, bvals, bvecs)
    save_nii(out / "fa_true.nii.gz", fa_true, affine, np.float64)
    img = nib.load(str(out / "input.nii.gz"))
    data = img.get_fdata(dtype=np.float32)
    meta = {
        "source": "scripts/make_goldens.py build_synthetic_dwi(shape, seed): see synthetic_phantom() docstring",
        "input": {
            "input.nii.gz": f"float32 {list(data.shape)}, Rician noise sigma 20, S0 ~ 900..1100 in a soft-edged ellipsoid, 0 in the corners",
            "input.bval": "b = 5 (3 b0 volumes at indices 0, 11, 22), 1000 and 2000 (10 directions each)",
            "input.bvec": "FSL 3 x 23; b0 #0 has a zero vector, b0 #1/#2 unit vectors (DIPY keeps their b=5)",
            "fa_true.nii.gz": "float64 ground-truth FA of the noise-free tensor field (0 where brain weight <= 0.5)",
        },
        "seed": seed,
        "rng": "numpy.random.default_rng(seed)",
    }
    return run_pipeline("synthetic", out, data, affine, bvals, bvecs, meta, check, log)


def case_small_25(out: Path, seed: int, check: bool, log) -> dict:
    """DIPY's own thin data set: 10 x 8 x 2 x 26, uint8, one b0."""
    d = dipy_data_dir()
    shutil.copyfile(d / "small_25.nii.gz", out / "input.nii.gz")
    bvals, bvecs = read_bvals_bvecs(str(d / "small_25.bval"), str(d / "small_25.bvec"))
    write_fsl_gradients(out, bvals, bvecs)
    img = nib.load(str(out / "input.nii.gz"))
    data = img.get_fdata(dtype=np.float32)
    meta = {
        "source": "dipy wheel data file dipy/data/files/small_25.nii.gz (+ .bval, .bvec)",
        "input": {
            "input.nii.gz": f"copied unchanged: {img.get_data_dtype()} {list(img.shape)}, no scaling",
            "input.bval": "one row, 26 values (%.17g): one b0, 25 directions at b = 2000",
            "input.bvec": "FSL layout 3 rows x 26 (as the wheel's file)",
        },
        "seed": None,
        "no_denoising": "z has 2 voxels: DIPY's classic nlmeans is not deterministic there (see PROVENANCE.md)",
    }
    return run_pipeline("small_25", out, data, img.affine, bvals, bvecs, meta, check, log, denoise=False)


ONESLICE_SHAPE = (16, 16, 1)


def case_oneslice(out: Path, seed: int, check: bool, log) -> dict:
    """One axial slice of the synthetic phantom (its middle, z = 0)."""
    data, bvals, bvecs, affine, brain, fa_true, md_true = build_synthetic_dwi(ONESLICE_SHAPE, seed + 2)
    save_nii(out / "input.nii.gz", data, affine, np.float32)
    write_fsl_gradients(out, bvals, bvecs)
    img = nib.load(str(out / "input.nii.gz"))
    data = img.get_fdata(dtype=np.float32)
    meta = {
        "source": "scripts/make_goldens.py build_synthetic_dwi((16, 16, 1), seed + 2): see synthetic_phantom()",
        "input": {
            "input.nii.gz": f"float32 {list(data.shape)}, the phantom's middle slice (z = 0), Rician noise sigma 20",
            "input.bval": "b = 5 (3 b0 volumes at indices 0, 11, 22), 1000 and 2000 (10 directions each)",
            "input.bvec": "FSL 3 x 23, as the synthetic case",
        },
        "seed": seed + 2,
        "rng": "numpy.random.default_rng(seed + 2)",
        "no_denoising": "z has 1 voxel: DIPY's classic nlmeans is not deterministic there (see PROVENANCE.md)",
    }
    return run_pipeline("oneslice", out, data, affine, bvals, bvecs, meta, check, log, denoise=False)


def case_edge(out: Path, seed: int, check: bool, log) -> dict:
    """Tiny volumes for edge modes: window larger than the volume, one voxel thick."""
    rng = np.random.default_rng(seed + 1)
    affine = np.eye(4)
    entries = {}
    for name, shape in (("vol_3x5x7", (3, 5, 7)), ("vol_1x6x4", (1, 6, 4))):
        vals = rng.uniform(0.0, 100.0, size=shape).astype(np.float32)
        # a few repeated values so ties occur in the median windows
        vals.flat[::5] = np.float32(90.25)
        save_nii(out / f"{name}.nii.gz", vals, affine, np.float32)
        v = nib.load(str(out / f"{name}.nii.gz")).get_fdata(dtype=np.float32)
        v64 = v.astype(np.float64)
        m1 = median_filter(v64, size=2 * MEDIAN_RADIUS + 1, mode="reflect")
        assert np.array_equal(m1, multi_median(v64, MEDIAN_RADIUS, 1))
        m2 = multi_median(v64, MEDIAN_RADIUS, 2)
        save_nii(out / f"{name}_median1.nii.gz", m1, affine, np.float64)
        save_nii(out / f"{name}_median2.nii.gz", m2, affine, np.float64)
        sig = estimate_sigma(v, N=0)
        with warnings.catch_warnings():
            # a constant image makes otsu divide 0/0: the NaN wins np.argmax
            # (first NaN index, 0) and the threshold is the first bin edge, min - 0.5
            warnings.simplefilter("ignore", RuntimeWarning)
            thr = otsu(m2)
        entries[name] = {
            "shape": list(shape),
            "input": f"{name}.nii.gz float32: rng.uniform(0, 100) with every 5th voxel (C order) set to 90.25",
            "median1": f"{name}_median1.nii.gz float64: scipy median_filter(float64(input), size=9, mode='reflect')",
            "median2": f"{name}_median2.nii.gz float64: second pass on median1 (multi_median numpass=2)",
            "estimate_sigma_N0": fl(sig[0]),
            "median2_is_constant": bool(m2.max() == m2.min()),
            "otsu_of_median2": fl(thr),
            "otsu_of_input_float64": fl(otsu(v64)),
        }
    write_json(out / "edge.json", entries)
    meta = {
        "source": "seeded tiny volumes",
        "seed": seed + 1,
        "rng": "numpy.random.default_rng(seed + 1); vol_3x5x7 drawn first, then vol_1x6x4",
        "files": {"edge.json": ("per volume: file names, estimate_sigma(vol, N=0)[0] (float32 value), "
                                "dipy otsu of median2 and of the float64 input; for a constant median2 "
                                "DIPY's otsu returns min - 0.5 (NaN from 0/0 wins np.argmax)")},
        "note": "no nlmeans here: DIPY's classic nlmeans reads outside its padding for dims < 6",
    }
    return meta


CASES = {
    "small_64D": case_small_64D,
    "S0_10slices": case_S0_10slices,
    "synthetic": case_synthetic,
    "edge": case_edge,
    "small_25": case_small_25,
    "oneslice": case_oneslice,
}


def write_top_level(out: Path, provs: dict, cmd: str, seed: int) -> None:
    v = versions()
    lines = [
        "# DIPY goldens for ember-image",
        "",
        "Generated by `scripts/make_goldens.py` (do not edit by hand). Regenerate with:",
        "",
        "    bash scripts/python-peers.sh",
        f"    {cmd}",
        "",
        f"Seed: {seed}. Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        "scikit-image absent (so median_otsu uses dipy.segment.threshold.otsu): "
        + str(skimage_absent()) + ".",
        "",
        "Pipeline: /work/shared/reference/neuro-pipeline.md. Each case folder has a",
        "provenance.json with per-file meaning, the b0 indices, and a self-check",
        "of the spec text against DIPY (`spec_check`).",
        "",
        "| case | files |",
        "| --- | --- |",
    ]
    for case in provs:
        names = sorted(f.name for f in (out / case).iterdir() if f.is_file())
        lines.append(f"| {case} | " + ", ".join(names) + " |")
    lines += [
        "",
        "DIPY details the Rust side must match (checked in DIPY 1.12.1 sources):",
        "",
        "- median_otsu filters in the dtype it is given: mean_b0 is float64, so all",
        "  median passes are float64 (`multi_median` uses `np.empty_like`).",
        "- Otsu: `otsu(filtered)` with the default 256 bins on the twice-filtered volume.",
        "- estimate_sigma returns float32; nlmeans receives those float32 values.",
        "- nlmeans classic pads by block_radius (5) with index tables equal to numpy",
        "  `reflect` only when every dim >= 6; a dim of 5 or less reads outside the",
        "  array (run-to-run differences for the first two axes, stable but wrong",
        "  values for the last). Every denoising golden here has all dims >= 10;",
        "  small_25 (z = 2) and oneslice (z = 1) have none: their fit goldens are",
        "  fitted on the input itself.",
        "- nlmeans normalises each weight (w / sum w) before summing w x^2 (the spec",
        "  writes sum(w x^2) / sum(w)); the numpy spec check matched bit for bit here.",
        "- TensorModel.fit takes np.log of the float32 (clipped) signal, i.e. log in float32.",
        "- gradient_table zeroes b-values AND b-vectors of rows whose vector is not unit (NaN -> 0 first).",
        "- ga, ad, rd, mode, rgb, evecs, tensors are the TensorFit's own (fit.ga, fit.ad, fit.rd, fit.mode,",
        "  fit.color_fa, fit.evecs, fit.lower_triangular()); mode and tensors use quadratic_form =",
        "  evecs diag(evals) evecs^T with the clipped evals. evecs' signs are LAPACK's: compare up to sign.",
        "  Their shapes are dipy_fit_dti's (evecs X*Y*Z*3*3 with vectors as columns, tensors X*Y*Z*1*6);",
        "  their dtype is float32 (the workflow's, except tensors, which it keeps float64, and rgb,",
        "  which it writes as uint8(255 * color_fa)).",
        "- mode where the three evals are equal (all clipped at the minimum diffusivity, where the",
        "  fitted signal is flat): the deviatoric of the rebuilt quadratic_form is rounding noise, so",
        "  DIPY's mode there is arbitrary (seen from -1.36 to 1 in these goldens); the exact value is 0.",
        "",
    ]
    (out / "PROVENANCE.md").write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--no-spec-check", action="store_true", help="skip the numpy re-implementation checks")
    args = ap.parse_args()

    if not skimage_absent():
        sys.exit("scikit-image is importable: median_otsu would use its Otsu, not DIPY's")

    cmd = ".venv/bin/python scripts/make_goldens.py" + (f" --seed {args.seed}" if args.seed != DEFAULT_SEED else "")
    args.out.mkdir(parents=True, exist_ok=True)
    provs = {}
    total = time.perf_counter()
    for case in args.cases.split(","):
        case = case.strip()
        if case not in CASES:
            sys.exit(f"unknown case {case!r}; known: {', '.join(CASES)}")
        case_dir = args.out / case
        if case_dir.exists():
            shutil.rmtree(case_dir)
        case_dir.mkdir(parents=True)
        t = time.perf_counter()
        print(f"[{case}]", flush=True)
        meta = CASES[case](case_dir, args.seed, not args.no_spec_check, lambda s: print(s, flush=True))
        meta = {"case": case, "command": cmd, "versions": versions(), **meta}
        # timings vary run to run: print them, keep them out of the committed files
        step_seconds = meta.pop("step_seconds", {})
        sc = meta.get("spec_check")
        if sc:
            sc.pop("nlmeans_seconds", None)
        write_json(case_dir / "provenance.json", meta)
        provs[case] = meta
        print(f"  steps (s): {step_seconds}")
        print(f"  case total {time.perf_counter() - t:.2f} s", flush=True)
    # list every case folder present (a --cases subset keeps the others)
    all_provs = {}
    for pj in sorted(args.out.glob("*/provenance.json")):
        all_provs[pj.parent.name] = json.loads(pj.read_text())
    write_top_level(args.out, all_provs, cmd, args.seed)
    print(f"all cases {time.perf_counter() - total:.2f} s")


if __name__ == "__main__":
    main()
