#!/usr/bin/env bash
# The study's data size (issue "Neuro for real datasets", item 8).
#
# Part "full": one HCP-size phantom subject (145x174x145, 288 volumes: 18 b0
# and 90 directions at each of b = 1000/2000/3000, float32, ~4.2 GB of
# voxels), written volume by volume by `neuro phantom`, then `neuro run`
# on it with no flag besides --out. Reports wall time per step (run.json),
# peak RSS (GNU time), shuffle and spill (run.json's engine totals), and
# DIPY's time to denoise the first DIPY_VOLUMES volumes of the same subject
# with Ember's mask (the step that is ~95% of the pipeline), 2 threads,
# in the same run, for the per-volume ratio.
#
# Part "cgroup": 4 subjects of HCP spatial shape with 24 volumes each
# (~1.4 GB of float32) run once unconstrained and once inside a memory
# control group of LIMIT_MIB (1024); every output file must be identical.
#
# Too long for CI: a benchmark, not a test. Needs root and a writable cgroup
# file system for part "cgroup", GNU time (Debian package `time`), and the
# peer venv for DIPY (bash scripts/python-peers.sh). Writes
# bench-results/neuro_hcp.md.
#
# Usage:
#   bash scripts/bench_neuro_hcp.sh             # both parts
#   bash scripts/bench_neuro_hcp.sh full        # or: cgroup
#
# Environment: DATA (phantom folder, default target/neuro-hcp-data),
# DIPY_VOLUMES (3), LIMIT_MIB (1024).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
NAME="bench_neuro_hcp.sh"
VENV_PY="$REPO/.venv/bin/python"
# shellcheck source=scripts/bench-common.sh
. "$SCRIPT_DIR/bench-common.sh"
: "${DATA:=$REPO/target/neuro-hcp-data}" "${DIPY_VOLUMES:=3}" "${LIMIT_MIB:=1024}"
PARTS="${1:-full cgroup}"
case "$PARTS" in -h|--help) bench_usage "$0"; exit 0 ;; esac
cd "$REPO"
[[ " $PARTS " != *" full "* ]] || bench_need_venv

echo "== building neuro (release)" >&2
cargo build --release -p ember-examples --bin neuro >&2
RUN="$REPO/target/neuro-hcp-bench"
rm -rf "$RUN"
mkdir -p "$RUN" "$DATA" bench-results
NEURO="$RUN/neuro"
cp target/release/neuro "$NEURO"
REPORT="$RUN/neuro_hcp.md"
{
    echo "# Neuro pipeline at the study's data size"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(nproc) cores;" \
        "ember $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' + uncommitted changes')"
    echo
} > "$REPORT"

# `field FILE NAME`: a GNU time -v field.
field() { awk -F': ' -v n="$2" '$1 ~ n { print $2 }' "$1"; }

# `phantom DIR ARGS...`: writes phantom subjects once, reused while their
# parameters stay the same.
phantom() {
    local dir="$1"; shift
    if [ "$(cat "$dir/PARAMS" 2>/dev/null || true)" != "$*" ]; then
        rm -rf "$dir"
        echo "== neuro phantom $* -> $dir" >&2
        /usr/bin/time -v -o "$RUN/phantom-$(basename "$dir").time" \
            "$NEURO" phantom --out "$dir" "$@" >/dev/null
        echo "$*" > "$dir/PARAMS"
    fi
}

if [[ " $PARTS " == *" full "* ]]; then
    phantom "$DATA/full" --shape 145 174 145 --seed 1
    SUBJECT="$DATA/full/subject-000"
    echo "== neuro run on the full-size subject" >&2
    /usr/bin/time -v -o "$RUN/full.time" "$NEURO" run --out "$RUN/full-out" "$SUBJECT" 2> "$RUN/full.log"
    MASK="$RUN/full-out/subject-000/mask.nii.gz"
    echo "== DIPY: denoising the first $DIPY_VOLUMES volumes with Ember's mask, 2 threads" >&2
    "$VENV_PY" - "$SUBJECT/data.nii.gz" "$MASK" "$DIPY_VOLUMES" > "$RUN/dipy.json" <<'PY'
import json, sys, time
import nibabel as nib
import numpy as np
sys.path.insert(0, "scripts")
from bench_neuro_peers import denoise_volume

image, mask_path, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
mask = nib.load(mask_path).get_fdata() > 0
proxy = nib.load(image).dataobj
times = []
for v in range(k):
    vol = np.asarray(proxy[..., v], dtype=np.float32)
    t = time.perf_counter()
    denoise_volume(vol, mask, num_threads=2)
    times.append(time.perf_counter() - t)
print(json.dumps({"volumes": k, "seconds": times}))
PY
    python3 - "$RUN" >> "$REPORT" <<'PY'
import json, re, sys
run = sys.argv[1]
report = json.load(open(f"{run}/full-out/run.json"))
dipy = json.load(open(f"{run}/dipy.json"))
def gnu(path, key):
    for line in open(path):
        if key in line:
            return line.split(": ", 1)[1].strip()
