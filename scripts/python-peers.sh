#!/usr/bin/env bash
# Creates (or reuses) the Python "peer" environment at $REPO/.venv used to
# produce DIPY goldens (scripts/make_goldens.py) and the Python side of the
# kernel benchmark (scripts/bench_kernels_dipy.py).
#
# Idempotent: re-running it reuses the venv and pip skips what is installed.
#
# Usage:
#   bash scripts/python-peers.sh               # dipy + numpy + scipy + nibabel
#   bash scripts/python-peers.sh --with-bench  # also pyspark 4.x and dask[array]
#
# Environment: PYTHON (default python3) picks the interpreter for the venv.
#
# scikit-image must NOT be installed: DIPY's median_otsu then uses DIPY's own
# dipy.segment.threshold.otsu, which is the Otsu the pipeline spec (and Ember)
# follows. The script fails if `import skimage` succeeds in the venv.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
VENV="$REPO/.venv"
PYTHON="${PYTHON:-python3}"

# --- pinned core packages (goldens depend on these exact versions) ---------
CORE_PACKAGES=(
    "dipy==1.12.1"
    "numpy==2.4.6"
    "scipy==1.17.1"
    "nibabel==5.4.2"
)

# --- optional extra package sets --------------------------------------------
# Other scripts add their own sets here: one array per flag, plus a case in
# the argument loop below. Keep the core pins above untouched.
BENCH_PACKAGES=(
    "pyspark==4.*"
    "dask[array]"
    "matplotlib"  # scripts/plot_scaling.py (bench_neuro_scaling.sh)
)
# >>> extra package sets (add new arrays above this line) <<<

EXTRA_PACKAGES=()
for arg in "$@"; do
    case "$arg" in
        --with-bench) EXTRA_PACKAGES+=("${BENCH_PACKAGES[@]}") ;;
        # >>> add new flags here, e.g. --with-foo) EXTRA_PACKAGES+=("${FOO_PACKAGES[@]}") ;;
        -h|--help)
            awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
            exit 0 ;;
        *) echo "python-peers.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating venv at $VENV with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
else
    echo "reusing venv at $VENV ($("$VENV/bin/python" --version 2>&1))"
fi

PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

install_packages() {
    # install_packages PKG... : pip-installs the given requirement specs.
    [ "$#" -gt 0 ] || return 0
    echo "installing: $*"
    "${PIP[@]}" install --quiet "$@"
}

install_packages "${CORE_PACKAGES[@]}"
install_packages "${EXTRA_PACKAGES[@]}"

# scikit-image must be absent (see header).
if "$VENV/bin/python" -c 'import skimage' >/dev/null 2>&1; then
    echo "ERROR: scikit-image is importable in $VENV; DIPY's median_otsu would" >&2
    echo "use skimage's Otsu instead of dipy.segment.threshold.otsu." >&2
    echo "Remove it: $VENV/bin/python -m pip uninstall -y scikit-image" >&2
    exit 1
fi
echo "ok: scikit-image is not importable"

"$VENV/bin/python" - <<'EOF'
import importlib, sys
print("python", sys.version.split()[0])
for name in ("dipy", "numpy", "scipy", "nibabel", "pyspark", "dask"):
    try:
        mod = importlib.import_module(name)
    except ImportError:
        continue
    print(f"{name} {getattr(mod, '__version__', '?')}")
EOF
