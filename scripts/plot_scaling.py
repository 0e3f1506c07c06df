#!/usr/bin/env python3
"""Chart of the neuro scaling run (scripts/bench_neuro_scaling.sh), in the
manner of the study's figure: end-to-end seconds against the number of
subjects, with seconds per subject on a second axis.

    .venv/bin/python scripts/plot_scaling.py SCALING.json OUT.png

SCALING.json: {"title": str, "rows": [{"subjects": n, "seconds": s,
"per_subject": s}, ...]} as written by bench_neuro_scaling.sh.
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    data = json.load(open(sys.argv[1]))
    rows = sorted(data["rows"], key=lambda r: r["subjects"])
    n = [r["subjects"] for r in rows]
    secs = [r["seconds"] for r in rows]
    per = [r["per_subject"] for r in rows]

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.plot(n, secs, "o-", color="tab:blue", label="end to end (s)")
    # the ideal: linear in the number of subjects from the 1-subject point
    ax.plot(n, [secs[0] * k / n[0] for k in n], ":", color="tab:blue", alpha=0.5,
            label="linear from 1 subject")
    ax.set_xlabel("subjects")
    ax.set_ylabel("end-to-end seconds", color="tab:blue")
    ax.set_xticks(n)
    ax.set_xlim(0, max(n) + 0.5)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)

    ax2 = ax.twinx()
    ax2.plot(n, per, "s--", color="tab:orange", label="seconds per subject")
    ax2.set_ylabel("seconds per subject", color="tab:orange")
    ax2.set_ylim(0, max(per) * 1.4)
    lo, hi = min(per), max(per)
    ax.set_title(data.get("title", "Ember neuro pipeline scaling"), fontsize=10)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=8,
              title=f"per subject: {lo:.2f}-{hi:.2f} s (spread {100 * (hi - lo) / lo:.0f}%)",
              title_fontsize=8)
    fig.tight_layout()
    fig.savefig(sys.argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
