"""The screened neighbourhood: incremental move / swap evaluation kernels shared by local
search (:mod:`agents.search.local`), tabu search (:mod:`agents.search.tabu`) and the polish
(:mod:`agents.polish`) -- the public kernel API of the searches (docs/model.md §5).

A move (user k from pilot p to q) or a swap (users k on p and j on q exchange pilots)
changes the contamination factors c[t, m] = tau_p rho_p / (tau_p rho_p G[t, m] + 1) of the
two pilot groups p and q only (G[t, m] = sum of beta[m, j] over the group), and through
sum_k gamma[m, k] = sum_t c[t, m] Q[t, m] every AP's power weight sqrt(eta[m]). Holding
sqrt(eta) at its current value, only the users of groups p and q change their rates, and
their new rates cost O(M n^2) for groups of n users instead of O(M (K + sum_t n_t^2)):
that is the *screening surrogate*. It is exact but for the (small) change of eta, so it
ranks candidates; the best-ranked ones are then scored exactly by the full kernel
(:func:`cfenv._kernels.objective_one`), and only an exactly verified improvement is ever applied.

Every kernel takes the system's scalars as a :class:`cfenv._kernels.RateParams` record and the
exact state of the current assignment as a :class:`cfenv._kernels.Scratch` record (left there
by :func:`exact_state`); the small work records below name the other buffers.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from cfenv import _kernels
from cfenv._kernels import JIT
from cfenv.config import SystemConfig
from cfenv.rates import prepare_snapshots

IMPROVEMENT_RTOL = 1e-12
"""a search accepts a step only if it raises the objective by more than this fraction"""
DEFAULT_N_EXACT = 4
"""best-ranked candidates a screened search scores exactly per round"""
DEFAULT_MARGIN = 1e-3
"""relative surrogate shortfall beyond which a screened search scores no candidate"""


class GroupWork(NamedTuple):
    """Buffers of one changed pilot group (:func:`changed_group`, :func:`group_value`)."""

    members: np.ndarray
    """(K + 1,) int64 the group's users"""
    weights: np.ndarray
    """(M,) its sqrt(eta[m]) c[m] under the current eta"""
    y_diag: np.ndarray
    """(K + 1,) per-member signal amplitudes"""
    contamination: np.ndarray
    """(K + 1,) per-member contamination"""


class SurrogateCache(NamedTuple):
    """Surrogate values of the pilot groups a candidate changes (:func:`refresh`)."""

    removed: np.ndarray
    """(K,) k's group without k"""
    added: np.ndarray
    """(K, tau_p) group t with k"""
    swapped: np.ndarray
    """(K, K, 2) the groups of k and j after they exchange pilots"""


class Candidates(NamedTuple):
    """A scanned neighbourhood (:func:`list_candidates`): candidate i moves ``user[i]`` to
    ``pilot[i]`` (``partner[i] < 0``) or swaps ``user[i]`` and ``partner[i]`` (``pilot[i] < 0``);
    ``score[i]`` is its surrogate objective."""

    user: np.ndarray
    partner: np.ndarray
    pilot: np.ndarray
    score: np.ndarray


def kernel_inputs(beta: np.ndarray, config: SystemConfig) -> tuple[np.ndarray, np.ndarray]:
    """What every search kernel takes for ``(S, M, K)`` fading: ``(S, K, M)`` contiguous beta^T and
    the ``(S, K)`` beamforming-uncertainty term (:func:`cfenv.rates.prepare_snapshots`)."""
    return prepare_snapshots(beta, config)


@njit(**JIT)
def new_group_work(K, M):
    """A :class:`GroupWork` for one thread."""
    return GroupWork(np.empty(K + 1, np.int64), np.empty(M), np.empty(K + 1), np.empty(K + 1))


@njit(**JIT)
def new_buffers(K, M, tau_p):
    """Work records of one screened search (one thread): :class:`Candidates` (room for every
    move and swap), :class:`SurrogateCache` and :class:`GroupWork`."""
    n_max = K * tau_p + K * (K - 1) // 2 + 1
    cand = Candidates(np.empty(n_max, np.int64), np.empty(n_max, np.int64), np.empty(n_max, np.int64),
                      np.empty(n_max))
    cache = SurrogateCache(np.empty(K), np.empty((K, tau_p)), np.empty((K, K, 2)))
    return cand, cache, new_group_work(K, M)


