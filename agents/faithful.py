"""The literature's rules as their authors' code runs them (docs/literature.md, "Faithful variants").

cfpilot's ``tabu`` and ``graph-colouring`` (:mod:`agents.literature`) are improved readings of the papers.
The agents here transcribe the published MATLAB code line by line, so a table can show both, each under a
name that says which (first author and year):

* :class:`TabuLiu2020Agent` (``tabu-liu2020``) -- ``BJTU-MIMO/CF-Tabu-Search-Pilot-Assignment``,
  ``functiontabu_new.m``, ``change.m``, ``CalSINR.m`` (Liu et al., IEEE TVT 69(2), 2020).
* :class:`GraphColouringLiu2020Agent` (``graph-colouring-liu2020``) -- ``BJTU-MIMO/CF-Graph-Coloring-Pilot-
  Assignment``, ``functiongraph.m``, ``funcnumofcolor.m``, ``functionAPSelection.m``,
  ``functioninterference.m`` (Liu et al., IEEE TVT 69(8), 2020).
* :class:`StructuredChen2021Agent` (``structured-chen2021``) -- ``functionAPselection.m``,
  ``functionUEgroup.m`` (Chen et al., IEEE JSAC 39(4), 2021), which cfpilot had no reading of.

* :class:`MatchingGao2024Agent` (``matching-gao2024``) and :class:`BeamMussbah2024Agent` (``beam-mussbah2024``)
  -- Gao et al. (IEEE TVT 2024) and Mussbah et al. (IEEE CL 28(9), 2024) as the third-party port
  ``Marine-MJH/cellfree-pilot-hybrids`` runs them (neither the papers' text nor the authors' code was at hand).

These rules are sequential by nature (a queue of users, a list of candidates): they loop over users per
snapshot, as the code does, and cost milliseconds to a few hundred ms per snapshot.

Every departure from the code is listed in docs/literature.md with its file and line.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from agents.base import Agent
from cfenv.channel import Snapshot
from cfenv.config import SystemConfig
from cfenv.models import model_of
from cfenv.rates import objective_from_rates

TABU_ITERATIONS = 19
"""``simulation_main.m``: ``N_iter = 20`` and ``while i_iter < N_iter`` -- 19 iterations"""
TABU_TENURE = 5
"""``functiontabu_new.m`` lines 47, 49, 61: an accepted assignment is tabu for 5 accepted moves"""
GRAPH_THETA0 = 0.94
"""``functiongraph.m`` line 3: the first AP-selection threshold"""
GRAPH_BRACKET = (0.2, 0.999)
"""``functiongraph.m`` lines 12-13: the bisection's bracket of the threshold"""
GRAPH_TOLERANCE = 1e-4
"""``functiongraph.m`` line 30: the bisection stops at exactly tau_p colours once the bracket is this narrow"""
GRAPH_MAX_STEPS = 64
"""our cap on the bisection (the code stops after 50 s of wall time and discards the network: see docs)"""


# ---------------------------------------------------------------------------- tabu
class TabuLiu2020Agent(Agent):
    """Tabu search as ``functiontabu_new.m`` runs it (Liu, Zhang, Zhang, Kurniawan, Juhana, Ai, IEEE TVT 2020).

    From a uniformly random assignment (``simulation_main.m`` line 77), each of 19 iterations:

    1. the users in ascending order of their rate under the current assignment (``sort(R_cfta)``);
    2. K candidates: candidate i moves the i-th of them to the pilot the fewest users hold now, the
       first such pilot on ties (``change.m``; a user already there gives the current assignment);
    3. candidates ranked by the objective, descending (stable). If the first beats the best value so far,
       it is taken (aspiration: even if tabu) and becomes the best; otherwise the first candidate not in
       the tabu list is taken (none: the iteration passes);
    4. each taken assignment enters the tabu list for 5 taken moves (whole assignments are tabu, and the
       counters move only when a move is taken).

    Returns the best candidate taken (the random start itself is never returned unless a candidate
    equals it). The objective is the config's (the code's is the uplink sum rate of Ngo et al.'s formula;
    with ``model="scalable", link="uplink"`` it is the uplink SE sum). Random: the start depends on the seed.
    """

    name = "tabu-liu2020"

    def __init__(self, config: SystemConfig | None = None, seed: int = 0, iterations: int = TABU_ITERATIONS,
                 tenure: int = TABU_TENURE) -> None:
        super().__init__(config, seed)
        if iterations < 1 or tenure < 1:
            raise ValueError(f"iterations and tenure must be >= 1, got {iterations} and {tenure}")
        self.iterations, self.tenure = int(iterations), int(tenure)

    def _assign(self, snapshots: Snapshot, config: SystemConfig, rng: np.random.Generator) -> np.ndarray:
        B, K = snapshots.beta.shape[0], config.K
        start = rng.integers(0, config.tau_p, size=(B, K))
        model = model_of(config)

        def rates(pilots: np.ndarray) -> np.ndarray:  # (B, N, K) assignments -> (B, N, K) user rates
            return model.user_rates(snapshots[:, None], pilots)

        return tabu_liu2020(start, config.tau_p, rates, lambda r: objective_from_rates(r, config.objective),
                            self.iterations, self.tenure)


