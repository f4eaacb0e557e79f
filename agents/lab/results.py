"""Results of the harness: Table II records, their ratios, and the files a run leaves
(JSON, CSV, Markdown, PNG, provenance, the test snapshots)."""

from __future__ import annotations

import csv
import json
import math
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from agents.base import TEST_STREAM
from agents.lab.stats import ci95
from agents.learning.diagnostics import collapse_report
from cfenv.channel import Snapshot
from cfenv.config import SystemConfig
from cfenv.units import MBPS, Size, size_slug

REFERENCE_AGENT = "exhaustive"
"""the ratio reference where it ran (else the best agent at that size)"""
RECORD_FIELDS = ["M", "L", "K", "tau_p", "agent", "status", "mean_sum_rate_mbps", "ci95_mbps", "ratio",
                 "ratio_to", "ms_per_snapshot", "train_time_s", "parameters", "distinct_assignments",
                 "ratio_to_best_constant", "collapsed", "snapshots", "seed", "reason"]
"""columns of results.csv"""


def cell_record(name: str, size: Size, parts: list[dict[str, Any] | None], error: str | None,
                snaps: Snapshot, snapshots: int, seed: int) -> dict[str, Any]:
    """One Table II cell of ``snapshots`` test snapshots (``seed``) from its chunks' results
    (in snapshot order; ``None`` for a chunk that did not finish)."""
    M, L, K, tau_p = size
    record: dict[str, Any] = {"M": M, "L": L, "K": K, "tau_p": tau_p, "agent": name,
                              "snapshots": snapshots, "seed": seed, "train_time_s": None,
                              "parameters": None}
    empty = dict(mean_sum_rate_mbps=None, ci95_mbps=None, ms_per_snapshot=None, per_snapshot_sum_rate_mbps=[],
                 per_snapshot_assignments=[], distinct_assignments=None, ratio_to_best_constant=None,
                 collapsed=None)
    if error is not None or any(p is None for p in parts):
        record.update(status="failed", reason=error or "task failed", **empty)
        return record
    for key in ("trained_at", "execution"):
        if key in parts[0]:
            record[key] = parts[0][key]
    record.update(train_time_s=parts[0]["train_time_s"], parameters=parts[0]["parameters"])
    skipped = next((p for p in parts if p["status"] == "skipped"), None)
    if skipped is not None:
        record.update(status="skipped", reason=skipped["reason"], **empty)
        return record
    rates = np.array([r for p in parts for r in p["rates"]])
    pilots = np.array([a for p in parts for a in p["pilots"]], dtype=np.int64)
    n = len(rates)
    ci = ci95(rates)
    record.update(status="ok", reason="", mean_sum_rate_mbps=float(np.mean(rates)), ci95_mbps=ci,
                  ms_per_snapshot=1e3 * sum(p["elapsed_s"] for p in parts) / n,
                  per_snapshot_sum_rate_mbps=rates.tolist(), per_snapshot_assignments=pilots.tolist())
    record.update(collapse_report(pilots, snaps.beta, SystemConfig.from_size(size), float(np.mean(rates)) * MBPS))
    return record


