"""Search baselines: exact exhaustive search (EPAS) and local search.

Both run compiled (numba) over the same per-assignment kernel as the rate
engine (:func:`cfenv._kernels.sum_rate_one`), in parallel over the machine's
cores. Both are deterministic functions of (seed, snapshot): every parallel work item is
independent and ties go to a fixed order, so the pilots (canonical, restricted-growth
labels: :func:`agents.base.canonical_pilots`) and their sum rates do not depend on the
batch a snapshot comes in, on the thread count or on the load.
"""

from __future__ import annotations

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
"""local search accepts a move only if it raises the sum rate by more than this fraction"""


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
def _exhaustive(beta_t, bu, prefixes, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, best_val, best_assign):
    """Depth-first enumeration of every restricted-growth completion of each prefix;
    the first (lexicographic) maximiser of each prefix goes to best_val/best_assign."""
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
        best = -1.0
        while True:
            val = _kernels.sum_rate_one(beta_t, bu, a, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, scratch)
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


class ExhaustiveAgent(Agent):
    """EPAS: the exact maximiser of the sum rate, enumerating each pilot partition once.

    Pilot labels are interchangeable, so only restricted-growth strings are scored
    (user 0 on pilot 0, every later user on a used pilot or the next new one):
    ``sum_{j <= tau_p} S(K, j)`` ~ tau_p^K / tau_p! assignments. The enumeration is
    split into independent prefixes scored in parallel by a compiled depth-first
    search; ties go to the lexicographically first assignment. The result is canonical
    (a restricted-growth string) and independent of batching and thread count.

    Args:
        max_assignments: refuse (``ValueError``, with the number needed) beyond this.
        progress: show a tqdm bar for searches above ``progress_min`` assignments.
        threads: numba threads (default: all cores).
    """

    name = "exhaustive"

    def __init__(self, config: SystemConfig | None = None, seed: int = 0,
                 max_assignments: int = DEFAULT_MAX_ASSIGNMENTS, progress: bool = True,
                 progress_min: int = 20_000_000, threads: int | None = None) -> None:
        super().__init__(config, seed)
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

    def _search_one(self, beta_t: np.ndarray, bu: np.ndarray, prefixes: np.ndarray, total: int,
                    config: SystemConfig) -> np.ndarray:
        import numba

        best_val = np.empty(len(prefixes))
        best_assign = np.empty((len(prefixes), config.K), dtype=np.int64)
        params = _kernels.rate_params(config)
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


# ------------------------------------------------------------------ local search
@njit(cache=True, parallel=True, fastmath=_kernels.FASTMATH)
def _local_search(beta_t, bu, snap_of_start, starts, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth,
                  use_swaps, max_rounds, final, final_val, start_val, rounds):
    """Steepest ascent from every start: each round scores every single-user move and
    (optionally) every swap of two users on different pilots, and applies the best one
    if it raises the sum rate by more than IMPROVEMENT_RTOL; stops when none does."""
    n_starts, K = starts.shape
    M = beta_t.shape[2]
    for r in prange(n_starts):
        s = snap_of_start[r]
        scratch = _kernels.new_scratch(K, M, tau_p)
        a = starts[r].copy()
        val = _kernels.sum_rate_one(beta_t[s], bu[s], a, tau_p, tau_rho_p, rho_d, n_antennas, bandwidth, scratch)
        start_val[r] = val
        n_rounds = 0
        while n_rounds < max_rounds:
            best = val * (1.0 + IMPROVEMENT_RTOL)
            move_k, move_j, move_t = -1, -1, -1
            for k in range(K):
                orig = a[k]
                for t in range(tau_p):
                    if t == orig:
                        continue
                    a[k] = t
                    v = _kernels.sum_rate_one(beta_t[s], bu[s], a, tau_p, tau_rho_p, rho_d, n_antennas,
                                              bandwidth, scratch)
                    if v > best:
                        best, move_k, move_j, move_t = v, k, -1, t
                a[k] = orig
            if use_swaps:
                for k in range(K):
                    for j in range(k + 1, K):
                        if a[k] == a[j]:
                            continue
                        a[k], a[j] = a[j], a[k]
                        v = _kernels.sum_rate_one(beta_t[s], bu[s], a, tau_p, tau_rho_p, rho_d, n_antennas,
                                                  bandwidth, scratch)
                        if v > best:
                            best, move_k, move_j, move_t = v, k, j, -1
                        a[k], a[j] = a[j], a[k]
            if move_k < 0:
                break
            if move_j < 0:
                a[move_k] = move_t
            else:
                a[move_k], a[move_j] = a[move_j], a[move_k]
            val = best
            n_rounds += 1
        final[r, :] = a
        final_val[r] = _kernels.sum_rate_one(beta_t[s], bu[s], a, tau_p, tau_rho_p, rho_d, n_antennas,
                                             bandwidth, scratch)
        rounds[r] = n_rounds