def least_used_pilot(pilots: np.ndarray, tau_p: int) -> np.ndarray:
    """``(B,)`` the pilot the fewest users of each ``(B, K)`` assignment hold, the lowest on ties (``change.m``
    lines 2-16: ``[~, minindex] = min(use_number)``)."""
    counts = (pilots[:, :, None] == np.arange(tau_p)).sum(axis=1)
    return np.argmin(counts, axis=1)


def tabu_liu2020(start: np.ndarray, tau_p: int, rates: Callable[[np.ndarray], np.ndarray],
                 objective: Callable[[np.ndarray], np.ndarray], iterations: int = TABU_ITERATIONS,
                 tenure: int = TABU_TENURE) -> np.ndarray:
    """``functiontabu_new.m`` on a batch: ``start (B, K)``; ``rates((B, N, K)) -> (B, N, K)`` per-user rates
    of N assignments per snapshot; ``objective(rates) -> (...)`` the value to maximise. Returns ``(B, K)``."""
    B, K = start.shape
    current = start.copy()
    best = np.full(B, -np.inf)  # the code's max_tabu = 0: the same for a positive objective
    best_point = start.copy()
    tabu = [_TabuList(K, tenure) for _ in range(B)]
    batch = np.arange(B)
    for _ in range(iterations):
        for lst in tabu:
            lst.expire()  # lines 10-14
        order = np.argsort(rates(current[:, None])[:, 0], axis=1, kind="stable")  # lines 16-17, (B, K)
        target = least_used_pilot(current, tau_p)  # change.m: one target per iteration
        candidates = np.repeat(current[:, None], K, axis=1)  # (B, K, K): candidate i moves user order[i]
        candidates[batch[:, None], np.arange(K), order] = target[:, None]
        values = objective(rates(candidates))  # (B, K): lines 24-31
        ranked = np.argsort(-values, axis=1, kind="stable")  # line 32
        for b in range(B):
            top = ranked[b, 0]
            if values[b, top] > best[b]:  # lines 35-52
                best[b], current[b] = values[b, top], candidates[b, top]
                best_point[b] = current[b]
                tabu[b].take_best(current[b])
                continue
            for i in ranked[b]:  # lines 55-68
                if not tabu[b].holds(candidates[b, i]):
                    current[b] = candidates[b, i]
                    tabu[b].take(current[b])
                    break
    return best_point


class _TabuList:
    """``TabuList`` of ``functiontabu_new.m``: K rows of [counter, assignment]; an empty row has counter inf."""

    def __init__(self, K: int, tenure: int) -> None:
        self.counter = np.full(K, np.inf)
        self.rows = np.full((K, K), -1, dtype=np.int64)
        self.tenure = tenure

    def expire(self) -> None:
        """Lines 10-14: rows whose counter reached 0 are emptied."""
        done = self.counter <= 0
        self.counter[done], self.rows[done] = np.inf, -1

    def holds(self, pilots: np.ndarray) -> bool:
        """``ismember(TS_list, Point, 'rows')`` over the live rows."""
        live = np.isfinite(self.counter)
        return bool(np.any(live & np.all(self.rows == pilots, axis=1)))

    def _free_row(self) -> int:
        """``min(find(TabuList(:,1) == inf))``; with none free (K < tenure + 1), the row whose counter is lowest
        (the code would fail on the empty index)."""
        free = np.flatnonzero(~np.isfinite(self.counter))
        return int(free[0]) if free.size else int(np.argmin(self.counter))

    def take_best(self, pilots: np.ndarray) -> None:
        """Lines 42-50: counters down, then the new best listed -- in row 1 if it is listed already (the code
        writes ``TabuList(max(exit), :)``, and ``max(exit)`` is 1, not the matching row), else in the first
        empty row."""
        self.counter -= 1
        row = 0 if self.holds(pilots) else self._free_row()
        self.counter[row], self.rows[row] = self.tenure, pilots

    def take(self, pilots: np.ndarray) -> None:
        """Lines 60-61: counters down, the taken assignment in the first empty row."""
        self.counter -= 1
        row = self._free_row()
        self.counter[row], self.rows[row] = self.tenure, pilots


