"""Statistics shared by the harness and the studies."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

REFERENCE_AGENT = "exhaustive"
"""the ratio reference where it ran (else the best agent at that size)"""
Z_95 = 1.959963984540054
"""two-sided 95 % normal quantile (confidence intervals use the normal approximation)"""


def ci95(values: np.ndarray) -> float:
    """Half-width of the 95 % confidence interval of the mean of ``values``:
    ``Z_95 * std(values, ddof=1) / sqrt(n)``; NaN for fewer than two values."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    return Z_95 * float(np.std(values, ddof=1)) / math.sqrt(n) if n > 1 else float("nan")


OUTAGE_PERCENTILE = 5.0
"""the "95 %-likely" per-user rate is this percentile of all users' rates over all test snapshots
(docs/model.md eq. (2.12)): the rate that 95 % of users reach"""
BOOTSTRAP_RESAMPLES = 1000
"""snapshot resamples behind the 95 % CI of the 95 %-likely rate"""
BOOTSTRAP_SEED = 20261201
"""fixed seed of that bootstrap: the same records give the same interval"""


def jain_index(rates: np.ndarray) -> np.ndarray:
    """Jain's fairness index (sum_k R_k)^2 / (K sum_k R_k^2) of per-user rates ``(..., K)``, shape
    ``(...)``, in [1/K, 1] (1: all equal; docs/model.md eq. (2.14)); NaN where every rate is 0."""
    rates = np.asarray(rates, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return rates.sum(-1) ** 2 / (rates.shape[-1] * (rates ** 2).sum(-1))


def rate_percentile(rates: np.ndarray, percentile: float = OUTAGE_PERCENTILE) -> float:
    """The ``percentile`` (default 5: the 95 %-likely rate) of all per-user rates ``(n, K)``, pooled
    over users and snapshots, by ``numpy.percentile``'s linear interpolation."""
    return float(np.percentile(np.asarray(rates, dtype=np.float64).ravel(), percentile))


def bootstrap_ci95(rates: np.ndarray, statistic: Any, resamples: int = BOOTSTRAP_RESAMPLES) -> float:
    """Half-width ``Z_95 * std`` of ``statistic`` over snapshot resamples (rows of ``rates``
    ``(n, K)`` drawn with replacement, fixed seed): users of one snapshot share its network, so
    snapshots, not users, are the independent units. NaN for fewer than two snapshots."""
    rates = np.asarray(rates, dtype=np.float64)
    n = rates.shape[0]
    if n < 2:
        return float("nan")
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    values = [statistic(rates[rng.integers(0, n, n)]) for _ in range(resamples)]
    return Z_95 * float(np.std(values, ddof=1))


def fairness_summary(rates_mbps: np.ndarray) -> dict[str, float]:
    """The fairness figures of per-user rates ``(n, K)`` [Mbit/s] of n test snapshots: mean minimum
    user rate and its CI (:func:`ci95` over snapshots), the 95 %-likely per-user rate
    (:func:`rate_percentile`) and its CI (:func:`bootstrap_ci95`), Jain's index averaged over
    snapshots (:func:`jain_index`) and its CI; CI = half-width of the 95 % interval."""
    rates_mbps = np.asarray(rates_mbps, dtype=np.float64)
    minima = rates_mbps.min(-1)
    jain = jain_index(rates_mbps)
    return {"mean_min_rate_mbps": float(minima.mean()), "ci95_min_rate_mbps": ci95(minima),
            "rate_5pct_mbps": rate_percentile(rates_mbps),
            "ci95_rate_5pct_mbps": bootstrap_ci95(rates_mbps, rate_percentile),
            "jain_index": float(jain.mean()), "ci95_jain_index": ci95(jain)}
