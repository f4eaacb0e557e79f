"""Compiled (numba) kernel of the hard-assignment rate, the hot path of every search.

Same formula as :func:`cfenv.rates._rate_terms` (the reference it is tested
against), specialised to hard assignments: users are bucketed by pilot and
only same-pilot pairs are visited, so one assignment costs
O(M K + M sum_t n_t^2) instead of O(M K^2).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from cfenv.config import SystemConfig

INV_LN2 = 1.0 / math.log(2.0)
LOG1P_BELOW = 1e-2
"""SINR below which log2(1 + x) is computed as log1p(x) / ln 2"""
CHUNK = 256
"""assignments per parallel work item (scratch buffers are allocated per chunk)"""


FASTMATH = {"reassoc", "contract", "nsz"}
"""reassociation lets LLVM vectorise the sums over APs; no finite-math assumptions"""


@njit(cache=True, fastmath=FASTMATH, inline="always")
def rate_of_sinr(sinr, bandwidth):
    """R = B log2(1 + SINR) [bit/s] (docs/model.md eq. (2.7)); below :data:`LOG1P_BELOW` through
    log1p, which keeps weak users' relative precision (log2 is faster elsewhere)."""
    if sinr < LOG1P_BELOW:
        return bandwidth * math.log1p(sinr) * INV_LN2
    return bandwidth * math.log2(1.0 + sinr)


@njit(cache=True, fastmath=FASTMATH, inline="always")
def rates_one(beta_t, bu, pilots, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth,
              group_sum, group_sq, inv, sqrt_eta, members, start, fill, y_diag, pc, out):
    """Per-user rates of one assignment into ``out`` (K,). beta_t is (K, M)."""
    K, M = beta_t.shape
    for t in range(tau_p):
        start[t] = 0
        for m in range(M):
            group_sum[t, m] = 0.0
            group_sq[t, m] = 0.0
    for k in range(K):
        t = pilots[k]
        start[t] += 1
        for m in range(M):
            b = beta_t[k, m]
            group_sum[t, m] += b
            group_sq[t, m] += b * b
    # bucket users by pilot (counting sort): members[start[t]:start[t+1]]
    acc = 0
    for t in range(tau_p):
        n = start[t]
        start[t] = acc
        fill[t] = acc
        acc += n
    start[tau_p] = acc
    for k in range(K):
        t = pilots[k]
        members[fill[t]] = k
        fill[t] += 1
    for t in range(tau_p):
        for m in range(M):
            inv[t, m] = tau_rho_p / (tau_rho_p * group_sum[t, m] + 1.0)
    for m in range(M):
        sqrt_eta[m] = 0.0
    for t in range(tau_p):
        for m in range(M):
            sqrt_eta[m] += inv[t, m] * group_sq[t, m]  # sum_k gamma[m, k]
    for m in range(M):
        if sqrt_eta[m] > 0.0:
            sqrt_eta[m] = 1.0 / math.sqrt(n_antennas * sqrt_eta[m])
        # else every gamma[m, k] underflowed to 0 (beta[m, :] below ~1e-160): the weight of AP m
        # stays 0 instead of 1/0, as in cfenv.rates._rate_terms
    for t in range(tau_p):
        for m in range(M):
            inv[t, m] *= sqrt_eta[m]  # now w[t, m] = sqrt(eta_m) c-factor
    for k in range(K):
        pc[k] = 0.0
    for t in range(tau_p):
        lo = start[t]
        hi = start[t + 1]
        for a in range(lo, hi):
            ka = members[a]
            s = 0.0
            for m in range(M):
                b = beta_t[ka, m]
                s += inv[t, m] * b * b
            y_diag[ka] = s
            for c in range(a + 1, hi):
                kc = members[c]
                x = 0.0
                for m in range(M):
                    x += inv[t, m] * beta_t[ka, m] * beta_t[kc, m]
                x2 = x * x
                pc[ka] += x2
                pc[kc] += x2
    scale = rho_d * n_antennas * n_antennas
    for k in range(K):
        out[k] = rate_of_sinr(scale * y_diag[k] * y_diag[k] / (scale * pc[k] + bu[k] + 1.0), bandwidth)


PROPORTIONAL_UNIT = 1e6
"""rate unit [bit/s] of the proportional-fairness objective sum_k ln(R_k / unit)"""
RATE_FLOOR = 1e-300
"""rates are floored here before the logarithm, so that a zero rate scores finite"""


@njit(cache=True, fastmath=FASTMATH, inline="always")
def objective_start(code):
    """The objective of no users: the start of :func:`objective_add`'s accumulation."""
    return math.inf if code == 1 else 0.0


@njit(cache=True, fastmath=FASTMATH, inline="always")
def objective_add(total, rate, code):
    """Accumulate one user's rate [bit/s] into an objective (code 0 sum, 1 min, 2 sum of
    ln(R / 1 Mbit/s)); partial objectives over groups of users combine the same way."""
    if code == 0:
        return total + rate
    if code == 1:
        return min(total, rate)
    return total + math.log(max(rate, RATE_FLOOR) / PROPORTIONAL_UNIT)


