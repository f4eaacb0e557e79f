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
    """One table per size: every variant's ratio, paired ratio to master-AP with its CI, wins, cost."""
    lines = []
    for size in sizes:
        ref, rows = summarise(data[size])
        lines += [f"**({size})**, {rows[0]['n']} test snapshots, ratio to {ref}:", "",
                  "| variant | ratio | x master-AP (95 % CI) | better than master-AP | CPU ms / snapshot |",
                  "|---|---|---|---|---|"]
        for r in rows:
            paired = f"{r['x_master']:.4f} ± {r['x_master_ci']:.4f}" if "x_master" in r else "–"
            better = f"{r['beats_master']}/{r['n']}" if "beats_master" in r else "–"
            lines.append(f"| {r['variant']} | {r['ratio']:.4f} | {paired} | {better} | {_ms(r)} |")
        lines.append("")
    return "\n".join(lines)


def _ms(row: dict[str, Any]) -> str:
    return f"{row['cpu_ms']:.2f}" if row["cpu_ms"] is not None else f"{row['wall_ms']:.2f} (wall, 2 threads)"


def wide(data: dict[str, dict[str, Any]], sizes: list[str], meta: dict[str, Any] | None = None,
         machine: dict[str, Any] | None = None) -> str:
    """Variants as rows, sizes as columns: "ratio (x master-AP ± CI), CPU ms" per cell, rows by their mean
    ratio; then where the numbers come from (the machine and command recorded in the JSON)."""
    summaries = {size: summarise(data[size]) for size in sizes}
    cells: dict[str, dict[str, str]] = {}
    means: dict[str, list[float]] = {}
    for size, (_, rows) in summaries.items():
        for r in rows:
            paired = f" ({r['x_master']:.3f} ± {r['x_master_ci']:.3f})" if "x_master" in r and r["variant"] != "master-ap" else ""
            cells.setdefault(r["variant"], {})[size] = f"{r['ratio']:.4f}{paired}, {_ms(r)} ms"
            means.setdefault(r["variant"], []).append(r["ratio"])
    refs = sorted({ref for ref, _ in summaries.values()})
    n = sorted({rows[0]["n"] for _, rows in summaries.values()})
    lines = [f"Ratio of the mean sum rate to {' / '.join(refs)} (x master-AP paired per network, 95 % CI), CPU ms "
             f"per network on one thread; {' / '.join(map(str, n))} test networks.", "",
             "| variant | " + " | ".join(f"({s})" for s in sizes) + " |", "|---|" + "---|" * len(sizes)]
    for variant in sorted(cells, key=lambda v: float(np.mean(means[v]))):
        lines.append(f"| `{variant}` | " + " | ".join(cells[variant].get(s, "–") for s in sizes) + " |")
    if meta:
        machine = machine or {}
        lines += ["", f"Measured {meta.get('date', '(date not recorded)')}, cfpilot {meta.get('version', '?')}, "
                      f"{machine.get('platform', '?')}, {machine.get('cpus', '?')} CPUs (load average "
                      f"{machine.get('load_average', float('nan')):.1f} at the last write), one thread per variant."]
    return "\n".join(lines)


KIND_MARKERS = {"learned": "o", "hybrid": "s", "classical": "^"}
"""marker per kind of variant in the Pareto figure"""


def kind(variant: str) -> str:
    """learned (a network's decode), hybrid (a start plus the polish) or classical."""
    if "polish" in variant:
        return "hybrid"
    return "learned" if variant.startswith(("gnn", "hqcnn")) else "classical"


def figure(data: dict[str, dict[str, Any]], sizes: list[str], out: Path) -> None:
    """One panel per size, ratio against CPU ms (log); every variant one colour across panels, named in
    one legend (no labels on the points, so none overlap); marker by kind; hollow: wall time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    summaries = {size: summarise(data[size]) for size in sizes}
    variants = sorted({r["variant"] for _, rows in summaries.values() for r in rows},
                      key=lambda v: (list(KIND_MARKERS).index(kind(v)), v))
    palette = plt.get_cmap("tab20").colors
    colour = {v: palette[i % len(palette)] for i, v in enumerate(variants)}
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.6 * len(sizes) + 3.2, 4.4), squeeze=False)
    floored: set[str] = set()
    for ax, (size, (ref, rows)) in zip(axes[0], summaries.items()):
        for r in rows:
            y = max(r["ratio"], FLOOR)
            if r["ratio"] < FLOOR:
                floored.add(r["variant"])
            ax.scatter(max(cost_ms(r), 1e-3), y, marker="v" if r["ratio"] < FLOOR else KIND_MARKERS[kind(r["variant"])],
                       s=42, edgecolors=colour[r["variant"]], linewidths=1.3, zorder=3,
                       facecolors="none" if r["cpu_ms"] is None else colour[r["variant"]])
        ax.set_ylim(FLOOR - 0.002, 1.002)
        ax.set_xscale("log")
        ax.set_title(f"({size}), ratio to {ref}", fontsize=9)
        ax.set_xlabel("CPU ms per network (one thread, log)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("mean sum rate / best search's")
    handles = [Line2D([], [], ls="", marker=KIND_MARKERS[kind(v)], markersize=7, markerfacecolor=colour[v],
                      markeredgecolor=colour[v], label=v + (f" (below {FLOOR} where drawn as v)" if v in floored else ""))
               for v in variants]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False,
               title="o learned, s hybrid, ^ classical", title_fontsize=8)
    fig.suptitle("Quality against cost per network", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path, help="bench_learners.py JSON files (or --table)")
    parser.add_argument("--table", nargs="+", type=Path, default=[],
                        help="JSON files to print as one wide table (variants x sizes) for the docs")
    parser.add_argument("--sizes", nargs="+", default=None, help="size keys (M,L,K,tau_p); default: all measured")
    parser.add_argument("--out", type=Path, default=None, help="figure path (PNG); default: the table only")
    parser.add_argument("--exclude", nargs="+", default=[],
                        help="variants left out of the table and figure (e.g. the torch-decoder references)")
    args = parser.parse_args(argv)
    files = [*args.files, *args.table]
    if not files:
        parser.error("give bench_learners.py JSON files (positional or --table)")
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        parser.error(f"no such file: {', '.join(missing)}")
    data = {size: {name: r for name, r in variants.items() if name not in args.exclude}
            for size, variants in load(files).items()}
    sizes = args.sizes or list(data)
    if args.table:
        saved = json.loads(args.table[-1].read_text())
        print(wide(data, sizes, saved.get("meta"), saved.get("machine")))
    else:
        print(markdown(data, sizes))
    if args.out:
        figure(data, sizes, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
