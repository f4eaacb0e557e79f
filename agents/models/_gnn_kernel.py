"""Compiled (numba) greedy and sampled decodes of the ``gnn`` policy with its MLP scorer.

The same function as the no-gradient torch decode of :mod:`agents.models.gnn_decoder`
(:class:`~agents.models.gnn_decoder.RunningGroups`, the path it is tested against, and the one that
trains and runs on CUDA), built on the same option features (:func:`agents.models.gnn_features.option_features`'s
numba twin) and rate features (:mod:`agents.models.rate_features`' numba form). The encoder still runs in
torch, and this kernel takes its projections and does the K sequential decisions. At inference the torch
decode is bound by per-step dispatch (tens of small tensor operations per decision, about 75 us each at
K = 50 on one thread) while a decision's arithmetic is O(K width); compiled, one decision costs a few
microseconds, and snapshots run in parallel.

Per snapshot it keeps, for every pilot group t, the running sums the option features are made
of (:class:`GroupSums`) and, for the confidence orders, the logits of every (user, group) pair,
of which a decision changes two columns: the joined group and the next new one. Its inputs are
small typed records: :class:`DecodeBatch` (the encoder's outputs), :class:`ScorerWeights`,
:class:`DecodeOptions`, :class:`agents.models.rate_features.RateInputs` and :class:`DecodeOutputs`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from agents.models.gnn_features import (CONFIDENCE_TIE, OPTION_FEATURES, group_option_features,
                                        user_option_features)
from agents.models.rate_features import RateInputs, rate_pair, rate_state, join_rates
from cfenv._kernels import FASTMATH

ORDER_CODES = {"gain": 0, "confidence": 1, "margin": 2}
"""the decoder's user orders (:data:`agents.models.gnn.DECODE_ORDERS`) as kernel codes"""


class DecodeBatch(NamedTuple):
    """The encoder's outputs for a batch of B snapshots (one float dtype, float32 or 64)."""

    user_proj: np.ndarray
    """``(B, K, W)``: the user part of the scorer's first layer applied to each user, bias included"""
    member_proj: np.ndarray
    """``(B, K, W)``: its group part applied to each user (a group's is its members' mean)"""
    cosine: np.ndarray
    """``(B, K, K)`` cosines of the users' fading columns"""
    contam: np.ndarray
    """``(B, K, K)``, entry [k, j]: the contamination of j on k"""
    key: np.ndarray
    """``(B, K)`` the order key (ties of confidence go to the larger)"""
    gain_order: np.ndarray
    """``(B, K)`` int64: the users in descending key (the ``gain`` order)"""


class ScorerWeights(NamedTuple):
    """The MLP scorer's weights beyond the projections."""

    empty_proj: np.ndarray
    """``(W,)``: the group part of the first layer applied to the empty group's embedding"""
    w_option: np.ndarray
    """``(W, F)``: the option features' weights (F = 6, or 8 with rate features)"""
    w_last: np.ndarray
    """``(W,)``: the last layer"""
    b_last: float


class DecodeOptions(NamedTuple):
    """What kind of decode."""

    tau_p: int
    order_code: int
    """:data:`ORDER_CODES`"""
    temperature: float
    uniforms: np.ndarray
    """``(B, K)`` float64 in [0, 1), one per decision (sampled decode), or ``(B, 0)`` (greedy)"""


class DecodeOutputs(NamedTuple):
    """Filled by the kernel."""

    pilots: np.ndarray
    """``(B, K)`` int64, labels in opening order"""
    log_prob: np.ndarray
    """``(B,)`` summed log-probability of the decisions"""
    entropy: np.ndarray
    """``(B,)`` mean decision entropy"""


class KernelRates(NamedTuple):
    """:class:`~agents.models.rate_features.RateInputs` of a batch as float64 arrays, with the constants."""

    beta: np.ndarray
    sqrt_eta: np.ndarray
    noise: np.ndarray
    tau_rho: float
    scale: float


class GroupSums(NamedTuple):
    """One snapshot's running sums per pilot group t, the option features' aggregates."""

    size: np.ndarray
    """``(tau_p,)`` members"""
    group_proj: np.ndarray
    """``(tau_p, W)`` summed member projections"""
    sum_cos: np.ndarray
    """``(tau_p, K)`` [t, u]: summed cosine of u to t's members"""
    max_cos: np.ndarray
    """``(tau_p, K)`` the largest (0 for an empty group)"""
    sum_into: np.ndarray
    """``(tau_p, K)`` the members' contamination on u"""
    sum_from: np.ndarray
    """``(tau_p, K)`` u's contamination on the members"""


