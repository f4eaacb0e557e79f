"""Train a learning pilot-assignment agent with its own ``fit``, logged to TensorBoard.

Every learnable agent of the zoo trains here with the budget it trains with everywhere
(its ``default_budget``, the one ``evaluate.py`` uses for a missing model); flags override
single fields of it.

    python train.py --agent hqcnn --sizes 10,2,6,3                    # the agent's default budget
    python train.py --agent mlp --loss supervised --labels master-ap --sizes small --epochs 40
    python train.py --agent gnn --sizes 10,2,6,3                      # imitation, then REINFORCE
    python train.py --agent mlp --sizes 10,2,6,3 --objective min      # max-min fairness (smooth minimum)
    python train.py --agent hqcnn --sizes 10,2,6,3 --resume           # continue an interrupted run
    python train.py --agent ppo --sizes 10,2,6,3 --total-timesteps 60000   # Stable-Baselines3
    python train.py --sweep sweeps/hqcnn-small.yaml        # Ray Tune sweep (pip install 'cfpilot[distributed]')
    tensorboard --logdir runs
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator


def _interrupted_while_starting(signum: int, frame: object) -> None:
    """Ctrl-C before any training has begun (packages load, settings are checked): one line, exit 130."""
    print("train.py: interrupted while starting: nothing was trained or written", file=sys.stderr)
    raise SystemExit(130)


if __name__ == "__main__":  # installed before the imports below; train_all restores Python's handler
    signal.signal(signal.SIGINT, _interrupted_while_starting)

from agents.lab.cli import EXECUTION_FLAGS, SYSTEM_FLAGS, add_fields, add_system_flags, error, given, plain
from agents.registry import REGISTRY, resolve
from agents.runtime import set_thread_policy
from cfenv import __version__
from cfenv.units import size_label

LEARNABLE = tuple(name for name, entry in REGISTRY.items() if entry.learnable)
BUDGET_FLAGS = ("loss", "labels", "train_snapshots", "val_snapshots", "epochs", "imitation_epochs", "samples",
                "batch_size", "lr", "data_seed")
"""TrainSettings fields a neural agent's budget fills unless given"""
RUN_FLAGS = ("seed", "device", "resume")


def model_flags() -> tuple[str, ...]:
    """The model options a command line sets (:class:`agents.specs.options.ModelOptions` fields)."""
    from agents.specs.options import ModelOptions

    return tuple(ModelOptions.__dataclass_fields__)


def rl_flags() -> tuple[str, ...]:
    """The Stable-Baselines3 budget flags (:class:`agents.specs.options.RLBudget` fields)."""
    from agents.specs.options import RLBudget

    return tuple(RLBudget.__dataclass_fields__)


def build_parser() -> argparse.ArgumentParser:
    # torch-free records only: --help loads no model (torch loads later, after main's set_thread_policy)
    from agents.learning.settings import TrainSettings
    from agents.specs.execution import Execution
    from agents.specs.options import ModelOptions, RLBudget

    p = argparse.ArgumentParser(description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"cfpilot {__version__}")
    p.add_argument("--agent", default="hqcnn", help=f"one of {', '.join(LEARNABLE)} (default: hqcnn)")
    p.add_argument("--sizes", nargs="+", default=["10,2,6,3"],
                   help="size groups or M,L,K,tau_p quadruples (default: 10,2,6,3)")
    add_fields(p, TrainSettings, RUN_FLAGS)
    add_fields(p, TrainSettings, ("objective",))
    add_system_flags(p)
    add_fields(p, TrainSettings, ("runs_dir",), aliases={"runs_dir": ("--out",)})
    add_fields(p, TrainSettings, ("cache_dir",))
    add_fields(p, TrainSettings, ("progress",))
    budget = p.add_argument_group("training budget of neural agents (default: the agent's own, see "
                                  "agents.make(NAME).default_budget)")
    budget.add_argument("--budget", default=None,
                        help="a named budget of the agent instead of its default (gnn: long, accurate); "
                             "the flags below override its fields")
    add_fields(budget, TrainSettings, BUDGET_FLAGS, unset=True, unset_help="the agent's budget")
    model = p.add_argument_group("model options")
    add_fields(model, ModelOptions, model_flags(), unset=True, aliases={"n_qubits": ("--qubits",)})
    rl = p.add_argument_group("Stable-Baselines3 agents (ppo, a2c, dqn, ppo-hqcnn)")
    add_fields(rl, RLBudget, rl_flags(), unset=True, unset_help="the agent's budget")
    noise = p.add_argument_group("quantum execution while training (hardware-like; default exact, backprop)")
    add_fields(noise, Execution, EXECUTION_FLAGS, unset=True)
    sweep = p.add_argument_group("hyperparameter / seed sweeps on Ray Tune (pip install 'cfpilot[distributed]')")
    sweep.add_argument("--sweep", default=None,
                       help="a sweep file (YAML or JSON, see agents/lab/sweep.py and sweeps/) or an inline JSON "
                            "object; the best model per size is exported to OUT/sweeps/<name>/best")
    sweep.add_argument("--ray-address", default=None, help="a running Ray cluster ('auto' or host:port)")
    sweep.add_argument("--workers", type=int, default=None, help="CPUs of a local Ray instance (default: all)")
    return p


