"""Today's (0.3.0) local search and tabu search, kept for benchmarks/bench_search.py only.

``LegacyLocalSearchAgent`` scores every move and swap of every round by a full rate evaluation
(:func:`cfenv._kernels.sum_rate_one`); ``LegacyTabuAgent`` scores every move of every iteration
by a batched :func:`cfenv.rates.sum_rate` call. Both optimise the sum rate only. The package's
agents (:mod:`agents.search.local`, :mod:`agents.search.tabu`) replace them.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from agents.base import Agent
from agents.heuristics import master_ap_pilots
from agents.search import LocalSearchAgent
from agents.search.local import start_buffers
from agents.search.screening import kernel_inputs
from cfenv import _kernels
from cfenv.channel import Snapshot
from cfenv.config import SystemConfig
from cfenv.rates import sum_rate

IMPROVEMENT_RTOL = 1e-12


def _batched_sum_rate(beta, candidates, config):
    return sum_rate(beta[:, None], candidates, config)


@njit(parallel=True, **_kernels.JIT)
def _local_search(beta_t, bu, snap_of_start, starts, params, use_swaps, max_rounds, final, final_val, start_val,
                  rounds):
    """Steepest ascent from every start: each round scores every single-user move and
    (optionally) every swap of two users on different pilots, and applies the best one
    if it raises the sum rate by more than IMPROVEMENT_RTOL; stops when none does."""
    n_starts, K = starts.shape
    M = beta_t.shape[2]
    for r in prange(n_starts):
        s = snap_of_start[r]
        tau_p = params.tau_p
        scratch = _kernels.new_scratch(K, M, tau_p)
        a = starts[r].copy()
        val = _kernels.sum_rate_one(beta_t[s], bu[s], a, params, scratch)
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
                    v = _kernels.sum_rate_one(beta_t[s], bu[s], a, params, scratch)
                    if v > best:
                        best, move_k, move_j, move_t = v, k, -1, t
                a[k] = orig
            if use_swaps:
                for k in range(K):
                    for j in range(k + 1, K):
                        if a[k] == a[j]:
                            continue
                        a[k], a[j] = a[j], a[k]
                        v = _kernels.sum_rate_one(beta_t[s], bu[s], a, params, scratch)
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
        final_val[r] = _kernels.sum_rate_one(beta_t[s], bu[s], a, params, scratch)
        rounds[r] = n_rounds



class LegacyLocalSearchAgent(LocalSearchAgent):
    """0.3.0's local search: same starts, every move and swap scored by a full evaluation."""

    name = "local-search"

    def _assign(self, snapshots, config, rng):
        return self.improve(snapshots, self.starts(snapshots, config), config)

    def improve(self, snapshots, starts, config):
        from agents.base import canonical_pilots

        B, R, K = starts.shape
        beta_t, bu = kernel_inputs(snapshots.beta, config)
        flat, snap_of_start, final, final_val, start_val, rounds = start_buffers(starts)
        _local_search(beta_t, bu, snap_of_start, flat, _kernels.rate_params(config), self.swaps,
                      self.max_rounds, final, final_val, start_val, rounds)
        final = canonical_pilots(final)
        final_val = _kernels.evaluate(beta_t, bu, snap_of_start, final, config, per_user=False)
        best = final_val.reshape(B, R).argmax(axis=1)
        return final.reshape(B, R, K)[np.arange(B), best]


class LegacyTabuAgent(Agent):
    """Tabu search (Liu, Zhang, Jin, Ai, "Tabu-search-based pilot assignment for cell-free
    massive MIMO systems", IEEE TVT 69(2), 2020). Objective: the sum rate.

    Rule:

    1. Start from master-AP's assignment (:func:`agents.heuristics.master_ap_pilots`).
    2. Neighbourhood: move one user to another pilot. Choice: every iteration scores *all*
       K (tau_p - 1) moves in one batched :func:`cfenv.rates.sum_rate` call (the paper
       evaluates a candidate list; we take the full neighbourhood, which contains it).
    3. Apply the best non-tabu move, even if it lowers the sum rate (that is what lets tabu
       search leave local optima). Aspiration: a tabu move is allowed if it beats the best
       sum rate seen so far. Ties go to the first move in scan order (users, then pilots
       ``(p_k + 1, p_k + 2, ...) mod tau_p``).
    4. The moved user becomes tabu for the next ``tenure`` iterations.
    5. Stop after ``iterations`` iterations (or when every move is tabu and none aspires);
       return the best assignment seen -- never below master-AP.

    Deterministic. Cost: ``iterations`` x K (tau_p - 1) sum-rate evaluations of O(M K) each,
    batched over snapshots.

    Args:
        iterations: tabu iterations (default 20).
        tenure: iterations a moved user stays tabu (default 5).
    """

    name = "tabu"

    def __init__(self, config: SystemConfig | None = None, seed: int = 0, iterations: int = 20,
                 tenure: int = 5) -> None:
        super().__init__(config, seed)
        if iterations < 0 or tenure < 0:
            raise ValueError(f"iterations and tenure must be >= 0, got {iterations}, {tenure}")
        self.iterations = int(iterations)
        self.tenure = int(tenure)

    def _assign(self, snapshots: Snapshot, config: SystemConfig, rng: np.random.Generator) -> np.ndarray:
        beta = snapshots.beta
        tau_p = config.tau_p
        pilots = master_ap_pilots(beta, tau_p)
        B, K = pilots.shape
        best = pilots.copy()
        best_val = _batched_sum_rate(beta, pilots[:, None], config)[:, 0]
        if tau_p < 2 or K == 0:
            return best
        batch = np.arange(B)
        user = np.repeat(np.arange(K), tau_p - 1)  # (N,) the user each move changes
        shift = np.tile(np.arange(1, tau_p), K)  # (N,) pilot offset of the move
        N = user.size
        tabu_until = np.zeros((B, K), dtype=np.int64)
        active = np.ones(B, dtype=bool)
        for it in range(self.iterations):
            cand = np.repeat(pilots[:, None, :], N, axis=1)  # (B, N, K)
            new_pilot = (pilots[:, user] + shift) % tau_p  # (B, N)
            cand[:, np.arange(N), user] = new_pilot
            val = _batched_sum_rate(beta, cand, config)  # (B, N)
            tabu = tabu_until[:, user] > it
            allowed = ~tabu | (val > best_val[:, None])
            score = np.where(allowed, val, -np.inf)
            choice = score.argmax(axis=1)
            active &= np.isfinite(score[batch, choice])
            if not active.any():
                break
            rows = batch[active]
            moved = user[choice[rows]]
            pilots[rows, moved] = new_pilot[rows, choice[rows]]
            tabu_until[rows, moved] = it + 1 + self.tenure
            chosen_val = val[rows, choice[rows]]
            better = chosen_val > best_val[rows]
            best[rows[better]] = pilots[rows[better]]
            best_val[rows[better]] = chosen_val[better]
        return best