@njit(cache=True)
def _group_sums(tau_p, like):
    K, W = like.shape
    dtype = like.dtype
    return GroupSums(np.zeros(tau_p, dtype), np.zeros((tau_p, W), dtype), np.zeros((tau_p, K), dtype),
                     np.zeros((tau_p, K), dtype), np.zeros((tau_p, K), dtype), np.zeros((tau_p, K), dtype))


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _option_logit(u, t, column, user_proj, sums, rs, scorer):
    """Scorer logit of user ``u`` joining group ``t``; ``column`` (width,) holds the parts that are
    the same for every user: the projected group embedding and the group features. A scorer with
    rate features also reads ``rs.own`` / ``rs.change``."""
    w_option = scorer.w_option
    f0, f1, f2, f3 = user_option_features(sums.sum_cos[t, u], sums.max_cos[t, u], sums.sum_into[t, u],
                                          sums.sum_from[t, u])
    rates = w_option.shape[1] > OPTION_FEATURES
    r0 = rs.own[t, u] if rates else 0.0
    r1 = rs.change[t, u] if rates else 0.0
    out = scorer.b_last
    for w in range(scorer.w_last.shape[0]):
        x = (user_proj[u, w] + column[w] + f0 * w_option[w, 0] + f1 * w_option[w, 1] + f2 * w_option[w, 2]
             + f3 * w_option[w, 3])
        if rates:
            x += r0 * w_option[w, 6] + r1 * w_option[w, 7]
        out += max(x, 0.0) * scorer.w_last[w]
    return out


@njit(cache=True)
def _column(t, n_open, K, sums, scorer, column):
    """The user-independent part of group ``t``'s scorer input into ``column``: the projected
    embedding (the empty group's for the next new one, else the mean of its members') plus the
    group features (size, newness) times their weights."""
    new = t == n_open
    if new:
        column[:] = scorer.empty_proj
    else:
        column[:] = sums.group_proj[t] / max(sums.size[t], 1.0)
    f4, f5 = group_option_features(sums.size[t], new, K)
    column += f4 * scorer.w_option[:, 4] + f5 * scorer.w_option[:, 5]


@njit(cache=True)
def _refresh(t, n_open, user_proj, sums, rs, scorer, column, decided, cached):
    """Recompute the cached logits of every undecided user against group ``t``."""
    K = user_proj.shape[0]
    rates = scorer.w_option.shape[1] > OPTION_FEATURES
    _column(t, n_open, K, sums, scorer, column)
    for u in range(K):
        if decided[u]:  # never chosen again: its cached logits are not read
            continue
        if rates:
            rate_pair(rs, u, t)
        cached[u, t] = _option_logit(u, t, column, user_proj, sums, rs, scorer)


@njit(cache=True)
def _surest_user(cached, n_open, decided, key, order_code):
    """The undecided user the policy is surest of (largest probability, or gap between the two
    largest, of its cached logits over the open groups); near-ties go to the larger ``key``."""
    K, tau_p = cached.shape
    best = -np.inf
    conf = np.empty(K)
    for u in range(K):
        conf[u] = -np.inf
        if decided[u]:
            continue
        top = -np.inf
        second = -np.inf
        for t in range(min(n_open + 1, tau_p)):
            v = cached[u, t]
            if v > top:
                second = top
                top = v
            elif v > second:
                second = v
        total = 0.0
        for t in range(min(n_open + 1, tau_p)):
            total += math.exp(cached[u, t] - top)
        conf[u] = 1.0 / total if order_code == 1 else (1.0 - math.exp(second - top)) / total
        best = max(best, conf[u])
    user = -1
    for u in range(K):
        if not decided[u] and conf[u] >= best - CONFIDENCE_TIE and (user < 0 or key[u] > key[user]):
            user = u
    return user


@njit(cache=True)
def _choose(logits, n_valid, uniform, temperature):
    """One decision over the first ``n_valid`` ``logits``: the option (the argmax, or with
    ``uniform`` >= 0 the inverse-CDF draw from softmax(logits / temperature), as
    :func:`agents.models.gnn_decoder.sample_categorical`), its log-probability and the entropy."""
    best_option = 0
    for t in range(1, n_valid):
        if logits[t] > logits[best_option]:
            best_option = t
    top = logits[best_option]
    total = 0.0
    for t in range(n_valid):
        total += math.exp(logits[t] - top)
    lse = top + math.log(total)
    choice = best_option
    if uniform >= 0.0:
        mass = 0.0
        for t in range(n_valid):
            mass += math.exp((logits[t] - top) / temperature)
        target = uniform * mass
        choice = 0
        mass = 0.0
        for t in range(n_valid):
            mass += math.exp((logits[t] - top) / temperature)
            if mass < target:
                choice += 1
        choice = min(choice, n_valid - 1)
    h = 0.0
    for t in range(n_valid):
        logp = logits[t] - lse
        h -= math.exp(logp) * logp
    return choice, logits[choice] - lse, h


