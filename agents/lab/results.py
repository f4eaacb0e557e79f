"""Results of the harness: Table II records, their ratios, and the files a run leaves
(JSON, CSV, Markdown, PNG, provenance, the test snapshots)."""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from agents.base import TEST_STREAM
from agents.lab.stats import REFERENCE_AGENT, ci95, fairness_summary
from agents.learning.diagnostics import collapse_report
from agents.storage import atomic_write_text
from cfenv import __version__
from cfenv.channel import Snapshot
from cfenv.config import SystemConfig
from cfenv.models import DEFAULT_MODEL, model_of
from cfenv.objectives import Objective
from cfenv.units import MBPS, Size, size_slug

RECORD_FIELDS = ["M", "L", "K", "tau_p", "agent", "status", "mean_sum_rate_mbps", "ci95_mbps", "ratio",
                 "ratio_to", "ms_per_snapshot", "warm_up_s", "train_time_s", "parameters", "distinct_assignments",
                 "ratio_to_best_constant", "collapsed", "snapshots", "seed", "reason", "objective", "mean_objective",
                 "ci95_objective", "mean_min_rate_mbps", "ci95_min_rate_mbps", "rate_5pct_mbps",
                 "ci95_rate_5pct_mbps", "jain_index", "ci95_jain_index", "mean_se", "se_5pct"]
"""columns of results.csv"""
OBJECTIVE_LABELS = {o.value: o.label for o in Objective}
"""what ``mean_objective`` is, per objective name (:attr:`cfenv.objectives.Objective.label`)"""
FAIRNESS_FIELDS = ("mean_min_rate_mbps", "ci95_min_rate_mbps", "rate_5pct_mbps", "ci95_rate_5pct_mbps",
                   "jain_index", "ci95_jain_index")
"""the fairness figures every ok record carries, whatever its objective (:func:`fairness_summary`)"""
SE_FIELDS = ("mean_se", "se_5pct")
"""the spectral efficiencies every ok record carries [bit/s/Hz]: the mean per user, and the 95 %-likely one
(per-user rate / bandwidth: the scalable model's SE, pre-log included; the paper's model has no pre-log)"""
TIMING_FIELDS = frozenset({"ms_per_snapshot", "warm_up_s", "train_time_s"})
"""record fields that measure time: they differ between runs of the same settings"""


def cell_record(name: str, size: Size, parts: list[dict[str, Any] | None], error: str | None,
                snaps: Snapshot, snapshots: int, seed: int, config: SystemConfig | None = None) -> dict[str, Any]:
    """One Table II cell of ``snapshots`` test snapshots (``seed``) from its chunks' results
    (in snapshot order; ``None`` for a chunk that did not finish); ``config`` scores them and
    names the objective (default: the model's constants at ``size``, the sum rate).

    Besides the sum-rate figures, an ok record carries, whatever the ``objective``: the mean
    objective and its 95 % CI (``mean_objective``, units in :data:`OBJECTIVE_LABELS`; under
    ``"sum"`` it is ``mean_sum_rate_mbps``) and the fairness figures of :data:`FAIRNESS_FIELDS`,
    from the per-user rates of its assignments on ``snaps`` (:func:`agents.lab.stats.fairness_summary`)."""
    config = config or SystemConfig.from_size(size)
    objective = config.objective
    M, L, K, tau_p = size
    record: dict[str, Any] = {"M": M, "L": L, "K": K, "tau_p": tau_p, "agent": name,
                              "snapshots": snapshots, "seed": seed, "train_time_s": None,
                              "parameters": None, "objective": objective,
                              **({} if not config.system_fields else {"model": config.model, "system": config.system_fields})}
    empty = dict(mean_sum_rate_mbps=None, ci95_mbps=None, ms_per_snapshot=None, warm_up_s=None, per_snapshot_sum_rate_mbps=[],
                 per_snapshot_assignments=[], distinct_assignments=None, ratio_to_best_constant=None,
                 collapsed=None, mean_objective=None, ci95_objective=None,
                 **dict.fromkeys(FAIRNESS_FIELDS + SE_FIELDS))
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
                  warm_up_s=sum(p.get("warm_up_s", 0.0) for p in parts),
                  per_snapshot_sum_rate_mbps=rates.tolist(), per_snapshot_assignments=pilots.tolist())
    record.update(collapse_report(pilots, snaps, config, float(np.mean(rates)) * MBPS))
    per_user = model_of(config).user_rates(snaps[:n], pilots) / MBPS  # (n, K) [Mbit/s]
    if objective.is_default:  # the sum rates themselves: mean_objective is mean_sum_rate_mbps, bit for bit
        record.update(mean_objective=record["mean_sum_rate_mbps"], ci95_objective=ci)
    else:
        scores = objective.reward(per_user)
        record.update(mean_objective=float(np.mean(scores)), ci95_objective=ci95(scores))
    record.update(fairness_summary(per_user))
    to_se = MBPS / config.bandwidth_hz
    record.update(mean_se=float(per_user.mean()) * to_se, se_5pct=record["rate_5pct_mbps"] * to_se)
    return record


