"""The scalable user-centric cell-free model (docs/model.md §8): ``SystemConfig(model="scalable")``.

Bjornson & Sanguinetti, "Scalable cell-free massive MIMO systems", IEEE Trans. Commun. 68(7), 2020,
and Demir, Bjornson & Sanguinetti, *Foundations of User-Centric Cell-Free Massive MIMO*, Foundations
and Trends in Signal Processing 14(3-4), 2021 (Section 5.3 set-up; public MATLAB code
``emilbjornson/cell-free-book``): M APs of L antennas (the book's N) and K single-antenna users on a
square with wrap-around, 3GPP Urban Microcell path loss on the 3-D distance, shadowing correlated
between users, local-scattering spatial correlation (or i.i.d. fading), MMSE estimation with the
assignment's pilot sharing, dynamic cooperation clusters that follow the assignment, and the closed-form
SE of the uplink (local MR, with or without n-opt LSFD) or the downlink (MR, distributed power heuristic),
times the pre-log factor; LP-MMSE, P-MMSE and MMSE by simulation (:meth:`ScalableModel.monte_carlo_se`).
Rates are ``bandwidth_hz x SE`` [bit/s], so the objectives apply unchanged.

A snapshot holds the per-AP gains ``beta`` (linear, what heuristics and observations read), the
positions, and ``extras["R"]``, the ``(M, K, L, L)`` complex correlation matrices over the noise power
(the book's ``R``: ``trace(R[m, k]) / L = beta[m, k] / N0``). Its one fast path is ``screening`` (the
neighbourhood evaluator of :mod:`cfenv.models.scalable_moves`); agents otherwise take their generic path
on :meth:`ScalableModel.objective`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cfenv.channel import Snapshot, validate_snapshot
from cfenv.config import SystemConfig
from cfenv.models.base import SystemModel
from cfenv.models.scalable_channel import correlation_matrices, draw_scalable
from cfenv.models.scalable_mc import SCHEMES, monte_carlo_se
from cfenv.models.scalable_moves import ScalableNeighbourhood
from cfenv.models.scalable_se import Prepared, serving_mask, spectral_efficiency
from cfenv.rates import as_pilot_indices

HERMITIAN_RTOL = 1e-8
"""largest ``|R - R^H|`` accepted in a given R, relative to its largest entry"""
GAIN_RTOL = 1e-6
"""largest relative difference accepted between ``trace(R) / L`` and ``beta / N0`` in a given snapshot"""


class ScalableModel(SystemModel):
    """The scalable user-centric model; the link, clusters, LSFD and fading come from the config."""

    name = "scalable"
    description = ("the scalable user-centric model (Bjornson & Sanguinetti 2020; Demir et al. 2021): 3GPP UMi "
                   "path loss, correlated shadowing, spatial correlation, DCC, uplink/downlink MR SE (docs/model.md §8)")
    links = ("uplink", "downlink")
    decides_serving = True
    processing = SCHEMES
    snapshot_extras = {"R": "(..., M, K, L, L) complex128: spatial correlation matrices over the noise power"}

    def __init__(self, config: SystemConfig) -> None:
        super().__init__(config)
        self._neighbourhood: ScalableNeighbourhood | None = None

    def draw(self, rng: np.random.Generator, batch_shape: tuple[int, ...] | int = ()) -> Snapshot:
        if isinstance(batch_shape, (int, np.integer)):
            batch_shape = (int(batch_shape),)
        beta, ap, ue, R = draw_scalable(self.config, rng, tuple(batch_shape))
        return Snapshot(beta, ap, ue, {"R": R})

    def validate(self, snapshot: object, *, batch_shape: tuple[int, ...] | None = (),
                 where: str = "snapshot", copy: bool = True) -> Snapshot:
        """Gains and positions as for every model; ``R`` checked when given (shape, finite, Hermitian,
        its traces matching the gains), else rebuilt from the gains and positions."""
        base = validate_snapshot(snapshot, self.config, batch_shape=batch_shape, where=where, copy=copy)
        given = snapshot.extras.get("R") if isinstance(snapshot, Snapshot) else (
            snapshot.get("R") if isinstance(snapshot, dict) else None)
        if given is None:
            R = correlation_matrices(base.beta, base.ap_positions, base.ue_positions, self.config)
        else:
            R = self._checked_correlation(given, base, where)
        return Snapshot(base.beta, base.ap_positions, base.ue_positions, {"R": R})

    def _checked_correlation(self, given: Any, base: Snapshot, where: str) -> np.ndarray:
        cfg = self.config
        try:
            R = np.asarray(given)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}.R must be an array ({err})") from None
        shape = (*base.batch_shape, cfg.M, cfg.K, cfg.L, cfg.L)
        if R.shape != shape:
            raise ValueError(f"{where}.R must have shape (..., M, K, L, L) = {shape}, got {R.shape}")
        if R.dtype.kind not in "fc":
            raise ValueError(f"{where}.R must hold real or complex floats, got {R.dtype}")
        R = R.astype(np.complex128)
        if not np.all(np.isfinite(R)):
            raise ValueError(f"{where}.R contains NaN or inf (must be finite)")
        scale = float(np.max(np.abs(R))) if R.size else 0.0
        if R.size and np.max(np.abs(R - np.conj(np.swapaxes(R, -1, -2)))) > HERMITIAN_RTOL * scale:
            raise ValueError(f"{where}.R must be Hermitian (R[..., a, b] = conj(R[..., b, a]))")
        traced = np.real(np.trace(R, axis1=-2, axis2=-1)) / cfg.L
        expected = base.beta / cfg.noise_power_w
        if R.size and np.max(np.abs(traced - expected) / expected) > GAIN_RTOL:
            raise ValueError(f"{where}.R does not match beta: trace(R[m, k]) / L must equal beta[m, k] / N0 "
                             f"(N0 = {cfg.noise_power_w:.4g} W, the noise power of the config)")
        return R

    def spectral_efficiency(self, snapshots: Snapshot, pilots: Any) -> np.ndarray:
        """Per-user SE [bit/s/Hz] ``(..., K)`` of the configured link (batch dimensions broadcast)."""
        return self._per_snapshot(snapshots, pilots, lambda prep, p: spectral_efficiency(prep, p, self.config))

    def user_rates(self, snapshots: Snapshot, pilots: Any) -> np.ndarray:
        return self.config.bandwidth_hz * self.spectral_efficiency(snapshots, pilots)

    def serving(self, snapshots: Snapshot, pilots: Any) -> np.ndarray:
        cfg = self.config
        return self._per_snapshot(snapshots, pilots,
                                  lambda prep, p: serving_mask(prep, p, cfg.tau_p, cfg.cluster), (cfg.M, cfg.K), bool)

    def user_axes(self) -> dict[str, int]:
        return {"R": -3}

    def monte_carlo_se(self, snapshot: Snapshot, pilots: np.ndarray, schemes: tuple[str, ...], n: int,
                       rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The configured link's SE under LP-MMSE, P-MMSE, MMSE or MR by simulation
        (:mod:`cfenv.models.scalable_mc`)."""
        if snapshot.batch_shape != ():
            raise ValueError(f"monte_carlo_se takes one snapshot, got a batch of shape {snapshot.batch_shape}")
        pilots = np.asarray(as_pilot_indices(pilots, self.config))
        return monte_carlo_se(Prepared.of(snapshot.extras["R"]), pilots, self.config, tuple(schemes), n, rng)

    @property
    def screening(self) -> ScalableNeighbourhood | None:
        """The neighbourhood evaluator (:mod:`cfenv.models.scalable_moves`): exact for the uplink, a
        screening surrogate for the downlink; none with LSFD."""
        if self.config.lsfd or self.config.pilot_overhead != "budget":  # the evaluator assumes length tau_p
            return None
        if self._neighbourhood is None:  # one per model: its cache of group terms lives across calls
            self._neighbourhood = ScalableNeighbourhood(self.config)
        return self._neighbourhood

    def _per_snapshot(self, snapshots: Snapshot, pilots: Any, compute: Any,
                      tail: tuple[int, ...] | None = None, dtype: type = np.float64) -> np.ndarray:
        """``compute(Prepared, (A, K) pilots)`` on each snapshot of the batch, its rows scattered back
        to the broadcast ``(..., *tail)`` shape (``tail`` default ``(K,)``) of ``dtype``."""
        cfg = self.config
        pilots = np.asarray(as_pilot_indices(pilots, cfg))
        batch = snapshots.batch_shape
        shape = np.broadcast_shapes(batch, pilots.shape[:-1])
        which = np.broadcast_to(np.arange(int(np.prod(batch, dtype=np.int64))).reshape(batch), shape).ravel()
        flat = np.broadcast_to(pilots, (*shape, cfg.K)).reshape(-1, cfg.K)
        R = snapshots.extras["R"].reshape(-1, cfg.M, cfg.K, cfg.L, cfg.L)
        tail = (cfg.K,) if tail is None else tail
        out = np.empty((flat.shape[0], *tail), dtype=dtype)
        for index in np.unique(which):
            rows = np.flatnonzero(which == index)
            out[rows] = compute(Prepared.of(R[index]), flat[rows])
        return out.reshape(*shape, *tail)