def fit_arguments(args: argparse.Namespace, agent: Any) -> dict[str, Any]:
    """What ``agent.fit`` takes from the command line: the flags that are fields of its
    ``settings_class``; ``ValueError`` naming the others it was given."""
    fields = {f.name for f in dataclasses.fields(agent.settings_class)} if agent.settings_class else set()
    if args.resume and not agent.resumable:
        raise ValueError(f"{agent.name} trains in one go: --resume is not supported")
    offered = {**given(args, BUDGET_FLAGS), **given(args, rl_flags())}
    execution = given(args, EXECUTION_FLAGS)
    foreign = [k for k in offered if k not in fields] + (list(execution) if "execution" not in fields else [])
    if foreign:
        raise ValueError(f"{agent.name} does not take {', '.join('--' + k.replace('_', '-') for k in foreign)}")
    fit = {"runs_dir": args.runs_dir, "progress": args.progress, **offered}
    if "cache_dir" in fields:
        fit["cache_dir"] = args.cache_dir
    if agent.resumable:
        fit["resume"] = args.resume
    if "execution" in fields:
        if execution:
            from agents.models.quantum import Execution

            Execution(**execution)
        fit["execution"] = execution
    return fit


def run_folder(agent: Any, config: Any, fit: dict[str, Any]) -> Path:
    """The folder ``agent.fit(config, **fit)`` trains into."""
    if hasattr(agent, "training_settings"):  # a neural agent: its settings name the folder
        return agent.training_settings(config, **fit).run_dir
    return agent.run_dir(fit["runs_dir"], config, agent.seed, getattr(agent, "loss", "unsupervised"))


@contextmanager
def holding(folders: list[Path]) -> Iterator[None]:
    """Lock each run folder for the training (the lock of :mod:`agents.lab.outdir`: a crashed run's lock
    is taken over); ``ValueError`` (one line) if another live run holds one. On exit the locks are
    released and the folders this made that are still empty are removed."""
    from agents.lab.outdir import take_lock

    made: list[Path] = []
    with ExitStack() as locks:
        try:
            for folder in folders:
                made += [p for p in (folder, *folder.parents) if not p.exists()]
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                    lock = take_lock(folder, tool="train.py")
                except OSError as err:
                    raise ValueError(f"--out {folder} cannot be written: {err.strerror or err}") from None
                locks.callback(lock.unlink, missing_ok=True)
            yield
        finally:
            locks.close()
            for path in sorted(set(made), key=lambda p: len(p.parts), reverse=True):
                try:
                    path.rmdir()  # only an empty folder goes
                except OSError:
                    pass


