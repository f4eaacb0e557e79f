"""Train a learning pilot-assignment agent, logged to TensorBoard.

    python train.py --agent hqcnn --loss unsupervised --sizes 10,2,6,3
    python train.py --agent mlp --loss supervised --labels exhaustive --sizes small --epochs 50
    python train.py --agent gnn --loss reinforce --sizes 10,2,6,3
    python train.py --agent hqcnn --sizes 10,2,6,3 --resume        # continue an interrupted run
    python train.py --agent ppo --sizes 10,2,6,3 --total-timesteps 60000   # Stable-Baselines3
    python train.py --sweep sweeps/hqcnn-small.yaml        # Ray Tune sweep (pip install 'cfpilot[distributed]')
    tensorboard --logdir runs
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agents.lab.evaluation import parse_sizes
from agents.models import MODEL_NAMES
from agents.registry import make
from cfenv.config import SystemConfig
from cfenv.units import size_label

RL_AGENTS = ("ppo", "a2c", "dqn", "ppo-hqcnn")
"""Stable-Baselines3 agents: trained by their own ``fit`` (SB3's ``learn``)"""
from agents.learning import LABEL_SOURCES, LOSSES, TrainSettings, train

DEFAULTS = TrainSettings()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agent", default=DEFAULTS.agent, help=f"one of {', '.join(MODEL_NAMES + RL_AGENTS)}")
    p.add_argument("--loss", default=DEFAULTS.loss, help=f"one of {', '.join(LOSSES)}")
    p.add_argument("--labels", default=DEFAULTS.labels, help=f"supervised label source: {', '.join(LABEL_SOURCES)}")
    p.add_argument("--sizes", nargs="+", default=["10,2,6,3"], help="size groups or M,L,K,tau_p quadruples")
    p.add_argument("--train-snapshots", type=int, default=DEFAULTS.train_snapshots)
    p.add_argument("--val-snapshots", type=int, default=DEFAULTS.val_snapshots)
    p.add_argument("--epochs", type=int, default=DEFAULTS.epochs)
    p.add_argument("--imitation-epochs", type=int, default=DEFAULTS.imitation_epochs,
                   help="first epochs imitate the --labels teacher before --loss takes over (warm start)")
    p.add_argument("--samples", type=int, default=DEFAULTS.samples,
                   help="REINFORCE: sampled assignments per snapshot")
    p.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    p.add_argument("--lr", type=float, default=DEFAULTS.lr)
    p.add_argument("--seed", type=int, default=DEFAULTS.seed)
    p.add_argument("--data-seed", type=int, default=None,
                   help="seed of the training/validation snapshots (default: --seed)")
    p.add_argument("--device", default=DEFAULTS.device, help="torch device: cpu or cuda")
    p.add_argument("--qubits", type=int, default=None, help="HQCNN qubits: 4, 8 or 16")
    p.add_argument("--share", default=None, help="HQCNN parameter sharing: level, all or block")
    p.add_argument("--readout", default=None, help="HQCNN readout: all or final")
    p.add_argument("--backend", default=None, help="HQCNN simulator: torch or pennylane")
    p.add_argument("--hidden", default=None, help="MLP hidden widths, comma-separated")
    p.add_argument("--total-timesteps", type=int, default=None,
                   help="RL agents: environment steps (default: the agent's budget)")
    p.add_argument("--reward-scaling", default=None, help="RL agents: mbps or master-ap")
    p.add_argument("--noise-p", type=float, default=None, help="HQCNN: depolarising probability after every gate")
    p.add_argument("--shots", type=int, default=None, help="HQCNN: measurement shots")
    p.add_argument("--mitigation", default=None, help="HQCNN: none or zne")
    p.add_argument("--grad", default=None, help="HQCNN: backprop or parameter-shift")
    p.add_argument("--out", type=Path, default=DEFAULTS.runs_dir, help="runs folder (TensorBoard logdir)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the run's checkpoint (with --sweep: continue the sweep's unfinished trials)")
    p.add_argument("--no-progress", action="store_true")
    sweep = p.add_argument_group("hyperparameter / seed sweeps on Ray Tune (pip install 'cfpilot[distributed]')")
    sweep.add_argument("--sweep", default=None,
                       help="a sweep file (YAML or JSON, see agents/lab/sweep.py and sweeps/) or an inline JSON "
                            "object; the best model per size is exported to OUT/sweeps/<name>/best")
    sweep.add_argument("--ray-address", default=None, help="a running Ray cluster ('auto' or host:port)")
    sweep.add_argument("--workers", type=int, default=None, help="CPUs of a local Ray instance (default: all)")
    return p


def model_options(args: argparse.Namespace) -> dict:
    options = {}
    for flag, key in (("qubits", "n_qubits"), ("share", "share"), ("readout", "readout"), ("backend", "backend")):
        if getattr(args, flag) is not None:
            options[key] = getattr(args, flag)
    if args.hidden:
        options["hidden"] = [int(w) for w in args.hidden.split(",")]
    return options


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.sweep is not None:
        return train_sweep(args)
    if args.agent in RL_AGENTS:
        return train_rl(args)
    try:
        if args.agent not in MODEL_NAMES:
            raise ValueError(f"unknown agent {args.agent!r}; valid: {', '.join(MODEL_NAMES + RL_AGENTS)}")
        runs = [TrainSettings(agent=args.agent, size=size, loss=args.loss, labels=args.labels,
                              train_snapshots=args.train_snapshots, val_snapshots=args.val_snapshots,
                              epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                              data_seed=args.data_seed, imitation_epochs=args.imitation_epochs,
                              samples=args.samples,
                              device=args.device, model=model_options(args), runs_dir=args.out,
                              execution={k: getattr(args, k) for k in ("noise_p", "shots", "mitigation", "grad")
                                         if getattr(args, k) is not None},
                              resume=args.resume, progress=not args.no_progress)
                for size in parse_sizes(args.sizes)]
    except ValueError as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2
    for settings in runs:
        summary = train(settings)
        final = {k: round(v, 4) for k, v in summary["final"].items() if k.startswith("val/")}
        print(json.dumps({"run_dir": summary["run_dir"], "train_time_s": round(summary["train_time_s"], 2),
                          "parameters": summary["parameters"], **final}))
    return 0


def train_sweep(args: argparse.Namespace) -> int:
    """``--sweep``: run it on Ray Tune and print where each size's best model went."""
    from agents.lab.sweep import SweepIncomplete, load_sweep, run_sweep

    try:
        spec = load_sweep(args.sweep)
        summaries = run_sweep(spec, runs_dir=args.out, ray_address=args.ray_address, workers=args.workers,
                              resume=args.resume)
    except ValueError as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2
    except SweepIncomplete as err:
        print(f"train.py: {err}", file=sys.stderr)
        return 1
    for summary in summaries:
        best = summary["best"]
        print(json.dumps({"size": summary["size"], "best_config": best["config"], spec.metric: best["metric"],
                          "trials": len(summary["trials"]), "exported_to": summary["export"]}, default=str))
        print(f"use it: python evaluate.py --agents {spec.agent} --sizes {size_label(summary['size'])} "
              f"--checkpoints {summary['checkpoints']} --seed {spec.export_seed} --loss {spec.loss} --no-train")
    return 0


def train_rl(args: argparse.Namespace) -> int:
    """Train an SB3 agent per size with the agent's ``fit`` (same runs/ tree and TensorBoard)."""
    try:
        sizes = parse_sizes(args.sizes)
        if args.total_timesteps is not None and args.total_timesteps < 1:
            raise ValueError(f"total-timesteps must be >= 1, got {args.total_timesteps}")
    except ValueError as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2
    for size in sizes:
        config = SystemConfig.from_size(size)
        agent = make(args.agent, config=config, seed=args.seed, device=args.device, **model_options(args))
        summary = agent.fit(config, total_timesteps=args.total_timesteps, runs_dir=args.out,
                            progress=not args.no_progress, reward_scaling=args.reward_scaling)
        print(json.dumps({k: summary[k] for k in ("run_dir", "train_time_s", "val_sum_rate_mbps",
                                                  "val_ratio_to_master_ap", "parameters") if k in summary},
                         default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
