"""One trainer for every neural pilot-assignment model (supervised and unsupervised).

* Supervised (docs/model.md eq. (6.6)): cross-entropy against label assignments from a teacher
  agent (``master-ap`` as in the paper, or ``exhaustive`` / ``local-search``).
  Labels are only defined up to a relabelling of pilots, so they are
  canonicalised first (restricted-growth order: the first user is on pilot 0,
  each user that opens a new pilot takes the next index; see
  :func:`agents.base.canonical_pilots`).
* Unsupervised (docs/model.md eq. (6.7)): the negative relaxed sum rate [Mbit/s] of the
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

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from agents.base import TRAIN_STREAM, VALIDATION_STREAM, thread_limits
from agents.heuristics import master_ap_pilots
from agents.learning.checkpoints import (
    CHECKPOINT,
    CONFIG_JSON,
    HISTORY_JSON,
    WEIGHTS,
    check_finite,
    load_model,
    read_state,
    save_model,
)
from agents.learning.datasets import Dataset, beta_db_tensor, make_dataset
from agents.learning.diagnostics import best_constant_assignment, distinct_assignments
from agents.learning.losses import batch_loss
from agents.learning.settings import TrainSettings, check_device, differences, other_settings
from agents.models import AssignmentModel, GNNPolicy, PilotModel, build_model
from agents.models.quantum import Execution, apply_execution
from agents.runtime import set_thread_policy
from agents.storage import atomic_write_bytes
from cfenv.config import SystemConfig
from cfenv.models import model_of
from cfenv.units import MBPS, fading_db

EPOCH_METRICS = ("val/sum_rate_mbps", "val/ratio_to_master_ap", "val/ratio_to_best_constant",
                 "val/distinct_assignments", "val/entropy", "train/loss", "train/loss_relative_to_initial",
                 "train/imitation", "train/lr")
"""what :func:`train` logs every epoch and a sweep may rank trials by (besides ``perf/`` timings; a
run for another objective than the sum rate also logs ``val/objective`` and ``val/min_rate_mbps``)"""


def predict(model: AssignmentModel, beta: np.ndarray, tau_p: int, device: str | torch.device = "cpu",
            batch_size: int = 1024, config: SystemConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic pilots ``(B, K)`` and per-snapshot mean decision entropy ``(B,)`` of a model
    (``config``: the system, which a gnn with rate features needs)."""
    model.eval()
    pilots, entropy = [], []
    system = {"system": config} if isinstance(model, GNNPolicy) else {}
    with torch.no_grad():
        for lo in range(0, beta.shape[0], batch_size):
            p, h = model.greedy(beta_db_tensor(beta[lo:lo + batch_size], device), tau_p, **system)
            pilots.append(p.cpu().numpy())
            entropy.append(h.double().cpu().numpy())
    return np.concatenate(pilots).astype(np.int64), np.concatenate(entropy)


def validation_metrics(model: AssignmentModel, val: Dataset, config: SystemConfig, master_rate: float,
                       constant_rate: float, device: str | torch.device) -> dict[str, float]:
    """Hard (argmax) sum rate, its ratio to master-AP and to the best constant assignment,
    distinct assignments (partitions) and mean output entropy [nats]."""
    pilots, entropy_per_snapshot = predict(model, val.snapshots.beta, config.tau_p, device, config=config)
    physics = model_of(config)
    rate = float((physics.sum_rate(val.snapshots, pilots) / MBPS).mean())
    entropy = float(entropy_per_snapshot.mean())
    metrics = {"val/sum_rate_mbps": rate, "val/ratio_to_master_ap": rate / master_rate,
               "val/ratio_to_best_constant": rate / constant_rate,
               "val/distinct_assignments": float(distinct_assignments(pilots)), "val/entropy": entropy}
    if not config.objective.is_default:  # what the run maximises, in the environment's reward units
        rates = physics.user_rates(val.snapshots, pilots) / MBPS
        metrics.update({"val/objective": float(config.objective.reward(rates).mean()),
                        "val/min_rate_mbps": float(rates.min(-1).mean())})
    return metrics


RUN_ONLY_SETTINGS = ("resume", "progress", "runs_dir", "cache_dir", "device")
"""settings that do not change what a run computes (a checkpoint moves between devices)"""


SETTINGS_BEFORE_FIELDS = {"objective": "sum", "lr_schedule": "constant", "baseline": "greedy"}
"""settings that runs recorded before the field existed had, in effect (they trained for the sum rate)"""


def settings_differences(saved: dict[str, Any], settings: TrainSettings) -> str:
    """``"epochs 10 -> 40, lr 0.005 -> 0.01"`` for the fields where ``saved`` (a run's recorded
    ``to_json()``; a field it predates counts as :data:`SETTINGS_BEFORE_FIELDS` says) and
    ``settings`` differ, ignoring :data:`RUN_ONLY_SETTINGS`; ``""`` if none."""
    return differences({**SETTINGS_BEFORE_FIELDS, **saved}, settings.to_json(), RUN_ONLY_SETTINGS)