def summary_line(agent: Any, summary: dict[str, Any]) -> str:
    """One JSON line per trained size, the same shape for every agent."""
    final = {k: round(v, 4) for k, v in summary.get("final", {}).items() if k.startswith("val/")}
    return json.dumps({"agent": agent.name, "run_dir": str(summary["run_dir"]),
                       "train_time_s": round(summary["train_time_s"], 2), "parameters": agent.parameter_count(),
                       **final})


def main(argv: list[str] | None = None) -> int:
    set_thread_policy()  # before torch and numba load (this module imports neither)
    args = build_parser().parse_args(argv)
    if args.sweep is not None:
        return train_sweep(args)
    from agents.lab.outdir import check_writable
    from agents.lab.settings import parse_sizes
    from agents.learning.settings import check_device
    from agents.models import ModelOptions
    from cfenv.config import SystemConfig

    try:
        spec = resolve(args.agent)
        if not spec.learnable:
            raise ValueError(f"{args.agent} does not learn; learning agents: {', '.join(LEARNABLE)}")
        if args.seed < 0:
            raise ValueError(f"seed must be >= 0, got {args.seed}")
        check_device(args.device)
        check_writable(args.runs_dir)
        spec.cls.named_budget(args.budget)  # ValueError naming the agent's budgets
        runs = []
        for size in parse_sizes(args.sizes):
            config = SystemConfig.from_size(size, objective=args.objective, **given(args, SYSTEM_FLAGS))
            agent = spec.cls(config=config, seed=args.seed, device=args.device,
                             **ModelOptions(**given(args, model_flags())).given())
            fit = fit_arguments(args, agent)
            if args.budget is not None:
                fit["budget"] = args.budget
            agent.check_fit(config, **fit)  # every size's settings and model (a budget's too) checked first
            runs.append((agent, config, fit))
    except ValueError as err:
        return error("train.py", str(err))
    return train_all(runs)


def train_all(runs: list[tuple[Any, Any, dict[str, Any]]]) -> int:
    """Fit each ``(agent, config, fit arguments)`` with its run folder locked; the exit status."""
    agent = None
    if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # from here Ctrl-C keeps the last checkpoint
    try:
        with holding([run_folder(agent, config, fit) for agent, config, fit in runs]):
            for agent, config, fit in runs:
                summary = agent.fit(config, **fit)
                print(summary_line(agent, summary), flush=True)
    except KeyboardInterrupt:
        return 130  # the trainer or the labelling said what is saved and how to continue
    except ValueError as err:  # a run folder that holds other settings, refused before its training
        return error("train.py", str(err))
    except OSError as err:  # a full disk, a folder that went away: every file is written whole or not at all
        again = ("continue with --resume" if getattr(agent, "resumable", False)
                 else "run the same command again")
        where = f" ({err.filename})" if err.filename else ""
        return error("train.py", f"could not write: {err.strerror or err}{where}; what was saved is whole and the "
                                 f"run folder's lock is released: free space and {again}")
    return 0


def train_sweep(args: argparse.Namespace) -> int:
    """``--sweep``: run it on Ray Tune and print where each size's best model went."""
    from agents.lab.sweep import SweepIncomplete, load_sweep, run_sweep

    try:
        spec = load_sweep(args.sweep)
        summaries = run_sweep(spec, runs_dir=args.runs_dir, ray_address=args.ray_address, workers=args.workers,
                              resume=args.resume)
    except ValueError as err:
        return error("train.py", str(err))
    except SweepIncomplete as err:
        print(f"train.py: {err}")
        return 1
    for summary in summaries:
        best = summary["best"]
        print(json.dumps({"size": summary["size"], "best_config": best["config"], spec.metric: best["metric"],
                          "trials": len(summary["trials"]), "exported_to": summary["export"]}, default=str))
        print(f"use it: python evaluate.py --agents {spec.agent} --sizes {size_label(summary['size'])} "
              f"--checkpoints {summary['checkpoints']} --seed {spec.export_seed} --loss {spec.loss} --no-train")
    return 0


if __name__ == "__main__":
    status = main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # all is saved: a Ctrl-C while Python shuts down changes nothing
    raise SystemExit(status)