rss = int(gnu(f"{run}/full.time", "Maximum resident")) / 1024
wall = gnu(f"{run}/full.time", "Elapsed (wall clock)")
phantom_rss = int(gnu(f"{run}/phantom-full.time", "Maximum resident")) / 1024 if __import__("os").path.exists(f"{run}/phantom-full.time") else None
steps = dict(report["steps"])
s = report["subjects"][0]
e = report["engine"]
print("## One full-size subject: 145x174x145 x 288 volumes (float32, ~4.2 GB)\n")
print("`neuro run --out OUT SUBJECT` (no other flag: local[*], defaults from the machine).\n")
print("| step | seconds |\n|---|---:|")
for name, secs in report["steps"]:
    print(f"| {name} | {secs:.1f} |")
print(f"| **total (wall, GNU time)** | {wall} |\n")
print(f"Peak RSS {rss:.0f} MiB; shuffle written {e['shuffle_bytes_written'] / 2**20:.0f} MiB; "
      f"spilled {e['spill_memory_bytes'] / 2**20:.0f} MiB in memory / {e['spill_disk_bytes'] / 2**20:.0f} MiB on disk; "
      f"status {s['status']}, {s['mask_voxels']} voxels in the mask.")
if phantom_rss is not None:
    print(f"Writing the phantom (`neuro phantom`) peaked at {phantom_rss:.0f} MiB.")
per_volume = steps.get("denoise", 0) / 288
d = dipy["seconds"]
dipy_per_volume = sum(d) / len(d)
print(f"\nDenoising, seconds per volume: Ember {per_volume:.2f} (denoise step / 288), "
      f"DIPY {dipy_per_volume:.2f} (mean of its first {len(d)} volumes: {', '.join(f'{x:.1f}' for x in d)}; 2 threads): "
      f"**DIPY / Ember = {dipy_per_volume / per_volume:.1f}x**; DIPY's whole denoising step would take about "
      f"{dipy_per_volume * 288 / 60:.0f} min.\n")
PY
fi

if [[ " $PARTS " == *" cgroup "* ]]; then
    phantom "$DATA/cgroup" --shape 145 174 145 --b0 6 --dirs 6 --subjects 4 --seed 2
    mapfile -t SUBJ < <(find "$DATA/cgroup" -mindepth 1 -maxdepth 1 -type d -name 'subject-*' | sort)
    echo "== neuro run, 4 subjects, unconstrained" >&2
    /usr/bin/time -v -o "$RUN/free.time" "$NEURO" run --out "$RUN/free-out" "${SUBJ[@]}" 2> "$RUN/free.log"
    LIMIT=$((LIMIT_MIB * 1048576))
    if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
        CG="/sys/fs/cgroup/ember-hcp-bench-$$"
        mkdir "$CG"
        echo "$LIMIT" > "$CG/memory.max"
        echo 0 > "$CG/memory.swap.max" 2>/dev/null || true
        ooms() { awk '/^oom_kill / { print $2 }' "$CG/memory.events"; }
    else
        parent="/sys/fs/cgroup/memory$(awk -F: '$2 ~ /(^|,)memory(,|$)/ { print $3 }' /proc/self/cgroup)"
        CG="$parent/ember-hcp-bench-$$"
        mkdir "$CG"
        echo "$LIMIT" > "$CG/memory.limit_in_bytes"
        echo "$LIMIT" > "$CG/memory.memsw.limit_in_bytes" 2>/dev/null || true
        ooms() { awk '/^oom_kill / { print $2 }' "$CG/memory.oom_control"; }
    fi
    trap 'rmdir "$CG" 2>/dev/null || true' EXIT
    echo "== neuro run, 4 subjects, in a $LIMIT_MIB MiB group" >&2
    status=0
    sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh "$CG" \
        /usr/bin/time -v -o "$RUN/cg.time" "$NEURO" run --out "$RUN/cg-out" "${SUBJ[@]}" 2> "$RUN/cg.log" || status=$?
    same=0; differ=0
    while IFS= read -r f; do
        rel="${f#"$RUN/free-out/"}"
        case "$rel" in run.json|report.html) continue ;; esac
        if cmp -s "$f" "$RUN/cg-out/$rel"; then same=$((same + 1)); else differ=$((differ + 1)); echo "differs: $rel" >&2; fi
    done < <(find "$RUN/free-out" -type f | sort)
    {
        echo "## 4 subjects of HCP spatial shape x 24 volumes (~1.4 GB of float32) in a ${LIMIT_MIB} MiB memory group"
        echo
        echo "| run | wall | peak RSS MiB | exit status | OOM kills |"
        echo "|---|---:|---:|---:|---:|"
        echo "| unconstrained | $(field "$RUN/free.time" 'Elapsed') | $(( $(field "$RUN/free.time" 'Maximum resident') / 1024 )) | 0 | - |"
        echo "| ${LIMIT_MIB} MiB group | $(field "$RUN/cg.time" 'Elapsed') | $(( $(field "$RUN/cg.time" 'Maximum resident') / 1024 )) | $status | $(ooms || echo '?') |"
        echo
        echo "Output files identical to the unconstrained run: $same; different: $differ."
        echo
    } >> "$REPORT"
    [ "$status" = 0 ] && [ "$differ" = 0 ] || { tail -n 20 "$RUN/cg.log" >&2; cat "$REPORT"; exit 1; }
fi
cat "$REPORT"
cp "$REPORT" bench-results/neuro_hcp.md
