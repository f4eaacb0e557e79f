"""Figures drawn from logged training runs (the paper's Fig. 3a and 3b).

    python -m agents.lab.figures --runs runs --out figures

* ``convergence.png`` (Fig. 3a): per epoch, what improved -- the validation sum rate relative to
  master-AP's (top row) -- and the training loss's change relative to its initial value, lower
  is better whatever the loss's sign (bottom row; the unsupervised loss is a negative sum rate);
  one column per size in numeric order, one line per model (and seed), the loss by line style
  (the imitation epochs that warm-start a REINFORCE run dotted).
* ``parameter_efficiency.png`` (Fig. 3b): final validation sum rate per trainable parameter
  of the unsupervised runs, with the parameter counts annotated; agents trained without
  labels by REINFORCE instead (``gnn``, ``hqcnn-ar``) join with their REINFORCE runs, hatched.

``python -m agents.lab.figures --results results/latest --plot-agents master-ap tabu gnn`` redraws an
``evaluate.py`` folder's ``results.png`` with your own selection (:func:`plot_results`).

Fig. 3a and 3b read only ``history.json`` and ``config.json`` of each run folder
(``runs/<agent>/<M-L-K-tau_p>/<loss>-seed<seed>/``), so they can be redrawn at
any time without retraining. A figure with nothing to draw is skipped with the reason.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from agents.lab.results import agent_styles, plot_records, sort_agents
from agents.learning import CONFIG_JSON, HISTORY_JSON
from agents.learning.checkpoints import checkpoint_objective
from cfenv.objectives import Objective

LABEL_FREE_FALLBACK = "reinforce"
"""Fig. 3b: the loss of agents that cannot train unsupervised (autoregressive policies)"""


def collect_runs(runs_dir: Path, objective: str = "sum") -> list[dict[str, Any]]:
    """Every finished run below ``runs_dir`` trained for ``objective`` (the paper's figures are of
    sum-rate runs): agent, size, loss, seed, history, parameter counts.

    Folders that are not trainer runs (no ``<loss>-seed<seed>`` / ``<loss>-<objective>-seed<seed>``
    name, no history, or a ``config.json`` without agent and parameter counts, such as SB3
    models) are left out; a ``config.json`` without an objective is a sum-rate run.
    """
    runs = []
    for config_path in sorted(Path(runs_dir).glob(f"*/*/*/{CONFIG_JSON}")):
        run = config_path.parent
        history_path = run / HISTORY_JSON
        if not history_path.exists() or "-seed" not in run.name:
            continue
        loss, seed = run.name.rsplit("-seed", 1)
        meta = json.loads(config_path.read_text())
        trained_for = checkpoint_objective(meta) if isinstance(meta, dict) else "sum"
        if trained_for != objective:
            continue
        loss = loss if Objective.parse(trained_for).is_default else loss.removesuffix(f"-{trained_for}")
        history = json.loads(history_path.read_text())
        if not seed.isdigit() or "agent" not in meta or "parameters" not in meta or not history:
            continue
        runs.append({"agent": meta["agent"], "size": run.parent.name, "loss": loss, "seed": int(seed),
                     "history": history, "parameters": meta["parameters"]})
    return runs


def size_key(size: str) -> tuple[int, ...]:
    """``"10-2-6-3"`` -> ``(10, 2, 6, 3)``: sizes sort numerically (``"6-..."`` before ``"10-..."``)."""
    try:
        return tuple(int(v) for v in size.split("-"))
    except ValueError:
        return (1 << 62,)  # not a size: last


def sorted_sizes(sizes: Iterable[str]) -> list[str]:
    """Distinct size folder names in numeric order (M, then L, K, tau_p)."""
    return sorted(set(sizes), key=lambda s: (size_key(s), s))


def _size_title(size: str) -> str:
    return f"(M, L, K, tau_p) = ({size.replace('-', ', ')})"


def convergence_series(runs: list[dict[str, Any]], loss: str | None = None) -> list[dict[str, Any]]:
    """The curves of Fig. 3a: per run and training phase, ``agent, size, seed, loss, imitation,
    epochs, run_loss``, ``change`` (the training loss's relative change, :func:`loss_change`) and
    ``val_ratio`` (validation sum rate / master-AP's; ``None`` where not logged).

    A run's imitation epochs (the supervised warm start of a REINFORCE run) form a
    supervised curve of their own; the other epochs a curve of the run's loss. ``loss``
    keeps only curves of that loss (``None``: all).
    """
    series = []
    for r in runs:
        phases: dict[bool, list[dict[str, Any]]] = {}
        for h in r["history"]:
            if "train/loss_relative_to_initial" in h:
                phases.setdefault(bool(h.get("train/imitation", 0.0)) and r["loss"] != "supervised", []).append(h)
        for imitation, hs in phases.items():
            phase_loss = "supervised" if imitation else r["loss"]
            if loss is not None and phase_loss != loss:
                continue
            series.append({"agent": r["agent"], "size": r["size"], "seed": r["seed"], "loss": phase_loss,
                           "imitation": imitation, "epochs": [h["epoch"] for h in hs],
                           "change": [loss_change(h) for h in hs],
                           "val_ratio": [h.get("val/ratio_to_master_ap") for h in hs],
                           "run_loss": r["loss"]})
    return series


def loss_change(entry: dict[str, Any]) -> float:
    """``(loss - initial) / |initial|`` of one history entry: negative when the loss fell, whatever its sign
    (``loss / initial`` rises as a negative loss, such as the unsupervised negative sum rate, improves)."""
    relative = entry["train/loss_relative_to_initial"]
    loss = entry.get("train/loss")
    sign = 1.0 if loss is None or relative == 0 or loss / relative >= 0 else -1.0
    return (relative - 1.0) * sign


LOSS_STYLES = {"supervised": "--", "unsupervised": "-", "reinforce": "-."}
"""line style per training loss in Fig. 3a (imitation epochs: dotted)"""


def plot_convergence(runs: list[dict[str, Any]], path: Path, loss: str | None = None) -> Path | None:
    """Fig. 3a: per size (one column each, numeric order; only sizes with runs), the validation sum rate
    relative to master-AP's (top) and the training loss's relative change (bottom, lower is better) per
    epoch, one line per agent, seed and training phase (``loss`` given: that loss's curves only).
    ``None`` when there is nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    series = convergence_series(runs, loss)
    if not series:
        return None
    sizes = sorted_sizes(s["size"] for s in series)
    agents = sort_agents([s["agent"] for s in series])
    styles = agent_styles(agents)
    several_seeds = len({s["seed"] for s in series}) > 1
    validated = any(v is not None for s in series for v in s["val_ratio"])
    rows = (["val", "loss"] if validated else ["loss"])
    fig, axes = plt.subplots(len(rows), len(sizes), figsize=(4.2 * len(sizes) + 2.6, 3.2 * len(rows)),
                             squeeze=False, sharex="col")
    handles: dict[str, Line2D] = {}
    for r, what in enumerate(rows):
        for ax, size in zip(axes[r], sizes):
            chosen = [s for s in series if s["size"] == size]
            for s in sorted(chosen, key=lambda s: (agents.index(s["agent"]), s["seed"], s["imitation"])):
                colour, marker = styles[s["agent"]]
                label = s["agent"] + (f" (seed {s['seed']})" if several_seeds else "")
                label += f", {s['loss']}" + (f" warm start of its {s['run_loss']} run" if s["imitation"] else "")
                ls = ":" if s["imitation"] else LOSS_STYLES.get(s["loss"], "-")
                points = [(e, v) for e, v in zip(s["epochs"], s["val_ratio"] if what == "val" else s["change"])
                          if v is not None]
                if not points:
                    continue
                (line,) = ax.plot(*zip(*points), color=colour, marker=marker, markersize=3.5, ls=ls, lw=1.3,
                                  label=label)
                handles.setdefault(label, line)
            if what == "val":
                ax.axhline(1.0, color="grey", lw=0.8, ls=":")
                ax.set_title(_size_title(size), fontsize=9)
                ax.set_ylabel("validation sum rate / master-AP's", fontsize=8)
            else:
                ax.axhline(0.0, color="grey", lw=0.8, ls=":")
                ax.set_ylabel("training loss: change / |initial|\n(lower is better)", fontsize=8)
                ax.set_xlabel("epoch")
                if len(rows) == 1:
                    ax.set_title(_size_title(size), fontsize=9)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
            ax.margins(y=0.08)
            ax.grid(alpha=0.3)
    fig.suptitle("Fig. 3a: what training improved (validation, top) and the training loss (bottom)"
                 if validated else "Fig. 3a: the training loss relative to its initial value", fontsize=10)
    fig.tight_layout()
    order = sorted(handles, key=lambda label: (agents.index(label.split(" ")[0].rstrip(",")), label))
    fig.legend([handles[k] for k in order], order, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
               frameon=False)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def efficiency_bars(runs: list[dict[str, Any]], loss: str = "unsupervised") -> list[dict[str, Any]]:
    """The bars of Fig. 3b: per agent and size, the runs of ``loss`` (else, for an agent without
    any, its REINFORCE runs: training without labels as well), averaged over seeds:
    ``agent, size, loss, seeds, parameters, value`` (final validation Mbit/s per parameter)."""
    usable = [r for r in runs if r["history"] and "val/sum_rate_mbps" in r["history"][-1]
              and r["parameters"].get("total")]
    bars = []
    for agent in sort_agents([r["agent"] for r in usable]):
        mine = [r for r in usable if r["agent"] == agent]
        for chosen_loss in (loss, LABEL_FREE_FALLBACK):
            chosen = [r for r in mine if r["loss"] == chosen_loss]
            if chosen:
                break
        for size in sorted_sizes(r["size"] for r in chosen):
            at = [r for r in chosen if r["size"] == size]
            values = [r["history"][-1]["val/sum_rate_mbps"] / r["parameters"]["total"] for r in at]
            bars.append({"agent": agent, "size": size, "loss": chosen_loss, "seeds": len(at),
                         "parameters": at[0]["parameters"]["total"], "value": float(np.mean(values))})
    return bars


def plot_parameter_efficiency(runs: list[dict[str, Any]], path: Path, loss: str = "unsupervised") -> Path | None:
    """Final validation sum rate per parameter [Mbit/s per parameter], bars per agent and size
    (sizes in numeric order, the legend below the axes). ``None`` when there is nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    bars = efficiency_bars(runs, loss)
    if not bars:
        return None
    sizes = sorted_sizes(b["size"] for b in bars)
    agents = sort_agents([b["agent"] for b in bars])
    styles = agent_styles(agents)
    width = 0.8 / len(agents)
    fig, ax = plt.subplots(figsize=(max(6.5, 0.55 * len(sizes) * len(agents) + 2), 4.4))
    handles = {}
    for b in bars:
        j, i = agents.index(b["agent"]), sizes.index(b["size"])
        x = i - 0.4 + (j + 0.5) * width
        colour = styles[b["agent"]][0]
        hatch = "//" if b["loss"] != loss else None
        ax.bar(x, b["value"], width * 0.92, color=colour, hatch=hatch, edgecolor="white" if hatch else colour)
        ax.annotate(f"{b['parameters']:,}", (x, b["value"]), xytext=(0, 2), textcoords="offset points",
                    ha="center", va="bottom", fontsize=6, rotation=90)
        label = b["agent"] + ("" if b["loss"] == loss else f" ({b['loss']})")
        handles.setdefault(label, Patch(facecolor=colour, hatch=hatch, edgecolor="white" if hatch else colour,
                                        label=label))
    ax.set_xticks(range(len(sizes)), [s.replace("-", ", ") for s in sizes])
    ax.set_xlim(-0.5, len(sizes) - 0.5)
    values = [b["value"] for b in bars]
    if max(values) > 10 * min(values):  # several decades: log scale
        ax.set_yscale("log")
        ax.margins(y=0.25)
    else:
        ax.set_ylim(0, 1.15 * max(values))
    ax.set_xlabel("(M, L, K, tau_p)")
    ax.set_ylabel("validation sum rate per parameter\n[Mbit/s]")
    hatched = any(b["loss"] != loss for b in bars)
    ax.set_title(f"Fig. 3b: parameter efficiency ({loss} runs"
                 + (f", hatched: {LABEL_FREE_FALLBACK}" if hatched else "") + "; trainable parameters annotated)",
                 fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(handles=list(handles.values()), loc="upper center", bbox_to_anchor=(0.5, -0.16),
              ncol=min(len(handles), 5), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def results_snapshots(folder: Path, records: list[dict[str, Any]]) -> dict[tuple[int, ...], Any]:
    """The test networks of an ``evaluate.py`` folder, per size, from its ``snapshots.npz`` (a model's extra
    arrays kept there, else rebuilt by the model)."""
    from cfenv.config import SystemConfig
    from cfenv.models import model_of
    from cfenv.units import size_slug

    out = {}
    with np.load(folder / "snapshots.npz", allow_pickle=False) as data:
        for r in records:
            size = (r["M"], r["L"], r["K"], r["tau_p"])
            if size in out:
                continue
            slug = size_slug(size)
            model = model_of(SystemConfig.from_size(size, **r.get("system", {})))
            arrays = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith(slug + "/")}
            out[size] = model.validate({k: v for k, v in arrays.items() if k not in ("seeds", "index")},
                                       batch_shape=None)
    return out


def plot_results(folder: Path, agents: Sequence[str] | None = None, out: Path | None = None) -> Path:
    """``results.png`` of a finished ``evaluate.py`` folder, redrawn with your choice of ``agents`` (default:
    :func:`agents.lab.results.plot_selection`'s) into ``out`` (default: the folder's results.png)."""
    folder = Path(folder)
    records = json.loads((folder / "results.json").read_text())
    fair = any(not Objective.parse(r.get("objective") or "sum").is_default for r in records)
    snapshots = results_snapshots(folder, records) if fair and (folder / "snapshots.npz").exists() else None
    return plot_records(records, Path(out) if out else folder / "results.png", snapshots, agents)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--out", type=Path, default=None, help="folder of Fig. 3a/3b (default: figures), or "
                                                                "with --results the PNG to write")
    parser.add_argument("--results", type=Path, help="redraw an evaluate.py folder's results.png instead")
    parser.add_argument("--plot-agents", nargs="+", default=None, help="with --results: the agents to draw")
    args = parser.parse_args(argv)
    if args.results is not None:
        if not (args.results / "results.json").is_file():
            parser.error(f"{args.results} holds no results.json (an evaluate.py output folder)")
        print(f"wrote {plot_results(args.results, args.plot_agents, args.out)}")
        return 0
    args.out = args.out or Path("figures")
    runs = collect_runs(args.runs)
    if not runs:
        print(f"no finished runs below {args.runs}: train some with train.py first")
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    path = plot_convergence(runs, args.out / "convergence.png")
    print(f"wrote {path}" if path else
          f"skipped Fig. 3a (convergence): no run in {args.runs}/ logged its relative training loss")
    path = plot_parameter_efficiency(runs, args.out / "parameter_efficiency.png")
    print(f"wrote {path}" if path else
          f"skipped Fig. 3b (parameter efficiency): no runs with loss 'unsupervised' or "
          f"'{LABEL_FREE_FALLBACK}' and a validation sum rate in {args.runs}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