def snapshot_key(beta: np.ndarray) -> int:
    """CRC-32 of one snapshot's fading as float64 bytes: keys a snapshot's own random stream."""
    return zlib.crc32(np.ascontiguousarray(beta, dtype=np.float64).tobytes())


class LocalSearchAgent(Agent):
    """Steepest-ascent local search over single-user moves and pair swaps.

    Starts from the master-AP assignment and from ``restarts`` uniformly random
    assignments; every round evaluates all K (tau_p - 1) moves and all swaps of users on
    different pilots, applies the best if it improves, and stops at a local optimum. The
    best end point over the starts is returned, so the result is never below master-AP.

    Deterministic given (seed, snapshot), whatever the batching, thread count or load: a
    snapshot's random starts come from its own stream ``stream_rng(seed, AGENT_STREAM,
    "local-search", M, L, K, tau_p, crc32(beta))`` (not from the batch's ``rng``), starts
    are relabelled to canonical form, ties between moves go to the first in scan order
    (users, then pilots; then swaps) and ties between end points to the first start; the
    returned pilots are canonical (:func:`agents.base.canonical_pilots`).

    Args:
        restarts: random starts besides master-AP.
        swaps: also consider swapping the pilots of two users.
        max_rounds: cap on improving rounds per start.
    """

    name = "local-search"

    def __init__(self, config: SystemConfig | None = None, seed: int = 0, restarts: int = 4,
                 swaps: bool = True, max_rounds: int = 10_000) -> None:
        super().__init__(config, seed)
        if restarts < 0:
            raise ValueError(f"restarts must be >= 0, got {restarts}")
        self.restarts = int(restarts)
        self.swaps = bool(swaps)
        self.max_rounds = int(max_rounds)
        self.last_stats: dict[str, np.ndarray] = {}

    def starts(self, snapshots: Snapshot, config: SystemConfig,
               rng: np.random.Generator | None = None) -> np.ndarray:
        """``(B, 1 + restarts, K)`` canonical starting assignments: master-AP first, then random
        ones from each snapshot's own stream (see the class doc; ``rng`` is not used)."""
        beta = snapshots.beta
        B, K = beta.shape[0], config.K
        first = master_ap_pilots(beta, config.tau_p)[:, None, :]
        rand = np.empty((B, self.restarts, K), dtype=np.int64)
        for b in range(B if self.restarts else 0):
            own = stream_rng(self.seed, AGENT_STREAM, self.name, *config.size, snapshot_key(beta[b]))
            rand[b] = own.integers(0, config.tau_p, (self.restarts, K))
        return canonical_pilots(np.concatenate([first.astype(np.int64), rand], axis=1))

    def _assign(self, snapshots: Snapshot, config: SystemConfig, rng: np.random.Generator) -> np.ndarray:
        return self.improve(snapshots, self.starts(snapshots, config, rng), config)

    def improve(self, snapshots: Snapshot, starts: np.ndarray, config: SystemConfig) -> np.ndarray:
        """Run the ascent from given ``(B, R, K)`` starts; returns the best ``(B, K)`` end points in
        canonical form (ties to the first start). Per-start values are kept in :attr:`last_stats`
        (``start_val``, ``final_val`` -- the sum rate of the canonical end point -- and ``rounds``)."""
        B, R, K = starts.shape
        beta_t, bu = prepare_snapshots(snapshots.beta, config)
        flat = np.ascontiguousarray(starts.reshape(B * R, K), dtype=np.int64)
        snap_of_start = np.repeat(np.arange(B, dtype=np.int64), R)
        final = np.empty_like(flat)
        final_val = np.empty(B * R)
        start_val = np.empty(B * R)
        rounds = np.empty(B * R, dtype=np.int64)
        _local_search(beta_t, bu, snap_of_start, flat, *_kernels.rate_params(config), self.swaps,
                      self.max_rounds, final, final_val, start_val, rounds)
        # the same partition reached under other labels scores within an ulp of it: score the
        # canonical end points, so that values (and the choice below) depend on partitions only
        final = canonical_pilots(final)
        final_val = _kernels.evaluate(beta_t, bu, snap_of_start, final, config, per_user=False)
        self.last_stats = {"start_val": start_val.reshape(B, R), "final_val": final_val.reshape(B, R),
                           "rounds": rounds.reshape(B, R)}
        best = final_val.reshape(B, R).argmax(axis=1)
        return final.reshape(B, R, K)[np.arange(B), best]
