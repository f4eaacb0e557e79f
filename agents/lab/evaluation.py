"""The comparison harness behind ``evaluate.py``: every agent on the same test snapshots.

For each system size the test snapshots are drawn once, snapshot ``i`` from
``stream_rng(seed, TEST_STREAM, M, L, K, tau_p, i)`` (a stream no training or
validation draw can reach), and every agent runs on all of them. Results are
records (one per size and agent) written as JSON, CSV and Markdown, and drawn
as a PNG; figures are made from the saved records, so they can be redrawn.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from agents.base import AGENT_STREAM, TEST_STREAM, stream_rng
from agents.lab import executors
from agents.lab.outdir import CELLS_DIR
from agents.lab.results import add_ratios, cell_record
from agents.learning.settings import check_device
from agents.registry import AgentSpec, available, resolve
from agents.storage import atomic_write_bytes
from cfenv import __version__
from cfenv.channel import Snapshot, draw_snapshots
from cfenv.config import LARGE_SIZES, OBJECTIVES, TABLE2_SIZES, SystemConfig
from cfenv.rates import sum_rate
from cfenv.units import MBPS, Size, parse_size, size_label, size_slug

SIZE_GROUPS: dict[str, tuple[Size, ...]] = {
    "paper": TABLE2_SIZES,
    "small": TABLE2_SIZES[:4],
    "medium": TABLE2_SIZES[4:],
    "default": TABLE2_SIZES[:2],
    "large": LARGE_SIZES,
}
"""named size groups for ``--sizes``; ``default`` keeps ``evaluate.py --agents all`` (which trains
every learning agent it has no checkpoint for) within a few minutes on 2 cores"""
MAX_FAILURE_LINES = 10
"""failed tasks reported one line each while the grid runs (the table has them all)"""
WARM_UP_SEED = 12345
"""seed of the untimed warm-up call each chunk makes first (its choices are discarded)"""
DEFAULT_RESULTS = Path("results")
"""where a run without --out gets its own folder, run-<settings digest>, and the link latest"""
MAX_TEST_SNAPSHOT_BYTES = 2 << 30
"""the test snapshots of a size are drawn up front: beyond this much fading, refuse (before any work)"""

@dataclass
class EvaluationSettings:
    """Arguments of one evaluation run (``evaluate.py`` flags)."""

    agents: list[str] = field(default_factory=lambda: list(available()))
    """agent names, in table order"""
    sizes: list[Size] = field(default_factory=lambda: list(SIZE_GROUPS["default"]))
    """(M, L, K, tau_p) system sizes"""
    snapshots: int = 50
    """test snapshots per size"""
    seed: int = 0
    """seed of the test snapshots and of the agents' random choices"""
    out: Path | None = None
    """output folder (default: results/run-<settings digest>, with results/latest pointing to the newest)"""
    max_assignments: int | None = None
    """EPAS cap (default: the agent's own)"""
    progress: bool = True
    """show progress bars"""
    checkpoints: Path = Path("runs")
    """where learning agents' trained models are looked up (and cached when trained here)"""
    train: bool = True
    """train a learning agent with its default budget when no checkpoint exists (else skip it)"""
    loss: str = "unsupervised"
    """training loss of the learning agents' checkpoints (Table II is unsupervised)"""
    objective: str = "sum"
    """what agents maximise and ratios compare: sum (sum rate), min (minimum user rate) or
    proportional (sum of ln user rates); learning agents use models trained for it"""
    device: str = "cpu"
    """torch device of the learning agents: cpu, cuda, cuda:N or auto (CUDA when available)"""
    execution: dict[str, Any] | None = None
    """quantum execution of learning agents' circuits (:class:`agents.models.quantum.Execution` fields:
    noise_p, shots, mitigation, grad ...); None: exact. Checkpoints are trained noiselessly."""
    trained_at: Size | None = None
    """size-generalisable agents (gnn, hqcnn-ar) use their checkpoint trained at this size for
    every size (train once, evaluate across sizes); others keep one checkpoint per size"""
    executor: str = "local"
    """where the grid's tasks run: local (this process), processes (a local pool) or ray"""
    workers: int | None = None
    """worker processes (processes) or CPUs of a local Ray instance (ray); default: all cores"""
    ray_address: str | None = None
    """address of a running Ray cluster (``ray start --head`` prints it); None: a local instance"""
    chunk_size: int = 50
    """test snapshots per task; the unit of parallelism, retries and resumption. The numbers
    depend on it only through randomised agents' streams (one per chunk), never on the executor"""
    retries: int = 1
    """extra attempts of a task that raised, before its cell is reported as failed"""
    resume: bool = False
    """reuse the chunks a stopped run saved under ``<out>/cells`` (same settings only; each is
    validated and its sum rates recomputed from its assignments before it is trusted)"""
    overwrite: bool = False
    """write into an output folder that holds results of other settings (only files the
    harness wrote are replaced or removed)"""
    fail_tasks: tuple[str, ...] = ()
    """test hook: tasks whose key (:attr:`Task.key`) starts with one of these raise; prefix
    ``once:`` fails the first attempt only, ``crash:`` kills the worker process"""
    snapshots_file: Path | None = None
    """a .npz of your own fading, beta (S, M, K) [+ positions] (docs/data.md): every agent runs on its S
    snapshots instead of drawn ones; sizes=[] (no --sizes) takes the file's M, K and the sidecar's L, tau_p"""
    snapshots_config: Path | None = None
    """JSON sidecar of SystemConfig fields for --snapshots-file (default: FILE.json beside it, if present)"""
    snapshots_sha256: str | None = field(default=None, init=False)
    """SHA-256 of the snapshots file (set from the file)"""
    snapshots_fields: dict[str, Any] = field(default_factory=dict, init=False)
    """the sidecar's SystemConfig fields (set from the file)"""
    snapshots_positions: bool = field(default=True, init=False)
    """whether the test snapshots have AP and user positions (a file may have none)"""

    def __post_init__(self) -> None:
        if self.snapshots_file is not None:
            self._use_snapshots_file()
        elif self.snapshots_config is not None:
            raise ValueError("snapshots_config (--snapshots-config) needs snapshots_file (--snapshots-file)")
        if self.snapshots < 1:
            raise ValueError(f"snapshots must be >= 1, got {self.snapshots}")
        for name in self.agents:
            resolve(name)  # a registered name, a plugin, or package.module:Class; ValueError otherwise
        if not self.agents:
            raise ValueError("no agents given")
        if not self.sizes:
            raise ValueError("no sizes given")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.loss not in ("supervised", "unsupervised"):
            raise ValueError(f"loss must be 'supervised' or 'unsupervised', got {self.loss!r}")
        if self.executor not in executors.EXECUTORS:
            raise ValueError(f"executor must be one of {', '.join(executors.EXECUTORS)}, got {self.executor!r}")
        if self.executor == "ray" and not executors.ray_available():
            raise ValueError(executors.RAY_MISSING)
        if self.ray_address and self.executor != "ray":
            raise ValueError("ray_address (--ray-address) needs executor 'ray'")
        for name in ("chunk_size", "workers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.max_assignments is not None and self.max_assignments < 1:
            raise ValueError(f"max_assignments must be >= 1, got {self.max_assignments}")
        check_device(self.device)  # validated; "auto" is resolved by each agent
        estimate = self.snapshots * max(SystemConfig.from_size(s).snapshot_bytes for s in self.sizes)
        if estimate > MAX_TEST_SNAPSHOT_BYTES:
            raise ValueError(f"{self.snapshots} test snapshots of the largest size need about "
                             f"{estimate / 2**30:.1f} GiB (cap {MAX_TEST_SNAPSHOT_BYTES / 2**30:.0f} "
                             "GiB): evaluate fewer snapshots per run")
        self.fail_tasks = tuple(self.fail_tasks)
        self.checkpoints = Path(self.checkpoints)
        self.out = Path(self.out) if self.out is not None else DEFAULT_RESULTS / f"run-{self.fingerprint()[:8]}"

    def _use_snapshots_file(self) -> None:
        """Validate the file (and sidecar) now, before any work; take S, the sizes and the constants from it."""
        from agents.lab.datafile import load_snapshots_file

        data = load_snapshots_file(self.snapshots_file, self.snapshots_config)
        self.snapshots_file, self.snapshots_config = data.path, data.sidecar
        self.snapshots_sha256, self.snapshots_fields = data.sha256, dict(data.fields)
        chosen = self.snapshots_fields.pop("objective", self.objective)
        if chosen != self.objective:
            raise ValueError(f"{Path(data.sidecar).name} sets objective {chosen!r}, the run's is {self.objective!r}: "
                             f"pass --objective {chosen} (or drop it from the sidecar)")
        self.snapshots_positions = data.has_positions
        self.sizes = data.sizes(self.sizes)
        self.snapshots = data.shape[0]

    def system_config(self, size: Size) -> SystemConfig:
        """The :class:`SystemConfig` the test snapshots of ``size`` are scored with: the model's
        defaults, or with a snapshots file, the sidecar's constants."""
        from cfenv.units import SIZE_FIELDS

        constants = {k: v for k, v in self.snapshots_fields.items() if k not in SIZE_FIELDS}
        constants["objective"] = self.objective
        return SystemConfig.from_size(size, **constants)

    def test_snapshots(self, size: Size, start: int = 0, stop: int | None = None) -> Snapshot:
        """Test snapshots ``start .. stop-1`` of ``size``: drawn from their seeded streams, or
        read from the snapshots file (checked to be the bytes validated at the start)."""
        stop = self.snapshots if stop is None else stop
        if self.snapshots_file is None:
            return draw_test_snapshots(SystemConfig.from_size(size), stop, self.seed, start)
        from agents.lab.datafile import snapshots_file

        return snapshots_file(self.snapshots_file, self.snapshots_config, self.snapshots_sha256).snapshots(start, stop)

    def fingerprint(self) -> str:
        """Digest of everything the published numbers depend on (not where or how fast they run)."""
        keys = {"agents": list(self.agents), "sizes": [list(s) for s in self.sizes], "snapshots": self.snapshots,
                "chunk_size": self.chunk_size, **_cell_keys(self)}
        return hashlib.sha256(json.dumps(keys, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON-ready values (what run.json records)."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}


def parse_agents(text: str) -> list[str]:
    """``"all"`` or comma-separated names (registered, plugins, ``package.module:Class``); ``ValueError`` otherwise."""
    names = list(available()) if text.strip() == "all" else [t.strip() for t in text.split(",") if t.strip()]
    for name in names:
        resolve(name)  # ValueError naming the valid names, or why a package.module:Class does not load
    if not names:
        raise ValueError(f"no agents given; valid: all, {', '.join(available())}")
    return names


def parse_sizes(tokens: Sequence[str]) -> list[Size]:
    """Size groups (``paper``, ``small``, ``medium``, ``large``, ``default``) and ``M,L,K,tau_p`` quadruples -> sizes."""
    sizes: list[Size] = []
    for token in tokens:
        if token in SIZE_GROUPS:
            sizes.extend(SIZE_GROUPS[token])
            continue
        try:
            sizes.append(parse_size(token))
        except ValueError as err:
            raise ValueError(f"{err}; valid: {', '.join(SIZE_GROUPS)} or M,L,K,tau_p quadruples") from None
    return list(dict.fromkeys(sizes))


def draw_test_snapshots(config: SystemConfig, n: int, seed: int, start: int = 0) -> Snapshot:
    """Test snapshots ``start .. n-1`` of one size, each from its own seeded stream (see module
    doc), so any chunk of them can be drawn on its own (a remote task does)."""
    drawn = [draw_snapshots(config, stream_rng(seed, TEST_STREAM, *config.size, i)) for i in range(start, n)]
    return Snapshot(np.stack([d.beta for d in drawn]), np.stack([d.ap_positions for d in drawn]),
                    np.stack([d.ue_positions for d in drawn]))


# ------------------------------------------------------------------ the grid
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
        ``fail_tasks`` patterns and progress messages name."""
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
    config = SystemConfig.from_size(size)
    return config if settings.objective == "sum" else config.replace(objective=settings.objective)


def _checkpoint(spec: AgentSpec, size: Size, settings: EvaluationSettings) -> tuple[SystemConfig, Path]:
    """The size a learning agent's model for ``size`` is trained at (``--trained-at`` for
    size-generalisable agents), under the run's objective, and its run folder (keyed by the
    objective: a model trained for another objective is never used)."""
    train_size = spec.train_size(size, settings.trained_at)
    config = training_config(train_size, settings)
    return config, spec.run_dir(settings.checkpoints, train_size, settings.seed, settings.loss,
                                objective=settings.objective)


def _unsupported(spec: AgentSpec, config: SystemConfig, settings: EvaluationSettings) -> str | None:
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
            train_config, run_dir = _checkpoint(spec, size, settings)
            if spec.has_checkpoint(run_dir) or _unsupported(spec, train_config, settings) is not None:
                continue  # nothing to train: a model that cannot be built is reported by its cells
            task = by_run_dir.setdefault(run_dir, Task("train", train_config.size, name))
            waiting[(name, size)] = task
    return waiting


Payload = tuple[Task, "EvaluationSettings", "dict[str, bytes] | None"]


def run_task(payload: Payload) -> dict[str, Any]:
    """Execute one task (this is what runs in a worker process or on a Ray node).

    A chunk returns per-snapshot sum rates [Mbit/s] and assignments, or the reason the agent
    was skipped; a training task returns its run folder, training time and (on Ray) the
    model files. The payload's third item carries a learning agent's model files on Ray, so
    nodes need no shared filesystem."""
    task, settings, model_files = payload
    _inject_failure(task, settings)
    progress = settings.progress and settings.executor == "local"
    spec = resolve(task.agent)
    if task.kind == "train":
        config = training_config(task.size, settings)
        loss = spec.checkpoint_loss(settings.loss)
        agent = spec.cls(config=config, seed=settings.seed, device=settings.device, loss=loss)
        if progress:
            from tqdm.auto import tqdm

            tqdm.write(f"no checkpoint for {task.agent} at {task.size}: training it with its default budget")
        resume = {"resume": True} if hasattr(agent, "training_settings") else {}  # neural: continue a cut run
        agent.fit(config, runs_dir=settings.checkpoints, progress=progress, **resume)
        run_dir = agent.run_dir(settings.checkpoints, config, settings.seed, loss)
        return {"run_dir": str(run_dir), "train_time_s": agent.meta.get("train_time_s"),
                "files": model_files_of(run_dir) if settings.executor == "ray" else None}
    config = settings.system_config(task.size)
    result: dict[str, Any] = {"status": "ok", "reason": "", "train_time_s": None, "parameters": None}
    if not settings.snapshots_positions and spec.cls.needs_positions:
        result.update(status="skipped", reason=f"needs AP and user positions, which {Path(settings.snapshots_file).name} "
                                               "does not hold (add ap_positions and ue_positions: docs/data.md)")
        return result
    if spec.learnable:
        agent, reason = _load_learning_agent(spec, config, settings, result, model_files)
    else:
        agent = spec.cls(config=config, seed=settings.seed, **_agent_kwargs(task.agent, settings, progress))
        reason = agent.unsupported_reason(config)
    if reason is not None:
        result.update(status="skipped", reason=reason)
        return result
    snaps = settings.test_snapshots(task.size, task.start, task.stop)
    rng = stream_rng(settings.seed, AGENT_STREAM, task.agent, *config.size,
                     *([task.start] if task.start else []))
    start = time.perf_counter()  # one-time costs (JIT compilation, first calls) on a separate stream, untimed
    agent.assign(snaps[:1], config, np.random.default_rng(WARM_UP_SEED))
    warm_up = time.perf_counter() - start
    start = time.perf_counter()
    pilots = agent.assign(snaps, config, rng)
    elapsed = time.perf_counter() - start
    rates = sum_rate(snaps.beta, pilots, config) / MBPS
    result.update(elapsed_s=elapsed, warm_up_s=warm_up, rates=[float(r) for r in rates], pilots=np.asarray(pilots).tolist())
    return result


def _inject_failure(task: Task, settings: EvaluationSettings) -> None:
    """Test hook: tasks whose key starts with one of ``settings.fail_tasks`` raise; a pattern
    prefixed ``once:`` fails only the first attempt (a marker file in the output folder
    remembers it across processes and machines sharing the folder), one prefixed ``crash:``
    kills its worker process outright (``os._exit``, as an out-of-memory kill would) -- only
    where the task runs in a worker, never in the driver."""
    for pattern in settings.fail_tasks:
        kind, _, prefix = pattern.partition(":") if pattern.startswith(("once:", "crash:")) else ("", "", pattern)
        if not task.key.startswith(prefix):
            continue
        if kind == "crash":
            if settings.executor != "local":
                os._exit(13)
            continue
        if kind == "once":
            marker = Path(settings.out) / CELLS_DIR / ".failed-once" / re.sub(r"[^\w.@,#-]", "_", task.key)
            if marker.exists():
                continue
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        raise RuntimeError(f"injected failure in task {task.key} (fail_tasks test hook)")


def _agent_kwargs(name: str, settings: EvaluationSettings, progress: bool) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if name == "exhaustive":
        kwargs["progress"] = progress
        if settings.max_assignments is not None:
            kwargs["max_assignments"] = settings.max_assignments
    return kwargs


def model_files_of(run_dir: Path) -> dict[str, bytes]:
    """A trained model's files (``config.json``, weights, history; not the TensorBoard events
    nor the training-state checkpoint): what a remote node needs to load it."""
    return {p.name: p.read_bytes() for p in sorted(Path(run_dir).iterdir())
            if p.is_file() and not p.name.startswith(("events.out.", "checkpoint", "."))}


def _write_model_files(files: dict[str, bytes], directory: Path) -> None:
    for name, data in files.items():
        atomic_write_bytes(Path(directory) / name, lambda f, data=data: f.write(data))


def store_trained_model(spec: AgentSpec, trained: dict[str, Any]) -> bool:
    """Write a model trained on another node (a training task's result with its ``files``)
    into the driver's checkpoints folder, unless a model is already there (same machine or
    shared filesystem). Returns whether it wrote."""
    run_dir = Path(trained["run_dir"])
    if not trained.get("files") or spec.has_checkpoint(run_dir):
        return False
    _write_model_files(trained["files"], run_dir)
    return True


def _load_learning_agent(spec: AgentSpec, config: SystemConfig, settings: EvaluationSettings, result: dict[str, Any],
                         model_files: dict[str, bytes] | None = None) -> tuple[Any, str | None]:
    """Load the agent's checkpoint for this size (trained by a training task if it was missing),
    from the shared checkpoints folder or, on a node without it, from the shipped files."""
    import tempfile

    cls = spec.cls
    train_config, run_dir = _checkpoint(spec, config.size, settings)
    if not spec.has_checkpoint(run_dir) and not model_files:
        reason = _unsupported(spec, train_config, settings)
        return None, reason or f"no checkpoint in {run_dir} (train it with train.py, or run without --no-train)"
    if spec.has_checkpoint(run_dir):
        agent = cls.load(run_dir, device=settings.device, config=config)
    else:
        with tempfile.TemporaryDirectory(prefix="cfpilot-model-") as tmp:
            _write_model_files(model_files, Path(tmp))
            agent = cls.load(tmp, device=settings.device, config=config)
    result["model_digest"] = model_digest(model_files or model_files_of(run_dir))
    result["trained_at"] = list(train_config.size)
    result["train_time_s"] = agent.meta.get("train_time_s")
    result["parameters"] = agent.parameter_count()
    if settings.execution:
        from agents.models.quantum import Execution, apply_execution

        result["execution"] = apply_execution(agent.model, Execution(**settings.execution)) or ["classical: no circuit"]
    return agent, None


# ------------------------------------------------------- partial results
def _cell_keys(settings: EvaluationSettings) -> dict[str, Any]:
    """What a finished chunk depends on besides its (size, agent, start, stop) and its model."""
    keys = {"seed": settings.seed, "max_assignments": settings.max_assignments, "loss": settings.loss,
            "device": settings.device, "execution": settings.execution,
            "trained_at": list(settings.trained_at) if settings.trained_at else None,
            "checkpoints": str(Path(settings.checkpoints).resolve()), "cfpilot": __version__,
            **({"snapshots_sha256": settings.snapshots_sha256, "snapshots_fields": settings.snapshots_fields}
               if settings.snapshots_file is not None else {})}
    if settings.objective != "sum":  # runs under the default objective keep their digests and folders
        keys["objective"] = settings.objective
    return keys


def _fingerprint(settings: EvaluationSettings) -> str:
    """Digest of :func:`_cell_keys`: a resumed run reuses only chunks computed with the same settings."""
    return hashlib.sha256(json.dumps(_cell_keys(settings), sort_keys=True, default=str).encode()).hexdigest()[:16]


def model_digest(files: dict[str, bytes]) -> str:
    """Digest of a trained model's files (what :func:`model_files_of` returns)."""
    h = hashlib.sha256()
    for name in sorted(files):
        if name == "history.json":
            continue
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()[:16]