def records_objective(records: list[dict[str, Any]]) -> Objective:
    """The objective the records were ranked by (the first that names one; "sum" for older records)."""
    return Objective.parse(next((r.get("objective") for r in records if r.get("objective")), "sum"))


def _score(record: dict[str, Any]) -> float:
    """What ratios compare: the record's mean objective (its mean sum rate in records without one)."""
    value = record.get("mean_objective")
    return record["mean_sum_rate_mbps"] if value is None else value


def add_ratios(size_records: list[dict[str, Any]]) -> None:
    """Ratio of mean objectives (:func:`cell_record`'s ``mean_objective``; the mean sum rate under
    ``"sum"``) to EPAS's where it ran, else to the best agent's at that size."""
    ran = [r for r in size_records if r["status"] == "ok"]
    ref = next((r for r in ran if r["agent"] == REFERENCE_AGENT), None)
    label = REFERENCE_AGENT
    if ref is None and ran:
        ref = max(ran, key=_score)
        label = f"best ({ref['agent']})"
    for r in size_records:
        if r["status"] == "ok" and ref is not None:  # no ratio to a reference scoring 0 (fading at its floor)
            r["ratio"] = _score(r) / _score(ref) if _score(ref) != 0 else None
            r["ratio_to"] = label
        else:
            r["ratio"], r["ratio_to"] = None, None


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _pm(value: float | None, ci: float | None, spec: str) -> str:
    """``"12.34 ± 0.56"`` (no ± part for a missing or NaN CI), ``"–"`` for no value."""
    if value is None:
        return "–"
    if ci is None or math.isnan(ci):
        return format(value, spec)
    return f"{format(value, spec)} ± {format(ci, spec)}"


def execution_note(execution: dict[str, Any] | None) -> str:
    """How the learning agents' circuits ran, in one line (empty when exactly, as trained)."""
    if not execution:
        return ""
    return ("Quantum circuits of the learning agents run with "
            + ", ".join(f"{k}={v}" for k, v in execution.items()) + " (trained noiselessly)")


