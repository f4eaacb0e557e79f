"""Compiled (numba) kernel of the hard-assignment rate, the hot path of every search.

Same formula as :func:`cfenv.rates._rate_terms` (the reference it is tested against),
specialised to hard assignments: users are bucketed by pilot and only same-pilot pairs are
visited, so one assignment costs O(M K + M sum_t n_t^2) instead of O(M K^2).

Every kernel takes the system's scalars as one :class:`RateParams` record
(:func:`rate_params`) and one thread's work buffers as one :class:`Scratch` record
(:func:`new_scratch`), whose named fields hold the exact state an evaluation leaves behind
(the screened searches of :mod:`agents.search.screening` read it).

Speed (benchmarks/bench_rates.py): the divisions over APs vectorise (``error_model="numpy"``,
:data:`JIT`), users are bucketed by pilot before the group sums (each group's rows summed once,
unused pilots skipped), and the AP weights are built in the same pass as the power-control sum.
Every sum keeps the order of the earlier kernel, so the rates are the same, bit for bit.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from cfenv.config import SystemConfig
from cfenv.objectives import PROPORTIONAL_UNIT, RATE_FLOOR  # defined with the objective type; numba reads them as constants

INV_LN2 = 1.0 / math.log(2.0)
LOG1P_BELOW = 1e-2
"""SINR below which log2(1 + x) is computed as log1p(x) / ln 2"""
CHUNK = 256
"""assignments per parallel work item (scratch buffers are allocated per chunk)"""


FASTMATH = {"reassoc", "contract", "nsz"}
"""reassociation lets LLVM vectorise the sums over APs; no finite-math assumptions"""
JIT = {"cache": True, "fastmath": FASTMATH, "error_model": "numpy"}
"""numba options of every kernel here and in the searches. ``error_model="numpy"`` drops
Python's zero-division check from each division, which kept LLVM from vectorising the
divisions over APs (no kernel divides by zero: every denominator is >= 1 or guarded)."""


class RateParams(NamedTuple):
    """The scalars every kernel takes (numba reads the fields by name): ``tau_p`` pilots,
    ``tau_rho_p`` = tau_p rho_p (pilot energy), ``rho_d`` (downlink power, normalised),
    ``n_antennas`` = L, ``bandwidth`` B [Hz] and the objective ``code`` (0 sum, 1 min,
    2 proportional: :data:`cfenv.config.OBJECTIVES`)."""

    tau_p: int
    tau_rho_p: float
    rho_d: float
    n_antennas: float
    bandwidth: float
    code: int


class Scratch(NamedTuple):
    """One thread's work buffers of :func:`rates_one`; after a call they hold the exact state of
    the assignment evaluated."""

    group_sum: np.ndarray
    """(tau_p, M) G[t, m]: summed fading of pilot t's users"""
    group_sq: np.ndarray
    """(tau_p, M) Q[t, m]: summed squared fading of pilot t's users"""
    weights: np.ndarray
    """(tau_p, M) sqrt(eta[m]) c[t, m], c = tau_p rho_p / (tau_p rho_p G + 1) (also for unused pilots)"""
    sqrt_eta: np.ndarray
    """(M,) sqrt(eta[m]) (0 at an AP whose every gamma underflowed)"""
    members: np.ndarray
    """(K,) int64 users bucketed by pilot (ascending within a pilot)"""
    start: np.ndarray
    """(tau_p + 1,) int64: pilot t's users are ``members[start[t]:start[t + 1]]``"""
    fill: np.ndarray
    """(tau_p,) int64 bucketing cursor"""
    y_diag: np.ndarray
    """(K,) sum_m sqrt(eta[m]) gamma[m, k] (the signal amplitude / (sqrt(rho_d) L))"""
    contamination: np.ndarray
    """(K,) PC_k / (rho_d L^2)"""
    rates: np.ndarray
    """(K,) R_k [bit/s]"""


def rate_params(config: SystemConfig) -> RateParams:
    """The :class:`RateParams` of ``config`` (its objective's code included)."""
    return RateParams(int(config.tau_p), float(config.tau_p * config.rho_p), float(config.rho_d),
                      float(config.L), float(config.bandwidth_hz), int(config.objective_code))