# ------------------------------------------------------------------ graph colouring
class GraphColouringLiu2020Agent(Agent):
    """Graph colouring as ``functiongraph.m`` runs it (Liu, Zhang, Jiang, Ai, Zhang, IEEE TVT 69(8), 2020).

    1. AP selection (``functionAPSelection.m``): user k's threshold gain is that of the AP at which its
       strongest APs, added in descending order, first reach ``theta`` of its summed gain; it is served by
       every AP at or above that gain (``funcnumofcolor.m`` lines 5-14).
    2. Users sharing a serving AP are adjacent (``functioninterference.m``).
    3. Colours one at a time (``funcnumofcolor.m`` lines 24-52): the uncoloured user of most uncoloured
       neighbours (the lowest index on ties) opens colour c; then the lowest-index uncoloured users adjacent
       to no member join it, at most ``round(K / tau_p)`` of them (MATLAB's round, halves away from zero).
    4. The threshold is bisected (``functiongraph.m``: from 0.94 in [0.2, 0.999]; fewer colours than pilots:
       up; more: down; exactly tau_p: up, until the bracket is narrower than 1e-4) so that exactly tau_p
       colours come out; colour c is pilot c - 1.

    Deterministic. Where the bisection does not end at exactly tau_p colours in 64 steps, the code (after
    50 s) discards the network; we return the coloring with exactly tau_p colours at the largest threshold
    tried, else the one with the fewest colours, colours beyond tau_p folded onto pilots modulo tau_p.
    """

    name = "graph-colouring-liu2020"

    def _assign(self, snapshots: Snapshot, config: SystemConfig, rng: np.random.Generator) -> np.ndarray:
        beta = model_of(config).gains(snapshots)
        return np.stack([graph_colouring_liu2020(b, config.tau_p) for b in beta])


