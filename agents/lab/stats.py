"""Statistics shared by the harness and the studies."""

from __future__ import annotations

import math

import numpy as np

Z_95 = 1.959963984540054
"""two-sided 95 % normal quantile (confidence intervals use the normal approximation)"""


def ci95(values: np.ndarray) -> float:
    """Half-width of the 95 % confidence interval of the mean of ``values``:
    ``Z_95 * std(values, ddof=1) / sqrt(n)``; NaN for fewer than two values."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    return Z_95 * float(np.std(values, ddof=1)) / math.sqrt(n) if n > 1 else float("nan")
