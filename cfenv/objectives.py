"""What an assignment is chosen to maximise: one value type, :class:`Objective` (docs/model.md §2.1).

``Objective`` is a ``str`` enumeration, so the values users pass and files store ("sum", "min",
"proportional") are its members: ``Objective("min") == "min"``, it formats and serialises as its
name, and ``SystemConfig.objective`` holds one. Its methods replace the comparisons with "sum"
that the layers used to make: the value of per-user rates (:meth:`Objective.of_rates`), the
environments' reward (:meth:`Objective.reward`), the code the compiled kernels take
(:attr:`Objective.code`), units and labels for tables. Only the standard library is imported;
the array functions take numpy arrays or torch tensors.
"""

from __future__ import annotations

import enum
import math
from typing import Any

PROPORTIONAL_UNIT = 1e6
"""rate unit [bit/s] of the proportional-fairness objective sum_k ln(R_k / unit)"""
RATE_FLOOR = 1e-300
"""rates are floored here [bit/s] before the logarithm, so that a zero rate scores finite"""
MBPS = 1e6
"""bit/s per Mbit/s: rates are computed in bit/s and reported in Mbit/s (also :data:`cfenv.units.MBPS`)"""


def _is_torch(x: object) -> bool:
    return type(x).__module__.startswith("torch")


class Objective(str, enum.Enum):
    """The objective of an assignment's per-user rates R_k [bit/s] (eqs. (2.8), (2.10), (2.11))."""

    SUM = "sum"
    """sum_k R_k [bit/s]: the paper's, the default"""
    MIN = "min"
    """min_k R_k [bit/s]: max-min fairness"""
    PROPORTIONAL = "proportional"
    """sum_k ln(R_k / 1 Mbit/s) [nats]: proportional fairness"""

    __str__ = str.__str__
    __format__ = str.__format__

    def __repr__(self) -> str:  # messages and tables show the name users type: 'min'
        return repr(self.value)

    @classmethod
    def parse(cls, value: object) -> "Objective":
        """An Objective from its name (or itself); one ``ValueError`` naming the valid ones."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"objective must be one of {', '.join(m.value for m in cls)}, got {value!r}") from None

    @property
    def code(self) -> int:
        """The integer the compiled kernels take (0 sum, 1 min, 2 proportional)."""
        return list(Objective).index(self)

    @property
    def is_default(self) -> bool:
        """``SUM``: the objective runs, folders and caches were named without before objectives existed."""
        return self is Objective.SUM

    @property
    def in_nats(self) -> bool:
        """Whether the value is in nats (proportional) rather than a rate."""
        return self is Objective.PROPORTIONAL

    @property
    def unit(self) -> str:
        """The unit of :meth:`reward`: "Mbit/s" or "nats"."""
        return "nats" if self.in_nats else "Mbit/s"

    @property
    def label(self) -> str:
        """What the mean of :meth:`reward` is, for tables and axes, e.g. "minimum user rate [Mbit/s]"."""
        return {"sum": "sum rate [Mbit/s]", "min": "minimum user rate [Mbit/s]",
                "proportional": "sum of ln(R_k / 1 Mbit/s) [nats]"}[self.value]

    @property
    def tag(self) -> str:
        """``""`` for the default, else ``"_<name>"``: the suffix of names that predate objectives."""
        return "" if self.is_default else f"_{self.value}"

    def of_rates(self, rates: Any) -> Any:
        """The objective of per-user rates ``(..., K)`` [bit/s], shape ``(...)``: sum and min in bit/s,
        proportional in nats with rates floored at :data:`RATE_FLOOR`. numpy or torch."""
        torch = _is_torch(rates)
        if self is Objective.SUM:
            return rates.sum(-1)
        if self is Objective.MIN:
            return rates.amin(-1) if torch else rates.min(-1)
        if torch:
            return (rates.clamp_min(RATE_FLOOR).log() - math.log(PROPORTIONAL_UNIT)).sum(-1)
        import numpy as np

        return (np.log(np.maximum(rates, RATE_FLOOR)) - math.log(PROPORTIONAL_UNIT)).sum(-1)

    def reward(self, rates_mbps: Any) -> Any:
        """The objective of per-user rates ``(..., K)`` in Mbit/s, in the environments' reward units:
        sum_k R_k and min_k R_k in Mbit/s, sum_k ln(R_k / 1 Mbit/s) in nats."""
        if self.in_nats:  # the same nats whether the rates are in bit/s or Mbit/s
            return self.of_rates(rates_mbps * MBPS)
        return self.of_rates(rates_mbps)

    def in_reward_units(self, value: Any) -> Any:
        """A value of :meth:`of_rates` (bit/s or nats) in :meth:`reward`'s units (Mbit/s or nats)."""
        return value if self.in_nats else value / MBPS

    def advantage(self, reward: Any, baseline: Any, n_users: int) -> Any:
        """REINFORCE's advantage of rewards over a baseline (docs/model.md eq. (6.8)): relative for the
        rates (both > 0), the per-user difference for nats (a mean relative rate change, d ln R = dR / R)."""
        if self.in_nats:
            return (reward - baseline) / n_users
        return (reward - baseline) / baseline


OBJECTIVES: tuple[str, ...] = tuple(m.value for m in Objective)
"""the objective names, in kernel-code order"""