def _cell_path(settings: EvaluationSettings, task: Task) -> Path:
    return (Path(settings.out) / CELLS_DIR / size_slug(task.size) / re.sub(r"[^\w.-]", "_", task.agent)
            / f"{task.start}-{task.stop}.json")


def _save_cell(settings: EvaluationSettings, task: Task, result: dict[str, Any], fingerprint: str) -> None:
    text = json.dumps({"fingerprint": fingerprint, "task": task.key, "result": result})
    atomic_write_bytes(_cell_path(settings, task), lambda f: f.write(text.encode()))


def _load_cell(settings: EvaluationSettings, task: Task, fingerprint: str, snaps: Snapshot,
               digest: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """A saved chunk that can be trusted, or ``(None, why not)``.

    Trusted means: written under the same settings (fingerprint) for this very task, by the
    same model (``digest`` of a learning agent's files), a finished ``ok`` result whose fields
    have the right types, lengths and ranges, and whose sum rates equal those recomputed from
    its assignments on the test snapshots ``snaps`` of the chunk (one batched rate call)."""
    path = _cell_path(settings, task)
    if not path.exists():
        return None, None
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None, "unreadable"
    if not isinstance(saved, dict) or saved.get("fingerprint") != fingerprint:
        return None, None  # another run's settings: silently recomputed, as documented
    result = saved.get("result")
    if saved.get("task") != task.key:
        return None, f"it belongs to task {saved.get('task')!r}"
    if not isinstance(result, dict) or result.get("status") != "ok":
        return None, "not a finished result"
    if digest is not None and result.get("model_digest") != digest:
        return None, "it was computed with another model"
    n, config = task.stop - task.start, settings.system_config(task.size)
    rates, pilots, elapsed = result.get("rates"), result.get("pilots"), result.get("elapsed_s")
    try:
        rates = np.asarray(rates, dtype=np.float64)
        pilots = np.asarray(pilots)
    except (TypeError, ValueError):
        return None, "malformed rates or assignments"
    if rates.shape != (n,) or not np.all(np.isfinite(rates)):
        return None, f"it holds {rates.size} rates for {n} snapshots, or non-finite ones"
    if (pilots.shape != (n, config.K) or pilots.dtype.kind not in "iu"
            or pilots.size and (pilots.min() < 0 or pilots.max() >= config.tau_p)):
        return None, "its assignments have the wrong shape or pilots out of range"
    if not isinstance(elapsed, (int, float)) or not math.isfinite(elapsed) or elapsed < 0:
        return None, "its elapsed time is not a non-negative number"
    recomputed = sum_rate(snaps.beta, pilots.astype(np.int64), config) / MBPS
    if not np.array_equal(recomputed, rates):
        return None, "its sum rates do not match its assignments"
    return result, None


# ------------------------------------------------------------------ evaluate
def evaluate(settings: EvaluationSettings,
             stats: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], dict[Size, Snapshot]]:
    """Run every agent on every size; returns one record per (size, agent) and the test
    snapshots of each size.

    The grid runs as independent tasks on ``settings.executor``: first the training of
    learning agents without a checkpoint (alongside the chunks that need none), then the
    chunks waiting for them. Each finished chunk is saved under ``<out>/cells/``; with
    ``settings.resume`` those are reused instead of recomputed. A task that still fails after
    its retries makes its cell "failed" (reported with the error); the other cells finish.
    ``stats`` (if given) receives task counts and timings."""
    from tqdm.auto import tqdm

    used = {size: settings.test_snapshots(size) for size in settings.sizes}
    chunks = plan_chunks(settings)
    waiting = plan_training(settings)
    fingerprint = _fingerprint(settings)
    cells = Path(settings.out) / CELLS_DIR
    results: dict[Task, dict[str, Any]] = {}
    if settings.resume:
        digests: dict[Path, str | None] = {}
        for task in chunks:
            spec = resolve(task.agent)
            digest = None
            if spec.learnable:
                _, run_dir = _checkpoint(spec, task.size, settings)
                if run_dir not in digests:
                    digests[run_dir] = model_digest(model_files_of(run_dir)) if spec.has_checkpoint(run_dir) else "none"
                digest = digests[run_dir]
            snaps = used[task.size]
            saved, why = _load_cell(settings, task, fingerprint, snaps[task.start:task.stop],
                                    digest)
            if saved is not None:
                results[task] = saved
            elif why is not None:
                print(f"resume: recomputing {task.key}: its saved chunk is not trusted ({why})")
    reused = len(results)
    todo = [t for t in chunks if t not in results]
    first = [t for t in todo if (t.agent, t.size) not in waiting]
    later = [t for t in todo if (t.agent, t.size) in waiting]
    trainings = list(dict.fromkeys(waiting[(t.agent, t.size)] for t in later))
    errors: dict[tuple[str, Size], str] = {}
    counts = {"tasks": len(chunks) + len(trainings), "chunks": len(chunks), "training_tasks": len(trainings),
              "reused": reused, "computed": 0, "failed": 0, "retried": 0}
    # tasks differ in cost by orders of magnitude (EPAS at K = 15 vs. a heuristic): no ETA, elapsed time only
    bar = tqdm(total=len(todo) + len(trainings), desc=f"evaluate ({settings.executor})", unit="task",
               disable=not settings.progress, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} tasks [{elapsed}{postfix}]")
    started = time.perf_counter()

    shipped: dict[Path, dict[str, bytes] | None] = {}  # model files per run folder, read once

    def payload(task: Task) -> Payload:
        spec = resolve(task.agent)
        if settings.executor != "ray" or task.kind != "chunk" or not spec.learnable:
            return task, settings, None
        _, run_dir = _checkpoint(spec, task.size, settings)
        if run_dir not in shipped:
            shipped[run_dir] = model_files_of(run_dir) if spec.has_checkpoint(run_dir) else None
        return task, settings, shipped[run_dir]

    def run_phase(executor: Any, tasks: list[Task]) -> None:
        for i, outcome in executor.map_unordered(run_task, [payload(t) for t in tasks]):
            task = tasks[i]
            bar.update(1)
            bar.set_postfix_str(task.key)
            counts["retried"] += 1 if (outcome.attempts or 1) > 1 else 0
            if not outcome.ok:
                counts["failed"] += 1
                if counts["failed"] <= MAX_FAILURE_LINES:
                    tqdm.write(f"task {task.key} failed: {outcome.error}")
                elif counts["failed"] == MAX_FAILURE_LINES + 1:
                    tqdm.write("further task failures are not printed: the table lists every failed cell")
                cells_of = ([c for c, t in waiting.items() if t == task] if task.kind == "train"
                            else [(task.agent, task.size)])
                for cell in cells_of:
                    errors.setdefault(cell, f"{'training' if task.kind == 'train' else 'task'} failed: "
                                            f"{outcome.error}")
                continue
            counts["computed"] += 1
            if task.kind == "train":
                store_trained_model(resolve(task.agent), outcome.value)
            else:
                results[task] = outcome.value
                _save_cell(settings, task, outcome.value, fingerprint)

    try:
        with executors.make_executor(settings.executor, settings.workers, settings.retries, settings.ray_address) as executor:
            run_phase(executor, trainings + first)
            run_phase(executor, [t for t in later if (t.agent, t.size) not in errors])
    except KeyboardInterrupt:
        bar.close()
        print(f"\ninterrupted: {len(results)} of {len(chunks)} chunks are saved in {cells}; "
              "run the same command with --resume to finish without recomputing them")
        raise
    bar.close()
    records: list[dict[str, Any]] = []
    for size in settings.sizes:
        size_records = []
        for name in settings.agents:
            parts = [results.get(t) for t in chunks if t.size == size and t.agent == name]
            size_records.append(cell_record(name, size, parts, errors.get((name, size)), used[size],
                                            settings.snapshots, settings.seed, settings.system_config(size)))
            if settings.snapshots_file is not None:
                size_records[-1].update(snapshots_file=str(settings.snapshots_file),
                                        snapshots_sha256=settings.snapshots_sha256)
        add_ratios(size_records)
        records.extend(size_records)
    if stats is not None:
        stats.update(counts, executor=settings.executor, wall_time_s=time.perf_counter() - started)
    return records, used
