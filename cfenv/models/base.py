"""The system-model interface: what every physics model provides, and what it may offer (docs/model.md §0).

A model is bound to one :class:`cfenv.config.SystemConfig` (sizes, powers, objective). It
provides three things, which every agent, environment and the harness use:

* :meth:`SystemModel.draw` -- snapshots from an explicit ``numpy.random.Generator``;
* :meth:`SystemModel.validate` -- a snapshot given from outside, checked (one ``ValueError``);
* :meth:`SystemModel.user_rates` -- the exact per-user rates [bit/s] of any batch of hard
  assignments, ``(..., K)`` pilot indices, on a :class:`cfenv.channel.Snapshot` batch.

From these the base class derives :meth:`~SystemModel.objective` (the configured objective),
:meth:`~SystemModel.gains` (the per-AP gains heuristics read) and
:meth:`~SystemModel.restrict_users` (the first n users, for the sequential environment). The
fast paths are optional: :attr:`~SystemModel.incremental` (compiled kernels for searches and the
polish) and :attr:`~SystemModel.rate_features` (per-option rate features for learners) are
``None`` on a model that does not offer them, and every agent then takes its generic path
(slower, built on :meth:`~SystemModel.objective` alone) or gives its one-line reason.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, Protocol

import numpy as np

from cfenv.channel import Snapshot
from cfenv.config import SystemConfig


class IncrementalKernel(Protocol):
    """A model's compiled fast path for searches: the arrays and the parameter record its numba
    kernels take. The searches' and the polish's kernels (:mod:`agents.search`) are written against
    this layout; a model offering another layout offers its own kernels beside it."""

    layout: str
    """name of the kernel layout the search kernels must understand (``"paper-pairwise"``)"""

    def kernel_inputs(self, snapshots: Snapshot) -> tuple[np.ndarray, ...]:
        """The per-snapshot arrays the kernels take, computed once per batch."""

    def params(self) -> Any:
        """The kernels' typed parameter record (a ``NamedTuple`` numba reads by field name)."""


FAST_PATHS = ("incremental", "rate_features", "differentiable", "screening")
"""the optional fast paths a model may offer (docs/model.md §0.2)"""


