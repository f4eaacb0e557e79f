"""The comparison harness behind ``evaluate.py``: every agent on the same test snapshots.

For each system size the test snapshots are drawn once, snapshot ``i`` from
``stream_rng(seed, TEST_STREAM, M, L, K, tau_p, i)`` (a stream no training or
validation draw can reach), and every agent runs on all of them. Results are
records (one per size and agent) written as JSON, CSV and Markdown, and drawn
as a PNG; figures are made from the saved records, so they can be redrawn.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from agents.base import AGENT_STREAM, TEST_STREAM, stream_rng
from agents.diagnostics import collapse_report
from agents.registry import agent_class, available, is_learnable, make
from cfenv.channel import Snapshot, draw_snapshots
from cfenv.config import TABLE2_SIZES, SystemConfig, parse_size
from cfenv.rates import sum_rate

Size = tuple[int, int, int, int]

SIZE_GROUPS: dict[str, tuple[Size, ...]] = {
    "paper": TABLE2_SIZES,
    "small": TABLE2_SIZES[:4],
    "medium": TABLE2_SIZES[4:],
    "default": TABLE2_SIZES[:2],
}
"""named size groups for ``--sizes``; ``default`` keeps ``evaluate.py --agents all`` (which trains
every learning agent it has no checkpoint for) within a few minutes on 2 cores"""
REFERENCE_AGENT = "exhaustive"
Z_95 = 1.959963984540054
"""two-sided 95 % normal quantile (confidence intervals use the normal approximation)"""
MBPS = 1e6
RECORD_FIELDS = ["M", "L", "K", "tau_p", "agent", "status", "mean_sum_rate_mbps", "ci95_mbps", "ratio",
                 "ratio_to", "ms_per_snapshot", "train_time_s", "parameters", "distinct_assignments",
                 "ratio_to_best_constant", "collapsed", "snapshots", "seed", "reason"]


@dataclass
class EvaluationSettings:
    """Arguments of one evaluation run (``evaluate.py`` flags)."""

    agents: list[str] = field(default_factory=lambda: list(available()))
    """agent names, in table order"""
    sizes: list[Size] = field(default_factory=lambda: list(SIZE_GROUPS["default"]))
    """(M, L, K, tau_p) system sizes"""
    snapshots: int = 50
    """test snapshots per size"""
    seed: int = 0
    """seed of the test snapshots and of the agents' random choices"""
    out: Path = Path("results")
    """output folder"""
    max_assignments: int | None = None
    """EPAS cap (default: the agent's own)"""
    progress: bool = True
    """show progress bars"""
    checkpoints: Path = Path("runs")
    """where learning agents' trained models are looked up (and cached when trained here)"""
    train: bool = True
    """train a learning agent with its default budget when no checkpoint exists (else skip it)"""
    loss: str = "unsupervised"
    """training loss of the learning agents' checkpoints (Table II is unsupervised)"""
    device: str = "cpu"
    """torch device of the learning agents"""
    execution: dict[str, Any] | None = None
    """quantum execution of learning agents' circuits (:class:`agents.quantum.Execution` fields:
    noise_p, shots, mitigation, grad ...); None: exact. Checkpoints are trained noiselessly."""
    trained_at: Size | None = None
    """size-generalisable agents (gnn, hqcnn-ar) use their checkpoint trained at this size for
    every size (train once, evaluate across sizes); others keep one checkpoint per size"""

    def __post_init__(self) -> None:
        if self.snapshots < 1:
            raise ValueError(f"snapshots must be >= 1, got {self.snapshots}")
        unknown = [a for a in self.agents if a not in available()]
        if unknown:
            raise ValueError(f"unknown agent {unknown[0]!r}; valid: all, {', '.join(available())}")
        if not self.agents:
            raise ValueError("no agents given")
        if not self.sizes:
            raise ValueError("no sizes given")
        if self.loss not in ("supervised", "unsupervised"):
            raise ValueError(f"loss must be 'supervised' or 'unsupervised', got {self.loss!r}")
        self.out, self.checkpoints = Path(self.out), Path(self.checkpoints)