def markdown_tables(records: list[dict[str, Any]], execution: dict[str, Any] | None = None) -> str:
    """Table II (sizes x agents, mean sum rate and ratio) followed by the detailed rows;
    ``execution`` (noise, shots, mitigation of the circuits) is stated under the title."""
    agent_names = list(dict.fromkeys(r["agent"] for r in records))
    sizes = list(dict.fromkeys(_size_of(r) for r in records))
    by_key = {(_size_of(r), r["agent"]): r for r in records}
    note = execution_note(execution)
    objective = records_objective(records)
    what = ("Average sum rate [Mbit/s]" if objective.is_default else
            f"Objective {objective!r}: average {objective.label}")
    lines = [what + " (ratio to the reference in brackets: EPAS where it ran, "
             "else the best agent, marked *; † = collapsed: (almost) the same assignment for every network)"
             + (f". {note}" if note else ""), ""]
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
            cells.append(f"{_score(r):.2f} ({_fmt(r['ratio'], '.3f')}{star}){dagger}")
        lines.append(f"| {size[0]}, {size[1]} | {size[2]} | {size[3]} | " + " | ".join(cells) + " |")
    lines += ["", *fairness_table(records)]
    extra = "" if objective.is_default else f"{objective} objective | "
    lines += ["", "| size | agent | mean [Mbit/s] | 95 % CI | " + extra + "ratio | ratio to | min [Mbit/s] | "
              "5 % [Mbit/s] | Jain | ms/snapshot | warm-up s | train s | distinct | vs best constant | collapsed | note |",
              "|---|---|---|---|" + ("---|" if extra else "") + "---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        size = f"({r['M']},{r['L']},{r['K']},{r['tau_p']})"
        own = f"{_pm(r.get('mean_objective'), r.get('ci95_objective'), '.3f')} | " if extra else ""
        lines.append(
            f"| {size} | {r['agent']} | {_fmt(r['mean_sum_rate_mbps'], '.2f')} | "
            f"{'–' if r['ci95_mbps'] is None else '±' + format(r['ci95_mbps'], '.2f')} | {own}"
            f"{_fmt(r['ratio'], '.4f')} | {r['ratio_to'] or '–'} | "
            f"{_pm(r.get('mean_min_rate_mbps'), r.get('ci95_min_rate_mbps'), '.2f')} | "
            f"{_pm(r.get('rate_5pct_mbps'), r.get('ci95_rate_5pct_mbps'), '.2f')} | "
            f"{_pm(r.get('jain_index'), r.get('ci95_jain_index'), '.3f')} | {_fmt(r['ms_per_snapshot'], '.3f')} | "
            f"{_fmt(r.get('warm_up_s'), '.2f')} | "
            f"{_fmt(r['train_time_s'], '.1f')} | {_fmt(r.get('distinct_assignments'), 'd')} | "
            f"{_fmt(r.get('ratio_to_best_constant'), '.4f')} | "
            f"{'–' if r.get('collapsed') is None else ('yes' if r['collapsed'] else 'no')} | {r['reason']} |")
    from agents.lab.rescore import rescored_table

    rescored = rescored_table(records)
    lines += ["", *rescored] if rescored else []
    models = {r.get("model", DEFAULT_MODEL) for r in records}
    if any(r.get("snapshots_file") for r in records):  # the user's own fading: no simulator drew it
        pass
    elif models <= {DEFAULT_MODEL, "paper-reference"}:
        lines += ["", "Absolute rates come from cfpilot's simulator (docs/model.md §1-2); they are not the "
                  "paper's Table II numbers, which came from its own simulator."]
    else:
        systems = sorted({json.dumps(r.get("system", {}), sort_keys=True) for r in records})
        lines += ["", f"System: {'; '.join(systems)} (docs/model.md §0, §8); rates are bandwidth x SE."]
    return "\n".join(lines) + "\n"


def fairness_table(records: list[dict[str, Any]]) -> list[str]:
    """The compact fairness table beside Table II, as Markdown lines: per size and agent
    "sum / min / 5 % / J": mean sum rate, mean minimum user rate, 95 %-likely per-user rate
    [Mbit/s] and Jain's index (:func:`agents.lab.stats.fairness_summary`); "–" where the agent did
    not run or the record predates these fields."""
    agent_names = list(dict.fromkeys(r["agent"] for r in records))
    sizes = list(dict.fromkeys(_size_of(r) for r in records))
    by_key = {(_size_of(r), r["agent"]): r for r in records}
    lines = ["Fairness, whatever the objective: sum / min / 5 % / J = mean sum rate, mean minimum user rate, "
             "95 %-likely user rate (5th percentile over all users and snapshots) [Mbit/s], Jain's index", "",
             "| M, L | K | tau_p | " + " | ".join(agent_names) + " |", "|---|---|---|" + "---|" * len(agent_names)]
    for size in sizes:
        cells = []
        for name in agent_names:
            r = by_key.get((size, name))
            if r is None or r["status"] != "ok" or r.get("mean_min_rate_mbps") is None:
                cells.append("–")
                continue
            cells.append(f"{r['mean_sum_rate_mbps']:.1f} / {r['mean_min_rate_mbps']:.2f} / "
                         f"{r['rate_5pct_mbps']:.2f} / {r['jain_index']:.3f}")
        lines.append(f"| {size[0]}, {size[1]} | {size[2]} | {size[3]} | " + " | ".join(cells) + " |")
    return lines


CDF_AGENTS = ("exhaustive", "local-search", "master-ap", "greedy", "location", "random", "gnn", "mlp", "hqcnn",
              "ppo")
"""the main agents whose per-user rates the CDF panel of ``results.png`` draws (those present)"""


def user_rate_samples(record: dict[str, Any], snapshots: Snapshot) -> np.ndarray:
    """All per-user rates [Mbit/s] of an ok record's assignments on its test ``snapshots``, flat
    ``(n K,)``: recomputed from ``per_snapshot_assignments``, so saved records redraw it."""
    pilots = np.asarray(record["per_snapshot_assignments"], dtype=np.int64)
    config = SystemConfig.from_size(_size_of(record), **record.get("system", {"model": record.get("model", DEFAULT_MODEL)}))
    return (model_of(config).user_rates(snapshots[:len(pilots)], pilots) / MBPS).ravel()


def draw_rate_cdf(ax: Any, records: list[dict[str, Any]], snapshots: dict[Size, Snapshot]) -> list[str]:
    """The per-user-rate CDF (the figure of the fairness papers) on ``ax`` for the agents of
    :data:`CDF_AGENTS` at the largest size where the most of them ran, with the 5 % level
    (the 95 %-likely rate) marked; returns the agents drawn (none: the panel says why)."""
    ok = [r for r in records if r["status"] == "ok" and r["agent"] in CDF_AGENTS and _size_of(r) in snapshots
          and r.get("per_snapshot_assignments")]
    if not ok:
        ax.text(0.5, 0.5, "no per-user rates to draw", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return []
    counts: dict[Size, int] = {}
    for r in ok:
        counts[_size_of(r)] = counts.get(_size_of(r), 0) + 1
    size = max(counts, key=lambda s: (counts[s], s[2], s[0]))
    chosen = sorted((r for r in ok if _size_of(r) == size), key=lambda r: _agent_order(r["agent"]))
    styles = agent_styles([r["agent"] for r in chosen])
    positive = False
    for r in chosen:
        rates = np.sort(user_rate_samples(r, snapshots[size]))
        positive |= bool(np.any(rates > 0))
        colour, _ = styles[r["agent"]]
        ax.step(rates, np.arange(1, len(rates) + 1) / len(rates), where="post", color=colour, lw=1.3,
                label=r["agent"])
    if positive:  # all-zero rates (fading at the floor of its range) have no log scale
        ax.set_xscale("log")  # the weak users' tail, where fairness is decided, spans decades
    ax.axhline(0.05, color="0.5", lw=0.8, ls=":")
    ax.text(ax.get_xlim()[1], 0.05, "5 %: 95 %-likely rate ", ha="right", va="bottom", fontsize=7, color="0.4")
    ax.set_xlabel("per-user rate [Mbit/s] (log scale)")
    ax.set_ylabel("CDF over users and test snapshots")
    ax.set_title(f"(M, L, K, tau_p) = ({', '.join(map(str, size))})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    return [r["agent"] for r in chosen]


PLOT_REFERENCES = ("exhaustive", "local-search", "master-ap", "random")
"""agents ``results.png`` always draws when they ran (the references of every table)"""
MAX_PLOTTED = 10
"""up to this many agents ``results.png`` draws them all; beyond, the references and each family's best"""


def plot_selection(records: list[dict[str, Any]], agents: Sequence[str] | None = None) -> list[str]:
    """The agents ``results.png`` draws: ``agents`` (those with records; ``--plot-agents``), else every agent
    when there are at most :data:`MAX_PLOTTED`, else :data:`PLOT_REFERENCES` and the best agent of each
    other family (the highest mean ratio over the sizes where it ran; ties: table order)."""
    present = list(dict.fromkeys(r["agent"] for r in records))
    if agents:
        return [a for a in dict.fromkeys(agents) if a in present]
    if len(present) <= MAX_PLOTTED:
        return present
    ratios: dict[str, list[float]] = {}
    for r in records:
        if r["status"] == "ok" and r.get("ratio") is not None:
            ratios.setdefault(r["agent"], []).append(r["ratio"])
    chosen = [a for a in PLOT_REFERENCES if a in present]
    families: dict[str, list[str]] = {}
    for name in present:
        if name not in chosen and name in ratios:
            families.setdefault(agent_family(name), []).append(name)
    for members in families.values():
        chosen.append(max(members, key=lambda a: (float(np.mean(ratios[a])), -present.index(a))))
    return [a for a in present if a in chosen]


def paired_ratio_ci(record: dict[str, Any], by_agent: dict[str, dict[str, Any]]) -> float | None:
    """Half-width of the 95 % CI of a record's ratio to its reference, from the per-network sum rates of
    both on the same networks (paired: ``ci95(a - ref) / mean(ref)``); ``None`` without them or under
    another objective than the sum rate (its per-network values are not kept)."""
    label = record.get("ratio_to") or ""
    ref = by_agent.get(label[len("best ("):-1] if label.startswith("best (") else label)
    if (ref is None or not Objective.parse(record.get("objective") or "sum").is_default
            or not record.get("per_snapshot_sum_rate_mbps") or not ref.get("per_snapshot_sum_rate_mbps")):
        return None
    a, b = np.asarray(record["per_snapshot_sum_rate_mbps"]), np.asarray(ref["per_snapshot_sum_rate_mbps"])
    if a.shape != b.shape or len(a) < 2 or b.mean() == 0:
        return None
    return ci95(a - b) / float(b.mean())


def plot_records(records: list[dict[str, Any]], path: Path,
                 snapshots: dict[Size, Snapshot] | None = None, agents: Sequence[str] | None = None) -> Path:
    """Two panels: mean objective (the sum rate by default) per system size (95 % CI as error
    bars) and the ratio to the reference with its paired 95 % CI (:func:`paired_ratio_ci`), one line
    per agent across the sizes; under the min or proportional objective, with the test ``snapshots``,
    a third: the per-user-rate CDF of the main agents (:func:`draw_rate_cdf`). The agents drawn are
    :func:`plot_selection`'s (``agents``: your own choice); a note under the panels says how many.

    Agents are grouped by family (:data:`AGENT_FAMILIES`): one colour family per family,
    a distinct marker within it, and the legend below the panels lists them family by
    family (one column each). At each size the agents are spread over a small horizontal
    offset so that coincident points (local search and EPAS) and their error bars stay
    apart. A collapsed agent (the same assignment for (almost) every network) has a
    dashed line, hollow markers at the sizes where it collapsed and a † in the legend.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    every = list(dict.fromkeys(r["agent"] for r in records))
    shown = plot_selection(records, agents)
    by_size_agent = {(_size_of(r), r["agent"]): r for r in records}
    records = [r for r in records if r["agent"] in shown]
    sizes = list(dict.fromkeys(_size_of(r) for r in records))
    refs = {}
    for r in records:
        if r.get("ratio_to") and r["ratio_to"] != REFERENCE_AGENT:
            ref = r["ratio_to"]
            refs[_size_of(r)] = ref[len("best ("):-1] if ref.startswith("best (") else ref
    labels = [f"M={s[0]}\nK={s[2]}\n$\\tau_p$={s[3]}" + (f"\n(vs {refs[s]})" if s in refs else "") for s in sizes]
    names = sort_agents([r["agent"] for r in records])
    styles = agent_styles(names)
    offsets = _dodge(len(names))
    cdf = bool(snapshots) and not records_objective(records).is_default  # the fairness objectives' figure
    panels = 3 if cdf else 2
    width = max(10.0, 2.4 * len(sizes) + 5) + (4.5 if cdf else 0.0)
    fig, axes = plt.subplots(1, panels, figsize=(width, 4.8), gridspec_kw={"width_ratios": [1, 1, 0.8][:panels]})
    ax_rate, ax_ratio = axes[0], axes[1]
    if cdf:
        draw_rate_cdf(axes[2], records, snapshots)
    handles: dict[str, list[Line2D]] = {}
    for j, name in enumerate(names):
        colour, marker = styles[name]
        ok = [(sizes.index(_size_of(r)) + offsets[j], r) for r in records
              if r["agent"] == name and r["status"] == "ok"]
        collapsed = any(r.get("collapsed") for _, r in ok)
        line = {"color": colour, "lw": 1.0, "ls": "--" if collapsed else "-", "alpha": 0.7}
        label = f"{name} †" if collapsed else (name if ok else f"{name} (no result)")
        handles.setdefault(agent_family(name), []).append(
            Line2D([], [], marker=marker, markersize=6, markeredgewidth=1.2, label=label,
                   markerfacecolor="white" if collapsed else colour, markeredgecolor=colour,
                   **({**line, "alpha": 1.0} if ok else {"color": colour, "ls": "none", "alpha": 0.4})))
        if not ok:
            continue
        xs = [x for x, _ in ok]
        means = [_score(r) for _, r in ok]
        cis = [r.get("ci95_objective", r["ci95_mbps"]) if "mean_objective" in r else r["ci95_mbps"] for _, r in ok]
        ci = [0.0 if c is None or math.isnan(c) else c for c in cis]
        ratios = [math.nan if r["ratio"] is None else r["ratio"] for _, r in ok]
        paired = [paired_ratio_ci(r, {a: by_size_agent[(_size_of(r), a)] for a in every
                                      if (_size_of(r), a) in by_size_agent}) for _, r in ok]
        ax_rate.errorbar(xs, means, yerr=ci, fmt="none", ecolor=colour, elinewidth=0.9, capsize=2, alpha=0.85)
        ax_ratio.errorbar(xs, ratios, yerr=[0.0 if c is None or math.isnan(c) else c for c in paired], fmt="none",
                          ecolor=colour, elinewidth=0.9, capsize=2, alpha=0.85)
        ax_ratio.plot(xs, ratios, **line)
        for ax, ys in ((ax_rate, means), (ax_ratio, ratios)):
            for x, y, (_, r) in zip(xs, ys, ok):
                if y is None:
                    continue
                ax.plot([x], [y], ls="none", marker=marker, markersize=5.5, markeredgewidth=1.2,
                        markeredgecolor=colour, markerfacecolor="white" if r.get("collapsed") else colour,
                        zorder=3)
    for ax in (ax_rate, ax_ratio):
        ax.set_xticks(range(len(sizes)), labels)
        ax.set_xlim(-0.5, len(sizes) - 0.5)
        for i in range(1, len(sizes)):
            ax.axvline(i - 0.5, color="0.85", lw=0.8)
        ax.set_xlabel("system size")
        ax.grid(alpha=0.3, axis="y")
    ax_rate.set_ylabel(f"average {records_objective(records).label} (95 % CI)")
    ax_ratio.set_ylabel("ratio to EPAS (or to the best agent), paired 95 % CI")
    if len(shown) < len(every):
        fig.text(0.5, 1.0, f"{len(shown)} of {len(every)} agents: the references and each family's best "
                           "(--plot-agents to choose; every agent is in results.md)", ha="center", va="bottom",
                 fontsize=8, color="0.35")
    fig.tight_layout()
    _family_legend(fig, handles)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


AGENT_FAMILIES: dict[str, tuple[str, ...]] = {
    "heuristics": ("random", "greedy", "master-ap", "location"),
    "search": ("local-search", "exhaustive"),
    "literature": ("tabu", "graph-colouring", "wgf", "hungarian", "kmeans", "max-k-cut", "tabu-liu2020",
                   "graph-colouring-liu2020", "structured-chen2021"),
    "classical nets": ("mlp", "light-cnn", "heavy-cnn"),
    "quantum": ("hqcnn", "hqcnn-hur"),
    "symmetry-aware": ("gnn", "hqcnn-ar", "gnn-polish", "hqcnn-ar-polish"),
    "RL": ("ppo", "a2c", "dqn", "ppo-hqcnn"),
}
"""agent families of the figures, in legend order; any other agent is in family "other\""""
FAMILY_COLOURMAPS = {"heuristics": "Oranges", "search": "Greys", "literature": "cividis", "classical nets": "Blues",
                     "quantum": "Purples", "symmetry-aware": "Greens", "RL": "Reds"}
"""one colour family per agent family (shades of a sequential matplotlib colour map)"""
OTHER_COLOURS = ("#17becf", "#bcbd22", "#0b6e78", "#7a7a10", "#5fd7e6", "#d9d96a")
"""agents of no known family: teal and olive, which no family uses"""
FAMILY_MARKERS = "os^Dv<>pPhX*"
"""markers within a family, in member order"""


def agent_family(name: str) -> str:
    """The family of an agent (:data:`AGENT_FAMILIES`), ``"other"`` for unknown names."""
    return next((family for family, members in AGENT_FAMILIES.items() if name in members), "other")


def _agent_order(name: str) -> tuple[int, int, str]:
    families = list(AGENT_FAMILIES)
    family = agent_family(name)
    if family == "other":
        return (len(families), 0, name)
    return (families.index(family), AGENT_FAMILIES[family].index(name), name)


def sort_agents(names: Sequence[str]) -> list[str]:
    """Distinct agent names in family order (:data:`AGENT_FAMILIES`), unknown ones last by name."""
    return sorted(dict.fromkeys(names), key=_agent_order)


def agent_styles(names: Sequence[str]) -> dict[str, tuple[Any, str]]:
    """``name -> (colour, marker)``: a shade of its family's colour map (the same for an agent
    in every figure, darkest first) and a marker distinct within the family."""
    import matplotlib

    styles: dict[str, tuple[Any, str]] = {}
    others = sorted(n for n in dict.fromkeys(names) if agent_family(n) == "other")
    for name in dict.fromkeys(names):
        family = agent_family(name)
        if family == "other":
            i = others.index(name)
            styles[name] = (OTHER_COLOURS[i % len(OTHER_COLOURS)], FAMILY_MARKERS[i % len(FAMILY_MARKERS)])
            continue
        members = AGENT_FAMILIES[family]
        i = members.index(name)
        shade = 0.9 - 0.4 * i / max(len(members) - 1, 1)
        styles[name] = (matplotlib.colormaps[FAMILY_COLOURMAPS[family]](shade), FAMILY_MARKERS[i])
    return styles


def _dodge(n: int, width: float = 0.56) -> list[float]:
    """Horizontal offsets of ``n`` agents at one size, spread over ``width`` (size spacing 1)."""
    if n <= 1:
        return [0.0] * n
    return [-width / 2 + width * j / (n - 1) for j in range(n)]


def _family_legend(fig: Any, handles: dict[str, list[Any]]) -> None:
    """One legend below the panels, one column per family, headed by its name."""
    from matplotlib.lines import Line2D

    rows = max(len(h) for h in handles.values()) + 1
    blank = Line2D([], [], ls="none", marker="none", label=" ")
    entries: list[Any] = []
    for family in [*AGENT_FAMILIES, "other"]:
        if family in handles:
            header = Line2D([], [], ls="none", marker="none", label=family)
            entries += [header, *handles[family]] + [blank] * (rows - 1 - len(handles[family]))
    legend = fig.legend(handles=entries, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(handles),
                        fontsize=8, frameon=False, handlelength=2.6, columnspacing=1.6,
                        title="† collapsed: (almost) the same assignment for every network "
                              "(dashed line; hollow markers at the sizes where it collapsed)",
                        title_fontsize=8)
    for text in legend.get_texts()[::rows]:
        text.set_fontweight("bold")


def _size_of(record: dict[str, Any]) -> Size:
    return (record["M"], record["L"], record["K"], record["tau_p"])


def provenance(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command, package versions, git commit and machine of this run."""
    versions = {}
    for pkg in ("cfpilot", "numpy", "numba", "gymnasium", "torch", "pennylane", "stable-baselines3"):
        try:
            versions[pkg] = __version__ if pkg == "cfpilot" else metadata.version(pkg)
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
            "git_dirty": dirty, "machine": platform.platform(), "processor": platform.machine(),
            "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}


def snapshots_source(settings: dict[str, Any]) -> str:
    """One line naming the user's snapshots file and its SHA-256 (``""`` for drawn snapshots)."""
    path = settings.get("snapshots_file")
    if not path:
        return ""
    sidecar = settings.get("snapshots_config")
    return (f"file `{path}` (SHA-256 {settings.get('snapshots_sha256')})"
            + (f", constants from `{sidecar}`" if sidecar else ""))


def write_results(records: list[dict[str, Any]], out: Path, seed: int, settings: dict[str, Any],
                  meta: dict[str, Any], snapshots: dict[Size, Snapshot]) -> dict[str, Path]:
    """Write results.json, results.csv, per_snapshot.csv, results.md, results.png, run.json and
    snapshots.npz (per size ``M-L-K-tau_p/beta``, ``/ap_positions``, ``/ue_positions``, ``/seeds``; from a
    snapshots file ``/index`` and the model's extra arrays, e.g. ``/R``),
    from which every per-snapshot sum rate can be re-verified. ``settings`` (JSON-ready) goes
    into run.json beside ``meta`` (provenance, timings)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("results.json", "results.csv", "per_snapshot.csv", "results.md",
                                           "results.png", "run.json", "snapshots.npz")}
    source = snapshots_source(settings)
    arrays = {}
    for size, snaps in snapshots.items():
        key = size_slug(size)
        index = (np.arange(len(snaps.beta))[:, None] if source else  # row i of the user's file
                 np.array([[seed, TEST_STREAM, *size, i] for i in range(len(snaps.beta))]))
        arrays.update({f"{key}/beta": snaps.beta, f"{key}/ap_positions": snaps.ap_positions,
                       f"{key}/ue_positions": snaps.ue_positions, f"{key}/{'index' if source else 'seeds'}": index})
        if source:  # a file's extra arrays (the scalable model's R) cannot be redrawn from seeds: kept
            arrays.update({f"{key}/{name}": value for name, value in snaps.extras.items()})
    np.savez_compressed(paths["snapshots.npz"], **arrays)
    paths["results.json"].write_text(json.dumps(records, indent=1))
    with paths["results.csv"].open("w", newline="") as f:
        from agents.lab.rescore import flat_rescored, rescored_fields

        writer = csv.DictWriter(f, fieldnames=RECORD_FIELDS + rescored_fields(records), extrasaction="ignore")
        writer.writeheader()
        writer.writerows({**r, **flat_rescored(r)} for r in records)
    with paths["per_snapshot.csv"].open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["M", "L", "K", "tau_p", "agent", "snapshot", "snapshot_seed", "sum_rate_mbps", "pilots"])
        for r in records:
            for i, (rate, pilots) in enumerate(zip(r["per_snapshot_sum_rate_mbps"], r["per_snapshot_assignments"])):
                seed = (f"file[{i}]" if source else
                        f"{r['seed']}/{TEST_STREAM}/{r['M']},{r['L']},{r['K']},{r['tau_p']}/{i}")
                writer.writerow([r["M"], r["L"], r["K"], r["tau_p"], r["agent"], i, seed, f"{rate:.6f}",
                                 " ".join(map(str, pilots))])
    table = markdown_tables(records, settings.get("execution"))
    if source:
        table = f"Test snapshots: {source}\n\n{table}"
    paths["results.md"].write_text(table)
    plot_records(records, paths["results.png"], snapshots, settings.get("plot_agents") or None)
    origin = ({"test_snapshots_file": settings["snapshots_file"], "test_snapshots_sha256": settings["snapshots_sha256"]}
              if source else {"test_snapshot_seeds": f"numpy default_rng([seed, {TEST_STREAM}, M, L, K, tau_p, i])"})
    paths["run.json"].write_text(json.dumps({**meta, "settings": settings, **origin}, indent=1))
    return paths


def table2(records: list[dict[str, Any]], run: dict[str, Any] | None = None) -> str:
    """The Table II part of :func:`markdown_tables` (sizes x agents) with a provenance line from ``run``
    (an ``evaluate.py`` folder's run.json: the command, version, date, machine)."""
    table = markdown_tables(records).split("\n\nFairness, whatever the objective")[0]
    return table + provenance_line(run) if run else table


def _ms(value: float) -> str:
    """A time per network [ms] to two significant figures or so."""
    return "<0.01" if value < 0.01 else f"{value:.2f}" if value < 10 else f"{value:,.0f}"


def agent_rows(records: list[dict[str, Any]], run: dict[str, Any] | None = None,
               agents: Sequence[str] | None = None) -> str:
    """Agents as rows, sizes as columns: each cell the mean objective (its ratio to the size's reference,
    :func:`add_ratios`, over all of the run's agents) and the harness's ms per network; failed or skipped
    cells read "–". ``agents``: the rows kept (default all). With a provenance line from ``run`` as
    :func:`table2`'s."""
    sizes = list(dict.fromkeys(_size_of(r) for r in records))
    by_size = {size: [dict(r) for r in records if _size_of(r) == size] for size in sizes}
    for rows in by_size.values():
        add_ratios(rows)
    cells = {(r["agent"], size): r for size, rows in by_size.items() for r in rows}
    objective = records_objective(records)
    reference = next((r["ratio_to"] for rows in by_size.values() for r in rows if r.get("ratio_to")), "?")
    lines = [f"Mean {objective.label} (ratio to {reference} at each size), ms per network.", "",
             "| agent | " + " | ".join(f"({', '.join(map(str, s))})" for s in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for agent in sort_agents(list(agents or dict.fromkeys(r["agent"] for r in records))):
        row = []
        for size in sizes:
            r = cells.get((agent, size))
            if r is None or r["status"] != "ok":
                row.append("–")
                continue
            score = _score(r)
            value = f"{score:,.0f}" if abs(score) >= 1000 else f"{score:.2f}"
            ratio = "" if r.get("ratio") is None else f" ({r['ratio']:.3f})"
            row.append(f"{value}{ratio}, {_ms(r['ms_per_snapshot'])} ms")
        lines.append(f"| `{agent}` | " + " | ".join(row) + " |")
    table = "\n".join(lines)
    return table + provenance_line(run) if run else table


def provenance_line(run: dict[str, Any]) -> str:
    """The command, version, date and machine of an ``evaluate.py`` run.json, as one Markdown paragraph."""
    command = run.get("command", "").replace("python3.11", "python").replace("python3", "python")
    version = run.get("versions", {}).get("cfpilot", "?")
    date = run.get("date", "date not recorded")
    return (f"\n\n`{command}` (cfpilot {version}, {date}; {run.get('machine', '?')}, {run.get('cpus', '?')} CPUs; "
            f"{run.get('wall_time_s', 0):.0f} s in all)")


PER_NETWORK_PREFIX = "per_snapshot_"
"""the prefix of the record fields holding per-network lists, left out of an exported JSON"""


def export(folder: Path, out: Path) -> None:
    """Write an ``evaluate.py`` folder's records (without their per-network lists) and run.json as one JSON
    ``{"records": [...], "run": {...}}``: what the docs' generated tables read."""
    records = json.loads((folder / "results.json").read_text())
    run = json.loads((folder / "run.json").read_text())
    slim = [{k: v for k, v in r.items() if not k.startswith(PER_NETWORK_PREFIX)} for r in records]
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps({"records": slim, "run": run}, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    """``python -m agents.lab.results --table FOLDER_OR_JSON [--by-agent]``: Table II of a run (or agents as
    rows), for the docs' generated tables; ``--export FOLDER --out JSON`` writes what they read."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m agents.lab.results", description=main.__doc__)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--table", type=Path, help="an evaluate.py folder, or a JSON of {'records': [...], 'run': {...}}")
    what.add_argument("--export", type=Path, metavar="FOLDER", help="an evaluate.py folder to write as one JSON (--out)")
    parser.add_argument("--by-agent", action="store_true", help="agents as rows, sizes as columns, with ms per network")
    parser.add_argument("--agents", help="comma-separated agents the table keeps (ratios still to the run's reference)")
    parser.add_argument("--out", type=Path, help="where --export writes")
    args = parser.parse_args(argv)
    source = args.table or args.export
    if not source.exists():
        parser.error(f"{source} does not exist")
    if args.export:
        if args.out is None:
            parser.error("--export needs --out")
        export(args.export, args.out)
        return 0
    if args.table.is_dir():
        records = json.loads((args.table / "results.json").read_text())
        run = json.loads((args.table / "run.json").read_text())
    else:
        data = json.loads(args.table.read_text())
        records, run = data["records"], data.get("run")
    if args.agents:
        keep = set(args.agents.split(","))
        unknown = keep - {r["agent"] for r in records}
        if unknown:
            parser.error(f"no records of {', '.join(sorted(unknown))} in {source}")
        if not args.by_agent:
            parser.error("--agents goes with --by-agent")
    print(agent_rows(records, run, args.agents and args.agents.split(",")) if args.by_agent else table2(records, run))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
