"""A small compiled polish: a few exact steps of single-user moves from given starts
(docs/learners.md).

What the learned decoders (``gnn``, ``hqcnn-ar``) lack at large sizes is the last percent a
search finds by moving single users. The default polish (``screen=True``) sweeps the users,
weakest first; for each it ranks the moves to its ``screen_pilots`` least contaminating pilots by
a cheap estimate -- the screening surrogate of :mod:`agents.search.screening` (only the two touched pilot
groups rescored, the APs' eta held fixed) plus the first-order change of every user's rate
through eta (:func:`_eta_gradient`, :func:`_eta_correction`), which picks the exactly best move of
a user almost always (tests/test_polish.py) -- and scores the best-ranked exactly, taking the
first exact improvement; sweeps repeat until one takes nothing. ``swaps=True`` goes on with pair
swaps, ``screen=False`` is the earlier polish (contamination-ranked pilots scored exactly). Every
applied step raises ``config.objective`` exactly (full kernel of :mod:`cfenv._kernels`); unlike
:mod:`agents.search`'s local search there are no restarts or kicks and ``max_evals`` caps the
exact evaluations, which is what keeps it within a learned decoder's milliseconds.

On a model without the ``paper-pairwise`` fast path (:func:`agents.search.generic.pairwise_kernel`:
e.g. ``SystemConfig(model="paper-reference")``) there is no surrogate: :func:`polish` runs the
unscreened rule (``screen=False``, moves only) in numpy, each visited user's candidate moves scored
exactly in one ``model.objective`` batch over all starts (:func:`agents.search.generic.polish`).

Symmetries: the result depends on the partition of the start and on the users' fading, not on
pilot labels (starts are relabelled canonically; candidate pilots are ranked by their holders;
users are visited in the order of their rates) -- equal up to relabelling for relabelled starts,
and permuted alike for permuted users (up to exact ties in rate).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from agents.base import canonical_pilots
from agents.search import generic
from agents.search.screening import (
    changed_group,
    exact_objective,
    exact_state,
    group_value,
    group_values,
    kernel_inputs,
    new_group_work,
    surrogate,
    threshold,
)
from cfenv import _kernels
from cfenv._kernels import JIT
from cfenv.channel import Snapshot, as_snapshot
from cfenv.config import SystemConfig
from cfenv.models import model_of

SCREEN_PILOTS = 3
"""pilots (the least contaminating) whose moves the default polish ranks per visited user"""
SCREEN_MARGIN = 0.0
"""relative shortfall of a move's estimate below the current objective beyond which the default
polish does not score it exactly: 0, only estimated improvements (measured: 1e-4 scores 1.5-2.5x
as many moves for +0.0000-0.0002 of local search's sum rate at the large sizes)"""


@njit(inline="always", **JIT)
def _holder_contamination(contam, a, k, score):
    """``score[t]`` (tau_p,): the contamination between user k and the holders of pilot t under
    assignment ``a`` (both ways, :func:`contamination`); inf for k's own pilot. Pilots are ranked
    by their holders, never by their labels."""
    score[:] = 0.0
    for j in range(a.shape[0]):
        if j != k:
            score[a[j]] += contam[k, j]
    score[a[k]] = np.inf


@njit(**JIT)
def _polish_one(beta_t, bu, contam, a, params, candidates, max_evals, swaps, scratch):
    """Polish assignment ``a`` (K,) in place for the objective ``params.code``; returns (objective,
    evaluations, moves)."""
    K = beta_t.shape[0]
    tau_p = params.tau_p
    val = _kernels.objective_one(beta_t, bu, a, params, scratch)
    evals = 1
    moves = 0
    rates = np.empty(K)
    score = np.empty(tau_p)
    order = np.empty(K, np.int64)
    n_cand = tau_p - 1 if candidates <= 0 or candidates > tau_p - 1 else candidates
    improved = True
    while improved and evals < max_evals:
        improved = False
        rates[:] = scratch.rates
        order[:] = np.argsort(rates)  # weakest first
        for i in range(K):
            if evals >= max_evals:
                break
            k = order[i]
            orig = a[k]
            _holder_contamination(contam, a, k, score)
            ranked = np.argsort(score)
            best, best_t = threshold(val), -1  # improve by more than screening.IMPROVEMENT_RTOL
            for c in range(n_cand):
                if evals >= max_evals:
                    break
                t = ranked[c]
                a[k] = t
                v = _kernels.objective_one(beta_t, bu, a, params, scratch)
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
                        v = _kernels.objective_one(beta_t, bu, a, params, scratch)
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
        val = _kernels.objective_one(beta_t, bu, a, params, scratch)
    return val, evals, moves


@njit(**JIT)
def _eta_gradient(beta_t, bu, scratch, params, h, tg):
    """Sensitivity ``h`` (M,) of the objective to each AP's power-control sum E_m = sum_t c[t, m]
    gsq[t, m] (eta_m = 1 / (N E_m)) at the exact state in ``scratch``, the c-factors held fixed;
    ``tg`` (tau_p, M) gets each group's term c[t, m] gsq[t, m] of E_m. Zero for the minimum rate
    (not differentiable: its screening stays uncorrected)."""
    K, M = beta_t.shape
    tau_p, code, bandwidth, n_antennas = params.tau_p, params.code, params.bandwidth, params.n_antennas
    scale = params.rho_d * n_antennas * n_antennas
    gsq, w, sqrt_eta, members, start = scratch.group_sq, scratch.weights, scratch.sqrt_eta, scratch.members, scratch.start
    y, pc, rates = scratch.y_diag, scratch.contamination, scratch.rates
    h[:] = 0.0
    for t in range(tau_p):
        for m in range(M):
            tg[t, m] = w[t, m] / sqrt_eta[m] * gsq[t, m] if sqrt_eta[m] > 0.0 else 0.0
    if code == 1:
        return
    dy = np.empty(K)
    dpc = np.empty(K)
    for k in range(K):
        d = scale * pc[k] + bu[k] + 1.0
        s = scale * y[k] * y[k] / d
        weight = 1.0 if code == 0 else 1.0 / max(rates[k], _kernels.RATE_FLOOR)
        dr = weight * bandwidth * _kernels.INV_LN2 / (1.0 + s)  # d objective / d SINR
        dy[k] = dr * 2.0 * scale * y[k] / d
        dpc[k] = -dr * s * scale / d
    for t in range(tau_p):
        for a in range(start[t], start[t + 1]):
            ka = members[a]
            for m in range(M):
                b = beta_t[ka, m]
                h[m] += dy[ka] * w[t, m] * b * b
            for c in range(a + 1, start[t + 1]):
                kc = members[c]
                x = 0.0
                for m in range(M):
                    x += w[t, m] * beta_t[ka, m] * beta_t[kc, m]
                coef = 2.0 * x * (dpc[ka] + dpc[kc])
                for m in range(M):
                    h[m] += coef * w[t, m] * beta_t[ka, m] * beta_t[kc, m]
    # d/dE_m = d/d sqrt(eta_m) * d sqrt(eta_m)/dE_m with d sqrt(eta)/dE = -N eta^1.5 / 2; the sums
    # above are d/d sqrt(eta_m) times sqrt(eta_m) (w carries one factor of it)
    for m in range(M):
        h[m] *= -0.5 * n_antennas * sqrt_eta[m] * sqrt_eta[m]


@njit(inline="always", **JIT)
def _term_change(beta_t, gsum, gsq, tg, t, k_out, k_in, tau_rho_p, out):
    """``out`` (M,) = the change of pilot group t's term c[t, m] gsq[t, m] of E_m when user
    ``k_out`` leaves it and ``k_in`` joins it (-1: none)."""
    M = beta_t.shape[1]
    for m in range(M):
        g = gsum[t, m]
        q = gsq[t, m]
        if k_out >= 0:
            b = beta_t[k_out, m]
            g -= b
            q -= b * b
        if k_in >= 0:
            b = beta_t[k_in, m]
            g += b
            q += b * b
        out[m] = tau_rho_p / (tau_rho_p * g + 1.0) * q - tg[t, m]


@njit(inline="always", **JIT)
def _eta_correction(h, dp, dq):
    """First-order change of the objective through the APs' eta when two pilot groups' terms of
    E_m change by ``dp`` and ``dq`` (M,): what the screening surrogate (eta held fixed) leaves
    out. Applied to every group's users, the two changed groups' included (as they were: measured
    5-30x closer to the exact change than leaving those two out, tests/test_polish.py)."""
    corr = 0.0
    for m in range(h.shape[0]):
        corr += h[m] * (dp[m] + dq[m])
    return corr


@njit(**JIT)
def _screen_moves(beta_t, bu, k, p, scratch, gval, val, params, screened, corrected, h, tg, dp, dq, work, cand):
    """``cand[t]`` = the ranking value of moving user k from pilot p to each ``screened`` pilot t
    (-inf elsewhere, and for all but the first unused pilot: they give the same partition): the
    screening surrogate, plus (``corrected``) the first-order change through eta."""
    gsum, gsq, start, tau_rho_p = scratch.group_sum, scratch.group_sq, scratch.start, params.tau_rho_p
    n = changed_group(beta_t, scratch, p, k, -1, params, work)
    rem = group_value(beta_t, bu, work, n, params)
    if corrected:
        _term_change(beta_t, gsum, gsq, tg, p, k, -1, tau_rho_p, dp)
    empty_done = False
    for t in range(params.tau_p):
        cand[t] = -np.inf
        if not screened[t] or t == p:
            continue
        if start[t + 1] == start[t]:
            if empty_done:
                continue
            empty_done = True
        n = changed_group(beta_t, scratch, t, -1, k, params, work)
        add = group_value(beta_t, bu, work, n, params)
        cand[t] = surrogate(val, gval, p, t, rem, add, params.code)
        if corrected:
            _term_change(beta_t, gsum, gsq, tg, t, -1, k, tau_rho_p, dq)
            cand[t] += _eta_correction(h, dp, dq)


@njit(**JIT)
def _screen_swaps(beta_t, bu, a, k, p, scratch, gval, val, params, screened, corrected, h, tg, dp, dq, work, cand):
    """``cand[j]`` = the ranking value of user k (on pilot p) swapping pilots with each user j on a
    ``screened`` pilot (-inf for the others), as :func:`_screen_moves`."""
    K = beta_t.shape[0]
    gsum, gsq, tau_rho_p = scratch.group_sum, scratch.group_sq, params.tau_rho_p
    for j in range(K):
        cand[j] = -np.inf
        q = a[j]
        if q == p or not screened[q]:
            continue
        n = changed_group(beta_t, scratch, p, k, j, params, work)
        v1 = group_value(beta_t, bu, work, n, params)
        n = changed_group(beta_t, scratch, q, j, k, params, work)
        v2 = group_value(beta_t, bu, work, n, params)
        cand[j] = surrogate(val, gval, p, q, v1, v2, params.code)
        if corrected:
            _term_change(beta_t, gsum, gsq, tg, p, k, j, tau_rho_p, dp)
            _term_change(beta_t, gsum, gsq, tg, q, j, k, tau_rho_p, dq)
            cand[j] += _eta_correction(h, dp, dq)


@njit(**JIT)
def _all_moves(beta_t, bu, a, params, corrected, out):
    """``out[k, t]``: the ranking value of every single move of assignment ``a`` (see
    :func:`screened_moves`)."""
    K, M = beta_t.shape
    tau_p = params.tau_p
    scratch = _kernels.new_scratch(K, M, tau_p)
    gval = np.empty(tau_p)
    val = exact_state(beta_t, bu, a, params, scratch, gval)
    h, tg = np.zeros(M), np.zeros((tau_p, M))
    if corrected:
        _eta_gradient(beta_t, bu, scratch, params, h, tg)
    screened = np.ones(tau_p, np.bool_)
    cand = np.empty(tau_p)
    dp, dq = np.empty(M), np.empty(M)
    work = new_group_work(K, M)
    for k in range(K):
        _screen_moves(beta_t, bu, k, a[k], scratch, gval, val, params, screened, corrected, h, tg, dp, dq, work, cand)
        out[k] = cand
    return val


@njit(**JIT)
def _polish_screened_one(beta_t, bu, contam, a, params, max_evals, margin, n_try, n_screen, swaps, corrected, scratch,
                         scratch2):
    """Screened first-improvement sweeps of single-user moves (then, with ``swaps``, of pair swaps)
    of assignment ``a`` (K,) in place for the objective ``code``; returns (objective, evaluations,
    moves).

    Users are visited weakest first. The visited user's moves to its ``n_screen`` least
    contaminating pilots (ranked by their holders; 0: every pilot) are ranked by the screening
    surrogate of :mod:`agents.search` (the exact objective but for the change of the APs' eta:
    only the two touched pilot groups are rescored, O(M n^2)), with ``corrected`` plus the
    first-order change of every user's rate through eta (:func:`_eta_correction`); they are then
    scored exactly in that order, at most ``n_try`` of them and only while the ranking value is
    within ``margin`` (relative) of the current objective, and the first exact improvement is
    taken. A user whose visit takes nothing is skipped until a step changes its own pilot group (a
    don't-look bit); a sweep that takes nothing is repeated once with every user visited before
    the polish ends. With ``swaps``, a polish that ends so goes on with
    sweeps of swaps (k with every holder of its screened pilots), back to moves after each swap.
    Stops early after ``max_evals`` exact evaluations. Every applied step is exact (full kernel)."""
    K, M = beta_t.shape
    tau_p = params.tau_p
    gval = np.empty(tau_p)
    work = new_group_work(K, M)
    cand = np.empty(max(tau_p, K))
    score = np.empty(tau_p)
    order = np.empty(K, np.int64)
    asleep = np.zeros(K, np.bool_)
    screened = np.zeros(tau_p, np.bool_)
    n_pilots = tau_p - 1 if n_screen <= 0 or n_screen > tau_p - 1 else n_screen
    val = exact_state(beta_t, bu, a, params, scratch, gval)
    h = np.zeros(M)
    tg = np.zeros((tau_p, M))
    dp = np.empty(M)
    dq = np.empty(M)
    if corrected:
        _eta_gradient(beta_t, bu, scratch, params, h, tg)
    evals = 1
    moves = 0
    use_swaps = False
    confirming = False
    while evals < max_evals:
        taken = False
        skipped = False
        order[:] = np.argsort(scratch.rates)  # weakest first
        for i in range(K):
            if evals >= max_evals:
                break
            k = order[i]
            if asleep[k]:
                skipped = True
                continue
            p = a[k]
            # the n_pilots pilots whose holders would contaminate k least (both ways)
            _holder_contamination(contam, a, k, score)
            empty_seen = False
            for t in range(tau_p):  # unused pilots all give one partition: screen one of them
                if scratch.start[t + 1] == scratch.start[t]:
                    if empty_seen:
                        score[t] = np.inf
                    empty_seen = True
            ranked_pilots = np.argsort(score, kind="mergesort")
            screened[:] = False
            for c in range(n_pilots):
                screened[ranked_pilots[c]] = True
            if not use_swaps:
                _screen_moves(beta_t, bu, k, p, scratch, gval, val, params, screened, corrected, h, tg, dp, dq, work,
                              cand)
                n_cand = tau_p
            else:
                _screen_swaps(beta_t, bu, a, k, p, scratch, gval, val, params, screened, corrected, h, tg, dp, dq,
                              work, cand)
                n_cand = K
            ranked = np.argsort(-cand[:n_cand], kind="mergesort")
            floor = val - margin * abs(val)
            best = threshold(val)
            step = False
            for c in range(min(n_try, n_cand)):
                x = ranked[c]
                if cand[x] < floor or cand[x] == -np.inf or evals >= max_evals:
                    break
                q = a[x] if use_swaps else x
                if use_swaps:
                    a[k], a[x] = q, p
                else:
                    a[k] = x
                v = exact_objective(beta_t, bu, a, params, scratch2)
                evals += 1
                if v > best:  # first exact improvement: keep it, its exact state is scratch2's
                    scratch, scratch2 = scratch2, scratch
                    val = v
                    group_values(scratch, tau_p, params.code, gval)
                    if corrected:
                        _eta_gradient(beta_t, bu, scratch, params, h, tg)
                    for j in range(K):  # wake the users of the two changed groups
                        if a[j] == p or a[j] == q:
                            asleep[j] = False
                    moves += 1
                    taken = True
                    step = True
                    break
                if use_swaps:
                    a[k], a[x] = p, q
                else:
                    a[k] = p
            if not step:
                asleep[k] = True
            elif use_swaps:
                break  # back to moves
        if taken:
            use_swaps = False
            confirming = False
        elif skipped and not confirming:
            asleep[:] = False  # one full sweep before ending
            confirming = True
        elif swaps and not use_swaps:
            use_swaps = True
            asleep[:] = False
            confirming = True
        else:
            break
    return val, evals, moves


@njit(parallel=True, **JIT)
def _polish(beta_t, bu, contam, snap_of_start, starts, params, candidates, max_evals, swaps, screen, margin,
            corrected, n_screen, out_val, out_evals, out_moves):
    n, K = starts.shape
    M = beta_t.shape[2]
    tau_p = params.tau_p
    for r in prange(n):
        s = snap_of_start[r]
        scratch = _kernels.new_scratch(K, M, tau_p)
        if screen:
            n_try = candidates if candidates > 0 else max(K, tau_p)
            v, e, m = _polish_screened_one(beta_t[s], bu[s], contam[s], starts[r], params, max_evals, margin, n_try,
                                           n_screen, swaps, corrected, scratch, _kernels.new_scratch(K, M, tau_p))
        else:
            v, e, m = _polish_one(beta_t[s], bu[s], contam[s], starts[r], params, candidates, max_evals, swaps,
                                  scratch)
        out_val[r] = v
        out_evals[r] = e
        out_moves[r] = m


def screened_moves(beta: np.ndarray, pilots: np.ndarray, config: SystemConfig, corrected: bool = True
                   ) -> tuple[float, np.ndarray]:
    """The screened polish's ranking value of every single move of one assignment: fading
    ``(M, K)``, pilots ``(K,)``; returns the objective and ``(K, tau_p)`` values (-inf for a
    user's own pilot and for all unused pilots but the first). What a move would give exactly is
    ``objective_value`` of the moved assignment; the values here are its cheap estimate (tests
    and docs/learners.md measure how close)."""
    beta_t, bu = kernel_inputs(np.asarray(beta)[None], config)
    out = np.empty((config.K, config.tau_p))
    val = _all_moves(beta_t[0], bu[0], np.ascontiguousarray(pilots, dtype=np.int64), _kernels.rate_params(config),
                     bool(corrected), out)
    return float(val), out


def contamination(beta: np.ndarray) -> np.ndarray:
    """``(B, K, K)`` symmetric pilot-contamination weights from linear fading ``(B, M, K)``:
    ``c[k, j] = sum_m beta_mj beta_mk / sum_m beta_mk^2 + (same with k, j swapped)`` (how much
    each of the two would leak into the other's estimate; docs/model.md §6.4's edge feature)."""
    cross = np.einsum("bmk,bmj->bkj", beta, beta)
    own = np.diagonal(cross, axis1=1, axis2=2)
    ratio = cross / own[:, :, None]
    return np.ascontiguousarray(ratio + ratio.transpose(0, 2, 1))


def polish(beta: np.ndarray | Snapshot, starts: np.ndarray, config: SystemConfig, *, candidates: int = 1,
           max_evals: int = 200, swaps: bool = False, screen: bool = True, screen_pilots: int = SCREEN_PILOTS,
           margin: float = SCREEN_MARGIN, corrected: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Polish ``(B, R, K)`` (or ``(B, K)``) starts on ``(B, M, K)`` fading (or a ``(B,)``
    :class:`Snapshot` batch: what a model whose rates need more than beta must be given); returns
    the best polished assignment per snapshot ``(B, K)`` (canonical labels; ties to the first start)
    and per-start statistics (``val``: ``config.objective`` [bit/s; nats for "proportional"],
    ``evals``, ``moves``, shaped ``(B, R)``). Moves are taken when they raise ``config.objective``.

    Args:
        candidates: with ``screen``, exact evaluations per visited user, best-ranked first (0: as
            many as ``margin`` allows); without, the pilots tried per visited user (the least
            contaminating ones; 0: all).
        max_evals: exact evaluations of the objective per start, the one start included.
        swaps: with ``screen``, sweeps of pair swaps (the visited user with each holder of its
            screened pilots) once no move improves; without, a visited user with no improving
            move tries swapping with each holder of its candidate pilots.
        screen: screened first-improvement sweeps (:func:`_polish_screened_one`, the module doc);
            False: the earlier contamination-ranked polish (:func:`_polish_one`).
        screen_pilots: with ``screen``, the least contaminating pilots whose moves are ranked per
            visited user (0: every pilot).
        margin: with ``screen``, moves whose estimate falls more than this (relative) below the
            current objective are not scored exactly.
        corrected: with ``screen``, add the first-order change through eta to the surrogate.

    On a model without the ``paper-pairwise`` fast path the polish is
    :func:`agents.search.generic.polish` (the ``screen=False`` rule without swaps, ``candidates``
    and ``max_evals`` as there); ``swaps``, ``screen``, ``screen_pilots``, ``margin`` and
    ``corrected`` concern the compiled path only.
    """
    starts = np.asarray(starts)
    if starts.ndim == 2:
        starts = starts[:, None, :]
    B, R, K = starts.shape
    if max_evals < 1:
        raise ValueError(f"max_evals must be >= 1, got {max_evals}")
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if candidates < 0 or screen_pilots < 0:
        raise ValueError(f"candidates and screen_pilots must be >= 0, got {candidates}, {screen_pilots}")
    snapshots = as_snapshot(beta)
    flat = np.ascontiguousarray(canonical_pilots(starts.reshape(B * R, K)), dtype=np.int64)
    snap = np.repeat(np.arange(B, dtype=np.int64), R)
    kernel = generic.pairwise_kernel(config)
    if kernel is None:
        model = model_of(config)
        per_start = snapshots[snap]
        val, evals, moves = generic.polish(model, per_start, flat, contamination(model.gains(per_start)),
                                           config.tau_p, candidates=int(candidates), max_evals=int(max_evals))
    else:
        beta_t, bu = kernel.kernel_inputs(snapshots)
        val = np.empty(B * R)
        evals = np.empty(B * R, dtype=np.int64)
        moves = np.empty(B * R, dtype=np.int64)
        _polish(beta_t, bu, contamination(snapshots.beta), snap, flat, kernel.params(), int(candidates),
                int(max_evals), bool(swaps), bool(screen), float(margin), bool(corrected), int(screen_pilots), val,
                evals, moves)
    val = val.reshape(B, R)
    best = flat.reshape(B, R, K)[np.arange(B), val.argmax(axis=1)]
    return canonical_pilots(best), {"val": val, "evals": evals.reshape(B, R), "moves": moves.reshape(B, R)}
