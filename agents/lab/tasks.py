"""What one task of the grid does (in this process, a worker process or on a Ray node): train a
missing learning agent, or run one agent on a chunk of test snapshots; and the trained model's
files, which travel with the tasks to nodes that cannot see the checkpoints folder."""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from agents.base import AGENT_STREAM, WARM_UP_SEED, checked_pilots, stream_rng  # noqa: F401 -- WARM_UP_SEED re-exported
from agents.lab.executors import time_limit
from agents.lab.planning import Task, checkpoint, training_config, unsupported
from agents.lab.settings import EvaluationSettings
from agents.registry import AgentSpec, resolve
from agents.storage import atomic_write_bytes
from cfenv.channel import Snapshot
from cfenv.config import SystemConfig
from cfenv.models import model_of
from cfenv.units import MBPS


Payload = tuple[Task, EvaluationSettings, "dict[str, bytes] | None"]


class TaskExit(RuntimeError):
    """A task's code (an agent) raised ``SystemExit``: its cell fails with this reason, the run goes on."""


class TaskInterrupted(KeyboardInterrupt):
    """A ``KeyboardInterrupt`` raised inside a task (``args[0]``: the task's key): it stops the run
    as Ctrl-C does (finished chunks kept for ``--resume``)."""


def run_task(payload: Payload) -> dict[str, Any]:
    """Execute one task (this is what runs in a worker process or on a Ray node).

    A chunk returns per-snapshot sum rates [Mbit/s] and assignments, or the reason the agent
    was skipped; a training task returns its run folder, training time and (on Ray) the
    model files. The payload's third item carries a learning agent's model files on Ray, so
    nodes need no shared filesystem. An agent's ``SystemExit`` becomes :class:`TaskExit` (the
    cell fails), its ``KeyboardInterrupt`` :class:`TaskInterrupted` (the run stops)."""
    task, settings, model_files = payload
    progress = settings.progress and settings.executor == "local"
    try:
        if task.kind == "train":  # not limited: a default training budget may take hours
            return train_task(task, settings, progress)
        with time_limit(settings.task_timeout):
            return chunk_task(task, settings, model_files, progress)
    except SystemExit as err:
        raise TaskExit(f"{task.agent} raised SystemExit({err.code!r}): an agent must not end the process") from None
    except TaskInterrupted:
        raise
    except KeyboardInterrupt:
        raise TaskInterrupted(task.key) from None


def train_task(task: Task, settings: EvaluationSettings, progress: bool) -> dict[str, Any]:
    """Train the agent of ``task`` at its size with its default budget, into the checkpoints folder
    (continuing a cut run where the agent can)."""
    spec = resolve(task.agent)
    config = training_config(task.size, settings)
    loss = spec.checkpoint_loss(settings.loss)
    agent = spec.cls(config=config, seed=settings.seed, device=settings.device, loss=loss)
    if progress:
        from tqdm.auto import tqdm

        tqdm.write(f"no checkpoint for {task.agent} at {task.size}: training it with its default budget")
    resume = {"resume": True} if spec.resumable else {}
    agent.fit(config, runs_dir=settings.checkpoints, progress=progress, **resume)
    run_dir = agent.run_dir(settings.checkpoints, config, settings.seed, loss)
    return {"run_dir": str(run_dir), "train_time_s": agent.meta.get("train_time_s"),
            "files": model_files_of(run_dir) if settings.executor == "ray" else None}


def chunk_task(task: Task, settings: EvaluationSettings, model_files: dict[str, bytes] | None,
               progress: bool) -> dict[str, Any]:
    """Run the agent of ``task`` on its test snapshots: the warm-up call untimed, then the chunk."""
    spec = resolve(task.agent)
    config = settings.system_config(task.size)
    result: dict[str, Any] = {"status": "ok", "reason": "", "train_time_s": None, "parameters": None}
    if not settings.snapshots_positions and spec.cls.needs_positions:
        result.update(status="skipped", reason=f"needs AP and user positions, which {Path(settings.snapshots_file).name} "
                                               "does not hold (add ap_positions and ue_positions: docs/data.md)")
        return result
    if spec.learnable:
        agent, reason = load_learning_agent(spec, config, settings, result, model_files)
    else:
        agent = spec.cls(config=config, seed=settings.seed, **agent_kwargs(spec, settings, progress))
        reason = agent.unsupported_reason(config)
    if reason is not None:
        result.update(status="skipped", reason=reason)
        return result
    snaps = settings.test_snapshots(task.size, task.start, task.stop)
    rng = stream_rng(settings.seed, AGENT_STREAM, task.agent, *config.size,
                     *([task.start] if task.start else []))
    start = time.perf_counter()  # one-time costs (JIT compilation, first calls), untimed
    agent.warm_up(read_only_copy(snaps), config)
    warm_up = time.perf_counter() - start
    given = read_only_copy(snaps)  # the agent's own: what it does to it never reaches the scoring nor the others
    start = time.perf_counter()
    pilots = agent.assign(given, config, rng)
    elapsed = time.perf_counter() - start
    pilots = checked_pilots(pilots, task.stop - task.start, config, task.agent)  # also where assign is overridden
    rates = model_of(config).sum_rate(snaps, pilots) / MBPS
    result.update(elapsed_s=elapsed, warm_up_s=warm_up, rates=[float(r) for r in rates], pilots=pilots.tolist())
    return result


