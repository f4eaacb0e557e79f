"""A literal, loop-by-loop transcription of docs/model.md §2 for one snapshot and one assignment.

It is the independent oracle of the tests and the baseline of
``benchmarks/bench_rates.py``; it is slow by design and never used on a hot path.
"""

from __future__ import annotations

import math

import numpy as np

from cfenv.config import SystemConfig


def user_rates_loop(beta: np.ndarray, pilots: np.ndarray, config: SystemConfig) -> np.ndarray:
    """Per-user rates [bit/s] of one ``(M, K)`` snapshot and one ``(K,)`` assignment."""
    M, K = beta.shape
    tau_p, rho_p, rho_d, L = config.tau_p, config.rho_p, config.rho_d, config.L
    C = [[1.0 if pilots[k] == pilots[j] else 0.0 for j in range(K)] for k in range(K)]
    gamma = [[0.0] * K for _ in range(M)]
    for m in range(M):
        for k in range(K):
            denom = tau_p * rho_p * sum(beta[m, j] * C[k][j] for j in range(K)) + 1.0
            gamma[m][k] = tau_p * rho_p * beta[m, k] ** 2 / denom
    eta = [[1.0 / (L * sum(gamma[m])) for _ in range(K)] for m in range(M)]
    rates = np.empty(K)
    for k in range(K):
        signal = rho_d * L**2 * sum(math.sqrt(eta[m][k]) * gamma[m][k] for m in range(M)) ** 2
        contamination = 0.0
        for j in range(K):
            if j != k and C[k][j]:
                inner = sum(math.sqrt(eta[m][j]) * gamma[m][j] * beta[m, k] / beta[m, j] for m in range(M))
                contamination += rho_d * L**2 * inner**2
        uncertainty = rho_d * L * sum(eta[m][j] * gamma[m][j] * beta[m, k] for j in range(K) for m in range(M))
        sinr = signal / (contamination + uncertainty + 1.0)
        rates[k] = config.bandwidth_hz * math.log1p(sinr) / math.log(2.0)  # log2(1 + sinr)
    return rates
