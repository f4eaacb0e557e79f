"""Where a trained model lives: :class:`RunKey`, the one owner of run-folder names.

A learning agent's run (checkpoint, TensorBoard events, history) is filed under
``<runs_dir>/<agent>/<M-L-K-tau_p>/<run name>``; ``train.py``, ``evaluate.py``, the sweeps and
the agents themselves all ask a :class:`RunKey` for it, so the rule is written once. Folder
names are a contract with the models users have trained: they never change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cfenv.objectives import Objective
from cfenv.units import Size, size_slug

OLD_NAME_OBJECTIVE = Objective.SUM
"""runs of this objective (the default, :attr:`Objective.is_default`) keep the name they had before
objectives existed (no objective in it)"""


@dataclass(frozen=True)
class RunKey:
    """What identifies one trained model: ``(agent, size, loss, objective, seed, system)``.

    ``agent`` is the name the folder is filed under (a hybrid such as ``gnn-polish`` runs its
    model's, ``gnn``); ``loss`` the training loss that names the run (``rl`` for the
    Stable-Baselines3 agents, whose runs have no loss); ``size`` the (M, L, K, tau_p) the model
    was trained at; ``system`` the :attr:`cfenv.config.SystemConfig.system_tag` of its system model
    (``None``: the paper's default system)."""

    agent: str
    size: Size
    loss: str
    objective: str = "sum"
    seed: int = 0
    system: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", tuple(int(v) for v in self.size))
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "objective", Objective.parse(self.objective))

    @property
    def name(self) -> str:
        """The run folder's own name: ``<loss>-seed<seed>`` for the sum rate (the old-name rule:
        runs made before objectives existed read as sum-rate runs, and sum-rate runs still get
        that name), ``<loss>-<objective>-seed<seed>`` otherwise, so a model trained for one
        objective is never found under another; a model trained on another system than the paper's
        default carries its tag (``<loss>[-<objective>]-<system tag>-seed<seed>``)."""
        parts = [self.loss] + ([] if self.objective.is_default else [str(self.objective)])
        parts += [self.system] if self.system else []
        return "-".join(parts) + f"-seed{self.seed}"

    def folder(self, runs_dir: str | Path) -> Path:
        """``<runs_dir>/<agent>/<M-L-K-tau_p>/<name>``."""
        return Path(runs_dir) / self.agent / size_slug(self.size) / self.name


def run_folder(runs_dir: str | Path, agent: str, size: tuple[int, ...], run: str) -> Path:
    """``<runs_dir>/<agent>/<M-L-K-tau_p>/<run>`` (kept for callers of 0.7; use :meth:`RunKey.folder`)."""
    return Path(runs_dir) / agent / size_slug(size) / run


def run_name(kind: str, seed: int, objective: str = "sum") -> str:
    """A run folder's name (kept for callers of 0.7; use :attr:`RunKey.name`)."""
    return RunKey(kind, (), kind, objective, seed).name
