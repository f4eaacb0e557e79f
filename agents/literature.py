"""Classical pilot-assignment algorithms of the literature (docs/literature.md).

Five rules, each written out in its class docstring with the paper it follows and the
details the paper leaves open (our choices, marked "choice"):

* :class:`TabuAgent` (``tabu``) -- Liu, Zhang, Jin, Ai, IEEE TVT 69(2), 2020 (it lives in
  :mod:`agents.search.tabu`, beside the screened kernels it runs on; re-exported here).
* :class:`GraphColouringAgent` (``graph-colouring``) -- Liu et al., IEEE TVT 69(8), 2020.
* :class:`WGFAgent` (``wgf``) -- Zeng, He, Li, Wang, IEEE TVT 70(6), 2021.
* :class:`HungarianAgent` (``hungarian``) -- Buzzi, D'Andrea, Fresia, Zhang, Feng, IEEE WCL 10(1), 2021.
* :class:`KMeansAgent` (``kmeans``) -- structured / user-group assignment (Attarifar, Abbasfar,
  Lozano; Chen et al.).

All are deterministic functions of the snapshot (none draws random numbers), so the
result does not depend on the seed, on batching or on the thread count.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import linear_sum_assignment

from agents.base import Agent
from agents.search.tabu import TabuAgent  # noqa: F401  (moved to agents.search.tabu; importable here)
from cfenv.channel import Snapshot
from cfenv.config import SystemConfig
from cfenv.models import model_of

SERVING_FRACTION = 0.9
"""a user's serving APs: the fewest strongest APs holding this share of its summed fading"""


# ----------------------------------------------------------------- shared pieces
def serving_sets(beta: np.ndarray, fraction: float = SERVING_FRACTION) -> np.ndarray:
    """``(B, M, K)`` bool: for each user the smallest set of its strongest APs holding at least
    ``fraction`` of ``sum_m beta[m, k]`` (ties between equal gains: the lower AP index first)."""
    order = np.argsort(-beta, axis=1, kind="stable")  # (B, M, K) AP indices, strongest first
    ranked = np.take_along_axis(beta, order, axis=1)
    cum = np.cumsum(ranked, axis=1)
    need = fraction * cum[:, -1:, :] * (1 - 1e-12)  # guard: fraction 1.0 must not ask for more than all
    # number of APs taken = 1 + number of prefixes still below the target
    count = 1 + (cum < need).sum(axis=1)  # (B, K)
    take_ranked = np.arange(beta.shape[1])[None, :, None] < count[:, None, :]
    serving = np.zeros(beta.shape, dtype=bool)
    np.put_along_axis(serving, order, take_ranked, axis=1)
    return serving


def contamination_weights(beta: np.ndarray, serving: np.ndarray | None = None) -> np.ndarray:
    """``(B, K, K)`` symmetric pairwise contamination weights, zero diagonal.

    ``w[k, j] = sum_{m in A_k} beta[m, j] / sum_{m in A_k} beta[m, k]`` (what user j would put
    on user k's pilot at k's serving APs ``A_k``, relative to k's own gain there), and
    ``W = w + w^T``.
    """
    if serving is None:
        serving = serving_sets(beta)
    s = serving.astype(np.float64)
    at_serving = np.einsum("bmk,bmj->bkj", s, beta)  # [b, k, j] = sum_{m in A_k} beta[m, j]
    own = np.diagonal(at_serving, axis1=1, axis2=2)[:, :, None]
    w = at_serving / own
    W = w + w.transpose(0, 2, 1)
    idx = np.arange(beta.shape[2])
    W[:, idx, idx] = 0.0
    return W


