"""System configuration of a cell-free massive MIMO network (docs/model.md §1).

Every physical constant of the simulator lives here, once, as a field of the
frozen :class:`SystemConfig`; derived quantities (the path-loss constant, the
noise power and the normalised powers) are computed from those fields in one
place. Only the standard library is imported.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

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

_INT_FIELDS = SIZE_FIELDS
_POSITIVE_FIELDS = (
    "area_side_m",
    "carrier_freq_mhz",
    "ap_height_m",
    "ue_height_m",
    "d0_m",
    "d1_m",
    "bandwidth_hz",
    "pilot_power_w",
    "ap_power_w",
)


@dataclass(frozen=True)
class SystemConfig:
    """One network size and its radio constants. Units are in the field names.

    Invalid values raise ``ValueError`` naming the field, e.g.
    ``SystemConfig(tau_p=0)`` -> ``tau_p must be an integer >= 1, got 0``.
    """

    M: int = 10
    """number of access points"""
    L: int = 2
    """antennas per access point"""
    K: int = 6
    """number of single-antenna users"""
    tau_p: int = 3
    """number of orthonormal pilot sequences"""
    area_side_m: float = 1000.0
    """side D of the square area [m]"""
    carrier_freq_mhz: float = 1900.0
    """carrier frequency f [MHz]"""
    ap_height_m: float = 15.0
    """AP antenna height [m] (enters only the path-loss constant)"""
    ue_height_m: float = 1.65
    """UE antenna height [m] (enters only the path-loss constant)"""
    shadowing_std_db: float = 8.0
    """log-normal shadowing standard deviation sigma_sh [dB]"""
    d0_m: float = 10.0
    """first break point of the three-slope path loss [m]"""
    d1_m: float = 50.0
    """second break point of the three-slope path loss [m]"""
    bandwidth_hz: float = 20e6
    """system bandwidth B [Hz]"""
    noise_figure_db: float = 9.0
    """receiver noise figure [dB]"""
    thermal_noise_dbm_per_hz: float = -174.0
    """thermal noise density k_B T0 [dBm/Hz]"""
    pilot_power_w: float = 0.1
    """uplink pilot power per user [W]"""
    ap_power_w: float = 0.2
    """downlink power per AP [W]"""
    wrap_around: bool = True
    """measure distances on the torus so that no AP sits at an edge"""
    shadow_near: bool = False
    """apply shadowing also where d <= d1 (off: the three-slope model of Ngo et al. 2017)"""

    def __post_init__(self) -> None:
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
            object.__setattr__(self, name, int(value))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name in _INT_FIELDS or isinstance(value, bool):
                continue
            if not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"{field.name} must be a finite number, got {value!r}")
        for name in ("wrap_around", "shadow_near"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        for name in _POSITIVE_FIELDS:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.shadowing_std_db < 0:
            raise ValueError(f"shadowing_std_db must be >= 0, got {self.shadowing_std_db!r}")
        if self.d1_m <= self.d0_m:
            raise ValueError(f"d1_m must be > d0_m, got d0_m={self.d0_m!r}, d1_m={self.d1_m!r}")

    # ----------------------------------------------------------------- derived
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

    def replace(self, **changes: object) -> "SystemConfig":
        """A copy with some fields changed; an unknown field raises ``TypeError``."""
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


#: The paper's Table II sizes by their label, e.g. ``PRESETS["10,2,6,3"]``.
PRESETS: dict[str, SystemConfig] = {
    size_label(s): SystemConfig(M=s[0], L=s[1], K=s[2], tau_p=s[3]) for s in TABLE2_SIZES
}

DEFAULT_CONFIG = SystemConfig()