def matlab_round(x: float) -> int:
    """MATLAB's ``round``: halves away from zero (Python's rounds them to even)."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def served_by_threshold(beta: np.ndarray, theta: float) -> np.ndarray:
    """``(M, K)`` bool: ``functionAPSelection.m`` and ``funcnumofcolor.m`` lines 5-14 for one ``(M, K)``
    snapshot."""
    ranked = -np.sort(-beta, axis=0)  # (M, K) each user's gains, descending
    cumulative = np.cumsum(ranked, axis=0)
    reach = np.argmax(cumulative >= theta * cumulative[-1], axis=0)  # first AP reaching theta of the total
    threshold = ranked[reach, np.arange(beta.shape[1])]
    return beta >= threshold


def colour_classes(adjacent: np.ndarray, tau_p: int) -> np.ndarray:
    """``(K,)`` colours 0, 1, ... of ``funcnumofcolor.m`` lines 16-53 for a ``(K, K)`` adjacency (no self loops)."""
    K = adjacent.shape[0]
    cap = matlab_round(K / tau_p)  # line 37: time > round(K/S) closes the colour
    colour = np.full(K, -1, dtype=np.int64)
    c = 0
    while (colour < 0).any():
        open_ = np.flatnonzero(colour < 0)
        degree = adjacent[np.ix_(open_, open_)].sum(axis=1)  # lines 25-28: uncoloured neighbours
        first = open_[np.argmax(degree)]
        colour[first] = c
        blocked = adjacent[first].copy()
        blocked[first] = True
        joined = 0
        while joined < cap:  # lines 35-49
            free = np.flatnonzero(~blocked & (colour < 0))
            if free.size == 0:
                break
            nxt = free[0]
            colour[nxt] = c
            blocked |= adjacent[nxt]
            blocked[nxt] = True
            joined += 1
        c += 1
    return colour


def graph_colouring_liu2020(beta: np.ndarray, tau_p: int) -> np.ndarray:
    """``(K,)`` pilots of ``functiongraph.m`` for one ``(M, K)`` snapshot."""

    def colouring(theta: float) -> np.ndarray:
        served = served_by_threshold(beta, theta).astype(np.int64)
        adjacent = served.T @ served > 0
        np.fill_diagonal(adjacent, False)
        return colour_classes(adjacent, tau_p)

    theta = GRAPH_THETA0
    low, high = GRAPH_BRACKET
    colours = colouring(theta)
    tried = [(theta, colours)]
    for _ in range(GRAPH_MAX_STEPS):
        count = int(colours.max()) + 1
        if count > tau_p:
            towards, high = low, theta
        else:
            towards, low = high, theta
            if count == tau_p and high - low < GRAPH_TOLERANCE:
                return colours
        theta = (towards + theta) / 2
        colours = colouring(theta)
        tried.append((theta, colours))
    exact = [(t, c) for t, c in tried if c.max() + 1 == tau_p]
    if exact:
        return max(exact, key=lambda item: item[0])[1]
    fewest = min(tried, key=lambda item: (item[1].max(), -item[0]))[1]
    return fewest % tau_p


# ------------------------------------------------------------- structured access (Chen 2021)
CHEN_DELTA0 = 0.3
"""``functionUEgroup.m`` line 30: the first share of the strongest (AP, user) links that count as conflicts"""
CHEN_BRACKET = (0.1, 0.6)
"""``functionUEgroup.m`` line 28: the bisection's bracket of that share"""
CHEN_STALLS = 10
"""``functionUEgroup.m`` lines 233-238: the bisection gives up after more than 10 steps moving it < 1e-4"""


class StructuredChen2021Agent(Agent):
    """Structured massive access (Chen, Zhang, Björnson, Zhang, Ai, "Structured massive access for scalable
    cell-free massive MIMO systems", IEEE JSAC 39(4), 2021), as the authors' code runs it
    (``functionAPselection.m``, ``functionUEgroup.m``; a copy in ``Marine-MJH/cellfree-pilot-hybrids``,
    ``refs/chen2021``).

    1. Initial access (``functionAPselection.m``): users in index order take their strongest APs one by one;
       an AP serving more than tau_p users drops its weakest (the newcomer if the weakest is a "weak" user),
       who may not take it again and, unless barred from all APs but one (then "weak": served by every AP
       left), re-enters the queue.
    2. User grouping (``functionUEgroup.m``): the strongest ``delta`` share of the selected (AP, user) links
       (plus the weak users' links) make two users conflict when they share an AP. Users with no later
       compatible user are groups of their own (step 1, repeated); then groups open at the lowest
       remaining index and take, in index order, the later users compatible with every member (step 2).
       Each group is a pilot, in the order formed.
    3. ``delta`` is bisected in [0.1, 0.6] from 0.3 until exactly tau_p groups come out.

    The structured access also decides which APs serve whom; here only the pilots are used (the model's
    clusters serve). Deterministic. Where the bisection stalls (the code sets ``warnPilot`` and its main
    script discards the network), the last grouping is used, groups beyond tau_p folded modulo tau_p.
    """

    name = "structured-chen2021"

    def _assign(self, snapshots: Snapshot, config: SystemConfig, rng: np.random.Generator) -> np.ndarray:
        beta = model_of(config).gains(snapshots)
        return np.stack([structured_chen2021(b, config.tau_p) for b in beta])


