"""Network snapshots: drops, torus distances, three-slope path loss, shadowing (docs/model.md §1).

All draws come from an explicit ``numpy.random.Generator`` and are batched over
any leading ``batch_shape``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cfenv.config import SystemConfig


@dataclass(frozen=True)
class Snapshot:
    """One (or a batch of) network realisations.

    Attributes:
        beta: ``(..., M, K)`` large-scale fading, linear power gain, float64.
        ap_positions: ``(..., M, 2)`` AP coordinates in [0, D) [m], float64.
        ue_positions: ``(..., K, 2)`` user coordinates in [0, D) [m], float64.
    """

    beta: np.ndarray
    ap_positions: np.ndarray
    ue_positions: np.ndarray

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.beta.shape[:-2]

    def __getitem__(self, index: int | slice | np.ndarray) -> "Snapshot":
        """Index the batch dimension(s)."""
        return Snapshot(self.beta[index], self.ap_positions[index], self.ue_positions[index])

    def __len__(self) -> int:
        if self.beta.ndim < 3:
            raise TypeError("a single Snapshot has no length")
        return self.beta.shape[0]


def pairwise_distance_m(
    ap_positions: np.ndarray, ue_positions: np.ndarray, side_m: float, wrap_around: bool = True
) -> np.ndarray:
    """Horizontal AP-user distances.

    Args:
        ap_positions: ``(..., M, 2)`` [m].
        ue_positions: ``(..., K, 2)`` [m].
        side_m: side D of the square area [m].
        wrap_around: measure on the torus (the nearest of the 9 images), so that
            no distance exceeds ``D / sqrt(2)``.

    Returns:
        ``(..., M, K)`` distances [m], float64.
    """
    delta = np.abs(ap_positions[..., :, None, :] - ue_positions[..., None, :, :])
    if wrap_around:
        delta = np.minimum(delta, side_m - delta)
    return np.sqrt(np.sum(delta * delta, axis=-1))


def path_loss_db(distance_m: np.ndarray, config: SystemConfig) -> np.ndarray:
    """Three-slope path loss (a negative gain) [dB] of docs/model.md §1, elementwise.

    ``d > d1``: ``-Lc - 35 log10(d)``; ``d0 < d <= d1``: ``-Lc - 15 log10(d1) - 20 log10(d)``;
    ``d <= d0``: ``-Lc - 15 log10(d1) - 20 log10(d0)``; with d, d0, d1 in km.
    """
    d_km = np.asarray(distance_m, dtype=np.float64) / 1000.0
    d0_km = config.d0_m / 1000.0
    d1_km = config.d1_m / 1000.0
    lc = config.path_loss_const_db
    safe = np.maximum(d_km, d0_km)  # avoids log10(0); the d <= d0 branch is constant anyway
    far = -lc - 35.0 * np.log10(safe)
    middle = -lc - 15.0 * np.log10(d1_km) - 20.0 * np.log10(safe)
    near = -lc - 15.0 * np.log10(d1_km) - 20.0 * np.log10(d0_km)
    return np.where(d_km > d1_km, far, np.where(d_km > d0_km, middle, near))


def large_scale_fading(
    distance_m: np.ndarray, config: SystemConfig, rng: np.random.Generator
) -> np.ndarray:
    """Linear beta = 10^((PL(d) + sigma_sh z) / 10), z ~ N(0, 1) i.i.d.

    Shadowing applies where ``d > d1`` only, or everywhere when ``config.shadow_near``.
    Returns an array of the shape of ``distance_m``, float64.
    """
    pl_db = path_loss_db(distance_m, config)
    z = rng.standard_normal(np.shape(distance_m))
    shadow_db = config.shadowing_std_db * z
    if not config.shadow_near:
        shadow_db = np.where(np.asarray(distance_m) > config.d1_m, shadow_db, 0.0)
    return 10.0 ** ((pl_db + shadow_db) / 10.0)


def draw_snapshots(
    config: SystemConfig, rng: np.random.Generator, batch_shape: tuple[int, ...] | int = ()
) -> Snapshot:
    """Drop APs and users uniformly on the D x D square and draw their fading.

    Args:
        config: the system size and radio constants.
        rng: the only source of randomness.
        batch_shape: leading batch dimensions (``()`` for one snapshot).

    Returns:
        A :class:`Snapshot` whose arrays have ``batch_shape`` leading dimensions.
    """
    if isinstance(batch_shape, (int, np.integer)):
        batch_shape = (int(batch_shape),)
    batch_shape = tuple(batch_shape)
    side = config.area_side_m
    ap = rng.uniform(0.0, side, size=(*batch_shape, config.M, 2))
    ue = rng.uniform(0.0, side, size=(*batch_shape, config.K, 2))
    distance = pairwise_distance_m(ap, ue, side, config.wrap_around)
    beta = large_scale_fading(distance, config, rng)
    return Snapshot(beta=beta, ap_positions=ap, ue_positions=ue)