def finished_run(settings: TrainSettings) -> dict[str, Any] | None:
    """The summary of the finished model in ``settings.run_dir`` if it was trained with these
    settings (then training again would change nothing), None if there is none; ``ValueError``
    if the folder holds a model trained with other settings (it is never silently replaced)."""
    run_dir = settings.run_dir
    if not (run_dir / CONFIG_JSON).exists():
        return None
    if not (run_dir / WEIGHTS).exists():  # save_model writes the weights first: a damaged folder
        raise ValueError(f"{run_dir} holds {CONFIG_JSON} but no {WEIGHTS} (an incomplete or damaged model): "
                         "train into another --out, or remove the folder")
    model, meta = load_model(run_dir, settings.device)
    changed = settings_differences(meta.get("train", {}), settings)
    if changed:
        raise other_settings(run_dir, changed)
    print(f"{settings.agent} at {settings.size} is already trained with these settings in {run_dir}: "
          "nothing to do")
    return {"run_dir": str(run_dir), "train_time_s": meta.get("train_time_s", 0.0),
            "final": meta.get("final_metrics", {}), "parameters": meta.get("parameters"), "model": model,
            "already_trained": True}


def train(settings: TrainSettings,
          on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Train one model; returns a summary (final metrics, timings, run folder).

    ``on_epoch(epoch, metrics)`` is called after each epoch's checkpoint is written (a Ray
    Tune trial reports through it, and may stop the run there). On the CPU it runs on one torch
    thread: torch splits float reductions by its thread count, so with the machine's default a
    seed gave other weights on 1 and 2 threads; on one the same settings give the same model on
    any machine and under any load (tested)."""
    set_thread_policy()
    device = torch.device(check_device(settings.device))
    with thread_limits(1 if device.type == "cpu" else None):
        return _train(settings, on_epoch)


def _data(settings: TrainSettings, config: SystemConfig) -> tuple[Dataset, Dataset, float, float]:
    """The training and validation sets, and the validation references: master-AP's and the best
    constant assignment's mean sum rates [Mbit/s]."""
    labels = settings.labels if settings.loss == "supervised" or settings.imitation_epochs else None
    data_seed = settings.seed if settings.data_seed is None else settings.data_seed
    train_set = make_dataset(config, settings.train_snapshots, data_seed, TRAIN_STREAM, labels,
                             settings.cache_dir, settings.progress)
    val_set = make_dataset(config, settings.val_snapshots, data_seed, VALIDATION_STREAM, None,
                           settings.cache_dir)
    physics, val_snaps = model_of(config), val_set.snapshots
    master = master_ap_pilots(physics.gains(val_snaps), config.tau_p)
    master_rate = float(physics.sum_rate(val_snaps, master).mean()) / MBPS
    constant_rate = best_constant_assignment(val_snaps, config)[1] / MBPS
    return train_set, val_set, master_rate, constant_rate


def _new_model(settings: TrainSettings, config: SystemConfig, train_set: Dataset,
               device: torch.device) -> tuple[AssignmentModel, torch.optim.Optimizer]:
    """The model (seeded; normalised on the training fading; its circuits' execution set) and its optimiser."""
    torch.manual_seed(settings.seed)
    model = build_model(settings.agent, config, **settings.model)
    if isinstance(model, PilotModel):
        train_db = fading_db(train_set.snapshots.beta)
        model.set_normalisation(float(train_db.mean()), float(train_db.std()))
    model.to(device)
    if settings.execution:
        for line in apply_execution(model, Execution(**settings.execution)) or ["no quantum circuit"]:
            print(f"execution: {line}")
    return model, torch.optim.Adam(model.parameters(), lr=settings.lr)


def _restore(settings: TrainSettings, model: AssignmentModel, optimiser: torch.optim.Optimizer,
             checkpoint_path: Path, device: torch.device) -> tuple[int, list[dict[str, float]], float | None]:
    """``(start epoch, history, initial loss)``: from the checkpoint with ``--resume``, else a fresh start."""
    if not (settings.resume and checkpoint_path.exists()):
        return 0, [], None
    state = read_state(checkpoint_path, device)
    keys = {"settings", "model", "optimizer", "epoch", "history", "initial_loss"}
    if not keys <= set(state) or not isinstance(state["settings"], dict) or not isinstance(state["model"], dict):
        raise ValueError(f"{checkpoint_path} is not a training checkpoint (it lacks {', '.join(sorted(keys))}): "
                         "train into another --out, or remove it")
    changed = settings_differences(state["settings"], settings)
    if changed:
        raise ValueError(f"checkpoint {checkpoint_path} was written with other settings ({changed}): resume "
                         "with the same flags, or train into another --out")
    check_finite(state["model"], checkpoint_path)
    try:
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimizer"])
    except (RuntimeError, TypeError, ValueError, KeyError) as err:
        raise ValueError(f"{checkpoint_path} does not fit the model of these settings: "
                         f"{' '.join(str(err).split())[:300]}") from None
    return state["epoch"], list(state["history"]), state["initial_loss"]