@njit(inline="always", **JIT)
def rate_of_sinr(sinr, bandwidth):
    """R = B log2(1 + SINR) [bit/s] (docs/model.md eq. (2.7)); below :data:`LOG1P_BELOW` through
    log1p, which keeps weak users' relative precision (log2 is faster elsewhere)."""
    if sinr < LOG1P_BELOW:
        return bandwidth * math.log1p(sinr) * INV_LN2
    return bandwidth * math.log2(1.0 + sinr)


@njit(inline="always", **JIT)
def bucket_users(pilots, tau_p, members, start, fill):
    """Counting sort of the users by pilot: pilot t's users, ascending, are
    ``members[start[t]:start[t + 1]]``."""
    for t in range(tau_p + 1):
        start[t] = 0
    for k in range(pilots.shape[0]):
        start[pilots[k] + 1] += 1
    for t in range(tau_p):
        start[t + 1] += start[t]
        fill[t] = start[t]
    for k in range(pilots.shape[0]):
        t = pilots[k]
        members[fill[t]] = k
        fill[t] += 1


@njit(inline="always", **JIT)
def rates_one(beta_t, bu, pilots, params, scratch):
    """Per-user rates [bit/s] of one assignment ``pilots`` (K,) into ``scratch.rates``; the other
    fields of ``scratch`` (:class:`Scratch`) are left holding its exact state. beta_t is (K, M),
    bu (K,) the beamforming-uncertainty term (both from :func:`cfenv.rates.prepare_snapshots`)."""
    K, M = beta_t.shape
    tau_p = params.tau_p
    tau_rho_p = params.tau_rho_p
    group_sum = scratch.group_sum
    group_sq = scratch.group_sq
    w = scratch.weights
    sqrt_eta = scratch.sqrt_eta
    members = scratch.members
    start = scratch.start
    y_diag = scratch.y_diag
    pc = scratch.contamination
    bucket_users(pilots, tau_p, members, start, scratch.fill)
    for m in range(M):
        sqrt_eta[m] = 0.0  # first sum_k gamma[m, k] = sum_t c[t, m] Q[t, m]
    for t in range(tau_p):
        lo = start[t]
        hi = start[t + 1]
        if lo == hi:  # an unused pilot: G = Q = 0, c = tau_p rho_p exactly (set below, times sqrt(eta))
            for m in range(M):
                group_sum[t, m] = 0.0
                group_sq[t, m] = 0.0
            continue
        k0 = members[lo]
        for m in range(M):
            b = beta_t[k0, m]
            group_sum[t, m] = b
            group_sq[t, m] = b * b
        for a in range(lo + 1, hi):
            ka = members[a]
            for m in range(M):
                b = beta_t[ka, m]
                group_sum[t, m] += b
                group_sq[t, m] += b * b
        for m in range(M):
            c = tau_rho_p / (tau_rho_p * group_sum[t, m] + 1.0)
            w[t, m] = c
            sqrt_eta[m] += c * group_sq[t, m]
    for m in range(M):
        e = sqrt_eta[m]
        # e == 0: every gamma[m, k] underflowed to 0 (beta[m, :] below ~1e-160): the weight of AP m
        # stays 0 instead of 1/0, as in cfenv.rates._rate_terms
        sqrt_eta[m] = 1.0 / math.sqrt(params.n_antennas * e) if e > 0.0 else 0.0
    for t in range(tau_p):
        lo = start[t]
        hi = start[t + 1]
        if lo == hi:
            for m in range(M):
                w[t, m] = tau_rho_p * sqrt_eta[m]
            continue
        for m in range(M):
            w[t, m] *= sqrt_eta[m]
        for a in range(lo, hi):
            ka = members[a]
            s = 0.0
            for m in range(M):
                b = beta_t[ka, m]
                s += w[t, m] * b * b
            y_diag[ka] = s
            pc[ka] = 0.0
        for a in range(lo, hi):
            ka = members[a]
            for c in range(a + 1, hi):
                kc = members[c]
                x = 0.0
                for m in range(M):
                    x += w[t, m] * beta_t[ka, m] * beta_t[kc, m]
                x2 = x * x
                pc[ka] += x2
                pc[kc] += x2
    scale = params.rho_d * params.n_antennas * params.n_antennas
    out = scratch.rates
    for k in range(K):
        out[k] = rate_of_sinr(scale * y_diag[k] * y_diag[k] / (scale * pc[k] + bu[k] + 1.0), params.bandwidth)




