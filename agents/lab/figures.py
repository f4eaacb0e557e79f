"""Figures drawn from logged training runs (the paper's Fig. 3a and 3b).

    python -m agents.lab.figures --runs runs --out figures

* ``convergence.png``: training loss relative to its initial value versus epoch,
  one line per model, for the supervised runs (Fig. 3a), one panel per size.
* ``parameter_efficiency.png``: final validation sum rate per trainable parameter
  of the unsupervised runs (Fig. 3b), with the parameter counts annotated.

Both read only ``history.json`` and ``config.json`` of each run folder
(``runs/<agent>/<M-L-K-tau_p>/<loss>-seed<seed>/``), so they can be redrawn at
any time without retraining.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from agents.learning import CONFIG_JSON, HISTORY_JSON


def collect_runs(runs_dir: Path) -> list[dict[str, Any]]:
    """Every finished run below ``runs_dir``: agent, size, loss, seed, history, parameter counts."""
    runs = []
    for config_path in sorted(Path(runs_dir).glob(f"*/*/*/{CONFIG_JSON}")):
        run = config_path.parent
        history_path = run / HISTORY_JSON
        if not history_path.exists():
            continue
        meta = json.loads(config_path.read_text())
        loss, seed = run.name.rsplit("-seed", 1)
        runs.append({"agent": meta["agent"], "size": run.parent.name, "loss": loss, "seed": int(seed),
                     "history": json.loads(history_path.read_text()), "parameters": meta["parameters"]})
    return runs


def plot_convergence(runs: list[dict[str, Any]], path: Path, loss: str = "supervised") -> Path | None:
    """Relative training loss versus epoch, one line per agent, one panel per size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = [r for r in runs if r["loss"] == loss]
    if not chosen:
        return None
    sizes = sorted({r["size"] for r in chosen})
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.5 * len(sizes), 3.8), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        for r in (r for r in chosen if r["size"] == size):
            epochs = [h["epoch"] for h in r["history"]]
            ax.plot(epochs, [h["train/loss_relative_to_initial"] for h in r["history"]],
                    marker=".", label=f"{r['agent']} (seed {r['seed']})")
        ax.set_title(f"(M, L, K, tau_p) = ({size.replace('-', ', ')})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{loss} loss / initial loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_parameter_efficiency(runs: list[dict[str, Any]], path: Path, loss: str = "unsupervised") -> Path | None:
    """Final validation sum rate per parameter [Mbit/s per parameter], bars per agent and size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = [r for r in runs if r["loss"] == loss and r["history"]]
    if not chosen:
        return None
    sizes = sorted({r["size"] for r in chosen})
    agents = list(dict.fromkeys(r["agent"] for r in chosen))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(sizes) * len(agents) / 3), 4.2))
    width = 0.8 / len(agents)
    for j, agent in enumerate(agents):
        for i, size in enumerate(sizes):
            match = [r for r in chosen if r["agent"] == agent and r["size"] == size]
            if not match:
                continue
            r = match[0]
            value = r["history"][-1]["val/sum_rate_mbps"] / r["parameters"]["total"]
            ax.bar(i + j * width, value, width, color=f"C{j}", label=agent if i == 0 else None)
            ax.annotate(str(r["parameters"]["total"]), (i + j * width, value), ha="center", va="bottom", fontsize=6)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(sizes))], sizes)
    ax.set_yscale("log")
    ax.set_xlabel("M-L-K-tau_p")
    ax.set_ylabel("validation sum rate per parameter [Mbit/s]")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--out", type=Path, default=Path("figures"))
    args = parser.parse_args(argv)
    runs = collect_runs(args.runs)
    if not runs:
        print(f"no finished runs below {args.runs}: train some with train.py first")
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for path in (plot_convergence(runs, args.out / "convergence.png"),
                 plot_parameter_efficiency(runs, args.out / "parameter_efficiency.png")):
        print(f"wrote {path}" if path else "skipped a figure: no runs with that loss")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