@njit(cache=True, fastmath=FASTMATH, inline="always")
def objective_of(rates, code):
    """Objective of one assignment's per-user rates (K,) [bit/s]: code 0 sum [bit/s], 1 min
    [bit/s], 2 sum of ln(R_k / 1 Mbit/s) [nats] (codes: :data:`cfenv.config.OBJECTIVES`)."""
    total = objective_start(code)
    for k in range(rates.shape[0]):
        total = objective_add(total, rates[k], code)
    return total


@njit(cache=True)
def new_scratch(K, M, tau_p):
    """Work buffers of :func:`rates_one` for one thread."""
    return (np.empty((tau_p, M)), np.empty((tau_p, M)), np.empty((tau_p, M)), np.empty(M),
            np.empty(K, np.int64), np.empty(tau_p + 1, np.int64), np.empty(tau_p, np.int64),
            np.empty(K), np.empty(K), np.empty(K))


@njit(cache=True, fastmath=FASTMATH, inline="always")
def sum_rate_one(beta_t, bu, pilots, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, scratch):
    """Sum rate [bit/s] of one assignment; per-user rates are left in ``scratch[-1]``."""
    rates = scratch[9]
    rates_one(beta_t, bu, pilots, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, scratch[0],
              scratch[1], scratch[2], scratch[3], scratch[4], scratch[5], scratch[6], scratch[7],
              scratch[8], rates)
    total = 0.0
    for k in range(rates.shape[0]):
        total += rates[k]
    return total


@njit(cache=True, fastmath=FASTMATH, inline="always")
def objective_one(beta_t, bu, pilots, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, code, scratch):
    """The objective (``code``, :func:`objective_of`) of one assignment; per-user rates are left in
    ``scratch[9]``. Code 0 is :func:`sum_rate_one`'s value, bit for bit (the same sum)."""
    rates_one(beta_t, bu, pilots, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, scratch[0],
              scratch[1], scratch[2], scratch[3], scratch[4], scratch[5], scratch[6], scratch[7],
              scratch[8], scratch[9])
    return objective_of(scratch[9], code)


@njit(cache=True, fastmath=FASTMATH)
def _evaluate_range(beta_t, bu, snap_index, pilots, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth,
                    per_user, out, lo, hi):
    """Rates of assignments ``lo..hi-1`` into ``out`` (one thread, its own scratch)."""
    K = beta_t.shape[1]
    M = beta_t.shape[2]
    gsum, gsq, inv, sqrt_eta, members, start, fill, y_diag, pc, rates = new_scratch(K, M, tau_p)
    for i in range(lo, hi):
        s = snap_index[i]
        rates_one(beta_t[s], bu[s], pilots[i], tau_p, tau_rho_p, rho_d, n_antennas, bandwidth,
                  gsum, gsq, inv, sqrt_eta, members, start, fill, y_diag, pc, rates)
        if per_user:
            for k in range(K):
                out[i, k] = rates[k]
        else:
            total = 0.0
            for k in range(K):
                total += rates[k]
            out[i, 0] = total


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def _evaluate_parallel(beta_t, bu, snap_index, pilots, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth,
                       per_user, out):
    n = pilots.shape[0]
    n_chunks = (n + CHUNK - 1) // CHUNK
    for c in prange(n_chunks):
        _evaluate_range(beta_t, bu, snap_index, pilots, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth,
                        per_user, out, c * CHUNK, min(n, (c + 1) * CHUNK))


def rate_params(config: SystemConfig) -> tuple[int, float, float, float, float]:
    """The scalar arguments every kernel takes: (tau_p, tau_p rho_p, rho_d, L, B)."""
    return (config.tau_p, config.tau_p * config.rho_p, config.rho_d, float(config.L), config.bandwidth_hz)


def evaluate(beta_t: np.ndarray, bu: np.ndarray, snap_index: np.ndarray, pilots: np.ndarray,
             config: SystemConfig, *, per_user: bool) -> np.ndarray:
    """Rates of ``N`` assignments, assignment ``i`` on snapshot ``snap_index[i]``.

    Args:
        beta_t: ``(S, K, M)`` contiguous float64 (see :func:`cfenv.rates.prepare_snapshots`).
        bu: ``(S, K)`` beamforming-uncertainty term.
        snap_index: ``(N,)`` int64 in [0, S).
        pilots: ``(N, K)`` int64 in [0, tau_p) (validated by the caller).

    Returns:
        ``(N, K)`` per-user rates or ``(N,)`` sum rates [bit/s], float64.
    """
    n = pilots.shape[0]
    out = np.empty((n, config.K if per_user else 1))
    args = (beta_t, bu, np.ascontiguousarray(snap_index, dtype=np.int64),
            np.ascontiguousarray(pilots, dtype=np.int64), *rate_params(config), per_user, out)
    if n > CHUNK:
        _evaluate_parallel(*args)
    else:  # one chunk: waking numba's thread pool costs more than it saves, and fights torch's
        _evaluate_range(*args, 0, n)
    return out if per_user else out[:, 0]
