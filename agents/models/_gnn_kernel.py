"""Compiled (numba) greedy and sampled decodes of the ``gnn`` policy with its MLP scorer.

The same function as :meth:`agents.models.gnn.GNNPolicy._decode_incremental` in greedy and
sample mode (the torch path it is tested against, and the one that trains and runs on CUDA): the
encoder still runs in torch, and this kernel takes its projections and does the K sequential
decisions. At inference the torch decode is bound by per-step dispatch (tens of small tensor
operations per decision, about 75 us each at K = 50 on one thread) while a decision's arithmetic
is O(K width); compiled, one decision costs a few microseconds, and snapshots run in parallel.

Per snapshot it keeps, for every pilot group t, the running sums the option features are made
of (``sum_cos[t, u]``, ``max_cos[t, u]``, the contamination of the members on u and of u on the
members, the group's size and summed member projection) and, for the confidence orders, the
logits of every (user, group) pair, of which a decision changes two columns: the joined group
and the next new one.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from cfenv._kernels import FASTMATH

RATE_SCALE = (8.0, 2.0)
"""divisors of the two rate features of :mod:`agents.models.gnn` (own rate, members' change),
here so that the torch features and the compiled ones share them"""

ORDER_CODES = {"gain": 0, "confidence": 1, "margin": 2}
"""the decoder's user orders (:data:`agents.models.gnn.DECODE_ORDERS`) as kernel codes"""
CONTAMINATION_FLOOR = 1e-6
"""added inside log10 of the summed contamination (an empty group's features stay finite)"""


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _option_logit(u, t, column, user_proj, sum_cos, max_cos, sum_into, sum_from, rate_own, rate_change, w_option,
                  w_last, b_last):
    """Scorer logit of user ``u`` joining group ``t``; ``column`` (width,) holds the parts that are
    the same for every user: the projected group embedding and the size and newness features.
    A scorer with 8 option features (rate features) also reads ``rate_own`` / ``rate_change``."""
    f0 = sum_cos[t, u]
    f1 = max_cos[t, u]
    f2 = math.log10(sum_into[t, u] + CONTAMINATION_FLOOR) / 4.0
    f3 = math.log10(sum_from[t, u] + CONTAMINATION_FLOOR) / 4.0
    rates = w_option.shape[1] > 6
    f4 = rate_own[t, u] if rates else 0.0
    f5 = rate_change[t, u] if rates else 0.0
    out = b_last
    for w in range(w_last.shape[0]):
        x = (user_proj[u, w] + column[w] + f0 * w_option[w, 0] + f1 * w_option[w, 1] + f2 * w_option[w, 2]
             + f3 * w_option[w, 3])
        if rates:
            x += f4 * w_option[w, 6] + f5 * w_option[w, 7]
        out += max(x, 0.0) * w_last[w]
    return out


@njit(cache=True, fastmath=FASTMATH)
def _rate_pair(u, t, beta, b_shift, sqrt_eta, noise, G, members, n_members, S_mem, D_mem, scale, cp, rate_own,
               rate_change):
    """The rate features of user ``u`` joining group ``t`` into ``rate_own[t, u]`` and
    ``rate_change[t, u]`` (:func:`agents.models.gnn.rate_option_features`, divided by
    ``RATE_SCALE``): u's c' in t from the group sums ``G[t]``, u's signal, the contamination
    Y_uj^2 it meets from each member j and adds to j's interference. ``cp`` (M,) is scratch."""
    M = beta.shape[1]
    sig = 0.0
    for m in range(M):
        cp[m] = sqrt_eta[m] * beta[u, m] / (G[t, m] + b_shift[u, m])
        sig += cp[m] * beta[u, m]
    pc = 0.0
    change = 0.0
    for i in range(n_members[t]):
        j = members[t, i]
        y = 0.0
        for m in range(M):
            y += cp[m] * beta[j, m]
        y2 = scale * y * y
        pc += y2
        change += math.log2(1.0 + S_mem[j] / (D_mem[j] + y2)) - math.log2(1.0 + S_mem[j] / D_mem[j])
    rate_own[t, u] = math.log2(1.0 + scale * sig * sig / (pc + noise[u])) / RATE_SCALE[0]
    rate_change[t, u] = change / RATE_SCALE[1]


@njit(cache=True, fastmath=FASTMATH)
def _join_rates(user, c, beta, sqrt_eta, noise, G, members, n_members, S_mem, D_mem, tau_rho, scale, w):
    """``user`` joins group ``c``: its group sums, member list and every member's S_j and D_j
    (their signal and the pilot contamination within the group, eta held at eta0). ``w`` (M,) is
    scratch."""
    M = beta.shape[1]
    members[c, n_members[c]] = user
    n_members[c] += 1
    for m in range(M):
        G[c, m] += beta[user, m]
        w[m] = sqrt_eta[m] * tau_rho / (tau_rho * G[c, m] + 1.0)
    n = n_members[c]
    for a in range(n):
        i = members[c, a]
        diag = 0.0
        inter = 0.0
        for e in range(n):
            k = members[c, e]
            z = 0.0
            for m in range(M):
                z += beta[i, m] * w[m] * beta[k, m]
            if k == i:
                diag = z
            else:
                inter += z * z
        S_mem[i] = scale * diag * diag
        D_mem[i] = scale * inter + noise[i]


@njit(cache=True)
def _column(t, n_open, K, size, group_proj, empty_proj, w_option, column):
    """The user-independent part of group ``t``'s scorer input into ``column``: the projected
    embedding (the empty group's for the next new one, else the mean of its members') plus the
    size and newness features times their weights."""
    new = t == n_open
    if new:
        column[:] = empty_proj
    else:
        column[:] = group_proj[t] / max(size[t], 1.0)
    column += (size[t] / K) * w_option[:, 4] + (1.0 if new else 0.0) * w_option[:, 5]


@njit(cache=True)
def _decode_one(b, user_proj, member_proj, empty_proj, cosine, contam, key, gain_order, w_option, w_last, b_last,
                tau_p, order_code, tie, uniforms, temperature, beta, sqrt_eta, noise, tau_rho, scale, pilots, log_prob,
                entropy):
    K, W = user_proj.shape
    dtype = user_proj.dtype
    rates = w_option.shape[1] > 6
    M = beta.shape[1]
    rate_own = np.zeros((tau_p, K), dtype)
    rate_change = np.zeros((tau_p, K), dtype)
    G = np.zeros((tau_p, M))
    members = np.zeros((tau_p, K), np.int64)
    n_members = np.zeros(tau_p, np.int64)
    S_mem = np.zeros(K)
    D_mem = noise.copy()
    b_shift = beta + 1.0 / tau_rho
    scratch = np.empty(M)
    size = np.zeros(tau_p, dtype)
    group_proj = np.zeros((tau_p, W), dtype)
    sum_cos = np.zeros((tau_p, K), dtype)
    max_cos = np.zeros((tau_p, K), dtype)
    sum_into = np.zeros((tau_p, K), dtype)
    sum_from = np.zeros((tau_p, K), dtype)
    column = np.zeros(W, dtype)
    logits = np.empty(tau_p, np.float64)
    cached = np.full((K, tau_p), -np.inf)
    decided = np.zeros(K, np.bool_)
    n_open = 0
    lp = 0.0
    ent = 0.0
    if order_code != 0:
        _column(0, 0, K, size, group_proj, empty_proj, w_option, column)
        for u in range(K):
            if rates:
                _rate_pair(u, 0, beta, b_shift, sqrt_eta, noise, G, members, n_members, S_mem, D_mem, scale, scratch,
                           rate_own, rate_change)
            cached[u, 0] = _option_logit(u, 0, column, user_proj, sum_cos, max_cos, sum_into, sum_from, rate_own,
                                         rate_change, w_option, w_last, b_last)
    for step in range(K):
        if order_code == 0:
            user = gain_order[step]
            for t in range(tau_p):
                if t <= n_open:
                    _column(t, n_open, K, size, group_proj, empty_proj, w_option, column)
                    if rates:
                        _rate_pair(user, t, beta, b_shift, sqrt_eta, noise, G, members, n_members, S_mem, D_mem, scale,
                                   scratch, rate_own, rate_change)
                    logits[t] = _option_logit(user, t, column, user_proj, sum_cos, max_cos, sum_into, sum_from,
                                              rate_own, rate_change, w_option, w_last, b_last)
                else:
                    logits[t] = -np.inf
        else:  # the undecided user the policy is surest of; near-ties go to the larger key
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
                if not decided[u] and conf[u] >= best - tie and (user < 0 or key[u] > key[user]):
                    user = u
            for t in range(tau_p):
                logits[t] = cached[user, t]
        n_valid = min(n_open + 1, tau_p)
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
        if uniforms.shape[1]:  # inverse CDF of softmax(logits / temperature), as sample_categorical
            mass = 0.0
            for t in range(n_valid):
                mass += math.exp((logits[t] - top) / temperature)
            target = uniforms[b, step] * mass
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
        ent += h / K
        lp += logits[choice] - lse
        pilots[b, user] = choice
        decided[user] = True
        if rates:
            _join_rates(user, choice, beta, sqrt_eta, noise, G, members, n_members, S_mem, D_mem, tau_rho, scale,
                        scratch)
        size[choice] += 1.0
        group_proj[choice] += member_proj[user]
        for j in range(K):
            c = cosine[user, j]
            sum_cos[choice, j] += c
            max_cos[choice, j] = max(max_cos[choice, j], c)
            sum_into[choice, j] += contam[j, user]
            sum_from[choice, j] += contam[user, j]
        opened = choice == n_open
        n_open = max(n_open, choice + 1)
        if order_code != 0 and step < K - 1:
            columns = (choice, n_open) if opened and n_open < tau_p else (choice, -1)
            for t in columns:
                if t < 0:
                    continue
                _column(t, n_open, K, size, group_proj, empty_proj, w_option, column)
                for u in range(K):
                    if decided[u]:  # never chosen again: its cached logits are not read
                        continue
                    if rates:
                        _rate_pair(u, t, beta, b_shift, sqrt_eta, noise, G, members, n_members, S_mem, D_mem, scale,
                                   scratch, rate_own, rate_change)
                    cached[u, t] = _option_logit(u, t, column, user_proj, sum_cos, max_cos, sum_into, sum_from,
                                                 rate_own, rate_change, w_option, w_last, b_last)
    log_prob[b] = lp
    entropy[b] = ent


@njit(cache=True, parallel=True)
def _decode_batch(user_proj, member_proj, empty_proj, cosine, contam, key, gain_order, w_option, w_last, b_last,
                  tau_p, order_code, tie, uniforms, temperature, beta, sqrt_eta, noise, tau_rho, scale, pilots,
                  log_prob, entropy):
    for b in prange(user_proj.shape[0]):
        _decode_one(b, user_proj[b], member_proj[b], empty_proj, cosine[b], contam[b], key[b], gain_order[b],
                    w_option, w_last, b_last, tau_p, order_code, tie, uniforms, temperature, beta[b], sqrt_eta[b],
                    noise[b], tau_rho, scale, pilots, log_prob, entropy)


def decode(user_proj: np.ndarray, member_proj: np.ndarray, empty_proj: np.ndarray, cosine: np.ndarray,
                  contam: np.ndarray, key: np.ndarray, gain_order: np.ndarray, w_option: np.ndarray,
                  w_last: np.ndarray, b_last: float, tau_p: int, order: str, tie: float,
                  uniforms: np.ndarray | None = None, temperature: float = 1.0,
                  rate_inputs: tuple[np.ndarray, np.ndarray, np.ndarray, float, float] | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy or sampled decode of a batch from the encoder's outputs (one dtype throughout, float32 or 64):
    ``user_proj`` ``(B, K, W)`` (user part of the scorer's first layer, bias included),
    ``member_proj`` ``(B, K, W)`` (its group part applied to each user), ``empty_proj`` ``(W,)``,
    ``cosine`` and ``contam`` ``(B, K, K)`` (entry [k, j]: contamination of j on k), the order
    ``key`` ``(B, K)`` (ties of confidence), ``gain_order`` ``(B, K)`` (the users in gain order),
    the scorer's option weights ``(W, 6)`` and last layer ``(W,)``, ``b_last``. With ``uniforms``
    ``(B, K)`` (float64 in [0, 1), one per decision) every decision draws from
    softmax(logits / ``temperature``) by inverse CDF instead of taking the argmax. A scorer with
    rate features (option weights ``(W, 8)``) needs ``rate_inputs``: linear beta ``(B, K, M)``,
    sqrt(eta0) ``(B, M)``, BU_k + 1 ``(B, K)`` (float64, :meth:`agents.models.gnn.RateConstants.setup`),
    tau_p rho_p and rho_d L^2.

    Returns pilots ``(B, K)`` int64 (labels in opening order), summed log-probability ``(B,)``
    and mean decision entropy ``(B,)`` (float64)."""
    B, K, _ = user_proj.shape
    pilots = np.zeros((B, K), np.int64)
    log_prob = np.zeros(B)
    entropy = np.zeros(B)
    uniforms = np.zeros((B, 0)) if uniforms is None else np.ascontiguousarray(uniforms, dtype=np.float64)
    if (w_option.shape[1] > 6) != (rate_inputs is not None):
        raise ValueError("rate_inputs go with a scorer of 8 option features (rate features), and only with it")
    if rate_inputs is None:
        rate_inputs = (np.zeros((B, K, 0)), np.zeros((B, 0)), np.ones((B, K)), 1.0, 1.0)
    beta, sqrt_eta, noise, tau_rho, scale = rate_inputs
    _decode_batch(user_proj, member_proj, empty_proj, cosine, contam, key, gain_order, w_option, w_last,
                  float(b_last), int(tau_p), ORDER_CODES[order], float(tie), uniforms, float(temperature),
                  *(np.ascontiguousarray(a, dtype=np.float64) for a in (beta, sqrt_eta, noise)), float(tau_rho),
                  float(scale), pilots, log_prob, entropy)
    return pilots, log_prob, entropy