class SystemModel(abc.ABC):
    """One physics model bound to one :class:`SystemConfig`.

    Subclasses set the class attributes and implement :meth:`draw`, :meth:`validate` and
    :meth:`user_rates`; register them with :func:`cfenv.models.register_model`. See
    docs/model.md §0 for the contract every method must meet.
    """

    name: ClassVar[str]
    """the registry name, the value of ``SystemConfig.model``"""
    description: ClassVar[str]
    """one line: the model and its source"""
    links: ClassVar[tuple[str, ...]] = ("downlink",)
    """the links whose rates :meth:`user_rates` can give"""
    decides_serving: ClassVar[bool] = False
    """whether an assignment also decides which APs serve which users (:meth:`serving`)"""
    processing: ClassVar[tuple[str, ...]] = ()
    """the processing schemes :meth:`monte_carlo_se` can simulate (none: the model has its closed form only)"""
    snapshot_extras: ClassVar[dict[str, str]] = {}
    """extra arrays a snapshot of this model holds in ``Snapshot.extras`` (name -> shape and dtype,
    batch dimensions first), beside the per-AP gains ``beta`` and the positions"""

    def __init__(self, config: SystemConfig) -> None:
        self.config = config

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config.size})"

    # ---------------------------------------------------------------- required
    @abc.abstractmethod
    def draw(self, rng: np.random.Generator, batch_shape: tuple[int, ...] | int = ()) -> Snapshot:
        """Snapshots with ``batch_shape`` leading dimensions; ``rng`` is the only randomness."""

    @abc.abstractmethod
    def validate(self, snapshot: object, *, batch_shape: tuple[int, ...] | None = (),
                 where: str = "snapshot", copy: bool = True) -> Snapshot:
        """A snapshot from outside (a :class:`Snapshot` or a dict of arrays) checked against the
        config: one ``ValueError`` naming the problem; ``batch_shape=None`` accepts any batch."""

    @abc.abstractmethod
    def user_rates(self, snapshots: Snapshot, pilots: Any) -> np.ndarray:
        """Exact per-user rates [bit/s], ``(..., K)`` float64, of hard assignments ``pilots``
        (``(..., K)`` indices or ``(..., K, tau_p)`` one-hot, :func:`cfenv.rates.as_pilot_indices`)
        on the snapshots (batch dimensions broadcast)."""

    # ----------------------------------------------------------------- derived
    def objective(self, snapshots: Snapshot, pilots: Any) -> np.ndarray:
        """``config.objective`` of hard assignments, ``(...)``: ``"sum"`` and ``"min"`` in bit/s,
        ``"proportional"`` in nats (docs/model.md eqs. (2.8), (2.10), (2.11))."""
        from cfenv.rates import objective_from_rates

        return objective_from_rates(self.user_rates(snapshots, pilots), self.config.objective)

    def sum_rate(self, snapshots: Snapshot, pilots: Any) -> np.ndarray:
        """Sum over users of :meth:`user_rates` [bit/s], ``(...)``: what tables report beside the objective."""
        return self.user_rates(snapshots, pilots).sum(-1)

    def gains(self, snapshots: Snapshot) -> np.ndarray:
        """Per-AP large-scale gains ``(..., M, K)``, linear in (0, 1]: what heuristics, observations
        and learners read (the average channel gain over an AP's antennas)."""
        return snapshots.beta

    def serving(self, snapshots: Snapshot, pilots: Any) -> np.ndarray:
        """``(..., M, K)`` bool: AP m serves user k under this assignment (every AP every user here)."""
        shape = np.broadcast_shapes(snapshots.beta.shape[:-2], np.shape(pilots)[:-1])
        return np.ones((*shape, self.config.M, self.config.K), dtype=bool)

    def restrict_users(self, snapshots: Snapshot, n: int) -> tuple[Snapshot, SystemConfig]:
        """The first ``n`` users alone (the sequential environment's partial assignment), with the
        config of ``K = n``; extras are sliced on the axis their model names (:meth:`user_axes`), the
        others (no user axis) kept whole."""
        beta = np.ascontiguousarray(snapshots.beta[..., :n])
        axes = self.user_axes()
        extras = {name: value if name not in axes else np.take(value, np.arange(n), axis=axes[name])
                  for name, value in snapshots.extras.items()}
        sub = Snapshot(beta, snapshots.ap_positions, snapshots.ue_positions[..., :n, :], extras)
        return sub, self.config.replace(K=n)

    def user_axes(self) -> dict[str, int]:
        """The user axis (negative, counted from the end) of each extra array that has one (e.g.
        ``{"R": -3}`` for ``R (..., M, K, L, L)``); none here."""
        return {}

    def monte_carlo_se(self, snapshot: Snapshot, pilots: np.ndarray, schemes: tuple[str, ...], n: int,
                       rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``{scheme: (K,) SE [bit/s/Hz]}`` of one ``(K,)`` assignment on one snapshot under each of
        :attr:`processing`'s ``schemes``, from ``n`` channel realizations drawn from ``rng`` (the same for
        every scheme): the rescoring of ``evaluate.py --score``. Optional; ``ValueError`` where the
        model has no such simulation."""
        raise ValueError(f"the {self.name} model has no Monte-Carlo processing schemes (its SE is its closed form): "
                         "--score needs the scalable model (--model scalable)")

    # ----------------------------------------------------------- fast paths
    @property
    def incremental(self) -> IncrementalKernel | None:
        """The compiled incremental evaluator the searches and the polish use, or ``None``."""
        return None

    @property
    def rate_features(self) -> Any | None:
        """What learners with rate features need (the paper model: its constants), or ``None``."""
        return None

    @property
    def differentiable(self) -> Any | None:
        """The torch path (exact ``objective(beta, pilots)`` on tensors, ``relaxed_sum_rate(beta, q)``,
        ``relaxed_objective(beta, q)`` of pilot probabilities, differentiable): what the unsupervised
        loss and training on a GPU need, or ``None``."""
        return None

    @property
    def screening(self) -> Any | None:
        """A neighbourhood evaluator for the generic searches, or ``None`` (every candidate scored by
        :meth:`objective`): ``candidate_values(snapshots (N,), pilots (N, K), use_swaps) -> (N, C)``, the
        objective of every single-user move (then pair swap) in ``agents.search.generic.moves`` /
        ``swaps`` order, and ``exact`` (bool): whether those values are the objective itself (then
        the searches take them as they are) or a surrogate (then its best are scored exactly)."""
        return None

    @property
    def fast_paths(self) -> tuple[str, ...]:
        """Names of the fast paths offered, for messages and ``--list-models``."""
        return tuple(name for name in FAST_PATHS if getattr(self, name) is not None)
