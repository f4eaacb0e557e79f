"""Screened steepest-ascent local search with iterated kicks (docs/model.md §5.2).

Optimises ``SystemConfig.objective`` over single-user moves and pair swaps, ranking every
candidate by the screening surrogate of :mod:`agents.search.screening` and scoring the
best-ranked exactly; compiled (numba) and in parallel over starts. Deterministic given (seed,
snapshot): every parallel work item is independent and ties go to a fixed order, so the
(canonical) pilots do not depend on batching, thread count or load. On a model without the
``paper-pairwise`` fast path the same starts and kicks run exact steepest ascent in numpy
(:func:`agents.search.generic.local_search`).
"""

from __future__ import annotations

import zlib

import numpy as np
from numba import njit, prange

from agents.base import AGENT_STREAM, Agent, canonical_pilots, stream_rng
from agents.heuristics import master_ap_pilots
from agents.search import generic
from agents.search.screening import (
    DEFAULT_MARGIN,
    DEFAULT_N_EXACT,
    apply_candidate,
    exact_objective,
    exact_state,
    list_candidates,
    new_buffers,
    objective_values,
    refresh,
    threshold,
    undo_candidate,
)
from cfenv import _kernels
from cfenv._kernels import JIT
from cfenv.channel import Snapshot
from cfenv.config import SystemConfig
from cfenv.models import model_of

DEFAULT_RESTARTS = 4
"""random starts besides master-AP (see :meth:`LocalSearchAgent.budget`)"""
EXACT_NEIGHBOURHOOD = 256
"""local search scores every candidate exactly (plain steepest ascent) when a neighbourhood
(moves and swaps) has at most this many, unless ``n_exact`` is given"""
DEFAULT_KICKS = 8
"""iterated-local-search kicks from the best end point after the starts"""


@njit(**JIT)
def ascend(beta_t, bu, a, params, use_swaps, max_rounds, n_exact, margin, verify):
    """Screened steepest ascent of ``a`` in place; returns (start value, end value, rounds).

    Each round ranks every move and swap by its surrogate (:func:`agents.search.screening.refresh`; after a step only
    the candidates touching the two changed pilot groups are rescored, the others keep their
    values under the previous eta), scores exactly, in descending surrogate order (ties: scan
    order), the ``n_exact`` best-ranked candidates and applies the best exact improvement among
    them (by more than IMPROVEMENT_RTOL); if none of them improves, it goes on down the ranking
    to the first exact improvement, up to candidates whose surrogate falls ``margin``
    (relative) below the current value. Before stopping, every surrogate is recomputed under
    the current eta and the round repeated. With ``verify`` a round that still finds nothing
    scores every remaining candidate exactly, so the end point is an exact local optimum."""
    K, M = beta_t.shape
    tau_p = params.tau_p
    cand, cache, work = new_buffers(K, M, tau_p)
    cand_k, cand_j, cand_t, cand_s = cand.user, cand.partner, cand.pilot, cand.score
    scratch = _kernels.new_scratch(K, M, tau_p)
    scratch2 = _kernels.new_scratch(K, M, tau_p)
    gval = np.empty(tau_p)
    changed = np.ones(tau_p, np.bool_)
    val = exact_state(beta_t, bu, a, params, scratch, gval)
    refresh(beta_t, bu, a, params, True, use_swaps, changed, scratch, work, cache)
    fresh = True
    start_val = val
    rounds = 0
    while rounds < max_rounds:
        n_cand = list_candidates(a, tau_p, val, gval, scratch.start, params.code, True, use_swaps, cache, cand)
        order = np.argsort(-cand_s[:n_cand], kind="mergesort")
        floor = val - margin * abs(val)
        best, chosen, n_eval = threshold(val), -1, 0
        for i in range(n_cand):
            c = order[i]
            if n_eval >= n_exact and (chosen >= 0 or cand_s[c] < floor):
                break
            old = apply_candidate(a, cand_k[c], cand_j[c], cand_t[c])
            v = exact_objective(beta_t, bu, a, params, scratch2)
            undo_candidate(a, cand_k[c], cand_j[c], old)
            n_eval += 1
            if v > best:
                best, chosen = v, c
        if chosen < 0 and not fresh:
            changed[:] = True
            refresh(beta_t, bu, a, params, True, use_swaps, changed, scratch, work, cache)
            fresh = True
            continue
        if chosen < 0 and verify:
            for i in range(n_eval, n_cand):
                c = order[i]
                old = apply_candidate(a, cand_k[c], cand_j[c], cand_t[c])
                v = exact_objective(beta_t, bu, a, params, scratch2)
                undo_candidate(a, cand_k[c], cand_j[c], old)
                if v > best:
                    best, chosen = v, c
                    break
        if chosen < 0:
            break
        changed[:] = False
        changed[a[cand_k[chosen]]] = True
        changed[cand_t[chosen] if cand_j[chosen] < 0 else a[cand_j[chosen]]] = True
        apply_candidate(a, cand_k[chosen], cand_j[chosen], cand_t[chosen])
        rounds += 1
        val = exact_state(beta_t, bu, a, params, scratch, gval)
        refresh(beta_t, bu, a, params, True, use_swaps, changed, scratch, work, cache)
        fresh = False
    return start_val, val, rounds