def chen_initial_access(beta: np.ndarray, tau_p: int) -> tuple[np.ndarray, list[int]]:
    """``functionAPselection.m`` for one ``(M, K)`` snapshot: ``(M, K)`` bool selections and the weak users."""
    M, K = beta.shape
    selected = np.zeros((M, K), dtype=bool)
    barred = np.zeros((M, K), dtype=bool)
    weak: list[int] = []
    queue = list(range(K))
    while queue:  # lines 23-59
        k = queue[0]
        while True:
            free = np.flatnonzero(~barred[:, k] & ~selected[:, k])  # line 29
            if free.size == 0:
                break
            if k in weak:  # lines 33-35
                selected[free, k] = True
                break
            ap = int(free[np.argmax(beta[free, k])])  # lines 37-39
            selected[ap, k] = True
            served = np.flatnonzero(selected[ap])
            if served.size > tau_p:  # lines 40-54
                weakest = int(served[np.argmin(beta[ap, served])])
                if weakest in weak:
                    weakest = k
                barred[ap, weakest] = True
                if barred[:, weakest].sum() == M - 1:
                    weak.append(weakest)
                elif weakest not in queue:
                    queue = sorted({*queue, weakest})  # union(..., 'sorted')
                selected[ap, weakest] = False
        queue.remove(k)  # line 58
    return selected, weak


def _without(row: list[int], drop: set[int]) -> list[int]:
    """``setdiff(row, drop, 'stable')`` on a zero-free candidate row."""
    return [j for j in row if j not in drop]


def chen_groups(conflict: np.ndarray) -> list[list[int]]:
    """Groups of ``functionUEgroup.m`` lines 64-206 for a ``(K, K)`` symmetric bool conflict matrix (users
    0-based; the code's user K is ``K - 1``)."""
    K = conflict.shape[0]
    last = K - 1
    later = {i: [j for j in range(i + 1, K) if not conflict[i, j]] for i in range(K - 1)}  # MatC rows
    groups: list[list[int]] = []
    candidates = list(range(K))
    solo: list[int] = []
    while True:  # step 1, lines 95-118
        found = [i for i in candidates if i != last and i not in solo and not later[i]]
        for i in found:
            groups.append([i])
            solo.append(i)
        if not found:
            break
        for i in candidates:
            if i != last:
                later[i] = _without(later[i], set(solo))
        candidates = [i for i in candidates if i not in solo]
    while candidates:  # step 2, lines 126-206
        first = candidates.pop(0)
        if first == last:
            groups.append([last])
            break
        group = [first]
        row = later[first]
        for i in candidates:
            if i != last:
                later[i] = _without(later[i], {first})
        while row:
            member = row[0]
            group.append(member)
            candidates.remove(member)
            for i in candidates:
                if i != last:
                    later[i] = _without(later[i], {member})
            if member == last:
                break
            row = [j for j in row if j in later[member]]  # intersect(rowOfListCand, MatC(member,:), 'stable')
        groups.append(group)
    return groups


def structured_chen2021(beta: np.ndarray, tau_p: int) -> np.ndarray:
    """``(K,)`` pilots of the structured access for one ``(M, K)`` snapshot."""
    M, K = beta.shape
    selected, weak = chen_initial_access(beta, tau_p)
    links = np.where(selected, beta, 0.0)
    ranked = np.sort(links[links > 0])[::-1]  # listBetaxMatA, descending
    low, high = CHEN_BRACKET
    delta, stalls = CHEN_DELTA0, 0
    while True:
        used = np.zeros((M, K), dtype=bool)
        used[:, weak] = selected[:, weak]
        if ranked.size:
            used |= links >= ranked[math.ceil(delta * ranked.size) - 1]  # lines 54-63
        conflict = (used.T.astype(np.int64) @ used.astype(np.int64)) > 0
        groups = chen_groups(conflict)
        pilots = np.empty(K, dtype=np.int64)
        for index, group in enumerate(groups):
            pilots[group] = index
        if len(groups) == tau_p:
            return pilots
        previous = delta
        if len(groups) < tau_p:  # lines 226-232
            low = delta
        else:
            high = delta
        delta = (low + high) / 2
        if abs(delta - previous) < 1e-4:
            stalls += 1
            if stalls > CHEN_STALLS:
                return pilots % tau_p