def add_ratios(size_records: list[dict[str, Any]]) -> None:
    """Ratio of mean sum rates to EPAS where it ran, else to the best agent at that size."""
    ran = [r for r in size_records if r["status"] == "ok"]
    ref = next((r for r in ran if r["agent"] == REFERENCE_AGENT), None)
    label = REFERENCE_AGENT
    if ref is None and ran:
        ref = max(ran, key=lambda r: r["mean_sum_rate_mbps"])
        label = f"best ({ref['agent']})"
    for r in size_records:
        if r["status"] == "ok" and ref is not None:
            r["ratio"] = r["mean_sum_rate_mbps"] / ref["mean_sum_rate_mbps"]
            r["ratio_to"] = label
        else:
            r["ratio"], r["ratio_to"] = None, None


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def markdown_tables(records: list[dict[str, Any]]) -> str:
    """Table II (sizes x agents, mean sum rate and ratio) followed by the detailed rows."""
    agent_names = list(dict.fromkeys(r["agent"] for r in records))
    sizes = list(dict.fromkeys(_size_of(r) for r in records))
    by_key = {(_size_of(r), r["agent"]): r for r in records}
    lines = ["Average sum rate [Mbit/s] (ratio to the reference in brackets: EPAS where it ran, "
             "else the best agent, marked *; † = collapsed: (almost) the same assignment for every network)", ""]
    lines.append("| M, L | K | tau_p | " + " | ".join(agent_names) + " |")
    lines.append("|---|---|---|" + "---|" * len(agent_names))
    for size in sizes:
        cells = []
        for name in agent_names:
            r = by_key.get((size, name))
            if r is None or r["status"] != "ok":
                cells.append("–")
                continue
            star = "" if r["ratio_to"] == REFERENCE_AGENT else "*"
            dagger = " †" if r.get("collapsed") else ""
            cells.append(f"{r['mean_sum_rate_mbps']:.2f} ({r['ratio']:.3f}{star}){dagger}")
        lines.append(f"| {size[0]}, {size[1]} | {size[2]} | {size[3]} | " + " | ".join(cells) + " |")
    lines += ["", "| size | agent | mean [Mbit/s] | 95 % CI | ratio | ratio to | ms/snapshot | train s | "
              "distinct | vs best constant | collapsed | note |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        size = f"({r['M']},{r['L']},{r['K']},{r['tau_p']})"
        lines.append(
            f"| {size} | {r['agent']} | {_fmt(r['mean_sum_rate_mbps'], '.2f')} | "
            f"{'–' if r['ci95_mbps'] is None else '±' + format(r['ci95_mbps'], '.2f')} | "
            f"{_fmt(r['ratio'], '.4f')} | {r['ratio_to'] or '–'} | {_fmt(r['ms_per_snapshot'], '.3f')} | "
            f"{_fmt(r['train_time_s'], '.1f')} | {_fmt(r.get('distinct_assignments'), 'd')} | "
            f"{_fmt(r.get('ratio_to_best_constant'), '.4f')} | "
            f"{'–' if r.get('collapsed') is None else ('yes' if r['collapsed'] else 'no')} | {r['reason']} |")
    lines += ["", "Absolute rates come from cfpilot's simulator (docs/model.md §1-2); they are not the "
              "paper's Table II numbers, which came from its own simulator."]
    return "\n".join(lines) + "\n"


def plot_records(records: list[dict[str, Any]], path: Path) -> Path:
    """Two panels: mean sum rate versus system size (95 % CI as error bars) and the ratio to
    the reference, one line per agent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(dict.fromkeys(_size_of(r) for r in records))
    labels = [f"M={s[0]}\nK={s[2]}\n$\\tau_p$={s[3]}" for s in sizes]
    fig, (ax_rate, ax_ratio) = plt.subplots(1, 2, figsize=(max(9.0, 2.2 * len(sizes) + 4), 4.5))
    names = list(dict.fromkeys(r["agent"] for r in records))
    colours = plt.get_cmap("tab20")
    markers = "osD^v<>pPhX*"
    for j, name in enumerate(names):
        ok = [(sizes.index(_size_of(r)), r) for r in records if r["agent"] == name and r["status"] == "ok"]
        if not ok:
            continue
        style = {"marker": markers[j % len(markers)], "color": colours(j % 20), "label": name}
        xs = [i for i, _ in ok]
        ci = [0.0 if r["ci95_mbps"] is None or math.isnan(r["ci95_mbps"]) else r["ci95_mbps"] for _, r in ok]
        ax_rate.errorbar(xs, [r["mean_sum_rate_mbps"] for _, r in ok], yerr=ci, capsize=3, **style)
        ax_ratio.plot(xs, [r["ratio"] for _, r in ok], **style)
    for ax in (ax_rate, ax_ratio):
        ax.set_xticks(range(len(sizes)), labels)
        ax.set_xlabel("system size")
        ax.grid(alpha=0.3)
    ax_rate.set_ylabel("average sum rate [Mbit/s]")
    ax_ratio.set_ylabel("ratio to EPAS (or to the best agent)")
    ax_ratio.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _size_of(record: dict[str, Any]) -> Size:
    return (record["M"], record["L"], record["K"], record["tau_p"])


def provenance(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command, package versions, git commit and machine of this run."""
    versions = {}
    for pkg in ("cfpilot", "numpy", "numba", "gymnasium", "torch", "pennylane", "stable-baselines3"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True,
                                    timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"command": " ".join([Path(sys.executable).name, *(argv if argv is not None else sys.argv)]),
            "python": platform.python_version(), "versions": versions, "git_commit": commit,
            "git_dirty": dirty, "machine": platform.platform(), "processor": platform.machine()}


def write_results(records: list[dict[str, Any]], out: Path, seed: int, settings: dict[str, Any],
                  meta: dict[str, Any], snapshots: dict[Size, Snapshot]) -> dict[str, Path]:
    """Write results.json, results.csv, per_snapshot.csv, results.md, results.png, run.json and
    snapshots.npz (per size ``M-L-K-tau_p/beta``, ``/ap_positions``, ``/ue_positions``, ``/seeds``),
    from which every per-snapshot sum rate can be re-verified. ``settings`` (JSON-ready) goes
    into run.json beside ``meta`` (provenance, timings)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("results.json", "results.csv", "per_snapshot.csv", "results.md",
                                           "results.png", "run.json", "snapshots.npz")}
    arrays = {}
    for size, snaps in snapshots.items():
        key = size_slug(size)
        arrays.update({f"{key}/beta": snaps.beta, f"{key}/ap_positions": snaps.ap_positions,
                       f"{key}/ue_positions": snaps.ue_positions,
                       f"{key}/seeds": np.array([[seed, TEST_STREAM, *size, i]
                                                 for i in range(len(snaps.beta))])})
    np.savez_compressed(paths["snapshots.npz"], **arrays)
    paths["results.json"].write_text(json.dumps(records, indent=1))
    with paths["results.csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=RECORD_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
    with paths["per_snapshot.csv"].open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["M", "L", "K", "tau_p", "agent", "snapshot", "snapshot_seed", "sum_rate_mbps", "pilots"])
        for r in records:
            for i, (rate, pilots) in enumerate(zip(r["per_snapshot_sum_rate_mbps"], r["per_snapshot_assignments"])):
                seed = f"{r['seed']}/{TEST_STREAM}/{r['M']},{r['L']},{r['K']},{r['tau_p']}/{i}"
                writer.writerow([r["M"], r["L"], r["K"], r["tau_p"], r["agent"], i, seed, f"{rate:.6f}",
                                 " ".join(map(str, pilots))])
    paths["results.md"].write_text(markdown_tables(records))
    plot_records(records, paths["results.png"])
    paths["run.json"].write_text(json.dumps({**meta, "settings": settings,
                                             "test_snapshot_seeds": f"numpy default_rng([seed, {TEST_STREAM}, M, L, K, tau_p, i])"},
                                            indent=1))
    return paths
