"""The seed paper's system model (docs/model.md §1-2), the first :class:`~cfenv.models.base.SystemModel`.

Ngo et al. 2017 style: M APs of L antennas, K single-antenna users, COST-231 Hata three-slope
path loss with independent log-normal shadowing, uncorrelated Rayleigh fading, every AP serving
every user, conjugate-beamforming downlink with uniform power control, rate B log2(1 + SINR)
(no pre-log factor). Its physics lives in :mod:`cfenv.channel` (snapshots),
:mod:`cfenv.rates` (the array reference of the rate) and :mod:`cfenv._kernels` (its compiled
kernel); this class is the seam through which everything else reaches them.

Fast paths: :attr:`PaperModel.incremental` (the ``"paper-pairwise"`` kernel layout of
:mod:`agents.search`: users first ``beta_t`` and the assignment-independent term ``bu``) and
:attr:`PaperModel.rate_features` (the constants of the learners' per-option rate features).
:class:`PaperReferenceModel` is the same physics without fast paths and with the array
reference formula: the generic path of every agent, and a check of the fast ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cfenv import rates
from cfenv.channel import Snapshot, draw_snapshots, validate_snapshot
from cfenv.config import SystemConfig
from cfenv.models.base import SystemModel


@dataclass(frozen=True)
class PaperKernel:
    """The paper model's incremental evaluator: the inputs of the compiled search kernels."""

    config: SystemConfig
    layout: str = "paper-pairwise"

    def kernel_inputs(self, snapshots: Snapshot) -> tuple[np.ndarray, np.ndarray]:
        """``(S, K, M)`` contiguous float64 beta^T and the assignment-independent ``(S, K)``
        beamforming-uncertainty term (:func:`cfenv.rates.prepare_snapshots`)."""
        return rates.prepare_snapshots(snapshots.beta, self.config)

    def params(self) -> Any:
        """The kernels' parameter record (:func:`cfenv._kernels.rate_params`)."""
        from cfenv import _kernels

        return _kernels.rate_params(self.config)


@dataclass(frozen=True)
class PaperRateConstants:
    """What the learners' per-option rate features need beyond beta (docs/model.md eqs. (2.1)-(2.7)):
    L, tau_p rho_p, rho_d and rho_d L^2."""

    L: float
    tau_rho: float
    rho_d: float

    @property
    def scale(self) -> float:
        """rho_d L^2, the factor of S_k and PC_k."""
        return self.rho_d * self.L * self.L

    @classmethod
    def of(cls, config: SystemConfig, tau_p: int | None = None) -> "PaperRateConstants":
        """The constants of ``config`` (at ``tau_p`` pilots when given: a size-generalised model)."""
        tau = config.tau_p if tau_p is None else tau_p
        return cls(float(config.L), float(tau * config.rho_p), float(config.rho_d))


@dataclass(frozen=True)
class PaperTorchRates:
    """The paper model's torch (autograd) path: exact rates of hard assignments on torch tensors, and
    the relaxed rates of pilot probabilities the unsupervised loss differentiates (docs/model.md eq. (2.9))."""

    config: SystemConfig

    def objective(self, beta: Any, pilots: Any) -> Any:
        """``config.objective`` of hard assignments on torch beta ``(..., M, K)``, on beta's device."""
        return rates.objective_value(beta, pilots, self.config)

    def relaxed_sum_rate(self, beta: Any, q: Any) -> Any:
        """Relaxed sum rate [bit/s] of row-stochastic ``q`` ``(..., K, tau_p)`` (eq. (2.9) summed)."""
        return rates.relaxed_sum_rate(beta, q, self.config)

    def relaxed_objective(self, beta: Any, q: Any) -> Any:
        """Relaxed ``config.objective`` (:func:`cfenv.rates.relaxed_objective`)."""
        return rates.relaxed_objective(beta, q, self.config)


class PaperModel(SystemModel):
    """The seed paper's model: every AP serves every user, conjugate-beamforming downlink."""

    name = "paper"
    description = ("the seed paper's model (Ngo et al. 2017 style): three-slope path loss, independent "
                   "shadowing, every AP serves every user, conjugate-beamforming downlink (docs/model.md §1-2)")
    backend: rates.Backend = "auto"
    """the rate backend of :meth:`user_rates`: the compiled kernel for numpy input"""

    def draw(self, rng: np.random.Generator, batch_shape: tuple[int, ...] | int = ()) -> Snapshot:
        return draw_snapshots(self.config, rng, batch_shape)

    def validate(self, snapshot: object, *, batch_shape: tuple[int, ...] | None = (),
                 where: str = "snapshot", copy: bool = True) -> Snapshot:
        return validate_snapshot(snapshot, self.config, batch_shape=batch_shape, where=where, copy=copy)

    def user_rates(self, snapshots: Snapshot, pilots: Any) -> np.ndarray:
        return rates.user_rates(snapshots.beta, pilots, self.config, backend=self.backend)

    def sum_rate(self, snapshots: Snapshot, pilots: Any) -> np.ndarray:
        return rates.sum_rate(snapshots.beta, pilots, self.config, backend=self.backend)

    def objective(self, snapshots: Snapshot, pilots: Any) -> np.ndarray:
        # the sum through sum_rate itself: the same kernel, the same bits as before the interface
        return rates.objective_value(snapshots.beta, pilots, self.config, backend=self.backend)

    @property
    def incremental(self) -> PaperKernel | None:
        return PaperKernel(self.config)

    @property
    def rate_features(self) -> PaperRateConstants | None:
        return PaperRateConstants.of(self.config)

    @property
    def differentiable(self) -> PaperTorchRates | None:
        return PaperTorchRates(self.config)


class PaperReferenceModel(PaperModel):
    """The paper's physics through the array reference formula and with no fast path: what every
    agent's generic path runs on (tests compare it with the fast paths)."""

    name = "paper-reference"
    description = "the paper's model through the array reference formula, no fast paths (a check)"
    backend = "reference"

    @property
    def incremental(self) -> None:
        return None

    @property
    def rate_features(self) -> None:
        return None

    @property
    def differentiable(self) -> None:
        return None