# -------------------------------------------------------------------------- tabu
# ---------------------------------------------------------------- graph colouring
class GraphColouringAgent(Agent):
    """Graph colouring (Liu et al., "Graph coloring based pilot assignment for cell-free
    massive MIMO systems", IEEE TVT 69(8), 2020).

    Rule:

    1. Serving sets. Choice: user k is served by the smallest set A_k of its strongest APs
       holding at least 90 % of ``sum_m beta[m, k]`` (:func:`serving_sets`).
    2. Interference graph: users k != j are adjacent iff A_k and A_j share an AP.
    3. Users are coloured one by one in descending order of degree, ties by the lower user
       index (choice: a static Welsh-Powell order, not DSATUR's dynamic saturation order).
    4. A user takes a colour (pilot) that none of its coloured neighbours uses. Choice: among
       several such colours, the one with the least interference from *all* users already on
       it, ``sum_{j on t} sum_{m in A_k} beta[m, j]`` (ties: the lowest index) -- so users
       that need not share do not.
    5. A user whose neighbours use every colour takes the colour with the least interference
       from its neighbours on it, ``sum_{j adjacent, on t} sum_{m in A_k} beta[m, j]`` (ties:
       the lowest index).

    Deterministic. Cost: O(M K^2) for the graph, O(K^2 + K tau_p) for the colouring,
    batched over snapshots (the loop runs over users).

    Args:
        fraction: the share of a user's fading its serving set must hold (default 0.9).
    """

    name = "graph-colouring"

    def __init__(self, config: SystemConfig | None = None, seed: int = 0,
                 fraction: float = SERVING_FRACTION) -> None:
        super().__init__(config, seed)
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        self.fraction = float(fraction)

    def _assign(self, snapshots: Snapshot, config: SystemConfig, rng: np.random.Generator) -> np.ndarray:
        beta = model_of(config).gains(snapshots)
        serving = serving_sets(beta, self.fraction)
        return colour_graph(beta, serving, config.tau_p)


def colour_graph(beta: np.ndarray, serving: np.ndarray, tau_p: int) -> np.ndarray:
    """Steps 2-5 of :class:`GraphColouringAgent` for given ``(B, M, K)`` serving sets."""
    B, _, K = beta.shape
    batch = np.arange(B)
    s = serving.astype(np.float64)
    adjacent = np.einsum("bmk,bmj->bkj", s, s) > 0
    adjacent[:, np.arange(K), np.arange(K)] = False
    interference = np.einsum("bmk,bmj->bkj", s, beta)  # [b, k, j] = sum_{m in A_k} beta[m, j]
    order = np.argsort(-adjacent.sum(axis=2), axis=1, kind="stable")  # (B, K)
    colour = np.full((B, K), -1, dtype=np.int64)
    onehot = np.zeros((B, K, tau_p))  # onehot[b, j, t]: user j holds colour t
    for i in range(K):
        k = order[:, i]
        adj_k = adjacent[batch, k].astype(np.float64)  # (B, K)
        gain_k = interference[batch, k]  # (B, K)
        used = np.einsum("bj,bjt->bt", adj_k, onehot) > 0
        load_all = np.einsum("bj,bjt->bt", gain_k, onehot)
        load_adj = np.einsum("bj,bjt->bt", gain_k * adj_k, onehot)
        has_free = (~used).any(axis=1)
        pick_free = np.where(used, np.inf, load_all).argmin(axis=1)
        pick_full = load_adj.argmin(axis=1)
        c = np.where(has_free, pick_free, pick_full)
        colour[batch, k] = c
        onehot[batch, k, c] = 1.0
    return colour