@njit(**JIT)
def group_value(beta_t, bu, work, n, params):
    """Objective contribution (sum of R_k, min R_k, or sum of ln(R_k / 1 Mbit/s)) of the users
    ``work.members[:n]`` sharing one pilot whose per-AP weight sqrt(eta[m]) c[m] is
    ``work.weights`` (M,)."""
    mem, w, y, pc = work.members, work.weights, work.y_diag, work.contamination
    M = w.shape[0]
    for a in range(n):
        ka = mem[a]
        s = 0.0
        for m in range(M):
            b = beta_t[ka, m]
            s += w[m] * b * b
        y[a] = s
        pc[a] = 0.0
    for a in range(n):
        ka = mem[a]
        for c in range(a + 1, n):
            kc = mem[c]
            x = 0.0
            for m in range(M):
                x += w[m] * beta_t[ka, m] * beta_t[kc, m]
            x2 = x * x
            pc[a] += x2
            pc[c] += x2
    scale = params.rho_d * params.n_antennas * params.n_antennas
    total = _kernels.objective_start(params.code)
    for a in range(n):
        ka = mem[a]
        r = _kernels.rate_of_sinr(scale * y[a] * y[a] / (scale * pc[a] + bu[ka] + 1.0), params.bandwidth)
        total = _kernels.objective_add(total, r, params.code)
    return total


@njit(inline="always", **JIT)
def group_weights(gsum, beta_t, k_out, k_in, sqrt_eta, params, w):
    """w[m] = sqrt(eta[m]) c[m] of a group whose summed fading gsum (M,) loses user k_out and
    gains k_in (-1: none)."""
    tau_rho_p = params.tau_rho_p
    for m in range(w.shape[0]):
        g = gsum[m]
        if k_out >= 0:
            g -= beta_t[k_out, m]
        if k_in >= 0:
            g += beta_t[k_in, m]
        w[m] = sqrt_eta[m] * tau_rho_p / (tau_rho_p * g + 1.0)


@njit(inline="always", **JIT)
def changed_group(beta_t, scratch, g, k_out, k_in, params, work):
    """Pilot group ``g`` of the state in ``scratch`` with user ``k_out`` taken out and ``k_in``
    put in (-1: none) into ``work.members[:n]`` -- ``k_in`` in ``k_out``'s place, else last --
    and its weights into ``work.weights`` (:func:`group_weights`); returns n. One rule for moves
    (out of the old group, into the new) and swaps (one user exchanged for the other in each)."""
    members, start, mem = scratch.members, scratch.start, work.members
    n = 0
    placed = False
    for i in range(start[g], start[g + 1]):
        if members[i] == k_out:
            if k_in >= 0:
                mem[n] = k_in
                n += 1
                placed = True
        else:
            mem[n] = members[i]
            n += 1
    if k_in >= 0 and not placed:
        mem[n] = k_in
        n += 1
    group_weights(scratch.group_sum[g], beta_t, k_out, k_in, scratch.sqrt_eta, params, work.weights)
    return n


@njit(inline="always", **JIT)
def group_values(scratch, tau_p, code, gval):
    """Each pilot group's objective contribution ``gval`` (tau_p,) from the exact state in
    ``scratch`` (its rates, its users bucketed by pilot)."""
    rates, members, start = scratch.rates, scratch.members, scratch.start
    for t in range(tau_p):
        v = _kernels.objective_start(code)
        for i in range(start[t], start[t + 1]):
            v = _kernels.objective_add(v, rates[members[i]], code)
        gval[t] = v


@njit(**JIT)
def exact_state(beta_t, bu, a, params, scratch, gval):
    """Exact state of assignment ``a`` into ``scratch`` (:func:`cfenv._kernels.rates_one`) and each
    group's objective contribution into ``gval`` (tau_p,). Returns the exact objective."""
    _kernels.rates_one(beta_t, bu, a, params, scratch)
    group_values(scratch, params.tau_p, params.code, gval)
    return _kernels.objective_of(scratch.rates, params.code)


@njit(**JIT)
def exact_objective(beta_t, bu, a, params, scratch):
    """Exact objective of assignment ``a`` by the full kernel (:func:`cfenv._kernels.objective_one`),
    one compiled function for every search."""
    return _kernels.objective_one(beta_t, bu, a, params, scratch)


