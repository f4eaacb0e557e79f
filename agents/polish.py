"""A small compiled polish: a budget of single-user moves from given starts (docs/learners.md).

What the learned decoders (``gnn``, ``hqcnn-ar``) lack at large sizes is the last percent a
search finds by moving single users. This kernel spends a small, fixed number of exact
evaluations of ``config.objective`` on that: users are visited weakest first; each tries the
``candidates`` pilots whose current holders would contaminate it least (both directions, from
the users' fading), and takes the best of those moves if it raises the objective; passes repeat
until one improves nothing or ``max_evals`` evaluations are spent. It uses the rate kernel of
:mod:`cfenv._kernels`; unlike :mod:`agents.search`'s local search it has a fixed budget and no
restarts, which is what keeps it within a learned decoder's milliseconds.

Symmetries: the result depends on the partition of the start and on the users' fading, not on
pilot labels (candidate pilots are ranked by their holders, ties broken by the scan order of
users, which follows the users' rates) -- equal up to relabelling for relabelled starts, and
permuted alike for permuted users (up to exact ties in rate).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from agents.base import canonical_pilots
from cfenv import _kernels
from cfenv.config import SystemConfig
from cfenv.rates import prepare_snapshots

IMPROVEMENT_RTOL = 1e-12
"""a move is taken when it raises the objective by more than this, relatively"""


@njit(cache=True, fastmath=_kernels.FASTMATH)
def _polish_one(beta_t, bu, contam, a, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, code, candidates,
                max_evals, swaps, scratch):
    """Polish assignment ``a`` (K,) in place for the objective ``code``; returns (objective,
    evaluations, moves)."""
    K = beta_t.shape[0]
    val = _kernels.objective_one(beta_t, bu, a, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, code, scratch)
    evals = 1
    moves = 0
    rates = np.empty(K)
    score = np.empty(tau_p)
    order = np.empty(K, np.int64)
    n_cand = tau_p - 1 if candidates <= 0 or candidates > tau_p - 1 else candidates
    improved = True
    while improved and evals < max_evals:
        improved = False
        rates[:] = scratch[9]
        order[:] = np.argsort(rates)  # weakest first
        for i in range(K):
            if evals >= max_evals:
                break
            k = order[i]
            orig = a[k]
            # contamination of k by (and of) each pilot's holders
            for t in range(tau_p):
                score[t] = 0.0
            for j in range(K):
                if j != k:
                    score[a[j]] += contam[k, j]
            score[orig] = np.inf
            ranked = np.argsort(score)
            best, best_t = val + abs(val) * IMPROVEMENT_RTOL, -1
            for c in range(n_cand):
                if evals >= max_evals:
                    break
                t = ranked[c]
                a[k] = t
                v = _kernels.objective_one(beta_t, bu, a, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth,
                                           code, scratch)
                evals += 1
                if v > best:
                    best, best_t = v, t
            a[k] = orig
            best_j = -1
            if best_t < 0 and swaps:
                # no improving move: try swapping k with a holder of a candidate pilot
                for c in range(n_cand):
                    t = ranked[c]
                    for j in range(K):
                        if a[j] != t or evals >= max_evals:
                            continue
                        a[k], a[j] = t, orig
                        v = _kernels.objective_one(beta_t, bu, a, tau_p, tau_rho_p, rho_d, n_antennas,
                                                   bandwidth, code, scratch)
                        evals += 1
                        a[k], a[j] = orig, t
                        if v > best:
                            best, best_t, best_j = v, t, j
            if best_t >= 0:
                if best_j >= 0:
                    a[best_j] = orig
                a[k] = best_t
                val = best
                moves += 1
                improved = True
        # per-user rates of the current assignment for the next pass's order
        val = _kernels.objective_one(beta_t, bu, a, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, code, scratch)
    return val, evals, moves


@njit(cache=True, fastmath=_kernels.FASTMATH, inline="always")
def _group_rates(beta_t, bu, members, n, w, scale, bandwidth, out):
    """Rates of the ``n`` users ``members`` sharing one pilot whose per-AP weights are ``w``
    (sqrt(eta_m) times the pilot's estimate factor, as in :func:`cfenv._kernels.rates_one`); returns
    their sum and leaves each in ``out[:n]``."""
    M = beta_t.shape[1]
    total = 0.0
    for i in range(n):
        ki = members[i]
        y = 0.0
        for m in range(M):
            y += w[m] * beta_t[ki, m] * beta_t[ki, m]
        pc = 0.0
        for j in range(n):
            if j == i:
                continue
            kj = members[j]
            x = 0.0
            for m in range(M):
                x += w[m] * beta_t[ki, m] * beta_t[kj, m]
            pc += x * x
        r = _kernels.rate_of_sinr(scale * y * y / (scale * pc + bu[ki] + 1.0), bandwidth)
        out[i] = r
        total += r
    return total


@njit(cache=True, fastmath=_kernels.FASTMATH)
def _polish_screened_one(beta_t, bu, a, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, candidates,
                         max_evals, scratch):
    """Like :func:`_polish_one`, but every pilot is screened for each visited user: the sum-rate
    change of the move is estimated with the APs' power-control factors eta_m held fixed (then only
    the two pilots' users change rate, O(M (n_a^2 + n_b^2)) instead of a full evaluation), and the
    ``candidates`` best-screened moves are evaluated exactly; the best improving one is taken."""
    K, M = beta_t.shape
    scale = rho_d * n_antennas * n_antennas
    val = _kernels.sum_rate_one(beta_t, bu, a, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, scratch)
    rates = scratch[9].copy()
    evals = 1
    moves = 0
    gsum = np.zeros((tau_p, M))
    gsq = np.zeros((tau_p, M))
    sqrt_eta = np.zeros(M)
    stale = True
    w = np.empty(M)
    members_a = np.empty(K, np.int64)
    members_b = np.empty(K, np.int64)
    tmp = np.empty(K)
    gain = np.empty(tau_p)
    order = np.empty(K, np.int64)
    n_cand = tau_p - 1 if candidates <= 0 or candidates > tau_p - 1 else candidates
    improved = True
    while improved and evals < max_evals:
        improved = False
        order[:] = np.argsort(rates)  # weakest first
        for i in range(K):
            if evals >= max_evals:
                break
            k = order[i]
            orig = a[k]
            if stale:  # per-pilot sums and power-control factors of the current assignment
                gsum[:, :] = 0.0
                gsq[:, :] = 0.0
                for j in range(K):
                    for m in range(M):
                        b = beta_t[j, m]
                        gsum[a[j], m] += b
                        gsq[a[j], m] += b * b
                for m in range(M):
                    acc = 0.0
                    for t in range(tau_p):
                        acc += tau_rho_p / (tau_rho_p * gsum[t, m] + 1.0) * gsq[t, m]
                    sqrt_eta[m] = 1.0 / math.sqrt(n_antennas * acc) if acc > 0.0 else 0.0
                stale = False
            na = 0
            for j in range(K):
                if a[j] == orig and j != k:
                    members_a[na] = j
                    na += 1
            old_a = rates[k]
            for c in range(na):
                old_a += rates[members_a[c]]
            for m in range(M):
                w[m] = sqrt_eta[m] * tau_rho_p / (tau_rho_p * (gsum[orig, m] - beta_t[k, m]) + 1.0)
            new_a = _group_rates(beta_t, bu, members_a, na, w, scale, bandwidth, tmp)
            for t in range(tau_p):
                gain[t] = -np.inf
                if t == orig:
                    continue
                nb = 0
                old_b = 0.0
                for j in range(K):
                    if a[j] == t:
                        members_b[nb] = j
                        nb += 1
                        old_b += rates[j]
                members_b[nb] = k
                nb += 1
                for m in range(M):
                    w[m] = sqrt_eta[m] * tau_rho_p / (tau_rho_p * (gsum[t, m] + beta_t[k, m]) + 1.0)
                new_b = _group_rates(beta_t, bu, members_b, nb, w, scale, bandwidth, tmp)
                gain[t] = new_a + new_b - old_a - old_b
            ranked = np.argsort(-gain)
            best, best_t = val + abs(val) * IMPROVEMENT_RTOL, -1
            for c in range(n_cand):
                t = ranked[c]
                if evals >= max_evals or gain[t] <= 0.0:
                    break
                a[k] = t
                v = _kernels.sum_rate_one(beta_t, bu, a, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth,
                                          scratch)
                evals += 1
                if v > best:
                    best, best_t = v, t
                    rates[:] = scratch[9]
            if best_t >= 0:
                a[k] = best_t
                val = best
                moves += 1
                improved = True
                stale = True
            else:
                a[k] = orig
        val = _kernels.sum_rate_one(beta_t, bu, a, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, scratch)
        rates[:] = scratch[9]
    return val, evals, moves


@njit(cache=True, parallel=True, fastmath=_kernels.FASTMATH)
def _polish(beta_t, bu, contam, snap_of_start, starts, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth,
            code, candidates, max_evals, swaps, screen, out_val, out_evals, out_moves):
    n, K = starts.shape
    M = beta_t.shape[2]
    for r in prange(n):
        s = snap_of_start[r]
        scratch = _kernels.new_scratch(K, M, tau_p)
        if screen:
            v, e, m = _polish_screened_one(beta_t[s], bu[s], starts[r], tau_p, tau_rho_p, rho_d, n_antennas,
                                           bandwidth, candidates, max_evals, scratch)
        else:
            v, e, m = _polish_one(beta_t[s], bu[s], contam[s], starts[r], tau_p, tau_rho_p, rho_d, n_antennas,
                                  bandwidth, code, candidates, max_evals, swaps, scratch)
        out_val[r] = v
        out_evals[r] = e
        out_moves[r] = m


def contamination(beta: np.ndarray) -> np.ndarray:
    """``(B, K, K)`` symmetric pilot-contamination weights from linear fading ``(B, M, K)``:
    ``c[k, j] = sum_m beta_mj beta_mk / sum_m beta_mk^2 + (same with k, j swapped)`` (how much
    each of the two would leak into the other's estimate; docs/model.md §6.4's edge feature)."""
    cross = np.einsum("bmk,bmj->bkj", beta, beta)
    own = np.diagonal(cross, axis1=1, axis2=2)
    ratio = cross / own[:, :, None]
    return np.ascontiguousarray(ratio + ratio.transpose(0, 2, 1))


def polish(beta: np.ndarray, starts: np.ndarray, config: SystemConfig, *, candidates: int = 2,
           max_evals: int = 200, swaps: bool = False, screen: bool = False
           ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Polish ``(B, R, K)`` (or ``(B, K)``) starts on ``(B, M, K)`` fading; returns the best
    polished assignment per snapshot ``(B, K)`` (canonical labels; ties to the first start) and
    per-start statistics (``val``: ``config.objective`` [bit/s; nats for "proportional"], ``evals``,
    ``moves``, shaped ``(B, R)``). Moves are taken when they raise ``config.objective``.

    Args:
        candidates: pilots tried per visited user (the least-contaminating ones; 0: all).
        max_evals: exact sum-rate evaluations per start, the one start included.
        swaps: a visited user with no improving move also tries swapping pilots with each holder
            of its candidate pilots.
        screen: rank every pilot for the visited user by the move's sum-rate change with eta held
            fixed (cheap, two pilots' users), and evaluate the ``candidates`` best exactly
            (then ``swaps`` is not used; the sum rate only).
    """
    starts = np.asarray(starts)
    if starts.ndim == 2:
        starts = starts[:, None, :]
    B, R, K = starts.shape
    if max_evals < 1:
        raise ValueError(f"max_evals must be >= 1, got {max_evals}")
    if screen and config.objective != "sum":
        raise ValueError(f"screen ranks moves by the sum rate; the objective is {config.objective!r}")
    beta_t, bu = prepare_snapshots(beta, config)
    flat = np.ascontiguousarray(canonical_pilots(starts.reshape(B * R, K)), dtype=np.int64)
    snap = np.repeat(np.arange(B, dtype=np.int64), R)
    val = np.empty(B * R)
    evals = np.empty(B * R, dtype=np.int64)
    moves = np.empty(B * R, dtype=np.int64)
    _polish(beta_t, bu, contamination(beta), snap, flat, *_kernels.rate_params(config), config.objective_code,
            int(candidates),
            int(max_evals), bool(swaps), bool(screen), val, evals, moves)
    val = val.reshape(B, R)
    best = flat.reshape(B, R, K)[np.arange(B), val.argmax(axis=1)]
    return canonical_pilots(best), {"val": val, "evals": evals.reshape(B, R), "moves": moves.reshape(B, R)}