# --------------------------------------------------------------------------- WGF
class WGFAgent(Agent):
    """Weighted graphic framework (Zeng, He, Li, Wang, "Pilot assignment for cell free massive
    MIMO systems using a weighted graphic framework", IEEE TVT 70(6), 2021).

    Rule:

    1. Edge weights. Choice: the potential contamination between users k and j is
       ``W[k, j] = w[k, j] + w[j, k]`` with ``w[k, j] = sum_{m in A_k} beta[m, j] /
       sum_{m in A_k} beta[m, k]``, A_k being k's strongest APs holding 90 % of its fading
       (:func:`contamination_weights`): the fading j would put on k's pilot at the APs that
       serve k, relative to k's own there, symmetrised.
    2. Users in descending order of their total weight ``sum_j W[k, j]`` (ties: the lower
       index).
    3. Each user takes the pilot with the least accumulated weight to its current holders,
       ``sum_{j on t} W[k, j]`` (ties: the lowest index; so the first tau_p users get distinct
       pilots).

    Deterministic. Cost: O(M K^2) for the weights, O(K^2 + K tau_p) for the assignment,
    batched over snapshots.
    """

    name = "wgf"

    def _assign(self, snapshots: Snapshot, config: SystemConfig, rng: np.random.Generator) -> np.ndarray:
        return weighted_graph_pilots(contamination_weights(model_of(config).gains(snapshots)), config.tau_p)


def weighted_graph_pilots(W: np.ndarray, tau_p: int) -> np.ndarray:
    """Steps 2-3 of :class:`WGFAgent` for given ``(B, K, K)`` weights -> ``(B, K)`` pilots."""
    B, K, _ = W.shape
    batch = np.arange(B)
    order = np.argsort(-W.sum(axis=2), axis=1, kind="stable")
    pilots = np.full((B, K), -1, dtype=np.int64)
    onehot = np.zeros((B, K, tau_p))
    for i in range(K):
        k = order[:, i]
        load = np.einsum("bj,bjt->bt", W[batch, k], onehot)
        t = load.argmin(axis=1)
        pilots[batch, k] = t
        onehot[batch, k, t] = 1.0
    return pilots


# --------------------------------------------------------------------- Hungarian
class HungarianAgent(Agent):
    """Hungarian-algorithm assignment (Buzzi, D'Andrea, Fresia, Zhang, Feng, "Pilot assignment
    in cell-free massive MIMO based on the Hungarian algorithm", IEEE WCL 10(1), 2021).

    Rule:

    1. Order. Choice: users in descending order of total gain ``sum_m beta[m, k]`` (ties: the
       lower index), cut into consecutive groups of tau_p (the last may be smaller).
    2. Cost. Choice: giving pilot t to user k costs the contamination between k and the users
       already holding t, ``sum_{j on t} W[k, j]``, with the symmetric weights W of
       :class:`WGFAgent` (:func:`contamination_weights`).
    3. Group by group, the group's users are matched to the tau_p pilots (at most one user
       per pilot within a group) by :func:`scipy.optimize.linear_sum_assignment` on that cost
       matrix; the first group thus gets distinct pilots (all costs zero: the identity).
    4. Refinement. Up to ``passes`` passes; a pass re-assigns every group in turn by the same
       matching with all other users' pilots fixed. A pass is kept only if it raises the
       sum rate (the model's ``sum_rate``); otherwise it is undone and refinement stops.

    Deterministic. Cost: per snapshot ceil(K / tau_p) (1 + passes) assignment problems of
    size tau_p (O(tau_p^3) each) plus O(M K^2) for the weights; the loop runs per snapshot.

    Args:
        passes: refinement passes at most (default 5; 0: the greedy group pass only).
    """

    name = "hungarian"

    def __init__(self, config: SystemConfig | None = None, seed: int = 0, passes: int = 5) -> None:
        super().__init__(config, seed)
        if passes < 0:
            raise ValueError(f"passes must be >= 0, got {passes}")
        self.passes = int(passes)

    def _assign(self, snapshots: Snapshot, config: SystemConfig, rng: np.random.Generator) -> np.ndarray:
        physics = model_of(config)
        beta = physics.gains(snapshots)
        B, _, K = beta.shape
        tau_p = config.tau_p
        W = contamination_weights(beta)
        order = np.argsort(-beta.sum(axis=1), axis=1, kind="stable")
        out = np.zeros((B, K), dtype=np.int64)
        for b in range(B):
            groups = [order[b, i:i + tau_p] for i in range(0, K, tau_p)]
            pilots = np.full(K, -1, dtype=np.int64)
            for g in groups:
                _match_group(W[b], pilots, g, tau_p)
            value = float(physics.sum_rate(snapshots[b], pilots))
            for _ in range(self.passes):
                trial = pilots.copy()
                for g in groups:
                    trial[g] = -1
                    _match_group(W[b], trial, g, tau_p)
                trial_value = float(physics.sum_rate(snapshots[b], trial))
                if trial_value <= value:
                    break
                pilots, value = trial, trial_value
            out[b] = pilots
        return out