@njit(**JIT)
def refresh(beta_t, bu, a, params, use_moves, use_swaps, changed, scratch, work, cache):
    """Surrogate group values (under the current sqrt(eta)) of the candidates touching a group
    with ``changed[t]`` set, into ``cache`` (:class:`SurrogateCache`)."""
    K = beta_t.shape[0]
    rem, add, swp = cache.removed, cache.added, cache.swapped
    if use_moves:
        for k in range(K):
            p = a[k]
            if changed[p]:
                n = changed_group(beta_t, scratch, p, k, -1, params, work)
                rem[k] = group_value(beta_t, bu, work, n, params)
            for t in range(params.tau_p):
                if t == p or not changed[t]:
                    continue
                n = changed_group(beta_t, scratch, t, -1, k, params, work)
                add[k, t] = group_value(beta_t, bu, work, n, params)
    if use_swaps:
        for k in range(K):
            p = a[k]
            for j in range(k + 1, K):
                q = a[j]
                if q == p or not (changed[p] or changed[q]):
                    continue
                n = changed_group(beta_t, scratch, p, k, j, params, work)
                swp[k, j, 0] = group_value(beta_t, bu, work, n, params)
                n = changed_group(beta_t, scratch, q, j, k, params, work)
                swp[k, j, 1] = group_value(beta_t, bu, work, n, params)


@njit(inline="always", **JIT)
def surrogate(val, gval, p, q, v1, v2, code):
    """Objective after groups p and q take the values v1, v2, the others unchanged."""
    if code == 1:
        s = min(v1, v2)
        for u in range(gval.shape[0]):
            if u != p and u != q:
                s = min(s, gval[u])
        return s
    return val - gval[p] - gval[q] + v1 + v2


@njit(**JIT)
def list_candidates(a, tau_p, val, gval, start, code, use_moves, use_swaps, cache, cand):
    """Every move (k, -1, t) and, if ``use_swaps``, every swap (k, j, -1) of users on different
    pilots with its surrogate objective into ``cand`` (:class:`Candidates`), in scan order
    (users, then pilots; then swaps); a move to an unused pilot is listed once (all unused
    pilots give the same partition). Returns their number."""
    K = a.shape[0]
    n_cand = 0
    if use_moves:
        for k in range(K):
            p = a[k]
            empty_done = False
            for t in range(tau_p):
                if t == p:
                    continue
                if start[t + 1] == start[t]:
                    if empty_done:
                        continue
                    empty_done = True
                cand.user[n_cand] = k
                cand.partner[n_cand] = -1
                cand.pilot[n_cand] = t
                cand.score[n_cand] = surrogate(val, gval, p, t, cache.removed[k], cache.added[k, t], code)
                n_cand += 1
    if use_swaps:
        for k in range(K):
            for j in range(k + 1, K):
                if a[k] == a[j]:
                    continue
                cand.user[n_cand] = k
                cand.partner[n_cand] = j
                cand.pilot[n_cand] = -1
                cand.score[n_cand] = surrogate(val, gval, a[k], a[j], cache.swapped[k, j, 0],
                                               cache.swapped[k, j, 1], code)
                n_cand += 1
    return n_cand


@njit(inline="always", **JIT)
def apply_candidate(a, k, j, t):
    """Apply candidate (k, j, t) to ``a``: a move if j < 0, else a swap; returns what undoes it."""
    if j < 0:
        old = a[k]
        a[k] = t
        return old
    a[k], a[j] = a[j], a[k]
    return -1


@njit(inline="always", **JIT)
def undo_candidate(a, k, j, old):
    """Undo :func:`apply_candidate` (``old``: what it returned)."""
    if j < 0:
        a[k] = old
    else:
        a[k], a[j] = a[j], a[k]


@njit(inline="always", **JIT)
def threshold(val):
    """The value a step must exceed to improve on ``val`` (by more than IMPROVEMENT_RTOL)."""
    return val + IMPROVEMENT_RTOL * abs(val)


@njit(parallel=True, **JIT)
def objective_values(beta_t, bu, snap_index, pilots, params, out):
    """``out[i]`` = objective (``params.code``) of assignment ``pilots[i]`` on snapshot
    ``snap_index[i]``, by the full kernel (:func:`cfenv._kernels.objective_one`; the searches'
    one scorer)."""
    n, K = pilots.shape
    M = beta_t.shape[2]
    for i in prange(n):
        scratch = _kernels.new_scratch(K, M, params.tau_p)
        out[i] = exact_objective(beta_t[snap_index[i]], bu[snap_index[i]], pilots[i], params, scratch)
