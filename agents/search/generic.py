"""The searches and the polish on any system model: vectorised numpy built on ``model.objective``
alone (docs/model.md §0.2, §5.3).

A model that offers the ``paper-pairwise`` fast path (:func:`pairwise_kernel`, the paper's model)
runs the compiled kernels of :mod:`agents.search` and :mod:`agents.polish`; any other model runs
the functions here. They apply the compiled searches' rules, but score every candidate exactly:
each step builds the whole neighbourhood of the current assignments -- all K (tau_p - 1)
single-user moves (users, then pilots in ascending order) and, for local search, all K (K - 1) / 2
pair swaps -- and scores it with one ``model.objective`` call of a few thousand assignments
(:func:`score`), in parallel over starts and snapshots. There is no screening surrogate (it is
written for the paper's formula), so a step costs a neighbourhood of exact evaluations. Improvements
must beat the current value by more than :data:`agents.search.screening.IMPROVEMENT_RTOL`
(relative), ties go to the first candidate in scan order, and nothing is random here: the agents
supply the starts (and kicks) from the same streams as their compiled paths.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from agents.base import canonical_pilots
from agents.search.screening import IMPROVEMENT_RTOL
from cfenv.channel import Snapshot
from cfenv.config import SystemConfig
from cfenv.models import model_of
from cfenv.models.base import IncrementalKernel, SystemModel

PAIRWISE_LAYOUT = "paper-pairwise"
"""the kernel layout the compiled searches and the polish are written against"""
BATCH = 4096
"""assignments per ``model.objective`` call of the generic paths: enough to amortise numpy's
per-call cost, small enough to bound the reference formula's memory"""


def pairwise_kernel(config: SystemConfig) -> IncrementalKernel | None:
    """The model's ``paper-pairwise`` incremental evaluator (the compiled searches run on it), or
    ``None``: the model offers no fast path, or another layout, and the searches run here."""
    kernel = model_of(config).incremental
    return kernel if kernel is not None and kernel.layout == PAIRWISE_LAYOUT else None


def improves(new: np.ndarray, old: np.ndarray) -> np.ndarray:
    """Whether ``new`` beats ``old`` by more than IMPROVEMENT_RTOL (relative): the searches' step
    rule, :func:`agents.search.screening.threshold` on arrays."""
    return new > old + IMPROVEMENT_RTOL * np.abs(old)