def _match_group(W: np.ndarray, pilots: np.ndarray, group: np.ndarray, tau_p: int) -> None:
    """Match ``group``'s users to pilots in place, given the others' pilots (-1: none yet)."""
    held = pilots >= 0
    onehot = np.zeros((pilots.size, tau_p))
    onehot[np.flatnonzero(held), pilots[held]] = 1.0
    cost = W[group] @ onehot  # (len(group), tau_p)
    rows, cols = linear_sum_assignment(cost)
    pilots[group[rows]] = cols


# ------------------------------------------------------------------------ k-means
class KMeansAgent(Agent):
    """Structured user-group assignment by k-means on positions (after Attarifar, Abbasfar,
    Lozano and Chen et al.): users of one group get distinct pilots, and co-pilot users of
    different groups are placed far apart.

    Rule (the details are our choices; the papers differ among themselves):

    1. C = ceil(K / tau_p) clusters. Distances and means are taken on the torus when the
       system wraps around (circular mean per coordinate), in the plane otherwise.
    2. k-means (Lloyd, ``lloyd_iterations`` rounds or until stable) from a farthest-point
       start: user 0 is the first centre, then the user farthest from the centres so far
       (ties: the lower index). Choice: this start is deterministic, so no seed is needed.
    3. Balance: while a cluster holds more than tau_p users, its user farthest from its centre
       moves to the nearest cluster with room (fewer than tau_p users). Every cluster then
       has at most tau_p users, so its users can get distinct pilots.
    4. Within a cluster, users sorted by their angle around the centre (``atan2``, from
       -pi) get ranks 0, 1, ...; user pilot = (rank + r_c) mod tau_p with a per-cluster
       rotation r_c.
    5. Rotations, greedily, clusters in index order: cluster 0 keeps r = 0; each next cluster
       takes the r maximising the minimum distance between its users and the co-pilot users
       of the clusters already placed (ties, including "no co-pilot": the lowest r).

    Needs ``snapshots.ue_positions``. Deterministic. Cost per snapshot: O(iters K C) for
    k-means, O(K C) for balancing, O(tau_p K^2) for the rotations; the loop runs per snapshot.

    Args:
        lloyd_iterations: k-means rounds at most (default 20).
    """

    name = "kmeans"
    needs_positions = True

    def __init__(self, config: SystemConfig | None = None, seed: int = 0, lloyd_iterations: int = 20) -> None:
        super().__init__(config, seed)
        if lloyd_iterations < 0:
            raise ValueError(f"lloyd_iterations must be >= 0, got {lloyd_iterations}")
        self.lloyd_iterations = int(lloyd_iterations)

    def _assign(self, snapshots: Snapshot, config: SystemConfig, rng: np.random.Generator) -> np.ndarray:
        ue = snapshots.ue_positions
        B, K = ue.shape[:2]
        out = np.zeros((B, K), dtype=np.int64)
        for b in range(B):
            labels, centres = balanced_kmeans(ue[b], config.tau_p, config.area_side_m, config.wrap_around,
                                              self.lloyd_iterations)
            out[b] = cluster_pilots(ue[b], labels, centres, config.tau_p, config.area_side_m,
                                    config.wrap_around)
        return out