def parse_agents(text: str) -> list[str]:
    """``"all"`` or a comma-separated list of registered names -> names; ``ValueError`` otherwise."""
    names = list(available()) if text.strip() == "all" else [t.strip() for t in text.split(",") if t.strip()]
    for name in names:
        if name not in available():
            raise ValueError(f"unknown agent {name!r}; valid: all, {', '.join(available())}")
    if not names:
        raise ValueError(f"no agents given; valid: all, {', '.join(available())}")
    return names


def parse_sizes(tokens: Sequence[str]) -> list[Size]:
    """Size groups (``paper``, ``small``, ``medium``) and ``M,L,K,tau_p`` quadruples -> sizes."""
    sizes: list[Size] = []
    for token in tokens:
        if token in SIZE_GROUPS:
            sizes.extend(SIZE_GROUPS[token])
            continue
        try:
            sizes.append(parse_size(token))
        except ValueError as err:
            raise ValueError(f"{err}; valid: {', '.join(SIZE_GROUPS)} or M,L,K,tau_p quadruples") from None
    return list(dict.fromkeys(sizes))


def draw_test_snapshots(config: SystemConfig, n: int, seed: int) -> Snapshot:
    """The ``n`` test snapshots of one size, each from its own seeded stream (see module doc)."""
    drawn = [draw_snapshots(config, stream_rng(seed, TEST_STREAM, *config.size, i)) for i in range(n)]
    return Snapshot(np.stack([d.beta for d in drawn]), np.stack([d.ap_positions for d in drawn]),
                    np.stack([d.ue_positions for d in drawn]))


def evaluate(settings: EvaluationSettings) -> tuple[list[dict[str, Any]], dict[Size, Snapshot]]:
    """Run every agent on every size; returns one record per (size, agent) and the test
    snapshots of each size."""
    from tqdm.auto import tqdm

    records: list[dict[str, Any]] = []
    used: dict[Size, Snapshot] = {}
    tasks = [(size, name) for size in settings.sizes for name in settings.agents]
    bar = tqdm(total=len(tasks), desc="evaluate", unit="cell", disable=not settings.progress)
    for size in settings.sizes:
        config = SystemConfig.from_size(size)
        snaps = draw_test_snapshots(config, settings.snapshots, settings.seed)
        used[size] = snaps
        size_records = []
        for name in settings.agents:
            bar.set_postfix_str(f"{name} @ {size}")
            size_records.append(_run_agent(name, config, snaps, settings))
            bar.update(1)
        _add_ratios(size_records)
        records.extend(size_records)
    bar.close()
    return records, used