# ------------------------------------------------------------------ matching (Gao 2024)
class MatchingGao2024Agent(Agent):
    """Matching-based pilot assignment (Gao et al., "A matching-based pilot assignment algorithm for
    cell-free massive MIMO networks", IEEE TVT 2024), as the third-party port
    ``Marine-MJH/cellfree-pilot-hybrids`` runs it (``src/pilot_schemes/matching_gao.py``; neither the paper's
    text nor the authors' code was at hand, docs/literature.md §7).

    1. Algorithm 1, a many-to-many matching: users propose to APs in order of falling gain, each AP keeps
       the tau_p strongest proposers (the port's quotas: tau_p per AP, every AP per user). Every user thus
       proposes to every AP, and each AP's group is its tau_p strongest users (:func:`gao_groups`; the port's
       own test checks the same equality).
    2. Each group scores the sum over its ordered member pairs (i, j) of the share of i's APs that also
       hold j (Eqs. (9)-(10), :func:`gao_scores`).
    3. Algorithm 2: groups in order of falling score; each group's members without a pilot draw distinct
       pilots at random among those its assigned members do not use. Users no AP kept draw any pilot.
    """

    name = "matching-gao2024"

    def _assign(self, snapshots: Snapshot, config: SystemConfig, rng: np.random.Generator) -> np.ndarray:
        beta = model_of(config).gains(snapshots)
        return np.stack([matching_gao2024(b, config.tau_p, rng) for b in beta])


def gao_groups(beta: np.ndarray, tau_p: int) -> np.ndarray:
    """``(M, K)`` bool: AP m's group, its ``tau_p`` strongest users (the matching's outcome; ties by index)."""
    M, K = beta.shape
    strongest = np.argsort(-beta, axis=1, kind="stable")[:, :min(tau_p, K)]
    groups = np.zeros((M, K), dtype=bool)
    groups[np.arange(M)[:, None], strongest] = True
    return groups


def gao_scores(groups: np.ndarray) -> np.ndarray:
    """``(M,)`` group scores (Eqs. (9)-(10) as ported): for AP m, the sum over ordered pairs i != j of its
    group of ``common(i, j) / matched(i)``, the share of user i's APs that also hold user j."""
    g = groups.astype(np.float64)
    common = g.T @ g  # (K, K): APs holding both users
    ratio = common / np.maximum(g.sum(axis=0), 1.0)[:, None]
    np.fill_diagonal(ratio, 0.0)
    return np.einsum("mi,ij,mj->m", g, ratio, g)


def matching_gao2024(beta: np.ndarray, tau_p: int, rng: np.random.Generator) -> np.ndarray:
    """``(K,)`` pilots of Gao et al.'s Algorithms 1 and 2 for one ``(M, K)`` snapshot."""
    K = beta.shape[1]
    groups = gao_groups(beta, tau_p)
    pilots = np.full(K, -1, dtype=np.int64)
    for ap in np.argsort(-gao_scores(groups), kind="stable"):  # the port: np.argsort(-scores), quicksort
        members = np.flatnonzero(groups[ap])
        taken = pilots[members]
        waiting = members[taken < 0]
        if waiting.size == 0:
            continue
        free = np.setdiff1d(np.arange(tau_p), taken[taken >= 0])  # ascending, as the port's list
        pilots[waiting] = rng.choice(free, size=waiting.size, replace=False)
    missing = pilots < 0
    pilots[missing] = rng.integers(0, tau_p, size=int(missing.sum()))
    return pilots


# -------------------------------------------------------------- beam domain (Mussbah 2024)
MUSSBAH_DELTA = 0.95
"""Eq. (2) as ported: a user's active beams are its strongest reported beams up to 95 % of their power"""
MUSSBAH_REPORT_SNR = 1.0
"""the paper's "SNR > 0 dB" (§V) as the port reads it: a beam is reported when its pilot SNR exceeds 1"""