def score(model: SystemModel, snapshots: Snapshot, pilots: np.ndarray, batch: int = BATCH) -> np.ndarray:
    """``model.objective`` of ``(N, ..., K)`` assignments, row i on snapshot i of the ``(N,)``
    batch; ``(N, ...)``. Rows go in chunks of about ``batch`` assignments per call."""
    n = pilots.shape[0]
    per_row = max(1, int(np.prod(pilots.shape[1:-1])))
    step = max(1, batch // per_row)
    expand = (slice(None),) + (None,) * (pilots.ndim - 2)  # snapshot batch (N, 1, ...) broadcasts
    out = np.empty(pilots.shape[:-1])
    for lo in range(0, n, step):
        out[lo:lo + step] = model.objective(snapshots[lo:lo + step][expand], pilots[lo:lo + step])
    return out


def moves(pilots: np.ndarray, tau_p: int) -> np.ndarray:
    """``(N, K (tau_p - 1), K)``: every single-user move of each ``(N, K)`` assignment, user k to
    each other pilot in ascending order at rows k (tau_p - 1) ... (k + 1)(tau_p - 1) - 1."""
    n, K = pilots.shape
    d = np.arange(tau_p - 1)
    targets = d + (d >= pilots[:, :, None])  # (N, K, tau_p - 1): the pilots other than one's own
    out = np.repeat(pilots[:, None, None, :], tau_p - 1, axis=2).repeat(K, axis=1)
    users = np.arange(K)
    out[:, users, :, users] = targets.transpose(1, 0, 2)
    return out.reshape(n, K * (tau_p - 1), K)


def swaps(pilots: np.ndarray) -> np.ndarray:
    """``(N, K (K - 1) / 2, K)``: each ``(N, K)`` assignment with users k < j exchanging pilots, pairs
    in lexicographic order (users on one pilot give the assignment itself: it never improves)."""
    k, j = np.triu_indices(pilots.shape[1], 1)
    out = np.repeat(pilots[:, None, :], len(k), axis=1)
    rows = np.arange(len(k))
    out[:, rows, k] = pilots[:, j]
    out[:, rows, j] = pilots[:, k]
    return out


def exhaustive(model: SystemModel, snapshots: Snapshot, batches: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The first maximiser of ``model.objective`` over assignment ``batches`` (``(n, K)`` each, in
    enumeration order), per snapshot of the ``(S,)`` batch: ``(S, K)`` pilots and ``(S,)`` values.
    One ``model.objective`` call per batch scores it on every snapshot; a later batch wins only if
    strictly better (the compiled EPAS's tie rule, given its lexicographic enumeration)."""
    S = len(snapshots)
    every = snapshots[:, None]  # (S, 1): broadcasts against a batch's (n, K)
    best_val = np.full(S, -np.inf)
    best: np.ndarray | None = None
    for pilots in batches:
        values = model.objective(every, pilots)  # (S, n)
        first = values.argmax(axis=1)
        top = values[np.arange(S), first]
        if best is None:
            best = np.zeros((S, pilots.shape[1]), dtype=np.int64)
        better = top > best_val
        best_val[better] = top[better]
        best[better] = pilots[first[better]]
    if best is None:
        raise ValueError("exhaustive search got no assignments")
    return best, best_val


def ascend(model: SystemModel, snapshots: Snapshot, pilots: np.ndarray, tau_p: int, *, use_swaps: bool = True,
           max_rounds: int = 10_000, n_exact: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Steepest ascent of ``(N, K)`` assignments, row i on snapshot i of the ``(N,)`` batch: each
    round scores every move (and, with ``use_swaps``, every swap) of the rows still ascending in one
    batch and applies each row's best if it improves (:func:`improves`; ties: scan order); a row
    stops at a local optimum or after ``max_rounds``. Where the model offers a ``screening``
    neighbourhood evaluator (:attr:`cfenv.models.base.SystemModel.screening`), it values every
    candidate at once: taken as they are where it is exact, else its ``n_exact`` best (ties: scan
    order) are scored exactly and a row stops when none of them improves. Returns end points
    ``(N, K)``, their values and the start values ``(N,)``, and the rounds ``(N,)``."""
    a = np.array(pilots, dtype=np.int64)
    val = score(model, snapshots, a[:, None])[:, 0]
    start_val = val.copy()
    rounds = np.zeros(len(a), dtype=np.int64)
    live = np.arange(len(a))
    while True:
        live = live[rounds[live] < max_rounds]
        if not live.size:
            break
        cand = moves(a[live], tau_p)
        if use_swaps:
            cand = np.concatenate([cand, swaps(a[live])], axis=1)
        screen = model.screening
        if screen is not None and screen.exact:
            values = screen.candidate_values(snapshots[live], a[live], use_swaps)
        elif screen is not None and n_exact is not None and n_exact < cand.shape[1]:
            ranked = screen.candidate_values(snapshots[live], a[live], use_swaps)
            best_first = np.argsort(-ranked, axis=1, kind="stable")[:, :n_exact]
            cand = np.take_along_axis(cand, best_first[:, :, None], axis=1)
            values = score(model, snapshots[live], cand)
        else:
            values = score(model, snapshots[live], cand)  # (n, C)
        pick = values.argmax(axis=1)
        top = values[np.arange(len(live)), pick]
        up = improves(top, val[live])
        live, pick, top = live[up], pick[up], top[up]
        a[live] = cand[up, pick]
        val[live] = top
        rounds[live] += 1
    return a, val, start_val, rounds


def local_search(model: SystemModel, snapshots: Snapshot, starts: np.ndarray, tau_p: int, *, use_swaps: bool = True,
                 max_rounds: int = 10_000, kick_users: np.ndarray | None = None,
                 kick_pilots: np.ndarray | None = None,
                 n_exact: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Iterated steepest ascent (:func:`ascend`) of ``(B, R, K)`` starts on the ``(B,)`` snapshots,
    then (if given) the kicks ``(B, kicks, n)`` (users and their new pilots), each applied to the
    best end point so far, ascended and kept if it improves: the compiled local search's rules
    (:class:`agents.search.LocalSearchAgent`) with every candidate scored exactly (or valued by the
    model's ``screening`` evaluator, :func:`ascend`). Returns the best canonical ``(B, K)`` assignment
    (ties: the first start) and the statistics of ``LocalSearchAgent.last_stats``."""
    B, R, K = starts.shape
    snap_of = np.repeat(np.arange(B), R)
    per_start = snapshots[snap_of]
    steps = {"use_swaps": use_swaps, "max_rounds": max_rounds, "n_exact": n_exact}
    final, _, start_val, rounds = ascend(model, per_start, starts.reshape(B * R, K), tau_p, **steps)
    # values of the canonical end points, so that the choice depends on partitions only
    final = canonical_pilots(final)
    final_val = score(model, per_start, final[:, None])[:, 0]
    pick = final_val.reshape(B, R).argmax(axis=1)
    best = final.reshape(B, R, K)[np.arange(B), pick]
    best_val = final_val.reshape(B, R)[np.arange(B), pick]
    won = np.zeros(B, dtype=np.int64)
    n_kicks = 0 if kick_users is None else kick_users.shape[1]
    for i in range(n_kicks):
        kicked = best.copy()
        kicked[np.arange(B)[:, None], kick_users[:, i]] = kick_pilots[:, i]
        end, end_val, _, _ = ascend(model, snapshots, kicked, tau_p, **steps)
        better = improves(end_val, best_val)
        best[better], best_val[better] = end[better], end_val[better]
        won += better
    if n_kicks:
        best = canonical_pilots(best)
        best_val = score(model, snapshots, best[:, None])[:, 0]
    stats = {"start_val": start_val.reshape(B, R), "final_val": final_val.reshape(B, R),
             "rounds": rounds.reshape(B, R), "best_val": best_val, "kicks_won": won}
    return best, stats


def tabu(model: SystemModel, snapshots: Snapshot, starts: np.ndarray, tau_p: int, *, iterations: int,
         tenure: int) -> tuple[np.ndarray, np.ndarray]:
    """Tabu search over single-user moves from ``(S, K)`` starts on the ``(S,)`` snapshots, the
    compiled tabu's rule (:class:`agents.search.TabuAgent`) with every move scored exactly: each
    iteration applies the best allowed move -- its user not tabu, or its value above the best seen
    (aspiration) -- even if it lowers the objective (ties: scan order), and makes its user tabu
    for ``tenure`` iterations; a snapshot stops after ``iterations`` or when no move is allowed.
    Where the model offers a ``screening`` evaluator, it values the moves (a surrogate's choice is
    then valued exactly). Returns the best assignment seen ``(S, K)`` and its value ``(S,)``."""
    a = np.array(starts, dtype=np.int64)
    S, K = a.shape
    top = score(model, snapshots, a[:, None])[:, 0]
    best = a.copy()
    tabu_until = np.zeros((S, K), dtype=np.int64)
    screen = model.screening
    user = np.repeat(np.arange(K), tau_p - 1)  # the user of each move, in :func:`moves` order
    live = np.arange(S)
    for it in range(iterations):
        if not live.size:
            break
        cand = moves(a[live], tau_p)
        if screen is not None:
            values = screen.candidate_values(snapshots[live], a[live], False)  # (n, K (tau_p - 1))
        else:
            values = score(model, snapshots[live], cand)
        allowed = (tabu_until[live][:, user] <= it) | (values > top[live, None])
        values = np.where(allowed, values, -np.inf)
        pick = values.argmax(axis=1)
        ok = allowed[np.arange(len(live)), pick]
        live, pick, cand, values = live[ok], pick[ok], cand[ok], values[ok]
        a[live] = cand[np.arange(len(live)), pick]
        tabu_until[live, user[pick]] = it + 1 + tenure
        new = values[np.arange(len(live)), pick]
        if screen is not None and not screen.exact and len(live):  # the move taken, valued exactly
            new = score(model, snapshots[live], a[live][:, None])[:, 0]
        better = new > top[live]
        top[live[better]] = new[better]
        best[live[better]] = a[live[better]]
    return best, top


def polish(model: SystemModel, snapshots: Snapshot, starts: np.ndarray, contamination: np.ndarray, tau_p: int, *,
           candidates: int, max_evals: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The compiled polish's unscreened rule (``agents.polish.polish(..., screen=False)``) on
    ``(N, K)`` starts (polished in place), row i on snapshot i of the ``(N,)`` batch, with pair
    contamination ``(N, K, K)`` (:func:`agents.polish.contamination`): sweeps visit the users
    weakest first (``model.user_rates`` at the sweep's start); the visited user's moves to its
    ``candidates`` least contaminating pilots (ranked by their holders; 0: every pilot) are scored
    exactly in one batch over the rows, and the best is taken if it improves (:func:`improves`).
    Sweeps repeat until one takes nothing; a row stops after ``max_evals`` exact evaluations.
    Returns the values, evaluations and moves ``(N,)``."""
    a = starts
    N, K = a.shape
    n_cand = tau_p - 1 if candidates <= 0 or candidates > tau_p - 1 else candidates
    val = score(model, snapshots, a[:, None])[:, 0]
    evals = np.ones(N, dtype=np.int64)
    steps = np.zeros(N, dtype=np.int64)
    improved = np.ones(N, dtype=bool)
    while True:
        run = np.flatnonzero(improved & (evals < max_evals))
        if not run.size:
            break
        improved[:] = False
        order = np.full((N, K), -1, dtype=np.int64)
        order[run] = np.argsort(model.user_rates(snapshots[run], a[run]), axis=1)  # weakest first
        for i in range(K):
            live = run[evals[run] < max_evals]
            if not live.size:
                break
            k = order[live, i]
            rows = np.arange(len(live))
            held = np.eye(tau_p)[a[live]]  # (n, K, tau_p)
            holder = np.einsum("nj,njt->nt", contamination[live, k], held)
            holder[rows, a[live, k]] = np.inf
            ranked = np.argsort(holder, axis=1, kind="stable")[:, :n_cand]
            cand = np.repeat(a[live][:, None], n_cand, axis=1)
            cand[rows, :, k] = ranked
            allowed = np.arange(n_cand) < np.minimum(n_cand, max_evals - evals[live])[:, None]
            values = np.where(allowed, score(model, snapshots[live], cand), -np.inf)
            evals[live] += allowed.sum(axis=1)
            pick = values.argmax(axis=1)
            new = values[rows, pick]
            up = improves(new, val[live])
            a[live[up], k[up]] = ranked[up, pick[up]]
            val[live[up]] = new[up]
            steps[live[up]] += 1
            improved[live[up]] = True
        val[run] = score(model, snapshots[run], a[run][:, None])[:, 0]
    return val, evals, steps

