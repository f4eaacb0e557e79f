"""Collapse diagnostics: does a policy really depend on its input?

A learner that outputs the same assignment for every network can still post a
respectable mean sum rate. These measures make that visible: how many distinct
pilot partitions (assignments up to relabelling) it gives, how its mean sum rate
compares with the best *single constant* assignment on the same snapshots, and
a ``collapsed`` flag.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from agents.base import canonical_pilots
from agents.heuristics import master_ap_pilots
from agents.search import count_assignments, rgs_prefixes
from cfenv.config import SystemConfig
from cfenv.channel import Snapshot, as_snapshot
from cfenv.models import model_of
from cfenv.objectives import Objective

EXACT_EVALUATIONS = 5_000_000
"""search every constant partition when (partitions x snapshots) is at most this, else local search"""
GENERIC_ROUND_WORK = 200_000_000
"""on a model without a neighbourhood evaluator, an ascent round scores every move on every snapshot: K tau_p n
full evaluations of about M K L^2 work each; beyond this much per round the ascent is not run and
master-AP's constant stands (the scalable model with LSFD at (100,4,100,5) would take hours)"""
COLLAPSE_FRACTION = 0.1
"""collapsed: at most this fraction of the possible distinct partitions (capped by the snapshot count)"""


def distinct_assignments(pilots: np.ndarray) -> int:
    """Number of distinct pilot partitions among ``(N, K)`` assignments."""
    return len({tuple(p) for p in canonical_pilots(np.asarray(pilots))})


_BEST_CONSTANT_CACHE: dict[tuple[Any, ...], tuple[np.ndarray, float, str]] = {}
"""results of :func:`best_constant_assignment` by (config, snapshots digest): every agent of a
results table is compared with the same constant on the same snapshots, so it is found once"""


def best_constant_assignment(snapshots: Snapshot | np.ndarray, config: SystemConfig) -> tuple[np.ndarray, float, str]:
    """The one assignment with the highest mean sum rate over a batch of ``N`` snapshots (or their
    ``(N, M, K)`` beta).

    Exact (every restricted-growth string) when small enough, else steepest ascent over
    single-user moves from master-AP's assignment for the snapshots' mean fading (a start a
    few moves from a local optimum: from round-robin, K = 100 took minutes). Cached per
    (config, snapshots).

    Returns:
        ``(K,)`` pilots, its mean sum rate [bit/s], and ``"exact"`` or ``"local"``.
    """
    snapshots = as_snapshot(snapshots)
    digest = hashlib.sha1(np.ascontiguousarray(snapshots.beta).tobytes())
    for name in sorted(snapshots.extras):
        digest.update(np.ascontiguousarray(snapshots.extras[name]).tobytes())
    key = (config, snapshots.beta.shape, digest.hexdigest())
    if key not in _BEST_CONSTANT_CACHE:
        if len(_BEST_CONSTANT_CACHE) >= 16:
            _BEST_CONSTANT_CACHE.pop(next(iter(_BEST_CONSTANT_CACHE)))
        _BEST_CONSTANT_CACHE[key] = _best_constant(snapshots, config)
    pilots, value, method = _BEST_CONSTANT_CACHE[key]
    return pilots.copy(), value, method


def _best_constant(snapshots: Snapshot, config: SystemConfig) -> tuple[np.ndarray, float, str]:
    K, tau_p = config.K, config.tau_p
    n = snapshots.beta.shape[0]
    beta = model_of(config).gains(snapshots)
    if count_assignments(K, tau_p) * n <= EXACT_EVALUATIONS:
        candidates = rgs_prefixes(K, tau_p, K)
        means = _sum_rate(snapshots[None], candidates[:, None, :], config).mean(axis=1)
        best = int(np.argmax(means))
        return candidates[best], float(means[best]), "exact"
    current = master_ap_pilots(beta.mean(axis=0)[None], tau_p)[0].astype(np.int64)
    value = float(_sum_rate(snapshots, current, config).mean())
    screen = model_of(config.replace(objective=Objective.SUM)).screening
    if screen is not None:
        return _best_constant_screened(snapshots, config, screen, current, value)
    if K * tau_p * n * config.M * K * config.L**2 > GENERIC_ROUND_WORK:
        return current, value, "master-ap (the ascent would cost too much here)"
    while True:
        moves = np.repeat(current[None], K * tau_p, axis=0)
        moves[np.arange(K * tau_p), np.repeat(np.arange(K), tau_p)] = np.tile(np.arange(tau_p), K)
        means = _sum_rate(snapshots[None], moves[:, None, :], config).mean(axis=1)
        best = int(np.argmax(means))
        if means[best] <= value * (1 + 1e-12):
            return current, value, "local"
        current, value = moves[best], float(means[best])


def _best_constant_screened(snapshots: Snapshot, config: SystemConfig, screen: Any, current: np.ndarray,
                            value: float) -> tuple[np.ndarray, float, str]:
    """The steepest ascent of :func:`_best_constant` with the model's neighbourhood evaluator (the
    scalable model): every move's mean sum rate at once where it is exact, else its
    ``DEFAULT_N_EXACT`` best scored exactly (the ascent stops when none of them improves)."""
    from agents.search import generic
    from agents.search.screening import DEFAULT_N_EXACT

    n = snapshots.beta.shape[0]
    while True:
        cand = generic.moves(current[None], config.tau_p)[0]
        means = screen.candidate_values(snapshots, np.repeat(current[None], n, axis=0), False).mean(axis=0)
        if not screen.exact:
            top = np.argsort(-means, kind="stable")[:DEFAULT_N_EXACT]
            cand = cand[top]
            means = _sum_rate(snapshots[None], cand[:, None, :], config).mean(axis=1)
        best = int(np.argmax(means))
        if means[best] <= value * (1 + 1e-12):
            return current, value, "local"
        current, value = cand[best], float(means[best])


def _sum_rate(snapshots: Snapshot | np.ndarray, pilots: np.ndarray, config: SystemConfig) -> np.ndarray:
    """The model's sum rate [bit/s] (a bare beta is a snapshot without positions)."""
    return model_of(config).sum_rate(as_snapshot(snapshots), pilots)


def collapse_report(pilots: np.ndarray, snapshots: Snapshot | np.ndarray, config: SystemConfig,
                    mean_rate: float | None = None) -> dict[str, Any]:
    """Distinct partitions, ratio of the mean sum rate to the best constant one (``None`` where that
    is 0, e.g. fading at the floor of its range), and the flag.

    A policy is flagged ``collapsed`` when it gives at most ``COLLAPSE_FRACTION`` of the
    distinct partitions it could have given (the smaller of the snapshot count and the
    number of partitions), at least one.
    """
    pilots = np.asarray(pilots)
    n = pilots.shape[0]
    distinct = distinct_assignments(pilots)
    possible = min(n, count_assignments(config.K, config.tau_p))
    if mean_rate is None:
        mean_rate = float(_sum_rate(snapshots, pilots, config).mean())
    _, constant_rate, method = best_constant_assignment(snapshots, config)
    ratio = mean_rate / constant_rate if constant_rate > 0 else None  # None: fading so weak every rate is 0
    return {"distinct_assignments": distinct, "ratio_to_best_constant": ratio,
            "best_constant_search": method,
            "collapsed": bool(possible > 1 and distinct <= max(1, COLLAPSE_FRACTION * possible))}
