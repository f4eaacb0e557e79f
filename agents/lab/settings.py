"""What one evaluation run depends on: :class:`EvaluationSettings` (``evaluate.py``'s flags), the
named size groups, and the seeded test snapshots.

The settings check their own values when built, without touching a file; :meth:`EvaluationSettings.prepare`
is the explicit step that reads a snapshots file and chooses the output folder (``evaluate()`` and
``evaluate.py`` call it before any work).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from agents.base import TEST_STREAM, stream_rng
from agents.lab import executors
from agents.registry import available, in_all, resolve
from cfenv import __version__
from cfenv.channel import Snapshot, stack_snapshots
from cfenv.config import LARGE_SIZES, SCALABLE_SIZES, TABLE2_SIZES, SystemConfig
from cfenv.models import model_of
from cfenv.objectives import Objective
from cfenv.units import Size, parse_size

SIZE_GROUPS: dict[str, tuple[Size, ...]] = {
    "paper": TABLE2_SIZES,
    "small": TABLE2_SIZES[:4],
    "medium": TABLE2_SIZES[4:],
    "default": TABLE2_SIZES[:2],
    "large": LARGE_SIZES,
    "scalable": SCALABLE_SIZES,
}
"""named size groups for ``--sizes``; ``default`` keeps ``evaluate.py --agents all`` (which trains
every learning agent it has no checkpoint for) within a few minutes on 2 cores"""
DEFAULT_RESULTS = Path("results")
"""where a run without --out gets its own folder, run-<settings digest>, and the link latest"""
MAX_TEST_SNAPSHOT_BYTES = 2 << 30
"""the test snapshots of a size are drawn up front: beyond this much fading, refuse (before any work)"""


@dataclass
class EvaluationSettings:
    """Arguments of one evaluation run (``evaluate.py`` flags)."""

    agents: list[str] = field(default_factory=in_all)
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
    plot_agents: tuple[str, ...] = ()
    """the agents results.png draws (default: all up to 10, else the references and each family's best)"""
    progress: bool = True
    """show progress bars; off: no progress bars (the final table and the failure lines still print)"""
    checkpoints: Path = Path("runs")
    """where learning agents' trained models are looked up (and cached when trained here)"""
    train: bool = True
    """train a learning agent with its default budget when no checkpoint exists; off: skip a learning agent
    without a checkpoint (its cells say so) instead of training it"""
    loss: str = "unsupervised"
    """training loss of the learning agents' checkpoints (Table II is unsupervised)"""
    objective: str = "sum"
    """what agents maximise and ratios compare: sum (sum rate), min (minimum user rate) or
    proportional (sum of ln user rates); learning agents use models trained for it"""
    system: dict[str, Any] = field(default_factory=dict)
    """the system model's SystemConfig fields for every size (--model, --link, --cluster, --lsfd, --tau-c,
    --asd-deg; empty: the seed paper's model)"""
    score: tuple[str, ...] = ()
    """processing schemes that rescore every agent's assignments by Monte-Carlo after the run (the scalable
    model: mr, lp-mmse, p-mmse, mmse; docs/model.md §8.6); the agents still choose on the closed form"""
    realizations: int = 200
    """channel realizations per test snapshot of --score (the same for every agent and scheme)"""
    scenario: str | None = None
    """the paper scenario the run's system and sizes came from (agents.lab.scenarios; provenance only)"""
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
    task_timeout: float | None = 3600.0
    """seconds one chunk task may run (agent construction, warm-up and assignment) before its cell fails
    with the reason and the others go on; inf: no limit. Training tasks are not limited"""
    resume: bool = False
    """reuse the chunks a stopped run saved under ``<out>/cells`` (same settings only; each is
    validated and its sum rates recomputed from its assignments before it is trusted)"""
    overwrite: bool = False
    """write into an output folder that holds results of other settings (only files the
    harness wrote are replaced or removed)"""
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
        """Check the values (no file is read here: see :meth:`prepare`)."""
        if self.snapshots_file is None and self.snapshots_config is not None:
            raise ValueError("snapshots_config (--snapshots-config) needs snapshots_file (--snapshots-file)")
        for name in self.agents:
            resolve(name)  # a registered name, a plugin, or package.module:Class; ValueError otherwise
        if not self.agents:
            raise ValueError("no agents given")
        self.objective = Objective.parse(self.objective)
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
        if self.task_timeout is not None and not self.task_timeout > 0:
            raise ValueError(f"task_timeout must be > 0 seconds (inf: no limit), got {self.task_timeout}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.max_assignments is not None and self.max_assignments < 1:
            raise ValueError(f"max_assignments must be >= 1, got {self.max_assignments}")
        from agents.learning.settings import check_device  # torch loads here, not when the CLI builds its --help

        check_device(self.device)  # validated; "auto" is resolved by each agent
        self.checkpoints = Path(self.checkpoints)
        self.system = dict(self.system)
        for size in self.sizes or [SystemConfig().size]:
            self.config(size)  # one ValueError naming a field the model refuses (at that size)
        self.plot_agents = tuple(dict.fromkeys(self.plot_agents))
        stray = [a for a in self.plot_agents if a not in self.agents]
        if stray:
            raise ValueError(f"plot_agents: {stray[0]!r} is not among the run's agents ({', '.join(self.agents)})")
        self.score = tuple(dict.fromkeys(self.score))
        if self.realizations < 1:
            raise ValueError(f"realizations must be >= 1, got {self.realizations}")
        if self.score:
            from agents.lab.rescore import check_score

            check_score(self.score, self.config(self.sizes[0] if self.sizes else SystemConfig().size))
        if self.snapshots_file is None:  # with a file, its sizes and count are known once it is read
            self._check_sizes()

    def _check_sizes(self) -> None:
        if self.snapshots < 1:
            raise ValueError(f"snapshots must be >= 1, got {self.snapshots}")
        if not self.sizes:
            raise ValueError("no sizes given")
        estimate = self.snapshots * max(self.config(s).snapshot_bytes for s in self.sizes)
        if estimate > MAX_TEST_SNAPSHOT_BYTES:
            raise ValueError(f"{self.snapshots} test snapshots of the largest size need about "
                             f"{estimate / 2**30:.1f} GiB (cap {MAX_TEST_SNAPSHOT_BYTES / 2**30:.0f} "
                             "GiB): evaluate fewer snapshots per run")

    def prepare(self) -> "EvaluationSettings":
        """The explicit step before a run (idempotent; returns the settings): read and validate the
        snapshots file (and sidecar) if there is one, taking S, the sizes and the constants from
        it, then choose the output folder (``results/run-<settings digest>`` unless ``out``)."""
        if self.snapshots_file is not None and self.snapshots_sha256 is None:
            self._use_snapshots_file()
            self._check_sizes()
        if self.out is None:
            self.out = DEFAULT_RESULTS / f"run-{self.fingerprint()[:8]}"
        self.out = Path(self.out)
        return self

    def _use_snapshots_file(self) -> None:
        """Validate the file (and sidecar) now, before any work; take S, the sizes and the constants from it."""
        from agents.lab.datafile import load_snapshots_file

        data = load_snapshots_file(self.snapshots_file, self.snapshots_config, self.system)
        self.snapshots_file, self.snapshots_config = data.path, data.sidecar
        self.snapshots_sha256, self.snapshots_fields = data.sha256, dict(data.fields)
        chosen = self.snapshots_fields.pop("objective", self.objective)
        if chosen != self.objective:
            raise ValueError(f"{Path(data.sidecar).name} sets objective {chosen!r}, the run's is {self.objective!r}: "
                             f"pass --objective {chosen} (or drop it from the sidecar)")
        self.snapshots_positions = data.has_positions
        self.sizes = data.sizes(self.sizes)
        self.snapshots = data.shape[0]

    def config(self, size: Size) -> SystemConfig:
        """The system of ``size`` the run draws from and learning agents train for: the model's
        defaults under :attr:`system` and the run's objective; ``ValueError`` naming a bad field."""
        try:
            return SystemConfig.from_size(size, objective=self.objective, **self.system)
        except TypeError as err:
            raise ValueError(f"system: {err}") from None

    def system_config(self, size: Size) -> SystemConfig:
        """The :class:`SystemConfig` the test snapshots of ``size`` are scored with: :meth:`config`,
        with a snapshots file the sidecar's constants under it."""
        from cfenv.units import SIZE_FIELDS

        constants = {k: v for k, v in self.snapshots_fields.items() if k not in SIZE_FIELDS}
        constants.update(self.system, objective=self.objective)
        return SystemConfig.from_size(size, **constants)

    def test_snapshots(self, size: Size, start: int = 0, stop: int | None = None) -> Snapshot:
        """Test snapshots ``start .. stop-1`` of ``size``: drawn from their seeded streams, or
        read from the snapshots file (checked to be the bytes validated at the start)."""
        stop = self.snapshots if stop is None else stop
        if self.snapshots_file is None:
            return draw_test_snapshots(self.config(size), stop, self.seed, start)
        from agents.lab.datafile import snapshots_file

        snaps = snapshots_file(self.snapshots_file, self.snapshots_config, self.snapshots_sha256,
                               self.system).snapshots(start, stop)
        model = model_of(self.system_config(size))
        if any(name not in snaps.extras for name in model.snapshot_extras):  # e.g. R rebuilt from gains, positions
            snaps = model.validate(snaps, batch_shape=None, where=str(self.snapshots_file), copy=False)
        return snaps

    def fingerprint_keys(self) -> dict[str, Any]:
        """Everything the published numbers depend on (not where or how fast they run)."""
        keys = {"agents": list(self.agents), "sizes": [list(s) for s in self.sizes], "snapshots": self.snapshots,
                "chunk_size": self.chunk_size, **self.cell_keys()}
        if self.score:  # the rescoring changes the records, not the chunks (runs without it keep their digests)
            keys.update(score=list(self.score), realizations=self.realizations)
        return keys

    def fingerprint(self) -> str:
        """Digest of :meth:`fingerprint_keys`."""
        return hashlib.sha256(json.dumps(self.fingerprint_keys(), sort_keys=True, default=str).encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON-ready values (what run.json records)."""
        return {k: (str(v) if isinstance(v, Path) else v.value if isinstance(v, Objective) else v)
                for k, v in dataclasses.asdict(self).items()}

    def cell_keys(self) -> dict[str, Any]:
        """What a finished chunk depends on besides its (size, agent, start, stop) and its model."""
        if self.snapshots_file is not None and self.snapshots_sha256 is None:
            raise RuntimeError("the snapshots file is not read yet: call prepare() first")
        keys = {"seed": self.seed, "max_assignments": self.max_assignments, "loss": self.loss,
                "device": self.device, "execution": self.execution,
                "trained_at": list(self.trained_at) if self.trained_at else None,
                "checkpoints": str(Path(self.checkpoints).resolve()), "cfpilot": __version__,
                **({"snapshots_sha256": self.snapshots_sha256, "snapshots_fields": self.snapshots_fields}
                   if self.snapshots_file is not None else {})}
        if not self.objective.is_default:  # runs under the default objective keep their digests and folders
            keys["objective"] = self.objective
        if self.system:  # so do runs of the paper's model
            keys["system"] = self.system
        return keys

    def cell_fingerprint(self) -> str:
        """Digest of :meth:`cell_keys`: a resumed run reuses only chunks computed with the same settings."""
        return hashlib.sha256(json.dumps(self.cell_keys(), sort_keys=True, default=str).encode()).hexdigest()[:16]


def parse_agents(text: str) -> list[str]:
    """``"all"`` or comma-separated names (registered, plugins, ``package.module:Class``); ``ValueError`` otherwise."""
    names = in_all() if text.strip() == "all" else [t.strip() for t in text.split(",") if t.strip()]
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
    model = model_of(config)
    return stack_snapshots([model.draw(stream_rng(seed, TEST_STREAM, *config.size, i)) for i in range(start, n)])
