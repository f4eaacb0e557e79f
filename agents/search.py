"""Search baselines: exact exhaustive search (EPAS), local search, and the screened
neighbourhood kernels that local search and tabu search (:mod:`agents.literature`) share.

All optimise ``SystemConfig.objective`` (sum rate, minimum rate or proportional fairness:
:func:`cfenv._kernels.objective_of`) and score every reported value with the rate engine's
per-assignment kernel (:func:`cfenv._kernels.rates_one`), compiled (numba) and in parallel
over the machine's cores; EPAS can also run on a torch device. All are deterministic
functions of (seed, snapshot): every parallel work item is independent and ties go to a
fixed order, so the pilots (canonical, restricted-growth labels:
:func:`agents.base.canonical_pilots`) and their values do not depend on the batch a
snapshot comes in, on the thread count or on the load. docs/model.md §5.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
from numba import njit, prange

from agents.base import AGENT_STREAM, Agent, canonical_pilots, stream_rng
from agents.heuristics import master_ap_pilots
from cfenv import _kernels
from cfenv.channel import Snapshot
from cfenv.config import SystemConfig
from cfenv.rates import prepare_snapshots

DEFAULT_MAX_ASSIGNMENTS = 1_000_000_000
"""EPAS refuses searches larger than this (about 5 minutes per snapshot on 2 cores)"""
PREFIX_TARGET = 512
"""EPAS splits the search into at least this many independent prefixes (parallel work items)"""
IMPROVEMENT_RTOL = 1e-12
"""local search accepts a move only if it raises the objective by more than this fraction"""
DEFAULT_N_EXACT = 4
"""best-ranked candidates a screened search scores exactly per round"""
EXACT_NEIGHBOURHOOD = 256
"""local search scores every candidate exactly (plain steepest ascent) when a neighbourhood
(moves and swaps) has at most this many, unless ``n_exact`` is given"""
DEFAULT_KICKS = 8
"""iterated-local-search kicks from the best end point after the starts"""
DEFAULT_MARGIN = 1e-3
"""relative surrogate shortfall beyond which a screened search scores no candidate"""


# ------------------------------------------------------- restricted growth strings
def _completions(K: int, tau_p: int) -> list[list[int]]:
    """``ext[i][m]``: number of ways to label users i..K-1 given the largest label so far is m."""
    ext = [[0] * tau_p for _ in range(K + 1)]
    ext[K] = [1] * tau_p
    for i in range(K - 1, -1, -1):
        for m in range(tau_p):
            ext[i][m] = (m + 1) * ext[i + 1][m] + (ext[i + 1][m + 1] if m + 1 < tau_p else 0)
    return ext


def count_assignments(K: int, tau_p: int) -> int:
    """Assignments up to pilot relabelling: restricted-growth strings of length K with at
    most tau_p labels, sum_{j <= tau_p} S(K, j) (Stirling numbers of the second kind)."""
    return _completions(K, tau_p)[1][0]


def rgs_prefixes(K: int, tau_p: int, depth: int) -> np.ndarray:
    """All restricted-growth prefixes of length ``depth`` (lexicographic), ``(P, depth)`` int64."""
    rows: list[list[int]] = [[0]]
    for _ in range(depth - 1):
        rows = [r + [t] for r in rows for t in range(min(max(r) + 2, tau_p))]
    return np.array(rows, dtype=np.int64).reshape(-1, depth)


@njit(cache=True, parallel=True, fastmath=_kernels.FASTMATH)
def _exhaustive(beta_t, bu, prefixes, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, code, best_val, best_assign):
    """Depth-first enumeration of every restricted-growth completion of each prefix; the
    first (lexicographic) maximiser of each prefix's objective (``code``, see
    :func:`cfenv._kernels.objective_of`) goes to best_val/best_assign."""
    n_prefix, depth = prefixes.shape
    K, M = beta_t.shape
    for p in prange(n_prefix):
        scratch = _kernels.new_scratch(K, M, tau_p)
        a = np.zeros(K, np.int64)
        mx = np.zeros(K, np.int64)  # mx[i] = max(a[0..i])
        for i in range(depth):
            a[i] = prefixes[p, i]
            mx[i] = a[i] if i == 0 else max(mx[i - 1], a[i])
        for i in range(depth, K):
            mx[i] = mx[i - 1]
        best = -np.inf
        while True:
            _kernels.rates_one(beta_t, bu, a, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, scratch[0],
                               scratch[1], scratch[2], scratch[3], scratch[4], scratch[5], scratch[6],
                               scratch[7], scratch[8], scratch[9])
            val = _kernels.objective_of(scratch[9], code)
            if val > best:
                best = val
                best_assign[p, :] = a
            i = K - 1
            while i >= depth:
                limit = min(mx[i - 1] + 1, tau_p - 1)
                if a[i] < limit:
                    break
                i -= 1
            if i < depth:
                break
            a[i] += 1
            mx[i] = max(mx[i - 1], a[i])
            for j in range(i + 1, K):
                a[j] = 0
                mx[j] = mx[j - 1]
        best_val[p] = best


def unrank_rgs(index, K: int, tau_p: int):
    """Restricted-growth strings of rank ``index`` in lexicographic order, vectorised.

    Args:
        index: ``(N,)`` int64 torch tensor of ranks in [0, count_assignments(K, tau_p)).

    Returns:
        ``(N, K)`` int64 tensor on ``index``'s device: user 0 on pilot 0, each later user on a
        used pilot or the next new one, at most tau_p pilots.
    """
    import torch

    ext = torch.tensor(_completions(K, tau_p), dtype=torch.int64, device=index.device)  # (K + 1, tau_p)
    out = torch.zeros((index.shape[0], K), dtype=torch.int64, device=index.device)
    r = index.clone()
    top = torch.zeros_like(r)  # largest label so far
    for i in range(1, K):
        per = ext[i + 1, top]  # completions after choosing an old label t <= top
        old = (top + 1) * per
        take_old = r < old
        label = torch.where(take_old, r // per, top + 1)
        r = torch.where(take_old, r % per, r - old)
        out[:, i] = label
        top = torch.maximum(top, label)
    return out


def _torch_device(device):
    """The torch device of ``ExhaustiveAgent(device=...)``, or None for the numba search."""
    import torch

    if isinstance(device, torch.device):
        return device
    if device == "cpu":
        return None
    if device == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else None
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu', 'auto' or a torch device, got {device!r}") from None


class ExhaustiveAgent(Agent):
    """EPAS: the exact maximiser of ``config.objective`` (sum rate, minimum rate or
    proportional fairness), enumerating each pilot partition once.

    Pilot labels are interchangeable, so only restricted-growth strings are scored
    (user 0 on pilot 0, every later user on a used pilot or the next new one):
    ``sum_{j <= tau_p} S(K, j)`` ~ tau_p^K / tau_p! assignments. On ``device="cpu"`` the
    enumeration is split into independent prefixes scored in parallel by a compiled
    depth-first search; on a torch device, blocks of ``block`` consecutive ranks are unranked
    (:func:`unrank_rgs`) and scored by the batched torch rate path
    (:func:`cfenv.rates.user_rates`, :func:`cfenv.rates.objective_from_rates`, float64) on
    that device. Either way ties go to the lexicographically first assignment. The result is
    canonical (a restricted-growth string) and independent of batching and thread count.

    Args:
        max_assignments: refuse (``ValueError``, with the number needed) beyond this.
        progress: show a tqdm bar for searches above ``progress_min`` assignments.
        threads: numba threads (default: all cores).
        device: ``"cpu"`` (numba, default), ``"auto"`` (``"cuda"`` when available, else numba),
            or a torch device (``"cuda"``, ``"cuda:1"``, ``torch.device("cpu")``, ...).
        block: assignments per torch batch (default: about 2e7 / (M K + K^2)).
    """

    name = "exhaustive"

    def __init__(self, config: SystemConfig | None = None, seed: int = 0,
                 max_assignments: int = DEFAULT_MAX_ASSIGNMENTS, progress: bool = True,
                 progress_min: int = 20_000_000, threads: int | None = None, device="cpu",
                 block: int | None = None) -> None:
        super().__init__(config, seed)
        if block is not None and block < 1:
            raise ValueError(f"block must be >= 1, got {block}")
        self.device = _torch_device(device)
        self.block = block
        self.max_assignments = int(max_assignments)
        self.progress = progress
        self.progress_min = progress_min
        self.threads = threads

    def unsupported_reason(self, config: SystemConfig) -> str | None:
        needed = count_assignments(config.K, config.tau_p)
        if needed > self.max_assignments:
            return (f"would score {needed:,} assignments, above max_assignments={self.max_assignments:,}")
        return None

    def _assign(self, snapshots: Snapshot, config: SystemConfig, rng: np.random.Generator) -> np.ndarray:
        if self.device is not None:
            return np.stack([self._search_torch(beta, config) for beta in snapshots.beta])
        beta_t, bu = prepare_snapshots(snapshots.beta, config)
        K, tau_p = config.K, config.tau_p
        depth = 1
        while depth < K and len(rgs_prefixes(K, tau_p, depth)) < PREFIX_TARGET:
            depth += 1
        prefixes = rgs_prefixes(K, tau_p, depth)
        total = count_assignments(K, tau_p)
        out = np.empty((len(beta_t), K), dtype=np.int64)
        for s in range(len(beta_t)):
            out[s] = self._search_one(beta_t[s], bu[s], prefixes, total, config)
        return out

    def _search_torch(self, beta: np.ndarray, config: SystemConfig) -> np.ndarray:
        """One snapshot's ``(M, K)`` fading on :attr:`device`: the first maximiser over all
        restricted-growth strings, scored in blocks of consecutive ranks."""
        import torch

        from cfenv.rates import objective_from_rates, user_rates

        K, tau_p = config.K, config.tau_p
        total = count_assignments(K, tau_p)
        block = self.block or max(1, min(1 << 16, int(2e7 // (config.M * K + K * K))))
        beta_dev = torch.as_tensor(np.asarray(beta, dtype=np.float64), device=self.device)
        best_val, best_rank = -math.inf, 0
        with torch.no_grad():
            for lo in range(0, total, block):
                index = torch.arange(lo, min(total, lo + block), dtype=torch.int64, device=self.device)
                pilots = unrank_rgs(index, K, tau_p)
                values = objective_from_rates(user_rates(beta_dev, pilots, config), config.objective)
                i = int(torch.argmax(values))  # the first maximiser in the block
                v = float(values[i])
                if v > best_val:
                    best_val, best_rank = v, lo + i
        rank = torch.tensor([best_rank], dtype=torch.int64)
        return unrank_rgs(rank, K, tau_p)[0].numpy()

    def _search_one(self, beta_t: np.ndarray, bu: np.ndarray, prefixes: np.ndarray, total: int,
                    config: SystemConfig) -> np.ndarray:
        import numba

        best_val = np.empty(len(prefixes))
        best_assign = np.empty((len(prefixes), config.K), dtype=np.int64)
        params = (*_kernels.rate_params(config), config.objective_code)
        old_threads = numba.get_num_threads()
        if self.threads is not None:
            numba.set_num_threads(self.threads)
        try:
            if not self.progress or total < self.progress_min:
                _exhaustive(beta_t, bu, prefixes, *params, best_val, best_assign)
            else:
                from tqdm.auto import tqdm

                ext = _completions(config.K, config.tau_p)
                depth = prefixes.shape[1]
                sizes = [ext[depth][int(p.max())] for p in prefixes]
                chunk = max(1, len(prefixes) // 50)
                with tqdm(total=total, desc=f"EPAS K={config.K}", unit="assign", unit_scale=True,
                          leave=False) as bar:
                    for lo in range(0, len(prefixes), chunk):
                        hi = min(len(prefixes), lo + chunk)
                        _exhaustive(beta_t, bu, prefixes[lo:hi], *params, best_val[lo:hi],
                                    best_assign[lo:hi])
                        bar.update(sum(sizes[lo:hi]))
        finally:
            numba.set_num_threads(old_threads)
        return best_assign[int(np.argmax(best_val))]


# ------------------------------------------------------------------ screened neighbourhood
# A move (user k from pilot p to q) or a swap (users k on p and j on q exchange pilots)
# changes the contamination factors c[t, m] = tau_p rho_p / (tau_p rho_p G[t, m] + 1) of the
# two pilot groups p and q only (G[t, m] = sum of beta[m, j] over the group), and through
# sum_k gamma[m, k] = sum_t c[t, m] Q[t, m] every AP's power weight sqrt(eta[m]). Holding
# sqrt(eta) at its current value, only the users of groups p and q change their rates, and
# their new rates cost O(M n^2) for groups of n users instead of O(M (K + sum_t n_t^2)):
# that is the *screening surrogate*. It is exact but for the (small) change of eta, so it
# ranks candidates; the best-ranked ones are then scored exactly by the full kernel, and
# only an exactly verified improvement is ever applied.
@njit(cache=True, fastmath=_kernels.FASTMATH)
def _group_value(beta_t, bu, mem, n, w, code, scale, bandwidth, y, pc):
    """Objective contribution (sum of R_k, min R_k, or sum of ln(R_k / 1 Mbit/s)) of the users
    ``mem[:n]`` sharing one pilot whose per-AP weight sqrt(eta[m]) c[m] is ``w`` (M,)."""
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
    total = _kernels.objective_start(code)
    for a in range(n):
        ka = mem[a]
        r = _kernels.rate_of_sinr(scale * y[a] * y[a] / (scale * pc[a] + bu[ka] + 1.0), bandwidth)
        total = _kernels.objective_add(total, r, code)
    return total


@njit(cache=True, fastmath=_kernels.FASTMATH, inline="always")
def _weights(gsum, beta_t, k_out, k_in, sqrt_eta, tau_rho_p, w):
    """w[m] = sqrt(eta[m]) c[m] of a group whose summed fading gsum (M,) loses user k_out and
    gains k_in (-1: none)."""
    M = w.shape[0]
    for m in range(M):
        g = gsum[m]
        if k_out >= 0:
            g -= beta_t[k_out, m]
        if k_in >= 0:
            g += beta_t[k_in, m]
        w[m] = sqrt_eta[m] * tau_rho_p / (tau_rho_p * g + 1.0)


@njit(cache=True, fastmath=_kernels.FASTMATH, inline="always")
def _changed_group(members, start, g, gsum, beta_t, k_out, k_in, sqrt_eta, tau_rho_p, mem, w):
    """Pilot group ``g`` (``members[start[g]:start[g + 1]]``) with user ``k_out`` taken out and
    ``k_in`` put in (-1: none) into ``mem[:n]`` -- ``k_in`` in ``k_out``'s place, else last -- and
    its weights into ``w`` (:func:`_weights`); returns n. One rule for moves (out of the old group,
    into the new) and swaps (one user exchanged for the other in each group)."""
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
    _weights(gsum[g], beta_t, k_out, k_in, sqrt_eta, tau_rho_p, w)
    return n


@njit(cache=True, fastmath=_kernels.FASTMATH)
def _state(beta_t, bu, a, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, code, scratch, gval):
    """Exact state of assignment ``a``: per-user rates (scratch[9]), group sums (scratch[0]),
    sqrt(eta) (scratch[3]), members bucketed by pilot (scratch[4], scratch[5]) and each group's
    objective contribution ``gval`` (tau_p,). Returns the exact objective."""
    rates = scratch[9]
    _kernels.rates_one(beta_t, bu, a, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, scratch[0], scratch[1],
                       scratch[2], scratch[3], scratch[4], scratch[5], scratch[6], scratch[7], scratch[8], rates)
    members = scratch[4]
    start = scratch[5]
    for t in range(tau_p):
        v = _kernels.objective_start(code)
        for i in range(start[t], start[t + 1]):
            v = _kernels.objective_add(v, rates[members[i]], code)
        gval[t] = v
    return _kernels.objective_of(rates, code)


@njit(cache=True, fastmath=_kernels.FASTMATH)
def _refresh(beta_t, bu, a, tau_p, tau_rho_p, rho_d, n_antennas, code, bandwidth, use_moves, use_swaps,
             changed, scratch, work, rem, add, swp):
    """Surrogate group values (under the current sqrt(eta)) of the candidates touching a group
    with ``changed[t]`` set: ``rem[k]`` = k's group without k, ``add[k, t]`` = group t with k,
    ``swp[k, j, 0|1]`` = the groups of k and of j after k and j exchange pilots."""
    K, M = beta_t.shape
    gsum = scratch[0]
    sqrt_eta = scratch[3]
    members = scratch[4]
    start = scratch[5]
    mem, w, y, pc = work
    scale = rho_d * n_antennas * n_antennas
    if use_moves:
        for k in range(K):
            p = a[k]
            if changed[p]:
                n = _changed_group(members, start, p, gsum, beta_t, k, -1, sqrt_eta, tau_rho_p, mem, w)
                rem[k] = _group_value(beta_t, bu, mem, n, w, code, scale, bandwidth, y, pc)
            for t in range(tau_p):
                if t == p or not changed[t]:
                    continue
                n = _changed_group(members, start, t, gsum, beta_t, -1, k, sqrt_eta, tau_rho_p, mem, w)
                add[k, t] = _group_value(beta_t, bu, mem, n, w, code, scale, bandwidth, y, pc)
    if use_swaps:
        for k in range(K):
            p = a[k]
            for j in range(k + 1, K):
                q = a[j]
                if q == p or not (changed[p] or changed[q]):
                    continue
                n = _changed_group(members, start, p, gsum, beta_t, k, j, sqrt_eta, tau_rho_p, mem, w)
                swp[k, j, 0] = _group_value(beta_t, bu, mem, n, w, code, scale, bandwidth, y, pc)
                n = _changed_group(members, start, q, gsum, beta_t, j, k, sqrt_eta, tau_rho_p, mem, w)
                swp[k, j, 1] = _group_value(beta_t, bu, mem, n, w, code, scale, bandwidth, y, pc)


@njit(cache=True, fastmath=_kernels.FASTMATH, inline="always")
def _surrogate(val, gval, p, q, v1, v2, code):
    """Objective after groups p and q take the values v1, v2, the others unchanged."""
    if code == 1:
        s = min(v1, v2)
        for u in range(gval.shape[0]):
            if u != p and u != q:
                s = min(s, gval[u])
        return s
    return val - gval[p] - gval[q] + v1 + v2


@njit(cache=True, fastmath=_kernels.FASTMATH)
def _candidates(a, tau_p, val, gval, start, code, use_moves, use_swaps, rem, add, swp,
                cand_k, cand_j, cand_t, cand_s):
    """Every move (k, -1, t) and, if ``use_swaps``, every swap (k, j, -1) of users on different
    pilots with its surrogate objective, in scan order (users, then pilots; then swaps); a move
    to an unused pilot is listed once (all unused pilots give the same partition). Returns
    their number."""
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
                cand_k[n_cand] = k
                cand_j[n_cand] = -1
                cand_t[n_cand] = t
                cand_s[n_cand] = _surrogate(val, gval, p, t, rem[k], add[k, t], code)
                n_cand += 1
    if use_swaps:
        for k in range(K):
            for j in range(k + 1, K):
                if a[k] == a[j]:
                    continue
                cand_k[n_cand] = k
                cand_j[n_cand] = j
                cand_t[n_cand] = -1
                cand_s[n_cand] = _surrogate(val, gval, a[k], a[j], swp[k, j, 0], swp[k, j, 1], code)
                n_cand += 1
    return n_cand


@njit(cache=True, fastmath=_kernels.FASTMATH, inline="always")
def _apply(a, k, j, t):
    """Apply candidate (k, j, t) to ``a``: a move if j < 0, else a swap; returns what undoes it."""
    if j < 0:
        old = a[k]
        a[k] = t
        return old
    a[k], a[j] = a[j], a[k]
    return -1


@njit(cache=True, fastmath=_kernels.FASTMATH, inline="always")
def _undo(a, k, j, old):
    if j < 0:
        a[k] = old
    else:
        a[k], a[j] = a[j], a[k]


@njit(cache=True, fastmath=_kernels.FASTMATH)
def _exact(beta_t, bu, a, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, code, scratch):
    """Exact objective of assignment ``a`` by the full kernel."""
    rates = scratch[9]
    _kernels.rates_one(beta_t, bu, a, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, scratch[0], scratch[1],
                       scratch[2], scratch[3], scratch[4], scratch[5], scratch[6], scratch[7], scratch[8], rates)
    return _kernels.objective_of(rates, code)


@njit(cache=True, fastmath=_kernels.FASTMATH, inline="always")
def _threshold(val):
    return val + IMPROVEMENT_RTOL * abs(val)


@njit(cache=True, fastmath=_kernels.FASTMATH)
def _buffers(K, M, tau_p):
    """Work buffers of one screened search (one thread)."""
    n_max = K * tau_p + K * (K - 1) // 2 + 1
    cand = (np.empty(n_max, np.int64), np.empty(n_max, np.int64), np.empty(n_max, np.int64), np.empty(n_max))
    cache = (np.empty(K), np.empty((K, tau_p)), np.empty((K, K, 2)))
    work = (np.empty(K + 1, np.int64), np.empty(M), np.empty(K + 1), np.empty(K + 1))
    return cand, cache, work


@njit(cache=True, fastmath=_kernels.FASTMATH)
def _ascend(beta_t, bu, a, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, code, use_swaps, max_rounds,
            n_exact, margin, verify):
    """Screened steepest ascent of ``a`` in place; returns (start value, end value, rounds).

    Each round ranks every move and swap by its surrogate (:func:`_refresh`; after a step only
    the candidates touching the two changed pilot groups are rescored, the others keep their
    values under the previous eta), scores exactly, in descending surrogate order (ties: scan
    order), the ``n_exact`` best-ranked candidates and applies the best exact improvement among
    them (by more than IMPROVEMENT_RTOL); if none of them improves, it goes on down the ranking
    to the first exact improvement, up to candidates whose surrogate falls ``margin``
    (relative) below the current value. Before stopping, every surrogate is recomputed under
    the current eta and the round repeated. With ``verify`` a round that still finds nothing
    scores every remaining candidate exactly, so the end point is an exact local optimum."""
    K, M = beta_t.shape
    (cand_k, cand_j, cand_t, cand_s), (rem, add, swp), work = _buffers(K, M, tau_p)
    scratch = _kernels.new_scratch(K, M, tau_p)
    scratch2 = _kernels.new_scratch(K, M, tau_p)
    gval = np.empty(tau_p)
    changed = np.ones(tau_p, np.bool_)
    val = _state(beta_t, bu, a, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, code, scratch, gval)
    _refresh(beta_t, bu, a, tau_p, tau_rho_p, rho_d, n_antennas, code, bandwidth, True, use_swaps, changed,
             scratch, work, rem, add, swp)
    fresh = True
    start_val = val
    rounds = 0
    while rounds < max_rounds:
        n_cand = _candidates(a, tau_p, val, gval, scratch[5], code, True, use_swaps, rem, add, swp,
                             cand_k, cand_j, cand_t, cand_s)
        order = np.argsort(-cand_s[:n_cand], kind="mergesort")
        floor = val - margin * abs(val)
        best, chosen, n_eval = _threshold(val), -1, 0
        for i in range(n_cand):
            c = order[i]
            if n_eval >= n_exact and (chosen >= 0 or cand_s[c] < floor):
                break
            old = _apply(a, cand_k[c], cand_j[c], cand_t[c])
            v = _exact(beta_t, bu, a, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, code, scratch2)
            _undo(a, cand_k[c], cand_j[c], old)
            n_eval += 1
            if v > best:
                best, chosen = v, c
        if chosen < 0 and not fresh:
            changed[:] = True
            _refresh(beta_t, bu, a, tau_p, tau_rho_p, rho_d, n_antennas, code, bandwidth, True, use_swaps,
                     changed, scratch, work, rem, add, swp)
            fresh = True
            continue
        if chosen < 0 and verify:
            for i in range(n_eval, n_cand):
                c = order[i]
                old = _apply(a, cand_k[c], cand_j[c], cand_t[c])
                v = _exact(beta_t, bu, a, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, code, scratch2)
                _undo(a, cand_k[c], cand_j[c], old)
                if v > best:
                    best, chosen = v, c
                    break
        if chosen < 0:
            break
        changed[:] = False
        changed[a[cand_k[chosen]]] = True
        changed[cand_t[chosen] if cand_j[chosen] < 0 else a[cand_j[chosen]]] = True
        _apply(a, cand_k[chosen], cand_j[chosen], cand_t[chosen])
        rounds += 1
        val = _state(beta_t, bu, a, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, code, scratch, gval)
        _refresh(beta_t, bu, a, tau_p, tau_rho_p, rho_d, n_antennas, code, bandwidth, True, use_swaps, changed,
                 scratch, work, rem, add, swp)
        fresh = False
    return start_val, val, rounds


@njit(cache=True, parallel=True, fastmath=_kernels.FASTMATH)
def _local_search(beta_t, bu, snap_of_start, starts, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, code,
                  use_swaps, max_rounds, n_exact, margin, verify, final, final_val, start_val, rounds):
    """Screened steepest ascent (:func:`_ascend`) from every start, in parallel over starts."""
    n_starts, K = starts.shape
    for r in prange(n_starts):
        s = snap_of_start[r]
        a = starts[r].copy()
        v0, v1, n = _ascend(beta_t[s], bu[s], a, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, code,
                            use_swaps, max_rounds, n_exact, margin, verify)
        final[r, :] = a
        start_val[r] = v0
        final_val[r] = v1
        rounds[r] = n


@njit(cache=True, parallel=True, fastmath=_kernels.FASTMATH)
def _kick_search(beta_t, bu, best, best_val, kick_users, kick_pilots, tau_p, tau_rho_p, rho_d, n_antennas,
                 bandwidth, code, use_swaps, max_rounds, n_exact, margin, verify, kicks_won):
    """Iterated local search, in parallel over snapshots: kick i reassigns users
    ``kick_users[s, i]`` to pilots ``kick_pilots[s, i]`` in snapshot s's best assignment, ascends
    (:func:`_ascend`) and keeps the end point if it beats the best by more than
    IMPROVEMENT_RTOL. ``best`` (S, K) and ``best_val`` (S,) are updated in place."""
    S, n_kicks, _ = kick_users.shape
    for s in prange(S):
        won = 0
        for i in range(n_kicks):
            a = best[s].copy()
            for u in range(kick_users.shape[2]):
                a[kick_users[s, i, u]] = kick_pilots[s, i, u]
            _, v, _ = _ascend(beta_t[s], bu[s], a, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, code,
                              use_swaps, max_rounds, n_exact, margin, verify)
            if v > _threshold(best_val[s]):
                best[s, :] = a
                best_val[s] = v
                won += 1
        kicks_won[s] = won


@njit(cache=True, parallel=True, fastmath=_kernels.FASTMATH)
def tabu_search(beta_t, bu, starts, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, code, iterations, tenure,
                n_exact, margin, best, best_val):
    """Screened tabu search over single-user moves, in parallel over snapshots (one start each).

    Each iteration ranks every move by its surrogate (as :func:`_ascend`), scores exactly, in
    descending surrogate order (ties: scan order, users then pilots), candidates until
    ``n_exact`` have been scored and one is allowed, skipping tabu moves whose surrogate falls
    ``margin`` (relative) below the best value seen (they cannot plausibly aspire), and applies
    the best allowed one -- non-tabu, or tabu but beating the best value seen (aspiration) --
    even if it lowers the objective. The moved user is tabu for ``tenure`` iterations. Stops
    after ``iterations`` or when nothing is allowed. ``best`` (S, K) / ``best_val`` (S,) receive
    the best assignment seen and its exact objective."""
    S, K = starts.shape
    M = beta_t.shape[2]
    for s in prange(S):
        (cand_k, cand_j, cand_t, cand_s), (rem, add, swp), work = _buffers(K, M, tau_p)
        scratch = _kernels.new_scratch(K, M, tau_p)
        scratch2 = _kernels.new_scratch(K, M, tau_p)
        gval = np.empty(tau_p)
        changed = np.ones(tau_p, np.bool_)
        tabu_until = np.zeros(K, np.int64)
        a = starts[s].copy()
        val = _state(beta_t[s], bu[s], a, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, code, scratch, gval)
        _refresh(beta_t[s], bu[s], a, tau_p, tau_rho_p, rho_d, n_antennas, code, bandwidth, True, False, changed,
                 scratch, work, rem, add, swp)
        top = val
        best[s, :] = a
        for it in range(iterations):
            n_cand = _candidates(a, tau_p, val, gval, scratch[5], code, True, False, rem, add, swp,
                                 cand_k, cand_j, cand_t, cand_s)
            order = np.argsort(-cand_s[:n_cand], kind="mergesort")
            floor = top - margin * abs(top)
            chosen, chosen_v, n_eval = -1, -np.inf, 0
            for i in range(n_cand):
                c = order[i]
                if n_eval >= n_exact and chosen >= 0:
                    break
                is_tabu = tabu_until[cand_k[c]] > it
                if is_tabu and cand_s[c] < floor:
                    continue
                old = _apply(a, cand_k[c], -1, cand_t[c])
                v = _exact(beta_t[s], bu[s], a, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, code, scratch2)
                _undo(a, cand_k[c], -1, old)
                n_eval += 1
                if (not is_tabu or v > top) and v > chosen_v:
                    chosen, chosen_v = c, v
            if chosen < 0:
                break
            k = cand_k[chosen]
            changed[:] = False
            changed[a[k]] = True
            changed[cand_t[chosen]] = True
            a[k] = cand_t[chosen]
            tabu_until[k] = it + 1 + tenure
            val = _state(beta_t[s], bu[s], a, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, code, scratch, gval)
            _refresh(beta_t[s], bu[s], a, tau_p, tau_rho_p, rho_d, n_antennas, code, bandwidth, True, False,
                     changed, scratch, work, rem, add, swp)
            if val > top:
                top = val
                best[s, :] = a
        best_val[s] = top


@njit(cache=True, parallel=True, fastmath=_kernels.FASTMATH)
def objective_values(beta_t, bu, snap_index, pilots, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, code, out):
    """``out[i]`` = objective (code) of assignment ``pilots[i]`` on snapshot ``snap_index[i]``,
    by the full kernel and :func:`cfenv._kernels.objective_of` (the searches' one scorer)."""
    n, K = pilots.shape
    M = beta_t.shape[2]
    for i in prange(n):
        scratch = _kernels.new_scratch(K, M, tau_p)
        out[i] = _exact(beta_t[snap_index[i]], bu[snap_index[i]], pilots[i], tau_p, tau_rho_p, rho_d,
                        n_antennas, bandwidth, code, scratch)


# ------------------------------------------------------------------ local search
def snapshot_key(beta: np.ndarray) -> int:
    """CRC-32 of one snapshot's fading as float64 bytes: keys a snapshot's own random stream."""
    return zlib.crc32(np.ascontiguousarray(beta, dtype=np.float64).tobytes())


class LocalSearchAgent(Agent):
    """Screened steepest-ascent local search over single-user moves and pair swaps, on
    ``config.objective`` (sum rate, minimum rate or proportional fairness).

    Starts from the master-AP assignment and from ``restarts`` uniformly random
    assignments. Every round ranks all K (tau_p - 1) moves and all swaps of users on
    different pilots by a cheap surrogate (the exact objective but for the change of the
    APs' power weights eta, so only the two pilot groups a candidate touches are rescored,
    O(M n^2) instead of a full evaluation), scores the ``n_exact`` best-ranked ones exactly
    and applies the best exact improvement; if none improves it goes on down the ranking to
    the first exact improvement, as long as the surrogate is within ``margin`` (relative) of
    the current value. A start ends when nothing so found improves (``verify=True``: when no
    candidate at all improves exactly, a true local optimum) or after ``max_rounds``. Then
    ``kicks`` times (iterated local search) the best end point so far has ``kick_users`` random
    users moved to random pilots and is ascended again; it replaces the best if it beats it.
    Every applied step and every returned value is exact (full kernel). The best end point is
    returned, so the result is never below master-AP (docs/model.md §5.2).

    Deterministic given (seed, snapshot), whatever the batching, thread count or load: a
    snapshot's random starts come from its own stream ``stream_rng(seed, AGENT_STREAM,
    "local-search", M, L, K, tau_p, crc32(beta))`` (not from the batch's ``rng``; the starts
    are drawn first, then the kicks), starts are relabelled to canonical form, ties between candidates go to the first in scan order
    (users, then pilots; then swaps) and ties between end points to the first start; the
    returned pilots are canonical (:func:`agents.base.canonical_pilots`).

    Args:
        restarts: random starts besides master-AP.
        swaps: also consider swapping the pilots of two users.
        max_rounds: cap on improving rounds per start.
        n_exact: best-ranked candidates scored exactly per round (>= 1); default
            :data:`DEFAULT_N_EXACT`, or all of them (plain steepest ascent, as 0.3.0) when the
            neighbourhood has at most :data:`EXACT_NEIGHBOURHOOD` candidates.
        margin: relative surrogate shortfall beyond which a candidate is not scored (>= 0).
        verify: end only at an exact local optimum (one more full scan per start).
        kicks: iterated-local-search kicks after the starts (see the class doc).
        kick_users: users a kick reassigns (default max(3, K // 8)).
    """

    name = "local-search"

    def __init__(self, config: SystemConfig | None = None, seed: int = 0, restarts: int = 4,
                 swaps: bool = True, max_rounds: int = 10_000, n_exact: int | None = None,
                 margin: float = DEFAULT_MARGIN, verify: bool = False, kicks: int = DEFAULT_KICKS,
                 kick_users: int | None = None) -> None:
        super().__init__(config, seed)
        if restarts < 0:
            raise ValueError(f"restarts must be >= 0, got {restarts}")
        if n_exact is not None and n_exact < 1:
            raise ValueError(f"n_exact must be >= 1, got {n_exact}")
        if not margin >= 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.restarts = int(restarts)
        self.swaps = bool(swaps)
        self.max_rounds = int(max_rounds)
        self.n_exact = None if n_exact is None else int(n_exact)
        self.margin = float(margin)
        self.verify = bool(verify)
        if kicks < 0:
            raise ValueError(f"kicks must be >= 0, got {kicks}")
        if kick_users is not None and kick_users < 1:
            raise ValueError(f"kick_users must be >= 1, got {kick_users}")
        self.kicks = int(kicks)
        self.kick_users = None if kick_users is None else int(kick_users)
        self.last_stats: dict[str, np.ndarray] = {}

    def starts(self, snapshots: Snapshot, config: SystemConfig,
               rng: np.random.Generator | None = None) -> np.ndarray:
        """``(B, 1 + restarts, K)`` canonical starting assignments: master-AP first, then random
        ones from each snapshot's own stream (see the class doc; ``rng`` is not used)."""
        return self._draws(snapshots, config)[0]

    def exact_per_round(self, config: SystemConfig) -> int:
        """Candidates scored exactly per round: ``n_exact`` if set, else all of a neighbourhood of
        at most EXACT_NEIGHBOURHOOD candidates (exact steepest ascent), else DEFAULT_N_EXACT."""
        if self.n_exact is not None:
            return self.n_exact
        K, tau_p = config.K, config.tau_p
        size = K * (tau_p - 1) + (K * (K - 1) // 2 if self.swaps else 0)
        return size + 1 if size <= EXACT_NEIGHBOURHOOD else DEFAULT_N_EXACT

    def kick_size(self, config: SystemConfig) -> int:
        """Users a kick reassigns: ``kick_size`` if set, else max(3, K // 8) (at most K)."""
        size = self.kick_users if self.kick_users is not None else max(3, config.K // 8)
        return min(size, config.K)

    def _draws(self, snapshots: Snapshot, config: SystemConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Starts ``(B, 1 + restarts, K)`` and kicks (users ``(B, kicks, n)`` distinct per kick, and
        their new pilots), all from each snapshot's own stream: starts first, then kicks."""
        beta = snapshots.beta
        B, K, tau_p = beta.shape[0], config.K, config.tau_p
        n = self.kick_size(config)
        first = master_ap_pilots(beta, tau_p)[:, None, :]
        rand = np.empty((B, self.restarts, K), dtype=np.int64)
        users = np.empty((B, self.kicks, n), dtype=np.int64)
        pilots = np.empty((B, self.kicks, n), dtype=np.int64)
        for b in range(B if self.restarts or self.kicks else 0):
            own = stream_rng(self.seed, AGENT_STREAM, self.name, *config.size, snapshot_key(beta[b]))
            rand[b] = own.integers(0, tau_p, (self.restarts, K))
            for i in range(self.kicks):
                users[b, i] = own.permutation(K)[:n]
            pilots[b] = own.integers(0, tau_p, (self.kicks, n))
        starts = canonical_pilots(np.concatenate([first.astype(np.int64), rand], axis=1))
        return starts, users, pilots

    def _assign(self, snapshots: Snapshot, config: SystemConfig, rng: np.random.Generator) -> np.ndarray:
        starts, users, pilots = self._draws(snapshots, config)
        return self.improve(snapshots, starts, config, kick_users=users, kick_pilots=pilots)

    def improve(self, snapshots: Snapshot, starts: np.ndarray, config: SystemConfig,
                kick_users: np.ndarray | None = None, kick_pilots: np.ndarray | None = None) -> np.ndarray:
        """Run the ascent from given ``(B, R, K)`` starts, then the kicks (if given, ``(B, kicks,
        n)`` users and their new pilots) from the best end point; returns the best ``(B, K)``
        assignment in canonical form (ties to the first start). Per-start values of
        ``config.objective`` are kept in :attr:`last_stats` (``start_val``, ``final_val`` -- the
        objective of the canonical end point --, ``rounds``, and per snapshot ``best_val`` and
        ``kicks_won``)."""
        B, R, K = starts.shape
        beta_t, bu = prepare_snapshots(snapshots.beta, config)
        flat = np.ascontiguousarray(starts.reshape(B * R, K), dtype=np.int64)
        snap_of_start = np.repeat(np.arange(B, dtype=np.int64), R)
        final = np.empty_like(flat)
        final_val = np.empty(B * R)
        start_val = np.empty(B * R)
        rounds = np.empty(B * R, dtype=np.int64)
        params = (*_kernels.rate_params(config), config.objective_code)
        search = (self.swaps, self.max_rounds, self.exact_per_round(config), self.margin, self.verify)
        _local_search(beta_t, bu, snap_of_start, flat, *params, *search, final, final_val, start_val, rounds)
        # the same partition reached under other labels scores within an ulp of it: score the
        # canonical end points, so that values (and the choice below) depend on partitions only
        final = canonical_pilots(final)
        objective_values(beta_t, bu, snap_of_start, final, *params, final_val)
        pick = final_val.reshape(B, R).argmax(axis=1)
        best = np.ascontiguousarray(final.reshape(B, R, K)[np.arange(B), pick])
        best_val = final_val.reshape(B, R)[np.arange(B), pick].copy()
        won = np.zeros(B, dtype=np.int64)
        if kick_users is not None and kick_users.shape[1] > 0:
            _kick_search(beta_t, bu, best, best_val, np.ascontiguousarray(kick_users, dtype=np.int64),
                         np.ascontiguousarray(kick_pilots, dtype=np.int64), *params, *search, won)
            best = canonical_pilots(best)
            objective_values(beta_t, bu, np.arange(B, dtype=np.int64), best, *params, best_val)
        self.last_stats = {"start_val": start_val.reshape(B, R), "final_val": final_val.reshape(B, R),
                           "rounds": rounds.reshape(B, R), "best_val": best_val, "kicks_won": won}
        return best
