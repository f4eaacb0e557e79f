"""What a training run depends on: :class:`TrainSettings`, and its :class:`agents.runs.RunKey`."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.runs import RunKey
from cfenv.config import SystemConfig
from cfenv.objectives import Objective

DEVICES_HELP = "cpu, cuda, cuda:N or auto (CUDA when available, else the CPU)"


def check_device(device: str) -> str:
    """The concrete torch device ``device`` names (``"auto"``: ``"cuda"`` when CUDA is available,
    else ``"cpu"``); ``ValueError`` unless it is a CPU or CUDA device available here."""
    import torch  # only to parse the name: settings stay importable without loading torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be {DEVICES_HELP}, got {device!r}") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available on this machine")
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be {DEVICES_HELP}, got {device!r}")
    return str(device)


LOSSES = ("supervised", "unsupervised", "reinforce")
LABEL_SOURCES = ("master-ap", "exhaustive", "local-search")
LR_SCHEDULES = ("constant", "cosine")
BASELINES = ("greedy", "mean")


@dataclass
class TrainSettings:
    """Everything a training run depends on (``train.py`` flags)."""

    agent: str = "hqcnn"
    """model name: mlp, light-cnn, heavy-cnn, hqcnn, hqcnn-hur"""
    size: tuple[int, int, int, int] = (10, 2, 6, 3)
    """(M, L, K, tau_p)"""
    loss: str = "unsupervised"
    """supervised (cross-entropy against labels), unsupervised (negative relaxed sum rate) or
    reinforce (autoregressive policies: exact sum rate, greedy-rollout baseline)"""
    labels: str = "master-ap"
    """label source for supervised training"""
    objective: str = "sum"
    """what the model learns to maximise: sum (sum rate), min (minimum user rate; unsupervised
    through a smooth minimum) or proportional (sum of ln user rates); the run folder and the
    checkpoint record it"""
    train_snapshots: int = 2048
    """training snapshots"""
    val_snapshots: int = 256
    """validation snapshots"""
    epochs: int = 20
    """passes over the training set"""
    batch_size: int = 128
    """snapshots per optimiser step"""
    lr: float = 5e-3
    """Adam learning rate"""
    lr_schedule: str = "constant"
    """learning rate over the epochs: constant, or cosine (epoch e of E trains at
    lr (1 + cos(pi e / E)) / 2)"""
    samples: int = 8
    """REINFORCE: assignments sampled per snapshot (each against the greedy-rollout baseline)"""
    baseline: str = "greedy"
    """REINFORCE baseline: greedy (the greedy decode of the same snapshot, Kool et al.) or mean
    (the mean reward of the snapshot's ``samples`` sampled assignments: a shared baseline, as in
    POMO; no greedy decode)"""
    imitation_epochs: int = 0
    """the first epochs (of ``epochs``) imitate the ``labels`` teacher (supervised loss) before
    the main ``loss`` takes over: a warm start for REINFORCE"""
    seed: int = 0
    """seed of data, initialisation and shuffling"""
    data_seed: int | None = None
    """seed of the training and validation snapshots when it should differ from ``seed``
    (sweeps fix it, so trials of different seeds are compared on the same validation set)"""
    device: str = "cpu"
    """torch device: cpu, cuda, cuda:N or auto (CUDA when available)"""
    model: dict[str, Any] = field(default_factory=dict)
    """model options (hidden, channels, n_qubits, share, readout, backend)"""
    execution: dict[str, Any] = field(default_factory=dict)
    """quantum execution while training (:class:`agents.models.quantum.Execution` fields, e.g.
    noise_p, shots, grad="parameter-shift" as hardware would need); empty: exact, backprop"""
    system: dict[str, Any] = field(default_factory=dict)
    """the system model's ``SystemConfig`` fields besides the size and objective (empty: the paper's
    default system; :attr:`cfenv.config.SystemConfig.system_fields`)"""
    runs_dir: Path = Path("runs")
    """root of run folders and TensorBoard logs"""
    cache_dir: Path = field(default_factory=lambda: Path(os.environ.get("CFPILOT_CACHE", ".cache/datasets")))
    """dataset cache: training/validation snapshots and teacher labels, reused across runs
    ($CFPILOT_CACHE, else .cache/datasets under the working directory)"""
    resume: bool = False
    """continue from the run folder's checkpoint"""
    progress: bool = True
    """tqdm progress bars; off: no progress bars (TensorBoard still logs)"""

    def __post_init__(self) -> None:
        self.size = tuple(int(v) for v in self.size)  # type: ignore[assignment]
        self.system = dict(self.system)
        try:
            SystemConfig.from_size(self.size, **self.system)
        except TypeError as err:
            raise ValueError(f"system: {err}") from None
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        self.objective = Objective.parse(self.objective)
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {self.baseline!r}")
        if self.baseline == "mean" and self.samples < 2:
            raise ValueError("a mean baseline needs samples >= 2")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.labels not in LABEL_SOURCES:
            raise ValueError(f"labels must be one of {LABEL_SOURCES}, got {self.labels!r}")
        for name in ("train_snapshots", "val_snapshots", "epochs", "batch_size", "samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.imitation_epochs <= self.epochs:
            raise ValueError(f"imitation_epochs must be in [0, epochs={self.epochs}], got {self.imitation_epochs}")
        if self.seed < 0 or (self.data_seed is not None and self.data_seed < 0):
            raise ValueError(f"seed must be >= 0, got {self.seed if self.seed < 0 else self.data_seed}")
        check_device(self.device)  # validated; "auto" is resolved by each agent
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        self.runs_dir, self.cache_dir = Path(self.runs_dir), Path(self.cache_dir)
        from agents.learning.losses import check_loss  # torch and the models load here, as check_device's torch

        check_loss(self.agent, self.loss)  # here, not at the first batch: before any label is built
        from agents.learning.losses import model_refusal

        reason = model_refusal(self.config, self.loss)
        if reason:
            raise ValueError(reason)

    @property
    def config(self) -> SystemConfig:
        """The system of :attr:`size` under :attr:`objective` (and :attr:`system`'s model and fields)."""
        return SystemConfig.from_size(self.size, objective=self.objective, **self.system)

    @property
    def run_key(self) -> RunKey:
        """What names this run's folder: (agent, size, loss, objective, seed, system tag)."""
        return RunKey(self.agent, self.size, self.loss, self.objective, self.seed, self.config.system_tag)

    @property
    def run_dir(self) -> Path:
        """``runs_dir/<agent>/<M-L-K-tau_p>/<run name>`` (:meth:`agents.runs.RunKey.folder`)."""
        return self.run_key.folder(self.runs_dir)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(runs_dir=str(self.runs_dir), cache_dir=str(self.cache_dir), size=list(self.size),
                 objective=Objective.parse(self.objective).value)  # a plain str: checkpoints load weights-only
        if not self.system:
            del d["system"]  # runs of the paper's default system keep the settings they had (and resume)
        return d


def differences(saved: dict[str, Any], now: dict[str, Any], ignore: tuple[str, ...] = ()) -> str:
    """``"epochs 10 -> 40, lr 0.005 -> 0.01"``: the keys of ``now`` (but ``ignore``) whose value ``saved``
    (a run's record) does not have; ``""`` if none."""
    keys = [k for k in now if k not in ignore and saved.get(k) != now[k]]
    return ", ".join(f"{k} {saved.get(k)!r} -> {now[k]!r}" for k in keys)


def other_settings(run_dir: Path, changed: str) -> ValueError:
    """The refusal of a run folder whose finished model was trained with other settings (``changed``:
    :func:`differences`): a model is never silently replaced."""
    return ValueError(f"{run_dir} holds a model trained with other settings ({changed}): train into another "
                      "--out, or remove that folder")


def run_dir_for(runs_dir: Path, agent: str, size: tuple[int, ...], loss: str, seed: int,
                objective: str = "sum") -> Path:
    """The run folder of ``(agent, size, loss, objective, seed)`` (kept for callers of 0.7; use
    :meth:`agents.runs.RunKey.folder`)."""
    return RunKey(agent, size, loss, objective, seed).folder(runs_dir)
