"""Draw wall time against hosts, one line per tool, first run and re-run side by side.

.cache/bench-tools/bin/python benchmarks/chart.py results/latest.json results/latest.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter

STYLE = {
    "machineroom": ("tab:green", "o", "-"),
    "machineroom-nofacts": ("tab:olive", "o", ":"),
    "pyinfra": ("tab:blue", "s", "-"),
    "ansible-tuned": ("tab:red", "^", "-"),
    "ansible-defaults": ("tab:orange", "v", "--"),
    "floor": ("black", "x", ":"),
}


def main() -> None:
    """Read the results JSON, write the PNG."""
    result = json.loads(Path(sys.argv[1]).read_text())
    cells = result["summary"]["cells"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, phase, title in ((axes[0], "first", "first run"), (axes[1], "rerun", "re-run")):
        for tool in result["tools"]:
            want = "floor" if tool == "floor" else phase
            points = sorted(
                (c["n"], c["wall_median"], c["wall_min"], c["wall_max"])
                for c in cells
                if c["tool"] == tool and c["phase"] == want
            )
            if not points:
                continue
            color, marker, line = STYLE.get(tool, ("gray", ".", "-"))
            xs = [p[0] for p in points]
            ys = [p[1] for p in points]
            err = [[max(0, p[1] - p[2]) for p in points], [max(0, p[3] - p[1]) for p in points]]
            label = "raw floor (paramiko)" if tool == "floor" else tool
            ax.errorbar(xs, ys, yerr=err, label=label, color=color, marker=marker,
                        linestyle=line, capsize=3)  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(result["hosts"], [str(n) for n in result["hosts"]])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("hosts")
        ax.set_title(f"env stage (10 tasks per host), {title}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("wall time, s (median, min–max)")
    axes[1].legend(fontsize=8)
    m = result["machine"]
    fig.suptitle(f"{result['date']} · {m['cpu']}, {m['cores']} cores", fontsize=9)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
