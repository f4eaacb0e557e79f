"""The one agent interface of cfpilot, its checks, and the seed streams.

Every agent -- heuristic, search, neural, quantum or reinforcement learning --
answers :meth:`Agent.assign` for a batch of network snapshots and
:meth:`Agent.act` for one ``CellFreePilot-v0`` step. Learnable agents add
:meth:`LearnableAgent.fit`, :meth:`LearnableAgent.save` and
:meth:`LearnableAgent.load`.
"""

from __future__ import annotations

import contextlib
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from cfenv.channel import Snapshot, as_snapshot
from cfenv.config import SystemConfig
from cfenv.models import model_of
from agents.runs import RunKey, run_folder, run_name  # noqa: F401 - run_folder, run_name: 0.7 names

# Disjoint random streams: the first entropy word after the user's seed names the stream,
# so training, validation and test snapshots can never coincide, whatever the seeds.
TRAIN_STREAM = 0
VALIDATION_STREAM = 1
TEST_STREAM = 2
AGENT_STREAM = 3
RESCORE_STREAM = 4
"""the channel realizations of ``evaluate.py --score`` (one stream per test snapshot)"""
WARM_UP_SEED = 12345
"""seed of the untimed warm-up call (:meth:`Agent.warm_up`) before a timed run (its choices are discarded)"""


def stream_rng(seed: int, stream: int, *key: int | str) -> np.random.Generator:
    """A generator for ``(seed, stream, *key)``; strings in ``key`` are hashed with CRC-32."""
    words = [int(seed), int(stream)] + [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in key]
    return np.random.default_rng(words)


def canonical_pilots(pilots: np.ndarray) -> np.ndarray:
    """Relabel pilots in order of first use (restricted-growth form), batched.

    The sum rate is invariant under relabelling, so two assignments describe the
    same pilot partition iff their canonical forms are equal.

    Args:
        pilots: ``(..., K)`` int pilot indices.
    Returns:
        ``(..., K)`` int64, first user on pilot 0, next new pilot 1, ...
    """
    pilots = np.asarray(pilots, dtype=np.int64)
    K = pilots.shape[-1]
    flat = pilots.reshape(-1, K)
    n_labels = int(flat.max()) + 1 if flat.size else 1
    # first[b, t]: index of the first user holding label t (K if unused)
    hits = flat[:, :, None] == np.arange(n_labels)
    first = np.where(hits.any(1), hits.argmax(1), K)
    rank = np.argsort(np.argsort(first, axis=1, kind="stable"), axis=1, kind="stable")
    return np.take_along_axis(rank, flat, axis=1).reshape(pilots.shape)


def checked_pilots(pilots: Any, batch: int, config: SystemConfig, who: str) -> np.ndarray:
    """What an agent returned as ``(batch, K)`` int64 pilots in [0, tau_p); ``RuntimeError`` naming
    what came back otherwise. Only integer arrays pass: fractional, NaN, bool or string pilots are
    refused, never truncated."""
    try:
        array = np.asarray(pilots)
    except (TypeError, ValueError) as err:
        raise RuntimeError(f"{who} returned {type(pilots).__name__} pilots that are not an array ({err})") from None
    expected = (batch, config.K)
    if array.shape != expected:
        raise RuntimeError(f"{who} returned pilots of shape {array.shape}, expected {expected}")
    if array.dtype.kind not in "iu":
        sample = repr(array.flat[0].item()) if array.size else "none"
        if array.dtype.kind in "fc" and array.size and not np.all(np.isfinite(array)):
            sample = "NaN" if np.isnan(array).any() else "inf"
        elif array.dtype.kind == "f" and array.size and np.any(array != np.round(array)):
            sample = repr(array[array != np.round(array)].flat[0].item())
        raise RuntimeError(f"{who} returned {array.dtype} pilots (e.g. {sample}): pilots must be an integer "
                           f"array with values in [0, {config.tau_p})")
    if array.size and (array.min() < 0 or array.max() >= config.tau_p):
        bad = array[(array < 0) | (array >= config.tau_p)].flat[0]
        raise RuntimeError(f"{who} returned pilot {int(bad)}, outside [0, {config.tau_p})")
    return array.astype(np.int64, copy=False)