class BeamMussbah2024Agent(Agent):
    """Beam-domain pilot assignment (Mussbah, Schwarz, Rupp, "Beam-domain-based pilot assignment for energy
    efficient cell-free massive MIMO", IEEE Commun. Lett. 28(9), 2024, Algorithm 1), as the third-party port
    ``Marine-MJH/cellfree-pilot-hybrids`` runs it (``MJH/mussbah_beam_domain.py``,
    ``src/pilot_schemes/beam_domain_mussbah.py``; docs/literature.md §7).

    1. Every AP's L antennas form L DFT beams; beam n of AP m carries user k's pilot SNR
       ``p_pilot [U^H R_mk U]_nn`` (:func:`beam_snr`; the paper's model: ``rho_p beta_mk`` on every beam).
    2. A user reports the beams above 0 dB (at least its strongest); its active beams are the strongest
       reported ones up to 95 % of their power, the rest "moderate" (Eq. (2)).
    3. Two users conflict when an active beam of one is an active or moderate beam of the other
       (Eqs. (15)-(18)); DSATUR colours the conflict graph (:func:`dsatur`).
    4. The paper lets tau_p be the number of colours. Within a budget: colours beyond tau_p fold modulo
       tau_p (the port's ``_adapt_to_tau_p``); fewer colours use fewer pilots, which the scalable model's
       ``pilot_overhead="used"`` turns into a shorter pilot phase. Deterministic.
    """

    name = "beam-mussbah2024"

    def _assign(self, snapshots: Snapshot, config: SystemConfig, rng: np.random.Generator) -> np.ndarray:
        snr = beam_snr(snapshots, config)
        return np.stack([beam_mussbah2024(s, config.tau_p) for s in snr.reshape(-1, *snr.shape[-3:])])


def beam_snr(snapshots: Snapshot, config: SystemConfig) -> np.ndarray:
    """``(..., M, K, L)`` pilot SNR of each user on each DFT beam of each AP: ``p_pilot diag(U^H R U)`` with R
    the snapshot's correlation over the noise power (``extras["R"]``), else ``beta / N0`` times the identity
    (independent fading: every beam carries ``rho_p beta``)."""
    R = snapshots.extras.get("R")
    if R is None:
        return config.rho_p * np.repeat(snapshots.beta[..., None], config.L, axis=-1)
    L = R.shape[-1]
    n = np.arange(L)
    U = np.exp(2j * np.pi * np.outer(n, n) / L) / np.sqrt(L)  # the port's dft_matrix
    return config.pilot_power_w * np.real(np.einsum("an,...ab,bn->...n", U.conj(), R, U))


def mussbah_conflicts(snr: np.ndarray) -> np.ndarray:
    """``(K, K)`` bool conflict graph (Eqs. (2), (15)-(18)) of one snapshot's ``(M, K, L)`` beam SNRs."""
    M, K, L = snr.shape
    power = snr.transpose(1, 0, 2).reshape(K, M * L)  # beam index m * L + n, as the port's reshape
    reported = power > MUSSBAH_REPORT_SNR
    silent = ~reported.any(axis=1)
    reported[silent, power[silent].argmax(axis=1)] = True
    shown = np.where(reported, power, 0.0)
    order = np.argsort(-shown, axis=1, kind="stable")
    ranked = np.take_along_axis(shown, order, axis=1)
    share = np.cumsum(ranked, axis=1) / ranked.sum(axis=1, keepdims=True)
    n_active = (share < MUSSBAH_DELTA).sum(axis=1) + 1  # np.searchsorted(share, delta, "left") + 1
    active = np.zeros_like(reported)
    np.put_along_axis(active, order, np.arange(M * L)[None, :] < n_active[:, None], axis=1)
    a, i = active.astype(np.int64), (reported & ~active).astype(np.int64)
    conflict = (a @ a.T + a @ i.T + i @ a.T) > 0
    np.fill_diagonal(conflict, False)
    return conflict


def dsatur(adjacent: np.ndarray) -> np.ndarray:
    """``(K,)`` colours by DSATUR (Brelaz 1979) as the port runs it: the uncoloured vertex with the most
    distinct neighbour colours, ties by degree, then by index, takes the smallest colour no neighbour has."""
    K = adjacent.shape[0]
    colours = np.full(K, -1, dtype=np.int64)
    degree = adjacent.sum(axis=1)
    near = np.zeros((K, K + 1), dtype=bool)  # near[v, c]: a neighbour of v has colour c
    for _ in range(K):
        key = np.where(colours < 0, near.sum(axis=1) * (K + 1) + degree, -1)
        v = int(np.argmax(key))
        c = int(np.argmin(near[v]))
        colours[v] = c
        near[adjacent[v], c] = True
    return colours


def beam_mussbah2024(snr: np.ndarray, tau_p: int) -> np.ndarray:
    """``(K,)`` pilots of Mussbah et al.'s Algorithm 1 for one snapshot's ``(M, K, L)`` beam SNRs."""
    colours = dsatur(mussbah_conflicts(snr))
    return colours % tau_p if colours.max(initial=-1) >= tau_p else colours
