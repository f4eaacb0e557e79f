"""Quality versus cost of every agent variant: the table and the Pareto figure of docs/learners.md.

    python -m agents.lab.pareto benchmarks/results/learners.json benchmarks/results/learners_ref.json \\
        --sizes 100,4,40,10 200,8,50,15 100,4,100,20 --out docs/pareto.png \\
        --exclude gnn-torch-decode gnn-polish-torch-decode

reads what ``benchmarks/bench_learners.py`` measured (several files merge; a later file's
entry wins), and for each size gives every variant's mean sum rate as a ratio to the best
search there (exhaustive where it ran, else the better of local search and tabu), its sum
rate relative to master-AP's paired per snapshot (mean and 95 % CI), and its CPU time per
snapshot; the figure has one panel per size, ratio against CPU ms on a log axis.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

FLOOR = 0.965
"""lowest ratio the figure shows (lower ones sit on it, labelled with their value)"""
SEARCHES = ("exhaustive", "local-search", "tabu")
"""the searches a size's reference is the best of"""


def load(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """size key -> variant -> record, merged over ``paths`` in order. A path may also be an
    ``evaluate.py`` ``results.json`` (a list of records): its agents enter with their per-snapshot
    sum rates and the harness's wall time per snapshot (``cpu_ms`` None; marked in the table)."""
    merged: dict[str, dict[str, Any]] = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        if isinstance(data, list):
            for r in data:
                if r.get("status") != "ok":
                    continue
                key = ",".join(str(r[f]) for f in ("M", "L", "K", "tau_p"))
                merged.setdefault(key, {})[r["agent"]] = {
                    "rates_mbps": r["per_snapshot_sum_rate_mbps"], "cpu_ms": None,
                    "wall_ms": r["ms_per_snapshot"], "snapshots": r["snapshots"]}
            continue
        for size, rows in data["results"].items():
            merged.setdefault(size, {}).update(rows)
    return merged


def cost_ms(row: dict[str, Any]) -> float:
    """CPU ms per snapshot where measured, else the harness's wall ms."""
    return row["cpu_ms"] if row["cpu_ms"] is not None else row["wall_ms"]


def summarise(rows: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The reference search's name and one summary per variant (ratio, paired x master-AP, CI, ms)."""
    n = {len(r["rates_mbps"]) for r in rows.values()}
    if len(n) != 1:
        raise ValueError(f"variants were measured on different snapshot counts: {sorted(n)}")
    means = {name: float(np.mean(r["rates_mbps"])) for name, r in rows.items()}
    found = [s for s in SEARCHES if s in rows]
    if not found:
        raise ValueError("no search (exhaustive, local-search, tabu) was measured at this size")
    ref = "exhaustive" if "exhaustive" in rows else max(found, key=means.get)
    master = np.asarray(rows["master-ap"]["rates_mbps"]) if "master-ap" in rows else None
    out = []
    for name, r in rows.items():
        rates = np.asarray(r["rates_mbps"])
        row = {"variant": name, "mean_mbps": means[name], "ratio": means[name] / means[ref], "cpu_ms": r["cpu_ms"],
               "wall_ms": r["wall_ms"], "n": len(rates)}
        if master is not None:
            paired = rates / master
            row["x_master"] = float(paired.mean())
            row["x_master_ci"] = float(1.96 * paired.std(ddof=1) / np.sqrt(len(paired))) if len(paired) > 1 else 0.0
            row["beats_master"] = int((rates > master * (1 + 1e-12)).sum())
        out.append(row)
    return ref, sorted(out, key=cost_ms)


def markdown(data: dict[str, dict[str, Any]], sizes: list[str]) -> str:
    lines = []
    for size in sizes:
        ref, rows = summarise(data[size])
        lines += [f"**({size})**, {rows[0]['n']} test snapshots, ratio to {ref}:", "",
                  "| variant | ratio | x master-AP (95 % CI) | better than master-AP | CPU ms / snapshot |",
                  "|---|---|---|---|---|"]
        for r in rows:
            paired = f"{r['x_master']:.4f} ± {r['x_master_ci']:.4f}" if "x_master" in r else "–"
            better = f"{r['beats_master']}/{r['n']}" if "beats_master" in r else "–"
            ms = f"{r['cpu_ms']:.2f}" if r["cpu_ms"] is not None else f"{r['wall_ms']:.2f} (wall, 2 threads)"
            lines.append(f"| {r['variant']} | {r['ratio']:.4f} | {paired} | {better} | {ms} |")
        lines.append("")
    return "\n".join(lines)


def figure(data: dict[str, dict[str, Any]], sizes: list[str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sizes), figsize=(6.2 * len(sizes), 6.4), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        ref, rows = summarise(data[size])
        for i, r in enumerate(rows):
            learned = r["variant"].startswith(("gnn", "hqcnn"))
            hybrid = "polish" in r["variant"]
            marker = "s" if hybrid else ("o" if learned else "^")
            colour = "tab:purple" if r["variant"].startswith("hqcnn") else (
                "tab:blue" if learned else "tab:gray")
            x = max(cost_ms(r), 1e-3)
            y, name = r["ratio"], r["variant"]
            if y < FLOOR:  # off the scale: drawn on the floor, its ratio in the label
                y, name = FLOOR, f"{name} ({r['ratio']:.3f})"
            ax.scatter(x, y, marker=marker, edgecolors=colour, zorder=3,
                       facecolors="none" if r["cpu_ms"] is None else colour)
            ax.annotate(name, (x, y), fontsize=6, xytext=(4, -8 if i % 2 else 3), textcoords="offset points")
        ax.set_ylim(FLOOR - 0.002, 1.002)
        ax.set_xscale("log")
        ax.set_title(f"({size}), ratio to {ref}")
        ax.set_xlabel("CPU ms per snapshot (one thread, log)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("mean sum rate / best search's")
    fig.suptitle("quality vs cost: o learned decode, s polished (hybrid), ^ classical; hollow: evaluate.py wall "
                 "time (2 threads), else CPU time (1 thread)", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--sizes", nargs="+", default=None, help="size keys (M,L,K,tau_p); default: all measured")
    parser.add_argument("--out", type=Path, default=None, help="figure path (PNG); default: the table only")
    parser.add_argument("--exclude", nargs="+", default=[],
                        help="variants left out of the table and figure (e.g. the torch-decoder references)")
    args = parser.parse_args(argv)
    data = {size: {name: r for name, r in variants.items() if name not in args.exclude}
            for size, variants in load(args.files).items()}
    sizes = args.sizes or list(data)
    print(markdown(data, sizes))
    if args.out:
        figure(data, sizes, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
