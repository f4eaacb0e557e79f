"""The scalable model's neighbourhood evaluator: the SE of every single-user move (and pair swap) of
an assignment, computed from the two pilot groups a candidate changes (docs/model.md §8.5).

Under the closed forms of :mod:`cfenv.models.scalable_se`, a user's estimate (``Psi``), cluster
(DCC: its master AP and the APs where it is its pilot's strongest user) and contamination depend on
its own pilot group only. So:

* **uplink** (local MR, unit weights): a user's SE depends on its group alone; a candidate's SE is
  the current SE with its two new groups' SE put in. The values are **exact** (they equal
  :func:`~cfenv.models.scalable_se.spectral_efficiency` to rounding).
* **downlink** (MR, power heuristic (6.36)): the APs' power split couples every user. The values
  here recompute the two groups, each AP's normaliser ``sum sqrt(gain)`` and therefore every user's
  signal and contamination, but keep the **interference** ``sum_m tr(T_m R_mi)`` of the current
  assignment (its change is spread over all users): a screening surrogate, whose best candidates the
  searches score exactly.
* with n-opt LSFD the weights of a user depend on other groups' clusters: no evaluator.

Groups are padded to the largest one (``-1``), computed in chunks of candidates.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from cfenv.config import SystemConfig
from cfenv.models.scalable_se import Prepared, pre_log, serving_in_groups

CHUNK_GROUPS = 128
"""groups computed together by :func:`group_terms`"""
CACHED_GROUPS = 12_000
"""groups whose terms :class:`GroupCache` keeps (about 10 kB each at the book's default size); the
oldest snapshots' go first"""


@dataclass(frozen=True)
class Groups:
    """Per-group terms of ``(G,)`` pilot groups, members padded to ``g`` (``valid`` marks real ones),
    kept at the served (group, member, AP) triples only (under DCC about M + g of the g M).

    Attributes:
        members: ``(G, g)`` user indices (0 where padded).
        valid: ``(G, g)`` bool.
        serve: ``(G, g, M)`` bool, AP m serves member k (DCC within the group, or every AP).
        group, member, ap: ``(P,)`` the served triples, in C order of ``serve``.
        trace_b: ``(P,)`` ``tr(B_mk)``.
        through: ``(P,)`` ``tr(B_mk S_m)``, S_m the sum of all users' R at AP m.
        cross: ``(P, g)`` ``g_kim = tau_p p tr(R_mk Psi^-1 R_mi)`` for each member slot i of the
            group (zero for i = k and for padding).
    """

    members: np.ndarray
    valid: np.ndarray
    serve: np.ndarray
    group: np.ndarray
    member: np.ndarray
    ap: np.ndarray
    trace_b: np.ndarray
    through: np.ndarray
    cross: np.ndarray

    def member_sum(self, values: np.ndarray) -> np.ndarray:
        """``(G, g, ...)``: the sum of per-triple ``values (P, ...)`` over each member's serving APs."""
        G, g = self.members.shape
        flat = self.group * g + self.member  # ascending: the triples are in C order
        out = np.zeros((G * g, *values.shape[1:]))
        if len(flat):
            starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
            out[flat[starts]] = np.add.reduceat(values, starts, axis=0)
        return out.reshape(G, g, *values.shape[1:])


def group_terms(prep: Prepared, members: np.ndarray, config: SystemConfig) -> Groups:
    """:class:`Groups` of ``(G, g)`` member lists (``-1``: no member; ascending, padding last), in
    chunks of :data:`CHUNK_GROUPS` groups (their arrays stay in cache)."""
    valid = members >= 0
    idx = np.where(valid, members, 0)
    serve = serving_in_groups(prep, idx, valid, config.cluster)
    starts = range(0, len(idx), CHUNK_GROUPS)
    parts = [_group_chunk(prep, idx[lo:lo + CHUNK_GROUPS], valid[lo:lo + CHUNK_GROUPS], serve[lo:lo + CHUNK_GROUPS],
                          config) for lo in starts]
    if not parts:
        empty = np.zeros(0, np.int64)
        return Groups(idx, valid, serve, empty, empty, empty, np.zeros(0), np.zeros(0), np.zeros((0, idx.shape[1])))
    group = np.concatenate([part[0] + lo for part, lo in zip(parts, starts)])  # chunk-local -> global
    triples = [group, *(np.concatenate([part[n] for part in parts]) for n in range(1, 6))]
    return Groups(idx, valid, serve, *triples)


def _group_chunk(prep: Prepared, idx: np.ndarray, valid: np.ndarray, serve: np.ndarray,
                 config: SystemConfig) -> tuple[np.ndarray, ...]:
    """The served triples of a chunk of groups (group index within the chunk) and their terms: ``Psi^-1``
    of each group at each AP, ``tau_p p R_mk Psi^-1`` at each served triple, its traces with ``R_mk``,
    ``R_mk S_m`` and every member's ``R`` (the last as one matrix product per AP)."""
    M, K, L, _ = prep.R.shape
    power, tau_p = config.pilot_power_w, config.tau_p
    G, g = idx.shape
    gv, kv = np.nonzero(valid)
    one_hot = np.zeros((G, K))
    one_hot[gv, idx[gv, kv]] = tau_p * power
    flat_r = prep.by_user.reshape(K, -1)  # the group sums as two real matrix products (BLAS)
    shared = ((one_hot @ flat_r.real) + 1j * (one_hot @ flat_r.imag)).reshape(G, M, L, L)
    psi_inv = np.linalg.inv(shared + np.eye(L))
    gi, ki, mi = np.nonzero(serve)
    user = idx[gi, ki]
    own = prep.by_user[user, mi]  # (P, L, L)
    rp = tau_p * power * (own @ psi_inv[gi, mi])  # tau_p p R_mk Psi^-1 at the served triples
    # traces as elementwise sums with the transposes: tr(X Y) = sum_xy X_xy Y_yx
    trace_b = np.real(np.sum(rp * np.swapaxes(own, -1, -2), axis=(-2, -1)))
    through = np.real(np.sum(rp * np.swapaxes(prep.with_total[mi, user], -1, -2), axis=(-2, -1)))
    cross = np.zeros((len(gi), g))
    flat = rp.reshape(len(gi), L * L)
    order = np.argsort(mi, kind="stable")
    bounds = np.searchsorted(mi[order], np.arange(M + 1))
    for m in range(M):  # per AP: its triples against every user, then each triple's group members
        rows = order[bounds[m]:bounds[m + 1]]
        if len(rows):
            every = np.real(flat[rows] @ prep.transposed[m])  # (P_m, K)
            cross[rows] = np.take_along_axis(every, idx[gi[rows]], axis=1)
    cross *= valid[gi] & (np.arange(g)[None, :] != ki[:, None])
    return gi, ki, mi, trace_b, through, cross


def uplink_se(groups: Groups, config: SystemConfig) -> np.ndarray:
    """``(G, g)`` uplink SE of each group's members (local MR, unit weights); 0 where padded."""
    p = config.pilot_power_w
    signal = groups.member_sum(groups.trace_b)
    interference = groups.member_sum(groups.through)
    leak = groups.member_sum(groups.cross)  # (G, g, g): sum over k's serving APs of g_kim
    contamination = np.sum(leak * leak, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sinr = p * signal**2 / (p * interference + p * contamination + signal)
    return np.where(groups.valid, pre_log(config) * np.log2(1.0 + np.where(groups.valid, sinr, 0.0)), 0.0)


def _padded_groups(pilots: np.ndarray, tau_p: int, extra: int = 1) -> np.ndarray:
    """``(tau_p, g)`` members of each pilot of one ``(K,)`` assignment, ascending, padded with -1 to
    the largest group plus ``extra`` slots (room for a candidate's newcomer)."""
    order = np.argsort(pilots, kind="stable")
    counts = np.bincount(pilots, minlength=tau_p)
    width = int(counts.max()) + extra
    out = np.full((tau_p, width), -1, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(len(pilots)) - np.repeat(starts, counts)
    out[pilots[order], slot] = order
    return out


def candidate_groups(pilots: np.ndarray, tau_p: int, use_swaps: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each candidate of ``agents.search.generic.moves`` (then ``swaps``) order: the two pilots it
    changes ``(C, 2)`` and their new member lists ``(C, 2, g)`` (ascending, ``-1`` padded)."""
    K = len(pilots)
    base = _padded_groups(pilots, tau_p)
    d = np.arange(tau_p - 1)
    users = np.repeat(np.arange(K), tau_p - 1)
    src = pilots[users]
    dst = np.tile(d, K) + (np.tile(d, K) >= src)
    leave = [(users, src, dst, users, None)]  # user leaves src, joins dst
    if use_swaps:
        k, j = np.triu_indices(K, 1)
        leave.append((k, pilots[k], pilots[j], k, j))
    pilots_changed, lists = [], []
    for mover, a, b, _, partner in leave:
        old_a, old_b = base[a], base[b]
        new_a = np.where(old_a == mover[:, None], -1, old_a)
        new_b = old_b.copy()
        if partner is not None:
            new_b = np.where(old_b == partner[:, None], -1, old_b)
            new_a = _insert(new_a, partner)
        new_b = _insert(new_b, mover)
        same = a == b  # a swap within one pilot: no change
        new_a = np.where(same[:, None], old_a, new_a)
        new_b = np.where(same[:, None], old_b, new_b)
        pilots_changed.append(np.stack([a, b], axis=1))
        lists.append(np.stack([_ascending(new_a), _ascending(new_b)], axis=1))
    return np.concatenate(pilots_changed), np.concatenate(lists), base


def _insert(groups: np.ndarray, user: np.ndarray) -> np.ndarray:
    """Each row of ``(C, g)`` with ``user`` put in a free slot."""
    out = groups.copy()
    out[np.arange(len(out)), np.argmax(out < 0, axis=1)] = user
    return out


def _ascending(groups: np.ndarray) -> np.ndarray:
    """Rows of ``(C, g)`` member lists sorted, ``-1`` padding last (the DCC's ties go to the lowest
    user index, the first slot; the cache keys on the members)."""
    key = np.where(groups < 0, np.iinfo(np.int64).max, groups)
    return np.take_along_axis(groups, np.argsort(key, axis=1, kind="stable"), axis=1)


class GroupCache:
    """Group terms by content: a group's terms depend on its members alone (their pilot's ``Psi``,
    the DCC among them), so a search meets the same groups round after round. Keyed by snapshot
    (CRC-32 of its R) and member set; values do not depend on which batch computed them."""

    def __init__(self, capacity: int = CACHED_GROUPS) -> None:
        self.capacity = capacity
        self.snapshots: OrderedDict[int, dict[bytes, tuple[np.ndarray, ...]]] = OrderedDict()

    def __len__(self) -> int:
        return sum(map(len, self.snapshots.values()))

    def terms(self, prep: Prepared, lists: np.ndarray, config: SystemConfig) -> Groups:
        """:func:`group_terms` of ``(G, g)`` member lists (ascending, ``-1`` padding last)."""
        key = zlib.crc32(np.ascontiguousarray(prep.R).view(np.uint8))
        store = self.snapshots.pop(key, {})
        self.snapshots[key] = store  # most recent last
        names = [row[row >= 0].tobytes() for row in lists]
        first: dict[bytes, int] = {}
        for i, name in enumerate(names):  # each uncached group once
            if name not in store:
                first.setdefault(name, i)
        missing = list(first.values())
        if missing:
            fresh = group_terms(prep, lists[missing], config)
            bounds = np.searchsorted(fresh.group, np.arange(len(missing) + 1))
            for j, i in enumerate(missing):
                size, lo, hi = int(fresh.valid[j].sum()), bounds[j], bounds[j + 1]
                store[names[i]] = (fresh.serve[j, :size], fresh.member[lo:hi], fresh.ap[lo:hi],
                                   fresh.trace_b[lo:hi], fresh.through[lo:hi], fresh.cross[lo:hi, :size])
        groups = _assemble(lists, [store[name] for name in names], prep.gain.shape[0])
        while len(self) > self.capacity and len(self.snapshots) > 1:
            self.snapshots.popitem(last=False)
        if len(self) > self.capacity:
            store.clear()
        return groups


def _assemble(lists: np.ndarray, pieces: list[tuple[np.ndarray, ...]], M: int) -> Groups:
    """A :class:`Groups` of ``(G, g)`` member lists from each group's cached terms."""
    G, g = lists.shape
    valid = lists >= 0
    serve = np.zeros((G, g, M), dtype=bool)
    for i, piece in enumerate(pieces):
        serve[i, :len(piece[0])] = piece[0]
    counts = [len(piece[1]) for piece in pieces]
    cross = np.zeros((sum(counts), g))
    at = np.cumsum([0, *counts])
    for i, piece in enumerate(pieces):
        cross[at[i]:at[i + 1], :piece[5].shape[1]] = piece[5]
    group = np.repeat(np.arange(G), counts)
    member, ap, trace_b, through = (np.concatenate([piece[n] for piece in pieces]) for n in (1, 2, 3, 4))
    return Groups(np.where(valid, lists, 0), valid, serve, group, member, ap, trace_b, through, cross)


@dataclass(frozen=True)
class ScalableNeighbourhood:
    """The scalable model's ``screening`` fast path: :meth:`candidate_values` of every move and swap;
    :attr:`exact` when those values are the model's exact objective (the uplink without LSFD)."""

    config: SystemConfig
    cache: GroupCache = field(default_factory=GroupCache, compare=False, repr=False)

    @property
    def exact(self) -> bool:
        return self.config.link == "uplink"

    def candidate_values(self, snapshots, pilots: np.ndarray, use_swaps: bool) -> np.ndarray:
        """``(N, C)`` objective of each candidate of ``(N, K)`` assignments, row i on snapshot i,
        candidates in ``agents.search.generic.moves`` (then ``swaps``) order."""
        R = snapshots.extras["R"]
        return np.stack([self._one(Prepared.of(R[i]), np.asarray(pilots[i], dtype=np.int64), use_swaps)
                         for i in range(len(pilots))])

    def _one(self, prep: Prepared, pilots: np.ndarray, use_swaps: bool) -> np.ndarray:
        cfg = self.config
        changed, lists, base = candidate_groups(pilots, cfg.tau_p, use_swaps)
        C, _, g = lists.shape
        lists = lists.reshape(2 * C, g)  # candidate c's new groups are rows 2 c and 2 c + 1
        current = self.cache.terms(prep, base, cfg)
        if cfg.link == "uplink":
            unique, back = np.unique(lists, axis=0, return_inverse=True)  # a move's source group recurs
            se_new = uplink_se(self.cache.terms(prep, unique, cfg), cfg)[back.ravel()]
            se_now = _per_user(uplink_se(current, cfg), current, cfg.K)
            se = _put(np.repeat(se_now[None], C, axis=0), lists, se_new)
        else:
            se = _downlink_se(prep, current, self.cache.terms(prep, lists, cfg), changed, cfg)
        return cfg.objective.of_rates(cfg.bandwidth_hz * se)


def _per_user(per_member: np.ndarray, groups: Groups, K: int) -> np.ndarray:
    """``(K,)`` from ``(G, g)`` per-member values of groups that partition the users."""
    out = np.zeros(K)
    out[groups.members[groups.valid]] = per_member[groups.valid]
    return out


def _put(values: np.ndarray, lists: np.ndarray, per_member: np.ndarray) -> np.ndarray:
    """``values (C, K)`` with the members of each candidate's two new groups (``lists``: ``(2 C, g)``,
    ``-1`` padded) set to ``per_member (2 C, g)``: every user of a changed pilot is in one of them."""
    C, K = values.shape
    padded = np.concatenate([values, np.zeros((C, 1))], axis=1)  # column K takes the padding
    rows = np.repeat(np.arange(C), 2)[:, None]
    valid = lists >= 0
    padded[rows, np.where(valid, lists, K)] = np.where(valid, per_member, 0.0)
    return padded[:, :K]


def _triple_factor(groups: Groups, root: np.ndarray, rho: float) -> tuple[np.ndarray, np.ndarray]:
    """Per served triple: ``sqrt(rho sqrt(gain_mk) tr B_mk)`` (the signal before ``1 / sqrt(n_m)``) and
    ``sqrt(rho sqrt(gain_mk) / tr B_mk)`` (the contamination factor of ``g_kim``, the book's ``cont_MR``)."""
    gain_root = root[groups.ap, groups.members[groups.group, groups.member]]
    return np.sqrt(rho * gain_root * groups.trace_b), np.sqrt(rho * gain_root / groups.trace_b)


def _downlink_se(prep: Prepared, current: Groups, new: Groups, changed: np.ndarray, cfg: SystemConfig) -> np.ndarray:
    """``(C, K)`` downlink SE surrogate of each candidate: every user's signal and contamination under
    the candidate's clusters and power normalisers (its two new groups recomputed), the interference
    ``sum_m tr(T_m R_mi)`` of the current assignment."""
    rho, K, M = cfg.ap_power_w, cfg.K, cfg.M
    root = np.sqrt(prep.gain)  # (M, K)
    nu_now = np.einsum("tgm,tgm->tm", current.serve, root.T[current.members])  # (tau_p, M)
    nu_new = np.einsum("cgm,cgm->cm", new.serve, root.T[new.members]).reshape(-1, 2, M)
    n_now = nu_now.sum(axis=0)
    n_new = n_now[None] - nu_now[changed].sum(axis=1) + nu_new.sum(axis=1)  # (C, M)
    interference = _interference(prep, current, n_now, cfg)
    scale = 1.0 / np.sqrt(n_new)
    # the current groups under each candidate's normalisers
    strength, factor = _triple_factor(current, root, rho)
    strength_now = np.zeros((M, K))
    strength_now[current.ap, current.members[current.group, current.member]] = strength
    signal = scale @ strength_now  # (C, K)
    leak = np.zeros((*current.serve.shape[:2], current.members.shape[1], M))  # (tau_p, g, g, M)
    leak[current.group, current.member, :, current.ap] = factor[:, None] * current.cross
    per_member = np.sum(np.einsum("cm,tkim->ctki", scale, leak) ** 2, axis=2)  # (C, tau_p, g)
    contamination = np.zeros((len(n_new), K))
    contamination[:, current.members[current.valid]] = per_member[:, current.valid]
    # the two changed groups of each candidate, under its own normalisers
    strength, factor = _triple_factor(new, root, rho)
    own_scale = scale[new.group // 2, new.ap]  # new group 2 c + side belongs to candidate c
    sig_new = new.member_sum(strength * own_scale)
    cont_new = np.sum(new.member_sum((factor * own_scale)[:, None] * new.cross) ** 2, axis=1)
    lists = np.where(new.valid, new.members, -1)
    signal = _put(signal, lists, sig_new)
    contamination = _put(contamination, lists, cont_new)
    sinr = signal**2 / (interference[None] + contamination + 1.0)
    return pre_log(cfg) * np.log2(1.0 + sinr)


def _interference(prep: Prepared, current: Groups, n_now: np.ndarray, cfg: SystemConfig) -> np.ndarray:
    """``(K,)`` ``sum_m tr(T_m R_mi)`` of the current assignment, ``T_m = (rho / n_m) sum over served k
    of sqrt(gain_mk) B_mk / tr B_mk`` (the book's ``interf_MR``)."""
    from cfenv.models.scalable_se import _estimation

    K, M = cfg.K, cfg.M
    assignment = np.zeros(K, dtype=np.int64)
    rows = np.nonzero(current.valid)
    assignment[current.members[rows]] = rows[0]
    users = current.members[current.group, current.member]
    weight = np.zeros((M, K))
    weight[current.ap, users] = np.sqrt(prep.gain[current.ap, users]) / current.trace_b
    weight *= cfg.ap_power_w / n_now[:, None]
    _, B = _estimation(prep, assignment[None], cfg.tau_p, cfg.pilot_power_w)
    T = np.einsum("mk,mkxy->mxy", weight, B[0]).reshape(M, -1)
    return np.real(np.einsum("mx,mxi->i", T, prep.transposed))