class Agent(ABC):
    """Chooses one pilot per user for each network snapshot.

    Subclasses set :attr:`name` and implement
    :meth:`_assign`; everything else (shape checks, config handling, the
    environment adaptor) is shared.

    Args:
        config: the system the agent will face; needed by :meth:`act`, optional for
            :meth:`assign`, which may be given the config per call.
        seed: seed of the agent's own generator (random choices, restarts).
    """

    name: ClassVar[str] = "agent"
    """registry name; the one-line descriptions live in :mod:`agents.registry`"""
    needs_positions: ClassVar[bool] = False
    """reads AP and user positions, not only the fading: skipped on a snapshots file without them"""

    def __init__(self, config: SystemConfig | None = None, seed: int = 0) -> None:
        self.config = config
        self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)

    # ---------------------------------------------------------------- protocol
    def assign(self, snapshots: Snapshot, config: SystemConfig | None = None,
               rng: np.random.Generator | None = None) -> np.ndarray:
        """Pilot assignments for a batch of snapshots.

        Args:
            snapshots: a :class:`Snapshot` (or a dict of its three arrays): ``beta`` ``(B, M, K)``
                (or a single ``(M, K)``), real float32/float64 in (0, 1]; positions [m], finite,
                inside the ``[0, D]`` square. Anything else raises one ``ValueError``
                (the model's ``validate``, :func:`cfenv.channel.validate_snapshot` for the paper's).
            config: the system (defaults to the agent's own).
            rng: generator for random choices (defaults to the agent's own, seeded stream).

        Returns:
            ``(B, K)`` (or ``(K,)`` for a single snapshot) int64 pilots in [0, tau_p).
        """
        cfg = self._resolve_config(config)
        batch = self._checked_snapshots(snapshots, cfg)
        single = batch.beta.ndim == 2
        if single:
            batch = batch[None]
        reason = self.unsupported_reason(cfg)
        if reason is not None:
            raise ValueError(f"{self.name} cannot run at (M, L, K, tau_p) = {cfg.size}: {reason}")
        pilots = checked_pilots(self._assign(batch, cfg, rng if rng is not None else self._rng),
                                batch.beta.shape[0], cfg, self.name)
        return pilots[0] if single else pilots

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """One ``CellFreePilot-v0`` action ``(K,)`` from ``env.reset``'s ``(obs, info)``."""
        extras = tuple(model_of(self.config).snapshot_extras) if self.config is not None else ()
        return self.assign(as_snapshot(info, extras))

    def unsupported_reason(self, config: SystemConfig) -> str | None:
        """Why the agent cannot run at this size (``None`` if it can), e.g. a search too large."""
        return None

    def warm_up(self, snapshots: Snapshot, config: SystemConfig) -> None:
        """Pay the one-time costs (JIT compilation, first calls) before a timed run: one untimed
        :meth:`assign` on the first snapshot on a stream of its own (its choices are discarded).
        An agent whose every call costs a whole search overrides it with a tiny problem."""
        self.assign(snapshots[:1], config, np.random.default_rng(WARM_UP_SEED))

    @abstractmethod
    def _assign(self, snapshots: Snapshot, config: SystemConfig, rng: np.random.Generator) -> np.ndarray:
        """``(B, K)`` pilots for validated ``(B, M, K)`` snapshots."""

    # ----------------------------------------------------------------- helpers
    @staticmethod
    def _checked_snapshots(snapshots: Any, config: SystemConfig) -> Snapshot:
        """``snapshots`` validated against ``config``, as float64 arrays (single or batched)."""
        beta = snapshots.get("beta") if isinstance(snapshots, dict) else getattr(snapshots, "beta", None)
        shape = np.shape(beta) if beta is not None else None
        if shape is None or len(shape) not in (2, 3) or tuple(shape[-2:]) != (config.M, config.K):
            raise ValueError(f"snapshots.beta must be (B, M, K) = (B, {config.M}, {config.K}), got {shape}")
        return model_of(config).validate(snapshots, batch_shape=tuple(shape[:-2]), where="snapshots", copy=False)

    def _resolve_config(self, config: SystemConfig | None) -> SystemConfig:
        cfg = config or self.config
        if cfg is None:
            raise ValueError(f"{self.name} needs a SystemConfig: pass config= to the agent or to assign()")
        return cfg

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, seed={self.seed})"


