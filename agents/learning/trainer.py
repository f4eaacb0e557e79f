"""One trainer for every neural pilot-assignment model (supervised and unsupervised).

* Supervised (SPEC eq. 7): cross-entropy against label assignments from a teacher
  agent (``master-ap`` as in the paper, or ``exhaustive`` / ``local-search``).
  Labels are only defined up to a relabelling of pilots, so they are
  canonicalised first (restricted-growth order: the first user is on pilot 0,
  each user that opens a new pilot takes the next index; see
  :func:`agents.base.canonical_pilots`).
* Unsupervised (SPEC eq. 8): the negative relaxed sum rate [Mbit/s] of the
  softmax outputs, through the differentiable rate engine.
* REINFORCE (autoregressive policies, :mod:`agents.models.gnn`): the exact sum rate of a
  sampled assignment, with the greedy decode of the same snapshot as baseline
  (advantage relative to the baseline's rate). For these policies
  ``supervised`` is teacher-forced imitation of the labels.

Training and validation snapshots come from their own seed streams (see
:mod:`agents.base`), disjoint from the test snapshots of ``evaluate.py``;
generated datasets (with labels) are cached as ``.npz`` keyed by size, count,
seed, stream and label source. Each run lives in
``runs/<agent>/<M>-<L>-<K>-<tau_p>/<loss>-seed<seed>/`` with TensorBoard events,
``history.json``, an atomically written ``checkpoint.pt`` (weights, optimiser,
epoch, history) after every epoch, and the final model (``config.json`` +
``weights.pt``). ``resume=True`` continues from the checkpoint to the same final
weights as an uninterrupted run (per-epoch shuffles are seeded by (seed, epoch)).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from agents.base import TRAIN_STREAM, VALIDATION_STREAM, canonical_pilots, stream_rng
from agents.learning.diagnostics import best_constant_assignment, distinct_assignments
from agents.heuristics import master_ap_pilots
from agents.models import AssignmentModel, PilotModel, build_model, model_options
from cfenv.channel import Snapshot, draw_snapshots
from cfenv.config import SystemConfig
from cfenv.rates import relaxed_sum_rate, sum_rate
from cfenv.units import MBPS, fading_db, size_slug

LOSSES = ("supervised", "unsupervised", "reinforce")
LABEL_SOURCES = ("master-ap", "exhaustive", "local-search")
CHECKPOINT = "checkpoint.pt"
WEIGHTS = "weights.pt"
CONFIG_JSON = "config.json"
HISTORY_JSON = "history.json"


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
    samples: int = 8
    """REINFORCE: assignments sampled per snapshot (each against the greedy-rollout baseline)"""
    imitation_epochs: int = 0
    """the first epochs (of ``epochs``) imitate the ``labels`` teacher (supervised loss) before
    the main ``loss`` takes over: a warm start for REINFORCE"""
    seed: int = 0
    """seed of data, initialisation and shuffling"""
    data_seed: int | None = None
    """seed of the training and validation snapshots when it should differ from ``seed``
    (sweeps fix it, so trials of different seeds are compared on the same validation set)"""
    device: str = "cpu"
    """torch device (cpu, cuda)"""
    model: dict[str, Any] = field(default_factory=dict)
    """model options (hidden, channels, n_qubits, share, readout, backend)"""
    execution: dict[str, Any] = field(default_factory=dict)
    """quantum execution while training (:class:`agents.models.quantum.Execution` fields, e.g.
    noise_p, shots, grad="parameter-shift" as hardware would need); empty: exact, backprop"""
    runs_dir: Path = Path("runs")
    """root of run folders and TensorBoard logs"""
    cache_dir: Path = Path(".cache/datasets")
    """dataset cache"""
    resume: bool = False
    """continue from the run folder's checkpoint"""
    progress: bool = True
    """tqdm progress bars"""

    def __post_init__(self) -> None:
        self.size = tuple(int(v) for v in self.size)  # type: ignore[assignment]
        SystemConfig.from_size(self.size)
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.labels not in LABEL_SOURCES:
            raise ValueError(f"labels must be one of {LABEL_SOURCES}, got {self.labels!r}")
        for name in ("train_snapshots", "val_snapshots", "epochs", "batch_size", "samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.imitation_epochs <= self.epochs:
            raise ValueError(f"imitation_epochs must be in [0, epochs={self.epochs}], got {self.imitation_epochs}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        self.runs_dir, self.cache_dir = Path(self.runs_dir), Path(self.cache_dir)

    @property
    def config(self) -> SystemConfig:
        return SystemConfig.from_size(self.size)

    @property
    def run_dir(self) -> Path:
        return run_dir_for(self.runs_dir, self.agent, self.size, self.loss, self.seed)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(runs_dir=str(self.runs_dir), cache_dir=str(self.cache_dir), size=list(self.size))
        return d


def run_dir_for(runs_dir: Path, agent: str, size: tuple[int, ...], loss: str, seed: int) -> Path:
    """``runs/<agent>/<M>-<L>-<K>-<tau_p>/<loss>-seed<seed>`` (see :meth:`LearnableAgent.run_dir`)."""
    from agents.registry import agent_class

    return agent_class(agent).run_dir(runs_dir, SystemConfig.from_size(tuple(size)), seed, loss)


# ------------------------------------------------------------------ datasets
@dataclass(frozen=True)
class Dataset:
    """Snapshots and (optional) canonical label assignments."""

    snapshots: Snapshot
    labels: np.ndarray | None

    def __len__(self) -> int:
        return self.snapshots.beta.shape[0]


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Write through a temporary file in the same folder, then rename (never a torn file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def make_dataset(config: SystemConfig, n: int, seed: int, stream: int, labels: str | None = None,
                 cache_dir: Path | None = None, progress: bool = False) -> Dataset:
    """``n`` snapshots from ``stream_rng(seed, stream, *size)`` and, if asked, canonical labels
    from the agent ``labels``; cached under ``cache_dir`` when given."""
    key = f"{size_slug(config.size)}_stream{stream}_n{n}_seed{seed}_{labels or 'nolabels'}.npz"
    path = Path(cache_dir) / key if cache_dir is not None else None
    if path is not None and path.exists():
        with np.load(path) as data:
            snaps = Snapshot(data["beta"], data["ap_positions"], data["ue_positions"])
            return Dataset(snaps, data["labels"] if "labels" in data else None)
    snaps = draw_snapshots(config, stream_rng(seed, stream, *config.size), (n,))
    label_array = None
    if labels is not None:
        from agents.registry import make

        teacher = make(labels, config=config, seed=seed)
        if labels == "exhaustive" and progress:
            from tqdm.auto import tqdm

            label_array = np.concatenate([teacher.assign(snaps[i:i + 1]) for i in
                                          tqdm(range(n), desc="EPAS labels", leave=False)])
        else:
            label_array = teacher.assign(snaps)
        label_array = canonical_pilots(label_array)
    if path is not None:
        arrays = {"beta": snaps.beta, "ap_positions": snaps.ap_positions, "ue_positions": snaps.ue_positions}
        if label_array is not None:
            arrays["labels"] = label_array
        atomic_write_bytes(path, lambda f: np.savez(f, **arrays))
    return Dataset(snaps, label_array)


def beta_db_tensor(beta: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """``(..., M, K)`` linear beta -> float32 dB tensor (the models' input)."""
    return torch.as_tensor(fading_db(beta), dtype=torch.float32, device=device)


# ------------------------------------------------------------------- losses
def unsupervised_loss(logits: torch.Tensor, beta: torch.Tensor, config: SystemConfig) -> torch.Tensor:
    """Negative mean relaxed sum rate [Mbit/s] of softmax(logits) (SPEC eq. 8)."""
    q = torch.softmax(logits.to(torch.float64), dim=-1)
    return -relaxed_sum_rate(beta, q, config).mean() / MBPS


def supervised_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of per-user pilot logits against canonical labels (SPEC eq. 7)."""
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


def batch_loss(model: AssignmentModel, loss: str, x: torch.Tensor, beta: torch.Tensor, beta_np: np.ndarray,
               labels: torch.Tensor | None, config: SystemConfig, generator: torch.Generator,
               samples: int = 1) -> torch.Tensor:
    """The training loss of one batch, for the model kind and loss name."""
    if isinstance(model, PilotModel):
        if loss == "unsupervised":
            return unsupervised_loss(model(x), beta, config)
        if loss == "supervised":
            return supervised_loss(model(x), labels)
        raise ValueError(f"{type(model).__name__} trains with 'supervised' or 'unsupervised', not {loss!r}")
    if loss == "supervised":
        _, log_prob, _ = model.decode(x, config.tau_p, "teacher", actions=labels)
        return -log_prob.mean() / config.K
    if loss == "reinforce":
        with torch.no_grad():
            baseline, _, _ = model.decode(x, config.tau_p, "greedy")
        base = np.repeat(sum_rate(beta_np, baseline.cpu().numpy(), config), samples)
        sampled, log_prob, _ = model.decode(x.repeat_interleave(samples, 0), config.tau_p, "sample",
                                            generator=generator)
        reward = sum_rate(np.repeat(beta_np, samples, axis=0), sampled.cpu().numpy(), config)
        advantage = torch.as_tensor((reward - base) / base, dtype=log_prob.dtype, device=log_prob.device)
        return -(advantage * log_prob).mean()
    raise ValueError(f"{type(model).__name__} trains with 'reinforce' or 'supervised', not {loss!r}")


def predict(model: AssignmentModel, beta: np.ndarray, tau_p: int, device: str | torch.device = "cpu",
            batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic pilots ``(B, K)`` and per-snapshot mean decision entropy ``(B,)`` of a model."""
    model.eval()
    pilots, entropy = [], []
    with torch.no_grad():
        for lo in range(0, beta.shape[0], batch_size):
            p, h = model.greedy(beta_db_tensor(beta[lo:lo + batch_size], device), tau_p)
            pilots.append(p.cpu().numpy())
            entropy.append(h.double().cpu().numpy())
    return np.concatenate(pilots).astype(np.int64), np.concatenate(entropy)


def validation_metrics(model: AssignmentModel, val: Dataset, config: SystemConfig, master_rate: float,
                       constant_rate: float, device: str | torch.device) -> dict[str, float]:
    """Hard (argmax) sum rate, its ratio to master-AP and to the best constant assignment,
    distinct assignments (partitions) and mean output entropy [nats]."""
    pilots, entropy_per_snapshot = predict(model, val.snapshots.beta, config.tau_p, device)
    rate = float((sum_rate(val.snapshots.beta, pilots, config) / MBPS).mean())
    entropy = float(entropy_per_snapshot.mean())
    return {"val/sum_rate_mbps": rate, "val/ratio_to_master_ap": rate / master_rate,
            "val/ratio_to_best_constant": rate / constant_rate,
            "val/distinct_assignments": float(distinct_assignments(pilots)), "val/entropy": entropy}


# ---------------------------------------------------------------- checkpoints
def save_model(directory: Path, model: AssignmentModel, agent: str, config: SystemConfig,
               extra: dict[str, Any] | None = None) -> Path:
    """``config.json`` (agent, system, model options, normalisation) + ``weights.pt`` (state_dict)."""
    from cfenv import __version__

    directory = Path(directory)
    normalisation = ({"mean": float(model.input_mean), "std": float(model.input_std)}
                     if isinstance(model, PilotModel) else None)
    meta = {"agent": agent, "system": dataclasses.asdict(config), "model": model_options(model),
            "normalisation": normalisation,
            "parameters": model.parameter_counts(), "cfpilot_version": __version__, **(extra or {})}
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_write_bytes(directory / WEIGHTS, lambda f: torch.save(state, f))
    atomic_write_bytes(directory / CONFIG_JSON, lambda f: f.write(json.dumps(meta, indent=1).encode()))
    return directory


def load_model(directory: Path, device: str | torch.device = "cpu",
               expected: SystemConfig | None = None) -> tuple[AssignmentModel, dict[str, Any]]:
    """Rebuild a model saved by :func:`save_model`; ``ValueError`` if it was trained for another size."""
    directory = Path(directory)
    if not (directory / CONFIG_JSON).exists():
        raise FileNotFoundError(f"no {CONFIG_JSON} in {directory}")
    meta = json.loads((directory / CONFIG_JSON).read_text())
    config = SystemConfig(**meta["system"])
    from agents.registry import agent_class

    generalisable = getattr(agent_class(meta["agent"]), "size_generalisable", False)
    if expected is not None and expected.size != config.size and not generalisable:
        raise ValueError(f"checkpoint {directory} was trained for (M, L, K, tau_p) = {config.size}, "
                         f"not {expected.size}")
    model = build_model(meta["agent"], config, **meta["model"])
    state = torch.load(directory / WEIGHTS, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.to(device), meta


# --------------------------------------------------------------------- train
def train(settings: TrainSettings,
          on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Train one model; returns a summary (final metrics, timings, run folder).

    ``on_epoch(epoch, metrics)`` is called after each epoch's checkpoint is written (a Ray
    Tune trial reports through it, and may stop the run there)."""
    from torch.utils.tensorboard import SummaryWriter
    from tqdm.auto import tqdm

    config = settings.config
    device = torch.device(settings.device)
    run_dir = settings.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    labels = settings.labels if settings.loss == "supervised" or settings.imitation_epochs else None
    data_seed = settings.seed if settings.data_seed is None else settings.data_seed
    train_set = make_dataset(config, settings.train_snapshots, data_seed, TRAIN_STREAM, labels,
                             settings.cache_dir, settings.progress)
    val_set = make_dataset(config, settings.val_snapshots, data_seed, VALIDATION_STREAM, None,
                           settings.cache_dir)
    val_beta = val_set.snapshots.beta
    master_rate = float(sum_rate(val_beta, master_ap_pilots(val_beta, config.tau_p), config).mean()) / MBPS
    constant_rate = best_constant_assignment(val_beta, config)[1] / MBPS

    torch.manual_seed(settings.seed)
    model = build_model(settings.agent, config, **settings.model)
    if isinstance(model, PilotModel):
        train_db = fading_db(train_set.snapshots.beta)
        model.set_normalisation(float(train_db.mean()), float(train_db.std()))
    model.to(device)
    if settings.execution:
        from agents.models.quantum import Execution, apply_execution

        for line in apply_execution(model, Execution(**settings.execution)) or ["no quantum circuit"]:
            print(f"execution: {line}")
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.lr)
    history: list[dict[str, float]] = []
    start_epoch = 0
    initial_loss: float | None = None
    checkpoint_path = run_dir / CHECKPOINT
    if settings.resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location=device, weights_only=True)
        if state["settings"]["size"] != list(settings.size) or state["settings"]["agent"] != settings.agent:
            raise ValueError(f"checkpoint {checkpoint_path} belongs to another agent or size")
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimizer"])
        start_epoch, history, initial_loss = state["epoch"], list(state["history"]), state["initial_loss"]

    x_all = beta_db_tensor(train_set.snapshots.beta, device)
    beta_np = train_set.snapshots.beta
    beta_all = torch.as_tensor(beta_np, dtype=torch.float64, device=device)
    y_all = None if train_set.labels is None else torch.as_tensor(train_set.labels, device=device)
    n = len(train_set)
    counts = model.parameter_counts()
    writer = SummaryWriter(str(run_dir))
    if start_epoch == 0:
        table = "\n".join(f"|{k}|{v}|" for k, v in settings.to_json().items())
        writer.add_text("hyperparameters", "|parameter|value|\n|-|-|\n" + table
                        + f"\n|classical parameters|{counts['classical']}|\n|quantum parameters|{counts['quantum']}|")
    print(f"training {settings.agent} ({settings.loss}) at {config.size}: {counts['classical']} classical + "
          f"{counts['quantum']} quantum parameters -> {run_dir}")
    started = time.perf_counter()
    epochs = tqdm(range(start_epoch, settings.epochs), desc=f"{settings.agent} {settings.loss}",
                  unit="epoch", disable=not settings.progress, initial=start_epoch, total=settings.epochs)
    try:
        for epoch in epochs:
            model.train()
            epoch_loss = "supervised" if epoch < settings.imitation_epochs else settings.loss
            if epoch == settings.imitation_epochs and epoch > 0:
                initial_loss = None  # the main loss starts: relative losses refer to its first batch
            epoch_rng = torch.Generator().manual_seed(settings.seed * 100_003 + epoch)
            order = torch.randperm(n, generator=epoch_rng)
            losses, t0 = [], time.perf_counter()
            for lo in range(0, n, settings.batch_size):
                idx = order[lo:lo + settings.batch_size]
                loss = batch_loss(model, epoch_loss, x_all[idx.to(device)], beta_all[idx.to(device)],
                                  beta_np[idx.numpy()], None if y_all is None else y_all[idx.to(device)],
                                  config, epoch_rng, settings.samples)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                losses.append(loss.item())
                if initial_loss is None:
                    initial_loss = losses[0]
            elapsed = time.perf_counter() - t0
            metrics = {"train/loss": float(np.mean(losses)), "train/imitation": float(epoch_loss != settings.loss),
                       "train/loss_relative_to_initial": float(np.mean(losses)) / initial_loss,
                       "perf/samples_per_s": n / elapsed, "train/lr": optimiser.param_groups[0]["lr"]}
            metrics.update(validation_metrics(model, val_set, config, master_rate, constant_rate, device))
            for k, v in metrics.items():
                writer.add_scalar(k, v, epoch + 1)
            history.append({"epoch": epoch + 1, **metrics})
            epochs.set_postfix(loss=f"{metrics['train/loss']:.4g}", val=f"{metrics['val/sum_rate_mbps']:.2f}")
            state = {"model": model.state_dict(), "optimizer": optimiser.state_dict(), "epoch": epoch + 1,
                     "history": history, "initial_loss": initial_loss, "settings": settings.to_json()}
            atomic_write_bytes(checkpoint_path, lambda f: torch.save(state, f))
            atomic_write_bytes(run_dir / HISTORY_JSON, lambda f: f.write(json.dumps(history, indent=1).encode()))
            if on_epoch is not None:
                on_epoch(epoch + 1, metrics)
    except KeyboardInterrupt:
        print(f"\ninterrupted: the last completed epoch is in {checkpoint_path}; continue with --resume")
        writer.close()
        raise
    train_time = time.perf_counter() - started
    final = history[-1] if history else {}
    save_model(run_dir, model, settings.agent, config,
               {"train": settings.to_json(), "final_metrics": final, "train_time_s": train_time})
    hparams = {k: (str(v) if isinstance(v, (list, dict, tuple)) else v) for k, v in settings.to_json().items()
               if k not in ("runs_dir", "cache_dir", "progress", "resume")}
    writer.add_hparams(hparams, {f"hparam/{k.split('/')[-1]}": v for k, v in final.items() if k.startswith("val/")},
                       run_name=".")
    writer.close()
    return {"run_dir": str(run_dir), "train_time_s": train_time, "final": final, "parameters": counts,
            "model": model}