@njit(parallel=True, **JIT)
def _local_search(beta_t, bu, snap_of_start, starts, params, use_swaps, max_rounds, n_exact, margin, verify,
                  final, final_val, start_val, rounds):
    """Screened steepest ascent (:func:`ascend`) from every start, in parallel over starts."""
    n_starts, K = starts.shape
    for r in prange(n_starts):
        s = snap_of_start[r]
        a = starts[r].copy()
        v0, v1, n = ascend(beta_t[s], bu[s], a, params, use_swaps, max_rounds, n_exact, margin, verify)
        final[r, :] = a
        start_val[r] = v0
        final_val[r] = v1
        rounds[r] = n


@njit(parallel=True, **JIT)
def _kick_search(beta_t, bu, best, best_val, kick_users, kick_pilots, params, use_swaps, max_rounds, n_exact,
                 margin, verify, kicks_won):
    """Iterated local search, in parallel over snapshots: kick i reassigns users
    ``kick_users[s, i]`` to pilots ``kick_pilots[s, i]`` in snapshot s's best assignment, ascends
    (:func:`ascend`) and keeps the end point if it beats the best by more than
    IMPROVEMENT_RTOL. ``best`` (S, K) and ``best_val`` (S,) are updated in place."""
    S, n_kicks, _ = kick_users.shape
    for s in prange(S):
        won = 0
        for i in range(n_kicks):
            a = best[s].copy()
            for u in range(kick_users.shape[2]):
                a[kick_users[s, i, u]] = kick_pilots[s, i, u]
            _, v, _ = ascend(beta_t[s], bu[s], a, params, use_swaps, max_rounds, n_exact, margin, verify)
            if v > threshold(best_val[s]):
                best[s, :] = a
                best_val[s] = v
                won += 1
        kicks_won[s] = won


def snapshot_key(beta: np.ndarray) -> int:
    """CRC-32 of one snapshot's fading as float64 bytes: keys a snapshot's own random stream."""
    return zlib.crc32(np.ascontiguousarray(beta, dtype=np.float64).tobytes())


