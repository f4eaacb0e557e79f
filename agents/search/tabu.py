"""Tabu search (Liu, Zhang, Jin, Ai, IEEE TVT 69(2), 2020; docs/literature.md): the screened
compiled kernel :func:`tabu_search` and the agent :class:`TabuAgent` (also importable from
:mod:`agents.literature`, its former home); on a model without the ``paper-pairwise`` fast path,
:func:`agents.search.generic.tabu`."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from agents.base import Agent
from agents.heuristics import master_ap_pilots
from agents.search import generic
from agents.search.screening import DEFAULT_MARGIN, DEFAULT_N_EXACT, exact_objective, exact_state
from agents.search.screening import apply_candidate, list_candidates, new_buffers, refresh, undo_candidate
from cfenv import _kernels
from cfenv._kernels import JIT
from cfenv.channel import Snapshot
from cfenv.config import SystemConfig
from cfenv.models import model_of


@njit(parallel=True, **JIT)
def tabu_search(beta_t, bu, starts, params, iterations, tenure, n_exact, margin, best, best_val):
    """Screened tabu search over single-user moves, in parallel over snapshots (one start each).

    Each iteration ranks every move by its surrogate (as :func:`agents.search.local.ascend`), scores exactly, in
    descending surrogate order (ties: scan order, users then pilots), candidates until
    ``n_exact`` have been scored and one is allowed, skipping tabu moves whose surrogate falls
    ``margin`` (relative) below the best value seen (they cannot plausibly aspire), and applies
    the best allowed one -- non-tabu, or tabu but beating the best value seen (aspiration) --
    even if it lowers the objective. The moved user is tabu for ``tenure`` iterations. Stops
    after ``iterations`` or when nothing is allowed. ``best`` (S, K) / ``best_val`` (S,) receive
    the best assignment seen and its exact objective."""
    S, K = starts.shape
    M = beta_t.shape[2]
    tau_p = params.tau_p
    for s in prange(S):
        cand, cache, work = new_buffers(K, M, tau_p)
        cand_k, cand_t, cand_s = cand.user, cand.pilot, cand.score
        scratch = _kernels.new_scratch(K, M, tau_p)
        scratch2 = _kernels.new_scratch(K, M, tau_p)
        gval = np.empty(tau_p)
        changed = np.ones(tau_p, np.bool_)
        tabu_until = np.zeros(K, np.int64)
        a = starts[s].copy()
        val = exact_state(beta_t[s], bu[s], a, params, scratch, gval)
        refresh(beta_t[s], bu[s], a, params, True, False, changed, scratch, work, cache)
        top = val
        best[s, :] = a
        for it in range(iterations):
            n_cand = list_candidates(a, tau_p, val, gval, scratch.start, params.code, True, False, cache, cand)
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
                old = apply_candidate(a, cand_k[c], -1, cand_t[c])
                v = exact_objective(beta_t[s], bu[s], a, params, scratch2)
                undo_candidate(a, cand_k[c], -1, old)
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
            val = exact_state(beta_t[s], bu[s], a, params, scratch, gval)
            refresh(beta_t[s], bu[s], a, params, True, False, changed, scratch, work, cache)
            if val > top:
                top = val
                best[s, :] = a
        best_val[s] = top


class TabuAgent(Agent):
    """Tabu search (Liu, Zhang, Jin, Ai, "Tabu-search-based pilot assignment for cell-free
    massive MIMO systems", IEEE TVT 69(2), 2020), on ``config.objective`` (the paper: the sum
    rate).

    Rule:

    1. Start from master-AP's assignment (:func:`agents.heuristics.master_ap_pilots`).
    2. Neighbourhood: move one user to another pilot (a move to an unused pilot listed once).
       Choice: every iteration ranks *all* K (tau_p - 1) moves by the screening surrogate of
       local search (the objective with the APs' power weights eta held fixed, so only the two
       touched pilot groups are rescored) and scores the ``n_exact`` best-ranked allowed ones
       exactly (the paper scores a candidate list; ours is the surrogate's top).
    3. Apply the best allowed move among those scored exactly, even if it lowers the objective
       (that is what lets tabu search leave local optima). Aspiration: a tabu move is allowed if
       it beats the best value seen so far. Ties: first in surrogate order, then scan order
       (users, then pilots).
    4. The moved user becomes tabu for the next ``tenure`` iterations.
    5. Stop after ``iterations`` iterations (or when every move is tabu and none aspires);
       return the best assignment seen -- never below master-AP.

    Deterministic; compiled (numba), in parallel over snapshots
    (:func:`tabu_search`). Cost per iteration: K (tau_p - 1) surrogates of O(M n^2)
    (only those touching the two changed groups are recomputed) and about ``n_exact`` full
    evaluations.

    On a model without the ``paper-pairwise`` fast path (:func:`agents.search.generic.pairwise_kernel`:
    e.g. ``SystemConfig(model="paper-reference")``) every iteration scores *all* K (tau_p - 1) moves
    exactly in one ``model.objective`` batch (:func:`agents.search.generic.tabu`; ``n_exact`` does
    not apply): the same rule, tenure, aspiration and stop.

    Args:
        iterations: tabu iterations (default 20).
        tenure: iterations a moved user stays tabu (default 5).
        n_exact: moves scored exactly per iteration (default 4).
    """

    name = "tabu"

    def __init__(self, config: SystemConfig | None = None, seed: int = 0, iterations: int = 20,
                 tenure: int = 5, n_exact: int = DEFAULT_N_EXACT) -> None:
        super().__init__(config, seed)
        if iterations < 0 or tenure < 0:
            raise ValueError(f"iterations and tenure must be >= 0, got {iterations}, {tenure}")
        if n_exact < 1:
            raise ValueError(f"n_exact must be >= 1, got {n_exact}")
        self.iterations = int(iterations)
        self.tenure = int(tenure)
        self.n_exact = int(n_exact)

    def _assign(self, snapshots: Snapshot, config: SystemConfig, rng: np.random.Generator) -> np.ndarray:
        beta = snapshots.beta
        pilots = np.ascontiguousarray(master_ap_pilots(beta, config.tau_p), dtype=np.int64)
        if config.tau_p < 2 or self.iterations == 0:
            return pilots
        kernel = generic.pairwise_kernel(config)
        if kernel is None:
            return generic.tabu(model_of(config), snapshots, pilots, config.tau_p, iterations=self.iterations,
                                tenure=self.tenure)[0]
        beta_t, bu = kernel.kernel_inputs(snapshots)
        best = np.empty_like(pilots)
        best_val = np.empty(len(pilots))
        tabu_search(beta_t, bu, pilots, kernel.params(), self.iterations, self.tenure, self.n_exact,
                    DEFAULT_MARGIN, best, best_val)
        return best