@njit(inline="always", **JIT)
def objective_start(code):
    """The objective of no users: the start of :func:`objective_add`'s accumulation."""
    return math.inf if code == 1 else 0.0


@njit(inline="always", **JIT)
def objective_add(total, rate, code):
    """Accumulate one user's rate [bit/s] into an objective (code 0 sum, 1 min, 2 sum of
    ln(R / 1 Mbit/s)); partial objectives over groups of users combine the same way."""
    if code == 0:
        return total + rate
    if code == 1:
        return min(total, rate)
    return total + math.log(max(rate, RATE_FLOOR) / PROPORTIONAL_UNIT)


@njit(inline="always", **JIT)
def objective_of(rates, code):
    """Objective of one assignment's per-user rates (K,) [bit/s]: code 0 sum [bit/s], 1 min
    [bit/s], 2 sum of ln(R_k / 1 Mbit/s) [nats] (codes: :data:`cfenv.config.OBJECTIVES`)."""
    total = objective_start(code)
    for k in range(rates.shape[0]):
        total = objective_add(total, rates[k], code)
    return total


@njit(**JIT)
def new_scratch(K, M, tau_p):
    """A :class:`Scratch` of :func:`rates_one` for one thread."""
    return Scratch(np.empty((tau_p, M)), np.empty((tau_p, M)), np.empty((tau_p, M)), np.empty(M),
                   np.empty(K, np.int64), np.empty(tau_p + 1, np.int64), np.empty(tau_p, np.int64),
                   np.empty(K), np.empty(K), np.empty(K))


@njit(inline="always", **JIT)
def sum_rate_one(beta_t, bu, pilots, params, scratch):
    """Sum rate [bit/s] of one assignment; per-user rates are left in ``scratch.rates``."""
    rates_one(beta_t, bu, pilots, params, scratch)
    return objective_of(scratch.rates, 0)


@njit(inline="always", **JIT)
def objective_one(beta_t, bu, pilots, params, scratch):
    """The objective (``params.code``, :func:`objective_of`) of one assignment; per-user rates are
    left in ``scratch.rates``. Code 0 is :func:`sum_rate_one`'s value, bit for bit (the same sum)."""
    rates_one(beta_t, bu, pilots, params, scratch)
    return objective_of(scratch.rates, params.code)


@njit(**JIT)
def _evaluate_range(beta_t, bu, snap_index, pilots, params, per_user, out, lo, hi):
    """Rates of assignments ``lo..hi-1`` into ``out`` (one thread, its own scratch)."""
    K = beta_t.shape[1]
    scratch = new_scratch(K, beta_t.shape[2], params.tau_p)
    rates = scratch.rates
    for i in range(lo, hi):
        s = snap_index[i]
        rates_one(beta_t[s], bu[s], pilots[i], params, scratch)
        if per_user:
            for k in range(K):
                out[i, k] = rates[k]
        else:
            out[i, 0] = objective_of(rates, 0)


@njit(parallel=True, **JIT)
def _evaluate_parallel(beta_t, bu, snap_index, pilots, params, per_user, out):
    n = pilots.shape[0]
    n_chunks = (n + CHUNK - 1) // CHUNK
    for c in prange(n_chunks):
        _evaluate_range(beta_t, bu, snap_index, pilots, params, per_user, out, c * CHUNK,
                        min(n, (c + 1) * CHUNK))


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
            np.ascontiguousarray(pilots, dtype=np.int64), rate_params(config), per_user, out)
    if n > CHUNK:
        _evaluate_parallel(*args)
    else:  # one chunk: waking numba's thread pool costs more than it saves, and fights torch's
        _evaluate_range(*args, 0, n)
    return out if per_user else out[:, 0]