class LearnableAgent(Agent):
    """An agent with parameters: trained by :meth:`fit`, stored as data by :meth:`save`.

    A trained agent keeps what its checkpoint says about it in :attr:`meta` (at least
    ``train_time_s``). Checkpoints live in ``runs/<agent>/<M>-<L>-<K>-<tau_p>/<run>/``
    (:meth:`run_dir`), which is where ``evaluate.py`` looks for them.
    """

    meta: dict[str, Any]
    losses: ClassVar[tuple[str, ...]] = ("unsupervised", "supervised")
    """training losses the agent supports; the first is its default"""
    run_kind: ClassVar[str | None] = None
    """what names its runs instead of the training loss (``"rl"`` for the Stable-Baselines3 agents)"""
    size_generalisable: ClassVar[bool] = False
    """one trained model runs at any (M, K, tau_p) (the harness's ``--trained-at``)"""
    resumable: ClassVar[bool] = False
    """``fit(resume=True)`` continues a cut run from its run folder's checkpoint"""
    settings_class: ClassVar[type | None] = None
    """the dataclass whose fields are the training options :meth:`fit` takes (``train.py`` offers
    an agent the flags of its fields and refuses the others)"""
    budgets: ClassVar[dict[str, dict[str, Any]]] = {}
    """named training budgets (``train.py --budget NAME``), each overriding fields of its default"""

    @classmethod
    def named_budget(cls, name: str | None) -> dict[str, Any]:
        """The fields of the named budget ``name`` (:attr:`budgets`; ``{}`` for ``None``);
        ``ValueError`` naming the budgets there are for another name."""
        if name is None:
            return {}
        if name not in cls.budgets:
            raise ValueError(f"{cls.name} has no budget {name!r}; named budgets: {', '.join(cls.budgets) or 'none'}")
        return dict(cls.budgets[name])

    def check_fit(self, config: SystemConfig, **settings: Any) -> None:
        """``ValueError`` if :meth:`fit` with these arguments would be refused, found before any
        training (``train.py`` checks every size first); nothing to check by default."""

    @classmethod
    def model_key(cls) -> str:
        """The name the agent's runs are filed under (its own; a hybrid's model's)."""
        return cls.name

    @classmethod
    def run_key(cls, config: SystemConfig, seed: int, loss: str = "unsupervised") -> RunKey:
        """The :class:`agents.runs.RunKey` of this agent's model for a size, objective
        (``config.objective``), seed and loss (``run_kind`` instead where the agent declares one)."""
        return RunKey(cls.model_key(), config.size, cls.run_kind or loss, config.objective, seed, config.system_tag)

    @classmethod
    def run_dir(cls, runs_dir: str | Path, config: SystemConfig, seed: int, loss: str = "unsupervised") -> Path:
        """The run folder of this agent's model (:meth:`run_key`)."""
        return cls.run_key(config, seed, loss).folder(runs_dir)

    @classmethod
    def has_checkpoint(cls, directory: str | Path) -> bool:
        """Whether ``directory`` holds a finished model (its ``config.json``)."""
        return (Path(directory) / "config.json").exists()

    @abstractmethod
    def parameter_count(self) -> int:
        """Trainable parameters of the trained model."""

    @abstractmethod
    def fit(self, config: SystemConfig, **kwargs: Any) -> dict[str, Any]:
        """Train for ``config``; returns a summary (losses, timings)."""

    @abstractmethod
    def save(self, directory: str | Path) -> Path:
        """Write ``config.json`` + weights into ``directory``; returns it."""

    @classmethod
    @abstractmethod
    def load(cls, directory: str | Path, device: str = "cpu", config: SystemConfig | None = None) -> "LearnableAgent":
        """Rebuild an agent saved by :meth:`save`; ``ValueError`` if ``config`` is given and its
        size differs from the one the agent was trained for."""


@contextlib.contextmanager
def thread_limits(torch_threads: int | None = None, numba_threads: int | None = None) -> Iterator[None]:
    """Run with ``torch_threads`` torch intra-op threads and ``numba_threads`` numba threads
    (``None``: unchanged; numba's capped at its pool size), then restore both."""
    import numba
    import torch

    before = torch.get_num_threads(), numba.get_num_threads()
    if torch_threads is not None:
        torch.set_num_threads(int(torch_threads))
    if numba_threads is not None:
        numba.set_num_threads(min(int(numba_threads), numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        numba.set_num_threads(before[1])