def _epoch_losses(settings: TrainSettings, config: SystemConfig, model: AssignmentModel,
                  optimiser: torch.optim.Optimizer, batches: tuple[Any, ...], epoch: int, epoch_loss: str,
                  initial_loss: float | None) -> tuple[list[float], float]:
    """One epoch of minibatch steps over the training set, in the epoch's seeded order; returns the batch
    losses and the initial loss (the first batch's, when none is known yet)."""
    x_all, beta_all, beta_np, y_all = batches
    device = x_all.device
    n = len(beta_np)
    epoch_rng = torch.Generator().manual_seed(settings.seed * 100_003 + epoch)
    order = torch.randperm(n, generator=epoch_rng)
    losses = []
    for lo in range(0, n, settings.batch_size):
        idx = order[lo:lo + settings.batch_size]
        loss = batch_loss(model, epoch_loss, x_all[idx.to(device)], beta_all[idx.to(device)],
                          beta_np[idx.numpy()], None if y_all is None else y_all[idx.to(device)],
                          config, epoch_rng, settings.samples, settings.baseline)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        if initial_loss is None:
            initial_loss = losses[0]
    return losses, initial_loss


def _train(settings: TrainSettings, on_epoch: Callable[[int, dict[str, float]], None] | None) -> dict[str, Any]:
    from torch.utils.tensorboard import SummaryWriter
    from tqdm.auto import tqdm

    config = settings.config
    device = torch.device(check_device(settings.device))
    run_dir = settings.run_dir
    finished = finished_run(settings)
    if finished is not None:
        return finished
    if not settings.resume and (run_dir / CHECKPOINT).exists():
        raise ValueError(f"{run_dir} holds an unfinished run: continue it with --resume, or train into another "
                         "--out")
    run_dir.mkdir(parents=True, exist_ok=True)
    train_set, val_set, master_rate, constant_rate = _data(settings, config)
    model, optimiser = _new_model(settings, config, train_set, device)
    checkpoint_path = run_dir / CHECKPOINT
    start_epoch, history, initial_loss = _restore(settings, model, optimiser, checkpoint_path, device)

    beta_np = train_set.snapshots.beta
    batches = (beta_db_tensor(beta_np, device), torch.as_tensor(beta_np, dtype=torch.float64, device=device),
               beta_np, None if train_set.labels is None else torch.as_tensor(train_set.labels, device=device))
    n = len(train_set)
    counts = model.parameter_counts()
    writer = SummaryWriter(str(run_dir))
    if start_epoch == 0:
        table = "\n".join(f"|{k}|{v}|" for k, v in settings.to_json().items())
        writer.add_text("hyperparameters", "|parameter|value|\n|-|-|\n" + table
                        + f"\n|classical parameters|{counts['classical']}|\n|quantum parameters|{counts['quantum']}|")
    objective = "" if config.objective.is_default else f", objective {config.objective}"
    print(f"training {settings.agent} ({settings.loss}{objective}) at {config.size}: {counts['classical']} classical + "
          f"{counts['quantum']} quantum parameters -> {run_dir}")
    started = time.perf_counter()
    epochs = tqdm(range(start_epoch, settings.epochs), desc=f"{settings.agent} {settings.loss}",
                  unit="epoch", disable=not settings.progress, initial=start_epoch, total=settings.epochs)
    try:
        for epoch in epochs:
            model.train()
            if settings.lr_schedule == "cosine":  # a function of the epoch alone: resuming changes nothing
                for group in optimiser.param_groups:
                    group["lr"] = settings.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / settings.epochs))
            epoch_loss = "supervised" if epoch < settings.imitation_epochs else settings.loss
            if epoch == settings.imitation_epochs and epoch > 0:
                initial_loss = None  # the main loss starts: relative losses refer to its first batch
            t0 = time.perf_counter()
            losses, initial_loss = _epoch_losses(settings, config, model, optimiser, batches, epoch, epoch_loss,
                                                 initial_loss)
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
        return _finish(settings, config, model, history, time.perf_counter() - started, writer, counts)
    except KeyboardInterrupt:  # in an epoch, or while the model is saved: the checkpoint has every finished one
        print(f"\ninterrupted: the last completed epoch is in {checkpoint_path}; continue with --resume")
        writer.close()
        raise


def _finish(settings: TrainSettings, config: SystemConfig, model: AssignmentModel, history: list[dict[str, float]],
            train_time: float, writer: Any, counts: dict[str, int]) -> dict[str, Any]:
    """Save the trained model and its hyperparameters' summary; what :func:`train` returns."""
    run_dir = settings.run_dir
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
