"""System configuration of a cell-free massive MIMO network (docs/model.md §1).

Every physical constant of the simulator lives here, once, as a field of the
frozen :class:`SystemConfig`; derived quantities (the path-loss constant, the
noise power and the normalised powers) are computed from those fields in one
place. Only the standard library is imported.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
from typing import Any
from dataclasses import dataclass

from cfenv.models.registry import PRE_LOG_MODELS, model_defaults, model_names, model_options  # the standard library only: the models load on first use
from cfenv.objectives import OBJECTIVES, Objective  # noqa: F401 -- OBJECTIVES re-exported (its old home)
from cfenv.units import SIZE_FIELDS, parse_size, size_label

#: The eight (M, L, K, tau_p) sizes of the paper's Table II (docs/model.md §3).
TABLE2_SIZES: tuple[tuple[int, int, int, int], ...] = (
    (10, 2, 6, 3),
    (10, 2, 9, 3),
    (10, 2, 12, 3),
    (10, 2, 15, 3),
    (30, 2, 20, 10),
    (35, 2, 20, 10),
    (40, 2, 20, 10),
    (45, 2, 20, 10),
)

#: Realistic network sizes (M, L, K, tau_p) of the tabu-search, scalable and graph-colouring
#: papers: the ``large`` size group (docs/literature.md).
LARGE_SIZES: tuple[tuple[int, int, int, int], ...] = (
    (100, 4, 40, 10),
    (200, 8, 50, 15),
    (100, 4, 100, 20),
)

#: The scalable model's study sizes (docs/model.md §8): a small one where exhaustive search is exact, and
#: the book's default (100 APs x 4 antennas, 40 users, 10 pilots; Demir et al. 2021, Section 5.3).
SCALABLE_SIZES: tuple[tuple[int, int, int, int], ...] = (
    (20, 2, 10, 3),
    (100, 4, 40, 10),
)

_INT_FIELDS = SIZE_FIELDS

MAX_SNAPSHOT_BYTES = 1 << 30
"""cap (1 GiB) on :attr:`SystemConfig.snapshot_bytes`, the estimated memory of one snapshot's
working set: a larger (M, L, K, tau_p) is refused by ``SystemConfig`` before anything is allocated"""

MAX_ANTENNAS = 10_000
"""largest accepted L (antennas per AP)"""

#: Accepted physical range ``(low, high, unit)`` of every float field, bounds included. The
#: ranges are wide (they cover every deployment the model is meant for, and the unit-power
#: configurations of the tests) and keep every derived quantity and rate finite in float64.
FIELD_RANGES: dict[str, tuple[float, float, str]] = {
    "area_side_m": (1.0, 1e5, "m"),
    "carrier_freq_mhz": (100.0, 1e5, "MHz"),
    "ap_height_m": (1.0, 1000.0, "m"),
    "ue_height_m": (0.5, 10.0, "m"),
    "shadowing_std_db": (0.0, 20.0, "dB"),
    "d0_m": (0.01, 1e4, "m"),
    "d1_m": (0.01, 1e5, "m"),
    "bandwidth_hz": (1.0, 1e12, "Hz"),
    "noise_figure_db": (0.0, 30.0, "dB"),
    "thermal_noise_dbm_per_hz": (-200.0, -100.0, "dBm/Hz"),
    "pilot_power_w": (1e-30, 1e6, "W"),
    "ap_power_w": (1e-30, 1e6, "W"),
    "asd_deg": (0.0, 90.0, "degrees"),
    "decorrelation_m": (0.01, 1e5, "m"),
    "antenna_spacing": (0.01, 10.0, "wavelengths"),
    "path_loss_intercept_db": (-300.0, 0.0, "dB"),
    "path_loss_slope_db": (0.0, 100.0, "dB per decade"),
}

DEFAULT_MODEL_NAME = "paper"
"""the default of :attr:`SystemConfig.model` (:data:`cfenv.models.registry.DEFAULT_MODEL`)"""

MODEL_DEPENDENT = ("noise_figure_db", "shadowing_std_db", "ap_height_m", "cluster")
"""fields whose default (``None``) is the model's (:data:`cfenv.models.registry.MODEL_DEFAULTS`)"""
OPTIONAL_FLOATS = ("asd_deg",)
"""float fields for which ``None`` is a value (not a default to resolve)"""