def read_only_copy(snaps: Snapshot) -> Snapshot:
    """A copy of ``snaps`` whose arrays are read-only: what one agent call is handed, so an agent that
    writes into its input fails (or, forcing it writable, changes only its own copy), and is scored
    on the harness's snapshots."""

    def frozen(array: np.ndarray) -> np.ndarray:
        copy = np.array(array, copy=True)
        copy.flags.writeable = False
        return copy

    return Snapshot(frozen(snaps.beta), frozen(snaps.ap_positions), frozen(snaps.ue_positions),
                    {name: frozen(value) for name, value in snaps.extras.items()})


def agent_kwargs(spec: AgentSpec, settings: EvaluationSettings, progress: bool) -> dict[str, Any]:
    """The harness settings the agent's constructor takes (its registry entry's ``run_options``)."""
    offered = {"progress": progress, "max_assignments": settings.max_assignments}
    return {k: v for k, v in offered.items() if k in spec.run_options and v is not None}


def model_files_of(run_dir: Path) -> dict[str, bytes]:
    """A trained model's files (``config.json``, weights, history; not the TensorBoard events
    nor the training-state checkpoint): what a remote node needs to load it."""
    return {p.name: p.read_bytes() for p in sorted(Path(run_dir).iterdir())
            if p.is_file() and not p.name.startswith(("events.out.", "checkpoint", "."))}


def model_digest(files: dict[str, bytes]) -> str:
    """Digest of a trained model's files (what :func:`model_files_of` returns)."""
    h = hashlib.sha256()
    for name in sorted(files):
        if name == "history.json":
            continue
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()[:16]


def write_model_files(files: dict[str, bytes], directory: Path) -> None:
    """Write a model's files (:func:`model_files_of`) into ``directory``, each atomically."""
    for name, data in files.items():
        atomic_write_bytes(Path(directory) / name, lambda f, data=data: f.write(data))


def store_trained_model(spec: AgentSpec, trained: dict[str, Any]) -> bool:
    """Write a model trained on another node (a training task's result with its ``files``)
    into the driver's checkpoints folder, unless a model is already there (same machine or
    shared filesystem). Returns whether it wrote."""
    run_dir = Path(trained["run_dir"])
    if not trained.get("files") or spec.has_checkpoint(run_dir):
        return False
    write_model_files(trained["files"], run_dir)
    return True


def load_learning_agent(spec: AgentSpec, config: SystemConfig, settings: EvaluationSettings, result: dict[str, Any],
                        model_files: dict[str, bytes] | None = None) -> tuple[Any, str | None]:
    """Load the agent's checkpoint for this size (trained by a training task if it was missing),
    from the shared checkpoints folder or, on a node without it, from the shipped files."""
    train_config, run_dir = checkpoint(spec, config.size, settings)
    if not spec.has_checkpoint(run_dir) and not model_files:
        reason = unsupported(spec, train_config, settings)
        return None, reason or f"no checkpoint in {run_dir} (train it with train.py, or run without --no-train)"
    if spec.has_checkpoint(run_dir):
        agent = spec.cls.load(run_dir, device=settings.device, config=config)
    else:
        with tempfile.TemporaryDirectory(prefix="cfpilot-model-") as tmp:
            write_model_files(model_files, Path(tmp))
            agent = spec.cls.load(tmp, device=settings.device, config=config)
    result["model_digest"] = model_digest(model_files or model_files_of(run_dir))
    result["trained_at"] = list(train_config.size)
    result["train_time_s"] = agent.meta.get("train_time_s")
    result["parameters"] = agent.parameter_count()
    if settings.execution:
        from agents.models.quantum import Execution, apply_execution

        result["execution"] = apply_execution(agent.model, Execution(**settings.execution)) or ["classical: no circuit"]
    return agent, None
