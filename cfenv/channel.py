"""Network snapshots: drops, torus distances, three-slope path loss, shadowing (docs/model.md §1).

All draws come from an explicit ``numpy.random.Generator`` and are batched over
any leading ``batch_shape``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cfenv.config import SystemConfig
from cfenv.rates import validate_beta

SNAPSHOT_FIELDS = ("beta", "ap_positions", "ue_positions")


@dataclass(frozen=True)
class Snapshot:
    """One (or a batch of) network realisations.

    Arrays given as anything else (lists, tuples) are converted with ``numpy.asarray``; the
    three shapes must agree (else ``ValueError``). Values are checked where a snapshot enters
    against a :class:`SystemConfig` (:func:`validate_snapshot`).

    Attributes:
        beta: ``(..., M, K)`` large-scale fading, linear power gain in (0, 1], float64.
        ap_positions: ``(..., M, 2)`` AP coordinates in [0, D) [m], float64.
        ue_positions: ``(..., K, 2)`` user coordinates in [0, D) [m], float64.
        extras: a model's further arrays by name (e.g. spatial correlation matrices), each with
            the same leading batch dimensions (:attr:`cfenv.models.base.SystemModel.snapshot_extras`);
            empty for the paper's model.
    """

    beta: np.ndarray
    ap_positions: np.ndarray
    ue_positions: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in SNAPSHOT_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, np.ndarray):
                try:
                    value = np.asarray(value)
                except (TypeError, ValueError) as err:
                    raise ValueError(f"Snapshot.{name} must be an array, got {type(value).__name__} ({err})") from None
                object.__setattr__(self, name, value)
        beta, ap, ue = self.beta, self.ap_positions, self.ue_positions
        ok = beta.ndim >= 2 and ap.ndim == beta.ndim and ue.ndim == beta.ndim
        if ok:
            batch, (M, K) = beta.shape[:-2], beta.shape[-2:]
            ok = ap.shape == (*batch, M, 2) and ue.shape == (*batch, K, 2)
        if not ok:
            raise ValueError(
                "Snapshot shapes must be beta (..., M, K), ap_positions (..., M, 2), ue_positions (..., K, 2) "
                f"with the same leading dimensions, got {beta.shape}, {ap.shape}, {ue.shape}"
            )
        extras = {str(name): np.asarray(value) for name, value in dict(self.extras).items()}
        batch = beta.shape[:-2]
        for name, value in extras.items():
            if value.shape[:len(batch)] != batch:
                raise ValueError(f"Snapshot.extras[{name!r}] must lead with the batch dimensions {batch}, "
                                 f"got shape {value.shape}")
        object.__setattr__(self, "extras", extras)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.beta.shape[:-2]

    def __getitem__(self, index: int | slice | np.ndarray) -> "Snapshot":
        """Index the batch dimension(s)."""
        return Snapshot(self.beta[index], self.ap_positions[index], self.ue_positions[index],
                        {name: value[index] for name, value in self.extras.items()})

    def __len__(self) -> int:
        if self.beta.ndim < 3:
            raise TypeError("a single Snapshot has no length")
        return self.beta.shape[0]


def as_snapshot(value: "Snapshot | np.ndarray | dict", extra_names: tuple[str, ...] = ()) -> Snapshot:
    """A :class:`Snapshot` from a Snapshot (as it is), an ``info``-style dict (``beta``, the positions and
    the arrays named in ``extra_names``, a model's ``snapshot_extras``) or a bare beta ``(..., M, K)``
    (positions 0): for code that holds only what an environment's ``info`` gives. Values are not
    checked here; a dict without one of :data:`SNAPSHOT_FIELDS` is a ``ValueError``."""
    if isinstance(value, Snapshot):
        return value
    if isinstance(value, dict):
        missing = [name for name in SNAPSHOT_FIELDS if name not in value]
        if missing:
            raise ValueError(f"a snapshot dict lacks {missing[0]!r} (needs {', '.join(SNAPSHOT_FIELDS)})")
    given = value if isinstance(value, dict) else {"beta": value}
    beta = np.asarray(given["beta"])
    ap = given.get("ap_positions", np.zeros((*beta.shape[:-1], 2)))
    ue = given.get("ue_positions", np.zeros((*beta.shape[:-2], beta.shape[-1], 2)))
    return Snapshot(beta, np.asarray(ap), np.asarray(ue), {k: np.asarray(given[k]) for k in extra_names if k in given})


def stack_snapshots(snapshots: "list[Snapshot]") -> Snapshot:
    """Single snapshots (or batches of one shape) stacked along a new first axis, extras included."""
    if not snapshots:
        raise ValueError("stack_snapshots needs at least one snapshot")
    names = snapshots[0].extras.keys()
    return Snapshot(np.stack([s.beta for s in snapshots]), np.stack([s.ap_positions for s in snapshots]),
                    np.stack([s.ue_positions for s in snapshots]),
                    {name: np.stack([s.extras[name] for s in snapshots]) for name in names})


def validate_snapshot(snapshot: object, config: SystemConfig, *, batch_shape: tuple[int, ...] | None = (),
                      where: str = "snapshot", copy: bool = True) -> Snapshot:
    """Check a snapshot given from outside against ``config``; returns it as float64 arrays.

    Accepts a :class:`Snapshot` or a dict with ``beta``, ``ap_positions`` and
    ``ue_positions`` (arrays or lists; other keys, such as those of an ``info`` dict, are
    ignored). Raises one ``ValueError`` naming the problem unless beta is a real
    float32/float64 ``(*batch_shape, M, K)`` array in (0, 1] (:func:`cfenv.rates.validate_beta`)
    and the positions are real, finite and inside the D x D area ``[0, D]``.
    ``batch_shape=None`` accepts any leading dimensions. ``copy=False`` returns the given
    arrays themselves where they already are float64.
    """
    if isinstance(snapshot, dict):
        missing = [name for name in SNAPSHOT_FIELDS if name not in snapshot]
        if missing:
            raise ValueError(f"{where} lacks {missing[0]!r} (needs beta, ap_positions, ue_positions)")
        given = [snapshot[name] for name in SNAPSHOT_FIELDS]
    elif isinstance(snapshot, Snapshot):
        given = [getattr(snapshot, name) for name in SNAPSHOT_FIELDS]
    else:
        raise ValueError(  # noqa: TRY004 -- bad input at the boundary is one ValueError
            f"{where} must be a Snapshot or a dict, got {type(snapshot).__name__}")
    arrays = {}
    for name, value in zip(SNAPSHOT_FIELDS, given):
        try:
            arrays[name] = np.asarray(value)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}.{name} must be an array, got {type(value).__name__} ({err})") from None
    beta = arrays["beta"]
    batch = beta.shape[:-2] if batch_shape is None else tuple(batch_shape)
    expected = {"beta": (*batch, config.M, config.K), "ap_positions": (*batch, config.M, 2),
                "ue_positions": (*batch, config.K, 2)}
    for name, shape in expected.items():
        got = arrays[name].shape
        if got != shape:
            raise ValueError(f"{where}.{name} must have shape {shape}, got {got}")
    validate_beta(beta, config, name=f"{where}.beta")
    side = config.area_side_m
    for name in ("ap_positions", "ue_positions"):
        pos = arrays[name]
        if pos.dtype.kind not in "iuf" or pos.dtype == np.float16:
            raise ValueError(f"{where}.{name} must be real float32/float64 (or integer) coordinates, got {pos.dtype}")
        if not np.all(np.isfinite(pos)):
            raise ValueError(f"{where}.{name} contains NaN or inf (must be finite)")
        if pos.size and (pos.min() < 0 or pos.max() > side):
            raise ValueError(f"{where}.{name} must lie inside the area [0, D] = [0, {side:g}] m, "
                             f"got values in [{pos.min():g}, {pos.max():g}]")
    return Snapshot(*(arrays[name].astype(np.float64, copy=copy) for name in SNAPSHOT_FIELDS))


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
    """Linear beta = 10^((PL(d) + sigma_sh z) / 10), z ~ N(0, 1) i.i.d., at most 1.

    Shadowing applies where ``d > d1`` only, or everywhere when ``config.shadow_near``.
    A passive channel never gains power, so beta is capped at 1 (0 dB): the log-normal
    tail reaches it only beyond ``-PL / sigma_sh`` standard deviations (about 12 at the
    defaults), so the cap changes no realistic draw (valid configs keep PL(d) <= 0 dB).
    Returns an array of the shape of ``distance_m``, float64.
    """
    pl_db = path_loss_db(distance_m, config)
    z = rng.standard_normal(np.shape(distance_m))
    shadow_db = config.shadowing_std_db * z
    if not config.shadow_near:
        shadow_db = np.where(np.asarray(distance_m) > config.d1_m, shadow_db, 0.0)
    return np.minimum(10.0 ** ((pl_db + shadow_db) / 10.0), 1.0)


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