@dataclass(frozen=True)
class SystemConfig:
    """One network size and its radio constants. Units are in the field names.

    Every field has a documented range (its docstring; :data:`FIELD_RANGES` for the float
    fields). Invalid values raise one ``ValueError`` naming the field, e.g.
    ``SystemConfig(tau_p=0)`` -> ``tau_p must be an integer >= 1, got 0``. Two checks span
    fields: ``d1_m > d0_m``, and the path loss at ``d <= d0_m`` (the largest gain the model
    gives) must be a loss (<= 0 dB), since a passive channel never gains power. Sizes whose
    snapshot would not fit in memory (:attr:`snapshot_bytes` above :data:`MAX_SNAPSHOT_BYTES`)
    are refused before anything is allocated.
    """

    M: int = 10
    """number of access points, an integer >= 1 (M, K and tau_p are bounded jointly by the 1 GiB snapshot cap)"""
    L: int = 2
    """antennas per access point, an integer in [1, 10000]"""
    K: int = 6
    """number of single-antenna users, an integer >= 1"""
    tau_p: int = 3
    """number of orthonormal pilot sequences, an integer >= 1"""
    area_side_m: float = 1000.0
    """side D of the square area [m], in [1, 1e5]"""
    carrier_freq_mhz: float = 1900.0
    """carrier frequency f [MHz], in [100, 1e5] (the COST-231 Hata constant is fitted for 1500-2000)"""
    ap_height_m: float | None = None
    """AP antenna height [m], in [1, 1000]; default the model's: 15 (paper: enters only the path-loss
    constant), 11.65 (scalable: the APs 10 m above the users, ap_height_m - ue_height_m)"""
    ue_height_m: float = 1.65
    """UE antenna height [m], in [0.5, 10] (enters only the path-loss constant)"""
    shadowing_std_db: float | None = None
    """log-normal shadowing standard deviation sigma_sh [dB], in [0, 20]; default the model's: 8 (paper), 4 (scalable)"""
    d0_m: float = 10.0
    """first break point of the three-slope path loss [m], in [0.01, 1e4]"""
    d1_m: float = 50.0
    """second break point of the three-slope path loss [m], in [0.01, 1e5] and > d0_m"""
    bandwidth_hz: float = 20e6
    """system bandwidth B [Hz], in [1, 1e12]"""
    noise_figure_db: float | None = None
    """receiver noise figure [dB], in [0, 30]; default the model's: 9 (paper), 7 (scalable)"""
    thermal_noise_dbm_per_hz: float = -174.0
    """thermal noise density k_B T0 [dBm/Hz], in [-200, -100]"""
    pilot_power_w: float = 0.1
    """uplink pilot power per user [W], in [1e-30, 1e6]"""
    ap_power_w: float = 0.2
    """downlink power per AP [W], in [1e-30, 1e6]"""
    wrap_around: bool = True
    """measure distances on the torus so that no AP sits at an edge"""
    shadow_near: bool = False
    """apply shadowing also where d <= d1 (off: the three-slope model of Ngo et al. 2017)"""
    objective: Objective = Objective.SUM
    """what agents maximise and tables rank by (:class:`cfenv.objectives.Objective`, given as itself or
    its name): "sum" (sum rate), "min" (minimum user rate) or "proportional" (sum of log user rates)"""
    model: str = "paper"
    """the system model (:mod:`cfenv.models`, docs/model.md §0): "paper" (the seed paper's, docs/model.md
    §1-2), "scalable" (the user-centric model of Bjornson & Sanguinetti 2020 and Demir et al. 2021,
    docs/model.md §8) or another registered name ("paper-reference": the paper's physics without fast paths)"""
    link: str = "downlink"
    """the link whose rates are scored: "downlink" or "uplink" (the scalable model; the paper's has only the downlink)"""
    cluster: str | None = None
    """which APs serve which users: "dcc" (the scalable model's default: dynamic cooperation clusters that
    follow the assignment) or "all" (every AP serves every user: the paper's, the only one it has)"""
    lsfd: bool = False
    """uplink large-scale fading decoding with n-opt weights (the scalable model, uplink only)"""
    tau_c: int = 200
    """samples per coherence block, an integer in [2, 1e6] above tau_p: the pre-log factor (tau_c - tau_p) / tau_c
    of the scalable model (the paper's has none)"""
    pilot_overhead: str = "budget"
    """what the pilots cost (the scalable model, docs/model.md §8.7): "budget" (tau_p pilots of length tau_p are
    sent, whatever the assignment uses) or "used" (an assignment using n <= tau_p pilots sends length-n
    sequences: pre-log (tau_c - n) / tau_c, estimation gain n p; the pilot length becomes a decision)"""
    asd_deg: float | None = None
    """angular standard deviation [degrees] of the local scattering model, azimuth and elevation, in [0, 90]
    (the scalable model; ``None``: uncorrelated, i.i.d. Rayleigh fading; the book's default is 15)"""
    decorrelation_m: float = 9.0
    """decorrelation distance of the shadowing between users [m], in [0.01, 1e5] (the scalable model)"""
    antenna_spacing: float = 0.5
    """spacing of an AP's uniform linear array [wavelengths], in [0.01, 10] (the scalable model)"""
    path_loss_intercept_db: float = -30.5
    """3GPP Urban Microcell path loss at 1 m [dB], in [-300, 0] (the scalable model)"""
    path_loss_slope_db: float = 36.7
    """3GPP Urban Microcell path-loss slope [dB per decade of the 3-D distance], in [0, 100] (the scalable model)"""

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or self.model not in model_names():
            raise ValueError(f"model must be one of {', '.join(model_names())}, got {self.model!r}")
        for name, value in model_defaults(self.model).items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.L > MAX_ANTENNAS:
            raise ValueError(f"L must be an integer in [1, {MAX_ANTENNAS}], got {self.L!r}")
        if isinstance(self.tau_c, bool) or not isinstance(self.tau_c, numbers.Integral) or not 2 <= self.tau_c <= 10**6:
            raise ValueError(f"tau_c must be an integer in [2, 1e6], got {self.tau_c!r}")
        object.__setattr__(self, "tau_c", int(self.tau_c))
        for name, (low, high, unit) in FIELD_RANGES.items():
            value = getattr(self, name)
            if value is None and name in OPTIONAL_FLOATS:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            if not low <= value <= high:
                raise ValueError(f"{name} must lie in [{low:g}, {high:g}] {unit}, got {value!r}")
        for name in ("wrap_around", "shadow_near", "lsfd"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        object.__setattr__(self, "objective", Objective.parse(self.objective))
        for name, accepted in model_options(self.model).items():
            if getattr(self, name) not in accepted:
                raise ValueError(f"{name} must be one of {', '.join(map(str, accepted))} under model {self.model!r}, "
                                 f"got {getattr(self, name)!r}")
        if self.lsfd and self.link != "uplink":
            raise ValueError("lsfd=True is large-scale fading decoding, an uplink scheme: set link='uplink'")
        if self.model in PRE_LOG_MODELS:
            self._check_scalable()
        else:
            self._check_paper()
        if self.snapshot_bytes > MAX_SNAPSHOT_BYTES:
            raise ValueError(
                f"size (M, L, K, tau_p) = {self.size} needs about {self.snapshot_bytes / 2**30:.3g} GiB per "
                f"snapshot, above the cap of {MAX_SNAPSHOT_BYTES / 2**30:g} GiB (cfenv.config.MAX_SNAPSHOT_BYTES)"
            )

    def _check_scalable(self) -> None:
        """The cross-field checks of the scalable model: a pre-log above zero, APs above the users, and a
        path loss that stays a loss at the shortest (vertical) distance."""
        if self.tau_p >= self.tau_c:
            raise ValueError(f"tau_p must be below tau_c (the pre-log factor (tau_c - tau_p) / tau_c), "
                             f"got tau_p={self.tau_p}, tau_c={self.tau_c}")
        if self.ap_height_m <= self.ue_height_m:
            raise ValueError(f"ap_height_m must exceed ue_height_m (the APs stand above the users), "
                             f"got {self.ap_height_m!r} <= {self.ue_height_m!r}")
        gain = self.path_loss_intercept_db - self.path_loss_slope_db * math.log10(self.ap_height_m - self.ue_height_m)
        if gain > 0.0:
            raise ValueError(f"the path loss at the shortest distance is a gain of {gain:+.1f} dB (a passive channel "
                             "must lose power): check path_loss_intercept_db, path_loss_slope_db and the heights")

    def _check_paper(self) -> None:
        """The cross-field checks of the paper's three-slope path loss."""
        if self.d1_m <= self.d0_m:
            raise ValueError(f"d1_m must be > d0_m, got d0_m={self.d0_m!r}, d1_m={self.d1_m!r}")
        gain = self.max_path_gain_db
        if gain > 0.0:
            raise ValueError(
                f"the path loss at d <= d0_m is a gain of {gain:+.1f} dB (a passive channel must lose power): "
                "check carrier_freq_mhz, ap_height_m, ue_height_m, d0_m and d1_m"
            )

    # ------------------------------------------------------------------ memory
    @property
    def snapshot_bytes(self) -> int:
        """Estimated bytes of one snapshot's largest arrays: float64 beta (M K) and positions
        (2 (M + K)), and the rate kernel's per-thread scratch (tau_p (3 M + K) float64)."""
        M, K, tau_p = self.M, self.K, self.tau_p
        correlation = 16 * M * K * self.L * self.L if self.model in PRE_LOG_MODELS else 0  # complex R (M, K, L, L)
        return 8 * (M * K + 2 * (M + K) + tau_p * (3 * M + K)) + correlation

    # ----------------------------------------------------------------- derived
    @property
    def objective_code(self) -> int:
        """The compiled kernels' code of :attr:`objective` (:attr:`cfenv.objectives.Objective.code`)."""
        return self.objective.code

    @property
    def size(self) -> tuple[int, int, int, int]:
        """(M, L, K, tau_p)."""
        return (self.M, self.L, self.K, self.tau_p)

    @property
    def path_loss_const_db(self) -> float:
        """Lc [dB] of the COST-231 Hata model (140.7 dB at the defaults)."""
        log_f = math.log10(self.carrier_freq_mhz)
        return (
            46.3
            + 33.9 * log_f
            - 13.82 * math.log10(self.ap_height_m)
            - (1.1 * log_f - 0.7) * self.ue_height_m
            + (1.56 * log_f - 0.8)
        )

    @property
    def max_path_gain_db(self) -> float:
        """The path loss (a gain in dB) at ``d <= d0``, the largest the model gives (docs/model.md eq. (1.3))."""
        return -self.path_loss_const_db - 15.0 * math.log10(self.d1_m / 1000.0) - 20.0 * math.log10(self.d0_m / 1000.0)

    @property
    def noise_power_dbm(self) -> float:
        """N0 = k_B T0 B NF [dBm]."""
        return self.thermal_noise_dbm_per_hz + 10.0 * math.log10(self.bandwidth_hz) + self.noise_figure_db

    @property
    def noise_power_w(self) -> float:
        """N0 [W]."""
        return 10.0 ** ((self.noise_power_dbm - 30.0) / 10.0)

    @property
    def rho_p(self) -> float:
        """Normalised pilot power p_pilot / N0 (linear)."""
        return self.pilot_power_w / self.noise_power_w

    @property
    def rho_d(self) -> float:
        """Normalised AP downlink power p_AP / N0 (linear)."""
        return self.ap_power_w / self.noise_power_w

    @property
    def system_fields(self) -> dict[str, Any]:
        """The fields other than the size and the objective that differ from the defaults (the model's
        defaults for the model-dependent ones), ``model`` first: ``SystemConfig.from_size(size,
        objective=..., **system_fields)`` rebuilds this config. Empty for the paper's default system."""
        base = SystemConfig(model=self.model) if self.model in model_names() else SystemConfig()
        skip = (*SIZE_FIELDS, "objective", "model")
        changed = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                   if f.name not in skip and getattr(self, f.name) != getattr(base, f.name)}
        return {"model": self.model, **changed} if self.model != DEFAULT_MODEL_NAME or changed else {}

    @property
    def system_tag(self) -> str | None:
        """A short, stable name of :attr:`system_fields` for run folders (``None`` for the paper's default
        system, whose folders keep their names): ``<model>-<link>-<8 hex digits of the fields>``."""
        fields = self.system_fields
        if not fields:
            return None
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:8]
        return f"{self.model}-{self.link}-{digest}"

    def replace(self, **changes: object) -> "SystemConfig":
        """A copy with some fields changed; an unknown field raises ``TypeError``. A change of ``model``
        resets the model-dependent fields (:data:`MODEL_DEPENDENT`) still at the old model's defaults to
        the new model's, unless ``changes`` names them."""
        new_model = changes.get("model", self.model)
        if new_model != self.model and isinstance(new_model, str):
            old = model_defaults(self.model)
            for name in MODEL_DEPENDENT:
                if name not in changes and getattr(self, name) == old[name]:
                    changes[name] = None
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_size(cls, size: tuple[int, int, int, int] | str, **changes: object) -> "SystemConfig":
        """Config for an (M, L, K, tau_p) tuple or a ``"M,L,K,tau_p"`` string."""
        if isinstance(size, str):
            size = parse_size(size)
        if len(size) != 4:
            raise ValueError(f"size must be (M, L, K, tau_p), got {size!r}")
        M, L, K, tau_p = size
        return cls(M=M, L=L, K=K, tau_p=tau_p, **changes)  # type: ignore[arg-type]


def check_config(config: Any, name: str = "config") -> SystemConfig:
    """``config`` if it is a :class:`SystemConfig`; else one ``ValueError`` naming what was given (the
    boundary of the environments and the rate functions, which would fail deep inside)."""
    if not isinstance(config, SystemConfig):
        hint = (f"SystemConfig(**{config!r})" if isinstance(config, dict)
                else "SystemConfig(M=..., L=..., K=..., tau_p=...) or SystemConfig.from_size('10,2,6,3')")
        raise ValueError(f"{name} must be a cfenv.SystemConfig, got {type(config).__name__} {config!r}: "
                         f"pass {hint}")
    return config


#: The paper's Table II sizes by their label, e.g. ``PRESETS["10,2,6,3"]``.
PRESETS: dict[str, SystemConfig] = {
    size_label(s): SystemConfig(M=s[0], L=s[1], K=s[2], tau_p=s[3]) for s in TABLE2_SIZES
}

DEFAULT_CONFIG = SystemConfig()