def start_buffers(starts: np.ndarray) -> tuple[np.ndarray, ...]:
    """The flat ``(B R, K)`` int64 starts of ``(B, R, K)`` ones, each start's snapshot ``(B R,)``,
    and the ascent's outputs: end points ``(B R, K)``, end and start values ``(B R,)``, rounds."""
    B, R, K = starts.shape
    flat = np.ascontiguousarray(starts.reshape(B * R, K), dtype=np.int64)
    snap_of_start = np.repeat(np.arange(B, dtype=np.int64), R)
    return (flat, snap_of_start, np.empty_like(flat), np.empty(B * R), np.empty(B * R),
            np.empty(B * R, dtype=np.int64))


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

    On a model without the ``paper-pairwise`` fast path (:func:`agents.search.generic.pairwise_kernel`:
    e.g. ``SystemConfig(model="paper-reference")``), from the same starts, every round scores the
    moves (and swaps) exactly with one ``model.objective`` batch and applies the best improvement
    (:func:`agents.search.generic.local_search`); the kicks are the same. Where the model offers a
    ``screening`` neighbourhood evaluator (the scalable model, docs/model.md §8.5), it values every
    candidate at once: exact values are taken as they are (every end point an exact local optimum),
    a surrogate's ``n_exact`` best are scored exactly. A large generic neighbourhood also changes the
    default budget (:meth:`budget`). ``margin`` and ``verify`` concern the compiled surrogate and do
    not apply there.

    Args:
        restarts: random starts besides master-AP (default: :meth:`budget`).
        swaps: also consider swapping the pilots of two users (default: :meth:`budget`).
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

    def __init__(self, config: SystemConfig | None = None, seed: int = 0, restarts: int | None = None,
                 swaps: bool | None = None, max_rounds: int = 10_000, n_exact: int | None = None,
                 margin: float = DEFAULT_MARGIN, verify: bool = False, kicks: int = DEFAULT_KICKS,
                 kick_users: int | None = None) -> None:
        super().__init__(config, seed)
        if restarts is not None and restarts < 0:
            raise ValueError(f"restarts must be >= 0, got {restarts}")
        if n_exact is not None and n_exact < 1:
            raise ValueError(f"n_exact must be >= 1, got {n_exact}")
        if not margin >= 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.given_restarts = None if restarts is None else int(restarts)
        self.given_swaps = None if swaps is None else bool(swaps)
        self.restarts, self.swaps = self.budget(self.config)
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

    def budget(self, config: SystemConfig | None) -> tuple[int, bool]:
        """``(restarts, swaps)`` at ``config``: those given, else :data:`DEFAULT_RESTARTS` random starts
        and swaps -- except on a generic path (no compiled kernel) whose move-and-swap neighbourhood
        exceeds EXACT_NEIGHBOURHOOD, where every round scores the neighbourhood exactly: there the
        master-AP start alone and moves only (the kicks stay), which keeps the scalable model's default
        size at seconds per snapshot (docs/model.md §8.5)."""
        restarts, swaps = DEFAULT_RESTARTS, True
        if config is not None and generic.pairwise_kernel(config) is None:
            K, tau_p = config.K, config.tau_p
            if K * (tau_p - 1) + K * (K - 1) // 2 > EXACT_NEIGHBOURHOOD:
                restarts, swaps = 0, False
        return (restarts if self.given_restarts is None else self.given_restarts,
                swaps if self.given_swaps is None else self.given_swaps)

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
        self.restarts, self.swaps = self.budget(config)
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
        kernel = generic.pairwise_kernel(config)
        if kernel is None:
            best, self.last_stats = generic.local_search(
                model_of(config), snapshots, np.asarray(starts, dtype=np.int64), config.tau_p, use_swaps=self.swaps,
                max_rounds=self.max_rounds, kick_users=kick_users, kick_pilots=kick_pilots,
                n_exact=self.exact_per_round(config))
            return best
        B, R, K = starts.shape
        beta_t, bu = kernel.kernel_inputs(snapshots)
        flat, snap_of_start, final, final_val, start_val, rounds = start_buffers(starts)
        params = kernel.params()
        search = (self.swaps, self.max_rounds, self.exact_per_round(config), self.margin, self.verify)
        _local_search(beta_t, bu, snap_of_start, flat, params, *search, final, final_val, start_val, rounds)
        # the same partition reached under other labels scores within an ulp of it: score the
        # canonical end points, so that values (and the choice below) depend on partitions only
        final = canonical_pilots(final)
        objective_values(beta_t, bu, snap_of_start, final, params, final_val)
        pick = final_val.reshape(B, R).argmax(axis=1)
        best = np.ascontiguousarray(final.reshape(B, R, K)[np.arange(B), pick])
        best_val = final_val.reshape(B, R)[np.arange(B), pick].copy()
        won = np.zeros(B, dtype=np.int64)
        if kick_users is not None and kick_users.shape[1] > 0:
            _kick_search(beta_t, bu, best, best_val, np.ascontiguousarray(kick_users, dtype=np.int64),
                         np.ascontiguousarray(kick_pilots, dtype=np.int64), params, *search, won)
            best = canonical_pilots(best)
            objective_values(beta_t, bu, np.arange(B, dtype=np.int64), best, params, best_val)
        self.last_stats = {"start_val": start_val.reshape(B, R), "final_val": final_val.reshape(B, R),
                           "rounds": rounds.reshape(B, R), "best_val": best_val, "kicks_won": won}
        return best