def _agent_kwargs(name: str, settings: EvaluationSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if name == "exhaustive":
        kwargs["progress"] = settings.progress
        if settings.max_assignments is not None:
            kwargs["max_assignments"] = settings.max_assignments
    return kwargs


def _run_agent(name: str, config: SystemConfig, snaps: Snapshot, settings: EvaluationSettings) -> dict[str, Any]:
    M, L, K, tau_p = config.size
    record: dict[str, Any] = {"M": M, "L": L, "K": K, "tau_p": tau_p, "agent": name,
                              "snapshots": settings.snapshots, "seed": settings.seed, "train_time_s": None,
                              "parameters": None}
    if is_learnable(name):
        agent, reason = _learning_agent(name, config, settings, record)
    else:
        agent = make(name, config=config, seed=settings.seed, **_agent_kwargs(name, settings))
        reason = agent.unsupported_reason(config)
    if reason is not None:
        record.update(status="skipped", reason=reason, mean_sum_rate_mbps=None, ci95_mbps=None,
                      ms_per_snapshot=None, per_snapshot_sum_rate_mbps=[], per_snapshot_assignments=[],
                      distinct_assignments=None, ratio_to_best_constant=None, collapsed=None)
        return record
    rng = stream_rng(settings.seed, AGENT_STREAM, name, *config.size)
    start = time.perf_counter()
    pilots = agent.assign(snaps, config, rng)
    elapsed = time.perf_counter() - start
    rates = sum_rate(snaps.beta, pilots, config) / MBPS
    n = len(rates)
    ci = Z_95 * float(np.std(rates, ddof=1)) / math.sqrt(n) if n > 1 else float("nan")
    record.update(status="ok", reason="", mean_sum_rate_mbps=float(np.mean(rates)), ci95_mbps=ci,
                  ms_per_snapshot=1e3 * elapsed / n, per_snapshot_sum_rate_mbps=[float(r) for r in rates],
                  per_snapshot_assignments=pilots.tolist())
    record.update(collapse_report(pilots, snaps.beta, config, float(np.mean(rates)) * MBPS))
    return record


def _learning_agent(name: str, config: SystemConfig, settings: EvaluationSettings,
                    record: dict[str, Any]) -> tuple[Any, str | None]:
    """Load the agent's checkpoint for this size, or train and cache it (default budget)."""
    cls = agent_class(name)
    loss = settings.loss if settings.loss in cls.losses else cls.losses[0]
    train_config = config
    if settings.trained_at is not None and getattr(cls, "size_generalisable", False):  # RL agents lack it
        train_config = SystemConfig.from_size(settings.trained_at)
    run_dir = cls.run_dir(settings.checkpoints, train_config, settings.seed, loss)
    if cls.has_checkpoint(run_dir):
        agent = cls.load(run_dir, device=settings.device, config=config)
        record["trained_at"] = list(train_config.size)
    elif not settings.train:
        return None, f"no checkpoint in {run_dir} (train it with train.py, or run without --no-train)"
    else:
        from tqdm.auto import tqdm

        tqdm.write(f"no checkpoint for {name} at {config.size}: training it with its default budget, "
                   f"cached in {run_dir}")
        agent = make(name, config=train_config, seed=settings.seed, device=settings.device, loss=loss)
        agent.fit(train_config, runs_dir=settings.checkpoints, progress=settings.progress)
        record["trained_at"] = list(train_config.size)
    record["train_time_s"] = agent.meta.get("train_time_s")
    record["parameters"] = agent.parameter_count()
    if settings.execution:
        from agents.quantum import Execution, apply_execution

        record["execution"] = apply_execution(agent.model, Execution(**settings.execution)) or ["classical: no circuit"]
    return agent, None


def _add_ratios(size_records: list[dict[str, Any]]) -> None:
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


# --------------------------------------------------------------------- output
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
    lines += ["", "Absolute rates come from cfpilot's simulator (SPEC sections 1-2); they are not the "
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
    root = Path(__file__).resolve().parents[1]
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


def write_results(records: list[dict[str, Any]], settings: EvaluationSettings, meta: dict[str, Any],
                  snapshots: dict[Size, Snapshot]) -> dict[str, Path]:
    """Write results.json, results.csv, per_snapshot.csv, results.md, results.png, run.json and
    snapshots.npz (per size ``M-L-K-tau_p/beta``, ``/ap_positions``, ``/ue_positions``, ``/seeds``),
    from which every per-snapshot sum rate can be re-verified."""
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("results.json", "results.csv", "per_snapshot.csv", "results.md",
                                           "results.png", "run.json", "snapshots.npz")}
    arrays = {}
    for size, snaps in snapshots.items():
        key = "-".join(map(str, size))
        arrays.update({f"{key}/beta": snaps.beta, f"{key}/ap_positions": snaps.ap_positions,
                       f"{key}/ue_positions": snaps.ue_positions,
                       f"{key}/seeds": np.array([[settings.seed, TEST_STREAM, *size, i]
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
    settings_dict = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()}
    paths["run.json"].write_text(json.dumps({**meta, "settings": settings_dict,
                                             "test_snapshot_seeds": f"numpy default_rng([seed, {TEST_STREAM}, M, L, K, tau_p, i])"},
                                            indent=1))
    return paths
