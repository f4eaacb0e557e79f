"""The evaluation grid as independent tasks: chunks of test snapshots per (size, agent), and the
training tasks of learning agents that have no model yet."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agents.lab.settings import EvaluationSettings
from agents.registry import AgentSpec, resolve
from agents.runs import RunKey
from cfenv.config import SystemConfig
from cfenv.units import Size, size_label


@dataclass(frozen=True)
class Task:
    """One independent unit of the grid: train a missing learning agent, or run one agent on
    test snapshots ``start .. stop-1`` of one size."""

    kind: str
    """``"chunk"`` or ``"train"``"""
    size: Size
    agent: str
    start: int = 0
    stop: int = 0

    @property
    def key(self) -> str:
        """``agent@M,L,K,tau_p#start-stop`` (chunks) or ``train:agent@M,L,K,tau_p``: what
        progress and failure messages name."""
        where = f"{self.agent}@{size_label(self.size)}"
        return f"train:{where}" if self.kind == "train" else f"{where}#{self.start}-{self.stop}"


def plan_chunks(settings: EvaluationSettings) -> list[Task]:
    """The chunk tasks in grid order: sizes, then agents, then snapshot chunks."""
    step = settings.chunk_size
    return [Task("chunk", size, name, lo, min(lo + step, settings.snapshots))
            for size in settings.sizes for name in settings.agents for lo in range(0, settings.snapshots, step)]


def training_config(size: Size, settings: EvaluationSettings) -> SystemConfig:
    """The system of ``size`` learning agents are trained for: the model's constants (also with a
    snapshots file: training draws from the model) under the run's objective."""
    return settings.config(size)


def checkpoint_key(spec: AgentSpec, size: Size, settings: EvaluationSettings) -> RunKey:
    """The :class:`agents.runs.RunKey` of the model a learning agent uses at ``size``: trained at
    ``--trained-at`` for size-generalisable agents, under the run's objective (a model trained for
    another objective is never used), seed and loss."""
    return spec.run_key(spec.train_size(size, settings.trained_at), settings.seed, settings.loss, settings.objective,
                        settings.system)


def checkpoint(spec: AgentSpec, size: Size, settings: EvaluationSettings) -> tuple[SystemConfig, Path]:
    """The system a learning agent's model for ``size`` is trained for, and its run folder."""
    key = checkpoint_key(spec, size, settings)
    return training_config(key.size, settings), key.folder(settings.checkpoints)


def unsupported(spec: AgentSpec, config: SystemConfig, settings: EvaluationSettings) -> str | None:
    """Why a learning agent cannot run at ``config`` (e.g. a model too large), before any training."""
    return spec.cls(config=config, seed=settings.seed).unsupported_reason(config)


def plan_training(settings: EvaluationSettings) -> dict[tuple[str, Size], Task]:
    """Training tasks for the learning agents that have no checkpoint yet (when training is
    on), keyed by the (agent, size) cells that wait for them; one task per run folder."""
    if not settings.train:
        return {}
    waiting: dict[tuple[str, Size], Task] = {}
    by_run_dir: dict[Path, Task] = {}
    for size in settings.sizes:
        for name in settings.agents:
            spec = resolve(name)
            if not spec.learnable:
                continue
            train_config, run_dir = checkpoint(spec, size, settings)
            if spec.has_checkpoint(run_dir) or unsupported(spec, train_config, settings) is not None:
                continue  # nothing to train: a model that cannot be built is reported by its cells
            task = by_run_dir.setdefault(run_dir, Task("train", train_config.size, name))
            waiting[(name, size)] = task
    return waiting
