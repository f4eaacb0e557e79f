"""What is left of the HQCNN on near-term hardware: the paper's limitation study (Fig. 3c).

Noiselessly trained HQCNN checkpoints, one per qubit count, are run on the same test
snapshots as ``evaluate.py`` (:func:`agents.lab.evaluation.draw_test_snapshots`) under
depolarising gate noise of probability p, optionally finite shots, with and without
zero-noise extrapolation (:class:`agents.models.quantum.Execution`); each record holds the mean sum
rate, its 95 % confidence interval, the per-snapshot rates, the time per snapshot and the
backend that ran (``default.mixed`` density matrix up to 8 qubits, Monte-Carlo trajectories
at 16, with their number).

    # one trained checkpoint per qubit count (train.py ... --qubits N)
    python -m agents.lab.noise_study --checkpoint-dirs runs/q4/hqcnn/40-2-20-10/unsupervised-seed0 \\
        runs/q8/hqcnn/40-2-20-10/unsupervised-seed0 --p 0 0.001 0.01 0.1 --snapshots 50 --out results/noise
    # or train (once; reused afterwards) one noiseless HQCNN per qubit count under ROOT/q<n>/
    python -m agents.lab.noise_study --train-root runs/noise --qubits 4 8 16 --size 40,2,20,10
    # redraw the figure from a saved study
    python -m agents.lab.noise_study --replot results/noise/noise_study.json

Outputs in ``--out``: ``noise_study.json`` (settings, provenance, one record per qubit count,
p and mitigation, with per-snapshot sum rates), ``noise_study.csv`` (the same without the
per-snapshot lists) and ``fig3c.png``: (a) sum rate versus p, one colour per qubit count,
solid unmitigated and dashed with ZNE; (b) sum rate versus qubit count for noiseless, noisy
and noisy + ZNE at the largest p.

Each noisy cell uses its own noise stream: the execution seed is derived from ``--seed``, the
qubit count, p and the mitigation. At p = 0 only the noiseless (exact) model is run: ZNE of
a noiseless circuit returns the noiseless value, so the ZNE curves start from that point.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.lab.cli import add_fields, error, field_docs, given, plain
from agents.lab.stats import ci95
from agents.learning.settings import TrainSettings, check_device
from agents.registry import agent_class
from agents.specs.execution import MITIGATIONS, Execution
from agents.specs.wiring import SUPPORTED_N_QUBITS
from cfenv.config import SystemConfig
from cfenv.models import model_of
from cfenv.units import MBPS, parse_size, size_label

NOISE_AGENTS = ("hqcnn", "hqcnn-ar")
"""models whose circuits the study runs noisily: the paper's HQCNN, and the HQCNN circuit as
the per-decision scorer of the symmetry-aware decoder (which does not collapse)"""
CSV_FIELDS = ["agent", "n_qubits", "p", "mitigation", "shots", "backend", "trajectories", "M", "L", "K", "tau_p",
              "snapshots", "mean_sum_rate_mbps", "ci95_mbps", "distinct_assignments", "master_ap_mbps", "s_per_snapshot",
              "seed", "checkpoint", "device"]


@dataclass
class NoiseStudySettings:
    """Everything a noise study depends on (``python -m agents.lab.noise_study`` flags)."""

    checkpoint_dirs: tuple[Path, ...] = ()
    """trained HQCNN checkpoints (config.json + weights.pt), one per qubit count"""
    train_root: Path | None = None
    """instead of checkpoint_dirs: train (or reuse) one noiseless HQCNN per qubit count in ROOT/q<n>/"""
    agent: str = "hqcnn"
    """model trained under train_root: hqcnn (the paper's) or hqcnn-ar (its circuit as the scorer
    of the gnn decoder, trained with that agent's default recipe: imitation, then REINFORCE)"""
    qubits: tuple[int, ...] = ()
    """qubit counts: trained under train_root (empty: 4, 8, 16); with checkpoint_dirs, if given,
    they must be the checkpoints' own"""
    size: tuple[int, int, int, int] = (40, 2, 20, 10)
    """(M, L, K, tau_p) of the test snapshots (and of training under train_root)"""
    p: tuple[float, ...] = (0.0, 0.001, 0.01, 0.1)
    """depolarising probabilities after every gate"""
    mitigation: tuple[str, ...] = ("none", "zne")
    """mitigations run at every p > 0"""
    shots: int | None = None
    """measurement shots per circuit (None: exact expectation values)"""
    trajectories: int = 64
    """Monte-Carlo trajectories per sample (trajectory backend)"""
    noise_backend: str = "auto"
    """auto (default.mixed where the density matrix fits, else trajectories), default.mixed or trajectories"""
    snapshots: int = 50
    """test snapshots"""
    seed: int = 0
    """seed of the test snapshots (as evaluate.py) and of the noise streams"""
    out: Path = Path("results/noise")
    """output folder"""
    epochs: int = 20
    """training budget under train_root"""
    train_snapshots: int = 2048
    """training snapshots under train_root"""
    val_snapshots: int = 256
    """validation snapshots under train_root"""
    cache_dir: Path = Path(".cache/datasets")
    """dataset cache for training under train_root"""
    progress: bool = True
    """progress bars; off: no progress bars"""
    device: str = "cpu"
    """torch device of training and of the statevector/trajectory simulation: cpu, cuda, cuda:N or
    auto (the PennyLane default.mixed backend runs on the CPU whatever this says)"""

    def __post_init__(self) -> None:
        self.device = check_device(self.device)

        self.size = tuple(int(v) for v in self.size)  # type: ignore[assignment]
        SystemConfig.from_size(self.size)
        self.checkpoint_dirs = tuple(Path(d) for d in self.checkpoint_dirs)
        if self.agent not in NOISE_AGENTS:
            raise ValueError(f"agent must be one of {', '.join(NOISE_AGENTS)}, got {self.agent!r}")
        if bool(self.checkpoint_dirs) == (self.train_root is not None):
            raise ValueError("give either checkpoint_dirs or train_root (exactly one)")
        self.qubits = tuple(int(n) for n in self.qubits)
        if self.train_root is not None and not self.qubits:
            self.qubits = (4, 8, 16)
        for n in self.qubits:
            if n not in SUPPORTED_N_QUBITS:
                raise ValueError(f"qubits must be among {SUPPORTED_N_QUBITS}; got {n}")
        if not self.p:
            raise ValueError("p must list at least one probability")
        self.p = tuple(float(v) for v in self.p)
        for m in self.mitigation:
            if m not in MITIGATIONS:
                raise ValueError(f"mitigation must be among {MITIGATIONS}; got {m!r}")
        for name in ("snapshots", "epochs", "train_snapshots", "val_snapshots"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for p in self.p:  # validates p, shots, trajectories and noise_backend before any work
            Execution(noise_p=p, shots=self.shots, trajectories=self.trajectories,
                      noise_backend=self.noise_backend)
        self.out = Path(self.out)
        self.cache_dir = Path(self.cache_dir)
        if self.train_root is not None:
            self.train_root = Path(self.train_root)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("out", "cache_dir", "train_root"):
            d[key] = None if d[key] is None else str(d[key])
        d["checkpoint_dirs"] = [str(c) for c in self.checkpoint_dirs]
        d["size"] = list(self.size)
        return d


def checkpoints_for(settings: NoiseStudySettings) -> list[Path]:
    """The checkpoint of every qubit count: ``checkpoint_dirs``, or under ``train_root`` the
    run folder ``ROOT/q<n>/hqcnn/<M-L-K-tau_p>/unsupervised-seed<seed>``, trained noiselessly
    with :func:`agents.learning.trainer.train` unless it already holds a model."""
    from agents.learning import CONFIG_JSON, train  # torch loads here, not for --help

    if settings.checkpoint_dirs:
        return list(settings.checkpoint_dirs)


    recipe: dict[str, Any] = {}
    if settings.agent == "hqcnn-ar":  # the agent's own recipe, at the study's epochs and snapshots
        budget = agent_class("hqcnn-ar").default_budget
        recipe = {k: budget[k] for k in ("labels", "samples", "batch_size", "lr")}
        recipe.update(loss="reinforce",
                      imitation_epochs=int(settings.epochs * budget["imitation_epochs"] / budget["epochs"]))
    dirs = []
    for n in settings.qubits:
        train_settings = TrainSettings(agent=settings.agent, size=settings.size, model={"n_qubits": n},
                                       epochs=settings.epochs, train_snapshots=settings.train_snapshots,
                                       val_snapshots=settings.val_snapshots, seed=settings.seed,
                                       runs_dir=settings.train_root / f"q{n}", cache_dir=settings.cache_dir,
                                       progress=settings.progress, device=settings.device, **recipe)
        if not (train_settings.run_dir / CONFIG_JSON).exists():
            train(train_settings)
        dirs.append(train_settings.run_dir)
    return dirs


def _cell_seed(seed: int, n_qubits: int, p: float, mitigation: str) -> int:
    """A noise-stream seed per (seed, n, p, mitigation), stable across runs and platforms."""
    return zlib.crc32(f"noise-study/{seed}/{n_qubits}/{p!r}/{mitigation}".encode())


def run_noise_study(settings: NoiseStudySettings) -> list[dict[str, Any]]:
    """Evaluate every checkpoint at every (p, mitigation); returns one record per cell.

    A record: ``n_qubits``, ``p``, ``mitigation``, ``shots``, ``backend`` (the execution
    backend that ran), ``trajectories`` (None unless that is the trajectory backend),
    ``description`` (:meth:`agents.models.quantum.QCNNLayer.describe_execution`), ``M, L, K, tau_p``,
    ``snapshots``, ``mean_sum_rate_mbps``, ``ci95_mbps``, ``s_per_snapshot`` (wall time of the
    model's forward pass and argmax, per snapshot), ``per_snapshot_sum_rate_mbps``, ``seed``
    (of the noise stream) and ``checkpoint``.
    """
    from agents.heuristics import master_ap_pilots
    from agents.lab.settings import draw_test_snapshots
    from agents.learning import load_model, predict
    from agents.learning.diagnostics import distinct_assignments
    from agents.models.quantum import QCNNLayer, apply_execution

    from tqdm.auto import tqdm


    config = SystemConfig.from_size(settings.size)
    snaps = draw_test_snapshots(config, settings.snapshots, settings.seed)
    physics = model_of(config)
    master_ap = float(np.mean(physics.sum_rate(snaps, master_ap_pilots(physics.gains(snaps), config.tau_p)))) / MBPS
    checkpoints = checkpoints_for(settings)
    models = []
    for directory in checkpoints:
        model, meta = load_model(directory, settings.device, expected=config)
        layers = [m for m in model.modules() if isinstance(m, QCNNLayer)]
        if len(layers) != 1:
            raise TypeError(f"checkpoint {directory} holds a {meta['agent']} model without a (single) QCNN circuit")
        models.append((directory, model, layers[0], meta["agent"]))
    if settings.checkpoint_dirs and settings.qubits:
        found = tuple(layer.n_qubits for _, _, layer, _ in models)
        if found != settings.qubits:
            raise ValueError(f"the checkpoints have {found} qubits, not the requested {settings.qubits}")
    cells = [(directory, model, layer, agent, p, mitigation) for directory, model, layer, agent in models
             for p in settings.p for mitigation in (("none",) if p == 0 else settings.mitigation)]
    records = []
    bar = tqdm(cells, desc="noise study", unit="cell", disable=not settings.progress)
    for directory, model, layer, agent, p, mitigation in bar:
        n_qubits = layer.n_qubits
        seed = _cell_seed(settings.seed, n_qubits, p, mitigation)
        if agent != "hqcnn":  # keep the HQCNN's noise streams as they were
            seed = _cell_seed(settings.seed, n_qubits, p, f"{agent}/{mitigation}")
        execution = Execution(noise_p=p, shots=settings.shots, mitigation=mitigation,
                              trajectories=settings.trajectories, noise_backend=settings.noise_backend,
                              seed=seed)
        description = apply_execution(model, execution)[0]
        bar.set_postfix_str(f"{agent} n={n_qubits} p={p:g} {mitigation} on {layer.execution_backend}")
        start = time.perf_counter()
        pilots, _ = predict(model, snaps.beta, config.tau_p, settings.device)
        elapsed = time.perf_counter() - start
        rates = physics.sum_rate(snaps, pilots) / MBPS
        k = len(rates)
        on_trajectories = layer.execution_backend == "trajectories" and p > 0
        records.append({
            "agent": agent, "n_qubits": n_qubits, "p": p, "mitigation": mitigation, "shots": settings.shots,
            "backend": layer.execution_backend,
            "trajectories": settings.trajectories if on_trajectories else None,
            "description": description, "M": config.M, "L": config.L, "K": config.K, "tau_p": config.tau_p,
            "snapshots": k, "mean_sum_rate_mbps": float(np.mean(rates)),
            "ci95_mbps": ci95(rates),
            "distinct_assignments": distinct_assignments(pilots), "master_ap_mbps": master_ap,
            "s_per_snapshot": elapsed / k, "per_snapshot_sum_rate_mbps": [float(r) for r in rates],
            "seed": seed, "checkpoint": str(directory), "device": settings.device,
        })
        apply_execution(model, None)
    bar.close()
    return records


def plot_noise_study(records: list[dict[str, Any]], path: Path) -> Path:
    """Fig. 3c from saved records: (a) sum rate vs p per model and qubit count (solid: no
    mitigation, dashed: ZNE; p = 0 is the noiseless model for both), (b) sum rate vs qubit
    count for noiseless, noisy and noisy + ZNE at the largest p. 95 % CIs as error bars; the
    grey line is master-AP on the same snapshots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_p, ax_n) = plt.subplots(1, 2, figsize=(11, 5.6))
    agent_of = lambda r: r.get("agent", "hqcnn")  # noqa: E731 - records from before the agent field
    models = sorted({(agent_of(r), r["n_qubits"]) for r in records})
    several = len({a for a, _ in models}) > 1
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    noisy_ps = [r["p"] for r in records if r["p"] > 0]
    linthresh = min(noisy_ps) if noisy_ps else 1.0
    lines = [(agent, n, mitigation, style) for agent, n in models for mitigation, style in (("none", "-"), ("zne", "--"))]

    def dodge(x: float, j: int, count: int) -> float:
        """x moved a little per line, so that error bars at the same p do not hide each other (log axis:
        a factor; p = 0, in the linear part: a fraction of the linear range)."""
        shift = (j - (count - 1) / 2) * 0.05
        return x * 10 ** shift if x > 0 else shift * linthresh

    for j, (agent, n, mitigation, style) in enumerate(lines):
        mine = [r for r in records if (agent_of(r), r["n_qubits"]) == (agent, n)]
        rows = sorted([r for r in mine if r["p"] == 0] + [r for r in mine if r["p"] > 0 and r["mitigation"] == mitigation],
                      key=lambda r: r["p"])
        if not any(r["p"] > 0 for r in rows):
            continue
        name = f"{agent} " if several else ""
        ax_p.errorbar([dodge(r["p"], j, len(lines)) for r in rows], [r["mean_sum_rate_mbps"] for r in rows],
                      yerr=[_ci(r) for r in rows], linestyle=style, marker="o" if style == "-" else "s", capsize=3,
                      markersize=4, color=colours[models.index((agent, n)) % len(colours)],
                      label=f"{name}{n} qubits" + (" + ZNE" if mitigation == "zne" else ""))
    if noisy_ps:
        ax_p.set_xscale("symlog", linthresh=linthresh)
    ax_p.set_xlabel("depolarising probability p per gate")
    ax_p.set_ylabel("average sum rate [Mbit/s]")
    ax_p.set_title("(a) sum rate vs gate noise")
    p_max = max([r["p"] for r in records], default=0.0)
    series = [(agent, label, pick) for agent in sorted({a for a, _ in models})
              for label, pick in (("noiseless", lambda r: r["p"] == 0),
                                  (f"p = {p_max:g}", lambda r: r["p"] == p_max > 0 and r["mitigation"] == "none"),
                                  (f"p = {p_max:g} + ZNE", lambda r: r["p"] == p_max > 0 and r["mitigation"] == "zne"))]
    for j, (agent, label, pick) in enumerate(series):
        rows = sorted((r for r in records if agent_of(r) == agent and pick(r)), key=lambda r: r["n_qubits"])
        if rows:
            ax_n.errorbar([r["n_qubits"] + (j - (len(series) - 1) / 2) * 0.08 for r in rows],
                          [r["mean_sum_rate_mbps"] for r in rows], yerr=[_ci(r) for r in rows],
                          marker="o" if "ZNE" not in label else "s", capsize=3, markersize=4,
                          label=f"{agent} {label}" if several else label, linestyle="--" if "ZNE" in label else "-")
    # master-AP on each study's own snapshots: one line where the studies' values agree within 0.2 %
    master = {(r["snapshots"], round(r["master_ap_mbps"], 6)): agent_of(r) for r in records
              if r.get("master_ap_mbps") is not None}
    values = [v for _, v in master]
    merged = len(master) > 1 and max(values) - min(values) <= 2e-3 * max(values)
    for ax in (ax_p, ax_n):
        if merged:
            parts = " / ".join(f"{v:.1f} ({a}'s {n})" for (n, v), a in sorted(master.items()))
            ax.axhline(float(np.mean(values)), color="grey", linestyle=":", label=f"master-AP: {parts}")
        for j, ((n_snaps, value), agent) in enumerate([] if merged else sorted(master.items())):
            label = "master-AP" if len(master) == 1 else f"master-AP ({agent}'s {n_snaps} snapshots)"
            ax.axhline(value, color="grey", linestyle=(0, (1, 1 + 2 * j)), label=label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    ax_n.set_xticks(sorted({n for _, n in models}))
    ax_n.set_xlabel("number of qubits")
    ax_n.set_title("(b) sum rate vs qubits")
    if records:
        r = records[0]
        snaps = {agent: rec["snapshots"] for rec in records for agent in [agent_of(rec)]}
        counts = (f"{r['snapshots']} test snapshots" if len(set(snaps.values())) == 1
                  else ", ".join(f"{a}: {n} test snapshots" for a, n in sorted(snaps.items())))
        fig.suptitle(f"{', '.join(sorted(snaps))} under depolarising noise, (M, L, K, tau_p) = "
                     f"({r['M']}, {r['L']}, {r['K']}, {r['tau_p']}), {counts}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _ci(record: dict[str, Any]) -> float:
    ci = record["ci95_mbps"]
    return 0.0 if ci is None or math.isnan(ci) else ci


def write_noise_study(records: list[dict[str, Any]], settings: NoiseStudySettings,
                      meta: dict[str, Any]) -> dict[str, Path]:
    """``noise_study.json`` (settings, provenance, records), ``noise_study.csv``, ``fig3c.png``."""
    out = settings.out
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "noise_study.json", "csv": out / "noise_study.csv", "png": out / "fig3c.png"}
    paths["json"].write_text(json.dumps({"settings": settings.to_json(), "meta": meta, "records": records},
                                        indent=1))
    with paths["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
    plot_noise_study(records, paths["png"])
    return paths


STUDY_FLAGS = ("checkpoint_dirs", "train_root", "agent", "qubits", "p", "mitigation", "shots", "trajectories",
               "noise_backend", "snapshots", "seed", "out", "epochs", "train_snapshots", "val_snapshots", "cache_dir",
               "progress", "device")
"""the :class:`NoiseStudySettings` fields set by flags of the same name (``size`` is ``--size M,L,K,tau_p``)"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agents.lab.noise_study", description=plain(__doc__),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_fields(parser, NoiseStudySettings, STUDY_FLAGS,
               aliases={"checkpoint_dirs": ("--checkpoint-dirs", "--checkpoint")})
    parser.add_argument("--size", default=size_label(NoiseStudySettings.size),
                        help=f"M,L,K,tau_p: {field_docs(NoiseStudySettings)['size']}")
    parser.add_argument("--replot", type=Path, default=None, help="redraw fig3c.png from a noise_study.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.replot is not None:
        records = json.loads(args.replot.read_text())["records"]
        print(plot_noise_study(records, args.replot.with_name("fig3c.png")))
        return 0
    try:
        settings = NoiseStudySettings(size=parse_size(args.size), **given(args, STUDY_FLAGS))
    except ValueError as err:
        return error("noise_study", str(err))

    start = time.perf_counter()
    records = run_noise_study(settings)
    from agents.lab.results import provenance

    meta = provenance(sys.argv if argv is None else ["-m agents.lab.noise_study", *argv])
    meta["wall_time_s"] = time.perf_counter() - start
    paths = write_noise_study(records, settings, meta)
    width = max(len(r["backend"]) for r in records)
    print(f"master-AP on the same snapshots: {records[0]['master_ap_mbps']:.2f} Mbit/s")
    print(f"{'agent':<9} {'n':>3} {'p':>7} {'mitigation':<10} {'backend':<{width}} {'sum rate [Mbit/s]':>20} "
          f"{'distinct':>8} {'s/snapshot':>11}")
    for r in records:
        print(f"{r['agent']:<9} {r['n_qubits']:>3} {r['p']:>7g} {r['mitigation']:<10} {r['backend']:<{width}} "
              f"{r['mean_sum_rate_mbps']:>11.2f} ± {_ci(r):<6.2f} {r['distinct_assignments']:>8d} "
              f"{r['s_per_snapshot']:>11.4f}")
    described = set()
    for r in records:  # the backend of each qubit count, in words
        if r["p"] > 0 and r["n_qubits"] not in described:
            described.add(r["n_qubits"])
            print(f"p={r['p']:g} {r['mitigation']}: {r['description']}")
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