def _displacement(a: np.ndarray, b: np.ndarray, side: float, wrap: bool) -> np.ndarray:
    """``a - b`` (broadcast, last axis 2), the shortest way round on the torus if ``wrap``."""
    d = a - b
    return (d + side / 2) % side - side / 2 if wrap else d


def _distance(a: np.ndarray, b: np.ndarray, side: float, wrap: bool) -> np.ndarray:
    return np.hypot(*np.moveaxis(_displacement(a, b, side, wrap), -1, 0))


def balanced_kmeans(ue: np.ndarray, cap: int, side: float, wrap: bool,
                    iterations: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1-3 of :class:`KMeansAgent` for one snapshot's ``(K, 2)`` positions: ``(K,)`` cluster
    labels (at most ``cap`` users each) and ``(C, 2)`` centres."""
    K = ue.shape[0]
    C = max(1, math.ceil(K / cap))
    chosen = [0]
    near = _distance(ue, ue[0], side, wrap)
    for _ in range(1, C):
        nxt = int(near.argmax())
        chosen.append(nxt)
        near = np.minimum(near, _distance(ue, ue[nxt], side, wrap))
    centres = ue[chosen].astype(np.float64)
    labels = np.full(K, -1, dtype=np.int64)
    for _ in range(iterations + 1):
        dist = _distance(ue[:, None, :], centres[None, :, :], side, wrap)  # (K, C)
        new = dist.argmin(axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        centres = _means(ue, labels, centres, side, wrap)
    dist = _distance(ue[:, None, :], centres[None, :, :], side, wrap)
    size = np.bincount(labels, minlength=C)
    while (size > cap).any():
        c = int(np.flatnonzero(size > cap)[0])
        members = np.flatnonzero(labels == c)
        u = int(members[dist[members, c].argmax()])
        room = np.where(size < cap, dist[u], np.inf)
        target = int(room.argmin())
        labels[u] = target
        size[c] -= 1
        size[target] += 1
    return labels, centres


def _means(ue: np.ndarray, labels: np.ndarray, centres: np.ndarray, side: float, wrap: bool) -> np.ndarray:
    """Cluster means (circular per coordinate on the torus); an empty cluster keeps its centre."""
    out = centres.copy()
    for c in range(centres.shape[0]):
        pts = ue[labels == c]
        if not len(pts):
            continue
        if wrap:
            angle = 2 * np.pi * pts / side
            mean = np.arctan2(np.sin(angle).mean(0), np.cos(angle).mean(0))
            out[c] = (mean * side / (2 * np.pi)) % side
        else:
            out[c] = pts.mean(0)
    return out


def cluster_pilots(ue: np.ndarray, labels: np.ndarray, centres: np.ndarray, tau_p: int, side: float,
                   wrap: bool) -> np.ndarray:
    """Steps 4-5 of :class:`KMeansAgent`: ``(K,)`` pilots, distinct within each cluster."""
    K = ue.shape[0]
    rank = np.zeros(K, dtype=np.int64)
    for c in range(centres.shape[0]):
        members = np.flatnonzero(labels == c)
        d = _displacement(ue[members], centres[c], side, wrap)
        angle = np.arctan2(d[:, 1], d[:, 0])
        rank[members[np.argsort(angle, kind="stable")]] = np.arange(members.size)
    pairwise = _distance(ue[:, None, :], ue[None, :, :], side, wrap)
    pilots = np.full(K, -1, dtype=np.int64)
    for c in range(centres.shape[0]):
        members = np.flatnonzero(labels == c)
        if not members.size:
            continue
        placed = pilots >= 0
        best_r, best_d = 0, -np.inf
        for r in range(tau_p):
            p = (rank[members] + r) % tau_p
            same = placed[None, :] & (pilots[None, :] == p[:, None])  # (n, K)
            d = np.where(same, pairwise[members], np.inf).min() if same.any() else np.inf
            if d > best_d:
                best_r, best_d = r, d
        pilots[members] = (rank[members] + best_r) % tau_p
    return pilots