@njit(cache=True)
def _decode_one(b, batch, scorer, options, rates, out):
    """Decode snapshot ``b`` of the batch into row ``b`` of ``out``."""
    user_proj, member_proj, cosine, contam = batch.user_proj[b], batch.member_proj[b], batch.cosine[b], batch.contam[b]
    K, W = user_proj.shape
    tau_p, order_code = options.tau_p, options.order_code
    with_rates = scorer.w_option.shape[1] > OPTION_FEATURES
    rs = rate_state(rates.beta[b], rates.sqrt_eta[b], rates.noise[b], rates.tau_rho, rates.scale, tau_p, user_proj)
    sums = _group_sums(tau_p, user_proj)
    column = np.zeros(W, user_proj.dtype)
    logits = np.empty(tau_p, np.float64)
    cached = np.full((K, tau_p), -np.inf)
    decided = np.zeros(K, np.bool_)
    n_open = 0
    lp = 0.0
    ent = 0.0
    if order_code != 0:
        _refresh(0, 0, user_proj, sums, rs, scorer, column, decided, cached)
    for step in range(K):
        if order_code == 0:
            user = batch.gain_order[b, step]
            for t in range(tau_p):
                if t <= n_open:
                    _column(t, n_open, K, sums, scorer, column)
                    if with_rates:
                        rate_pair(rs, user, t)
                    logits[t] = _option_logit(user, t, column, user_proj, sums, rs, scorer)
                else:
                    logits[t] = -np.inf
        else:  # the undecided user the policy is surest of
            user = _surest_user(cached, n_open, decided, batch.key[b], order_code)
            for t in range(tau_p):
                logits[t] = cached[user, t]
        uniform = options.uniforms[b, step] if options.uniforms.shape[1] else -1.0
        choice, logp, h = _choose(logits, min(n_open + 1, tau_p), uniform, options.temperature)
        ent += h / K
        lp += logp
        out.pilots[b, user] = choice
        decided[user] = True
        if with_rates:
            join_rates(rs, user, choice)
        sums.size[choice] += 1.0
        sums.group_proj[choice] += member_proj[user]
        for j in range(K):
            c = cosine[user, j]
            sums.sum_cos[choice, j] += c
            sums.max_cos[choice, j] = max(sums.max_cos[choice, j], c)
            sums.sum_into[choice, j] += contam[j, user]
            sums.sum_from[choice, j] += contam[user, j]
        opened = choice == n_open
        n_open = max(n_open, choice + 1)
        if order_code != 0 and step < K - 1:
            _refresh(choice, n_open, user_proj, sums, rs, scorer, column, decided, cached)
            if opened and n_open < tau_p:
                _refresh(n_open, n_open, user_proj, sums, rs, scorer, column, decided, cached)
    out.log_prob[b] = lp
    out.entropy[b] = ent


@njit(cache=True, parallel=True)
def _decode_batch(batch, scorer, options, rates, out):
    for b in prange(batch.user_proj.shape[0]):
        _decode_one(b, batch, scorer, options, rates, out)


def decode(batch: DecodeBatch, scorer: ScorerWeights, tau_p: int, order: str, uniforms: np.ndarray | None = None,
           temperature: float = 1.0, rates: RateInputs | None = None, tau_rho: float = 1.0,
           scale: float = 1.0) -> DecodeOutputs:
    """Greedy or sampled decode of a batch from the encoder's outputs (:class:`DecodeBatch`) and
    the scorer's weights. With ``uniforms`` ``(B, K)`` (float64 in [0, 1), one per decision) every
    decision draws from softmax(logits / ``temperature``) by inverse CDF instead of taking the
    argmax. A scorer with rate features (option weights ``(W, 8)``) needs ``rates``
    (:func:`agents.models.rate_features.rate_inputs`, as arrays) and the constants ``tau_rho``
    (tau_p rho_p) and ``scale`` (rho_d L^2).

    Returns pilots ``(B, K)`` int64 (labels in opening order), summed log-probability ``(B,)``
    and mean decision entropy ``(B,)`` (float64)."""
    B, K, _ = batch.user_proj.shape
    out = DecodeOutputs(np.zeros((B, K), np.int64), np.zeros(B), np.zeros(B))
    uniforms = np.zeros((B, 0)) if uniforms is None else np.ascontiguousarray(uniforms, dtype=np.float64)
    if (scorer.w_option.shape[1] > OPTION_FEATURES) != (rates is not None):
        raise ValueError("rates go with a scorer of 8 option features (rate features), and only with it")
    if rates is None:
        rates = RateInputs(np.zeros((B, K, 0)), np.zeros((B, 0)), np.ones((B, K)))
    _decode_batch(batch, scorer._replace(b_last=float(scorer.b_last)),
                  DecodeOptions(int(tau_p), ORDER_CODES[order], float(temperature), uniforms),
                  KernelRates(*(np.ascontiguousarray(a, dtype=np.float64) for a in rates), float(tau_rho),
                              float(scale)), out)
    return out
