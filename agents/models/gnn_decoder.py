"""The gnn decoder in torch (docs/model.md §6.4): one loop, two ways to keep the pilot groups.

:func:`run_decoder` decides the users one at a time -- in the order key's order (``gain``) or,
under a confidence order, the undecided user the policy is surest of -- greedy, sampled or
following a teacher, and accumulates log-probabilities and entropies. What it asks of the pilot
groups (the logits of a user against every group, of every user against every group, a user
joining a group) comes from one of two implementations of :class:`Groups`, both building their
options with :func:`agents.models.gnn_features.option_features` (and
:mod:`agents.models.rate_features`):

* :class:`MemberGroups`, the reference: every feature re-reduced from the membership matrix at
  every step; differentiable, any scorer (MLP or quantum), teacher forcing. The training path.
* :class:`RunningGroups`, the incremental form for decodes without gradients and the MLP scorer:
  per-group running sums, the scorer's first layer split over [user | group | option] so that
  user and group parts are projected once, and under a confidence order a cache of every (user,
  group) logit of which a step recomputes the joined group and the next new one, O(B K width).
  Equal to the reference up to float rounding (tested); the compiled decoder
  (:mod:`agents.models._gnn_kernel`) is this one in numba.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch
from torch import nn

from agents.models.gnn_features import CONFIDENCE_TIE, option_features
from agents.models.rate_features import IncrementalRates, RateInputs, rate_option_features
from cfenv.models.paper import PaperRateConstants

MODES = ("greedy", "sample", "teacher")
"""decode modes: argmax, a draw from softmax(logits / temperature), or following given labels"""


def user_confidence(logits: torch.Tensor, order: str) -> torch.Tensor:
    """How sure the policy is of each user's decision: ``logits`` ``(B, K, T)`` (invalid options
    at -inf; log-probabilities will do) -> ``(B, K)``, the largest probability (``confidence``) or
    the gap between the two largest (``margin``; 1 for a user with one valid option)."""
    lse = torch.logsumexp(logits, dim=-1, keepdim=True)
    if order == "confidence" or logits.shape[-1] == 1:
        return (logits.amax(-1, keepdim=True) - lse).exp().squeeze(-1)
    top = (torch.topk(logits, k=2, dim=-1).values - lse).exp()
    return top[..., 0] - top[..., 1]


def pick_confident_user(confidence: torch.Tensor, decided: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """``(B,)`` the undecided user (``decided`` ``(B, K)`` bool) of largest ``confidence``
    ``(B, K)``; among those within :data:`CONFIDENCE_TIE` of it, the one of largest ``key``
    (a function of the user's own features, so the choice does not depend on user indices)."""
    confidence = confidence.masked_fill(decided, float("-inf"))
    near = confidence >= confidence.amax(-1, keepdim=True) - CONFIDENCE_TIE
    return key.masked_fill(~near | decided, float("-inf")).argmax(-1)


def sample_categorical(probs: torch.Tensor, last_valid: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row of ``probs`` ``(B, T)`` by inverse CDF, options beyond ``last_valid``
    ``(B,)`` excluded (their probability is 0; the clamp guards rounding in the cumulative sum).

    The uniforms come from ``generator`` on *its own* device and move to ``probs``' device, so a
    CPU generator drives a CUDA model (``torch.multinomial`` refuses that: issue #17) and the
    same seed draws the same uniforms on every device."""
    device = generator.device if generator is not None else probs.device
    u = torch.rand(probs.shape[0], 1, generator=generator, device=device, dtype=torch.float64)
    cdf = torch.cumsum(probs.to(torch.float64), dim=-1)
    choice = (cdf < u.to(probs.device) * cdf[:, -1:]).sum(-1)
    return torch.minimum(choice, last_valid)


def decide(logits: torch.Tensor, valid: torch.Tensor, n_open: torch.Tensor, tau_p: int, mode: str,
           generator: torch.Generator | None, temperature: float
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One decision of a decoder: log-probabilities ``(B, tau_p)`` of the masked ``logits``, their
    entropy over the ``valid`` options ``(B,)``, and the option taken -- the argmax (``"greedy"``),
    a draw from softmax(logits / temperature) (``"sample"``), else None (the caller chooses)."""
    logp = torch.log_softmax(logits, dim=-1)
    probs = logp.exp()
    entropy = -(probs * logp.masked_fill(~valid, 0.0)).sum(-1)
    if mode == "greedy":
        return logp, entropy, logits.argmax(-1)
    if mode == "sample":
        draw = probs if temperature == 1.0 else torch.softmax(logits / temperature, dim=-1)
        return logp, entropy, sample_categorical(draw, n_open.clamp(max=tau_p - 1), generator)
    return logp, entropy, None


class Groups(Protocol):
    """The pilot groups of a decode in progress, as :func:`run_decoder` asks for them."""

    def user_logits(self, user: torch.Tensor, n_open: torch.Tensor) -> torch.Tensor:
        """``(B, tau_p)`` logits of ``user`` ``(B,)`` joining each group (invalid ones at -inf)."""

    def every_user_logits(self, n_open: torch.Tensor) -> torch.Tensor:
        """``(B, K, tau_p)`` logits of every user against every group (invalid ones at -inf)."""

    def join(self, user: torch.Tensor, choice: torch.Tensor, n_open: torch.Tensor, last: bool) -> None:
        """``user`` joins group ``choice``; ``n_open`` counts the groups open after it, ``last`` on the last step."""


def run_decoder(groups: Groups, key: torch.Tensor, tau_p: int, order: str, mode: str,
                actions: torch.Tensor | None = None, generator: torch.Generator | None = None,
                temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decide every user: in descending ``key`` ``(B, K)`` (``order="gain"``) or, under
    ``confidence`` / ``margin``, the undecided user of surest decision (ties to the larger key;
    no gradient through the choice), ``mode`` as :data:`MODES` (teacher: the label ``actions``
    ``(B, K)`` gives the chosen user, mapped to the groups opened so far, whatever its labelling).

    Returns pilots ``(B, K)`` int64 (labels in opening order along the decoding order), summed
    log-probability of the decisions ``(B,)`` and mean decision entropy ``(B,)``."""
    if mode not in MODES:
        raise ValueError(f"mode must be greedy, sample or teacher, got {mode!r}")
    if mode == "teacher" and actions is None:
        raise ValueError("teacher mode needs actions")
    B, K = key.shape
    dev = key.device
    batch = torch.arange(B, device=dev)
    gain_order = torch.argsort(key, dim=1, descending=True, stable=True)
    all_groups = torch.arange(tau_p, device=dev)
    decided = torch.zeros(B, K, dtype=torch.bool, device=dev)
    n_open = torch.zeros(B, dtype=torch.long, device=dev)
    pilots = torch.zeros(B, K, dtype=torch.long, device=dev)
    log_prob = torch.zeros(B, device=dev)
    entropy = torch.zeros(B, device=dev)
    teacher_map = torch.full((B, int(actions.max()) + 1 if actions is not None else 1), -1, dtype=torch.long,
                             device=dev)
    for step in range(K):
        if order == "gain":
            user = gain_order[:, step]
        else:
            with torch.no_grad():
                confidence = user_confidence(groups.every_user_logits(n_open), order)
            user = pick_confident_user(confidence, decided, key)
        logits = groups.user_logits(user, n_open)
        valid = all_groups[None, :] <= n_open[:, None]
        logp, step_entropy, choice = decide(logits, valid, n_open, tau_p, mode, generator, temperature)
        entropy = entropy + step_entropy / K
        if mode == "teacher":
            label = actions[batch, user]
            mapped = teacher_map[batch, label]
            choice = torch.where(mapped >= 0, mapped, n_open.clamp(max=tau_p - 1))
            teacher_map[batch, label] = choice
        log_prob = log_prob + logp[batch, choice]
        pilots[batch, user] = choice
        decided[batch, user] = True
        n_open = torch.maximum(n_open, choice + 1)
        groups.join(user, choice, n_open, step == K - 1)
    return pilots, log_prob, entropy


class Encoded(NamedTuple):
    """The encoder's outputs a decoder reads."""

    h: torch.Tensor
    """``(B, K, d)`` user embeddings"""
    cosine: torch.Tensor
    """``(B, K, K)`` cosines of the fading columns"""
    log_ratio: torch.Tensor
    """``(B, K, K)`` [k, j]: log10 of j's contamination on k (clipped)"""
    total: torch.Tensor
    """``(B, K)`` normalised total gain"""


class MemberGroups:
    """The reference :class:`Groups`: a membership matrix ``(B, tau_p, K)``, every option's features
    re-reduced from the members (and the rate features recomputed, :func:`rate_option_features`) at
    every step; differentiable, with any ``scorer`` of ``(..., 2 d + F)`` inputs."""

    def __init__(self, scorer: nn.Module, empty_group: torch.Tensor, encoded: Encoded, tau_p: int,
                 rates: RateInputs | None = None, consts: PaperRateConstants | None = None) -> None:
        self.scorer, self.empty_group, self.encoded, self.tau_p = scorer, empty_group, encoded, tau_p
        self.rates_in, self.consts = rates, consts
        B, K, _ = encoded.h.shape
        self.batch = torch.arange(B, device=encoded.h.device)
        self.member = torch.zeros(B, tau_p, K, device=encoded.h.device)  # member[b, t, j] = 1 if user j holds group t
        self._rates: torch.Tensor | None = None

    def rates(self) -> torch.Tensor | None:
        """Rate features ``(B, K, tau_p, 2)`` of the current partial assignment (None without them)."""
        if self.rates_in is not None and self._rates is None:
            self._rates = rate_option_features(*self.rates_in, self.member.detach(), self.consts)
        return self._rates

    def _groups(self, n_open: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sizes ``(B, tau_p)``, which group is the next new one, and the group embeddings ``(B, tau_p, d)``."""
        h = self.encoded.h
        B, _, d = h.shape
        size = self.member.sum(-1)  # (B, tau_p)
        mean_member = (self.member @ h) / size.clamp(min=1)[..., None]
        is_new = torch.arange(self.tau_p, device=h.device)[None, :] == n_open[:, None]
        return size, is_new, torch.where(is_new[..., None], self.empty_group.expand(B, self.tau_p, d), mean_member)

    def _score(self, users: torch.Tensor, group_emb: torch.Tensor, option: torch.Tensor,
               n_open: torch.Tensor) -> torch.Tensor:
        """The scorer on [user | group | option] inputs, invalid groups (last dimension) at -inf."""
        logits = self.scorer(torch.cat([users, group_emb, option], dim=-1)).squeeze(-1)
        valid = torch.arange(self.tau_p, device=logits.device) <= n_open[:, None]
        return logits.masked_fill(~(valid if logits.dim() == 2 else valid[:, None, :]), float("-inf"))

    def user_logits(self, user: torch.Tensor, n_open: torch.Tensor) -> torch.Tensor:
        h, cosine, log_ratio, _ = self.encoded
        B, K, d = h.shape
        batch, weight = self.batch, self.member  # weight: (B, tau, K)
        size, is_new, group_emb = self._groups(n_open)
        cos_u = cosine[batch, user]  # (B, K): cos(u, j)
        into_u = log_ratio[batch, user]  # (B, K): log contamination of j on u
        from_u = log_ratio[batch, :, user]  # (B, K): log contamination of u on j
        option = option_features(
            (weight * cos_u[:, None]).sum(-1),
            (weight * cos_u[:, None] - (1 - weight)).amax(-1).clamp(min=0),
            (weight * torch.pow(10.0, into_u)[:, None]).sum(-1),
            (weight * torch.pow(10.0, from_u)[:, None]).sum(-1),
            size, is_new, K)
        rates = self.rates()
        if rates is not None:
            option = torch.cat([option, rates[batch, user]], dim=-1)
        return self._score(h[batch, user][:, None].expand(B, self.tau_p, d), group_emb, option, n_open)

    def every_user_logits(self, n_open: torch.Tensor) -> torch.Tensor:
        h, cosine, log_ratio, _ = self.encoded
        B, K, d = h.shape
        member, tau_p = self.member, self.tau_p
        size, is_new, group_emb = self._groups(n_open)
        contam = torch.pow(10.0, log_ratio)  # [k, j]: contamination of j on k
        outside = (1 - member)[:, :, None, :]  # (B, tau, 1, K)
        option = option_features(
            member @ cosine,  # [t, u]: sum over members j of cos(j, u)
            (member[:, :, None, :] * cosine[:, None] - outside).amax(-1).clamp(min=0),
            member @ contam.transpose(-1, -2),  # the members' contamination on u
            member @ contam,  # u's contamination on the members
            size[..., None], is_new[..., None], K).transpose(1, 2)  # (B, K, tau, 6)
        rates = self.rates()
        if rates is not None:
            option = torch.cat([option, rates], dim=-1)
        return self._score(h[:, :, None].expand(B, K, tau_p, d), group_emb[:, None].expand(B, K, tau_p, d), option,
                           n_open)

    def join(self, user: torch.Tensor, choice: torch.Tensor, n_open: torch.Tensor, last: bool) -> None:
        joined = torch.zeros_like(self.member)
        joined[self.batch, choice, user] = 1.0
        self.member = self.member + joined  # out of place: earlier steps' graphs still read the old tensor
        self._rates = None


class ScorerParts(NamedTuple):
    """An MLP scorer ``Linear(2 d + F, W) -> act -> Linear(W, 1)`` split for the incremental decoders:
    its first layer applied to each user's embedding as the user and as a group member, to the
    empty group, and the option features' weights."""

    user_proj: torch.Tensor
    """``(B, K, W)`` the user part, bias included"""
    member_proj: torch.Tensor
    """``(B, K, W)`` the group part (a group's input is its members' mean)"""
    empty_proj: torch.Tensor
    """``(W,)`` the group part of the empty group"""
    w_option: torch.Tensor
    """``(W, F)``"""
    act: nn.Module
    last: nn.Linear


def split_scorer(scorer: nn.Sequential, empty_group: torch.Tensor, h: torch.Tensor) -> ScorerParts:
    """:class:`ScorerParts` of the MLP ``scorer`` for the embeddings ``h`` ``(B, K, d)``."""
    first, act, last = scorer[0], scorer[1], scorer[2]
    d = h.shape[-1]
    w_user, w_group, w_option = first.weight[:, :d], first.weight[:, d:2 * d], first.weight[:, 2 * d:]
    return ScorerParts(h @ w_user.T + first.bias, h @ w_group.T, empty_group @ w_group.T, w_option, act, last)


class RunningGroups:
    """The incremental :class:`Groups` (no gradients, MLP scorer): a user joining group t adds its
    row of each pairwise quantity to t's running sums (cosines, contamination both ways, the
    largest cosine, the projected embedding), so a decision costs O(B (K + tau_p width)) instead of
    O(B tau_p (K + width^2)). Under a confidence order (``cached``) the logits of every (user, group)
    pair are cached and a step recomputes two columns; with rate features (``rates``) an
    :class:`~agents.models.rate_features.IncrementalRates` keeps them."""

    def __init__(self, parts: ScorerParts, encoded: Encoded, tau_p: int, cached: bool,
                 rates: RateInputs | None = None, consts: PaperRateConstants | None = None) -> None:
        h, cosine, log_ratio, _ = encoded
        B, K, _ = h.shape
        dev = h.device
        self.parts, self.cosine, self.tau_p, self.K = parts, cosine, tau_p, K
        self.contam = torch.pow(10.0, log_ratio)  # [k, j]: contamination of j on k (as the reference's, clipped)
        self.batch = torch.arange(B, device=dev)
        self.size = torch.zeros(B, tau_p, device=dev)
        self.group_proj = torch.zeros(B, tau_p, parts.member_proj.shape[-1], device=dev)
        self.sum_cos = torch.zeros(B, tau_p, K, device=dev)  # [b, t, u]: sum over t's members j of cos(u, j)
        self.max_cos = torch.zeros(B, tau_p, K, device=dev)  # largest such cosine (0 for an empty group)
        self.sum_into = torch.zeros(B, tau_p, K, device=dev)  # contamination of the members on u
        self.sum_from = torch.zeros(B, tau_p, K, device=dev)  # contamination of u on the members
        self.n_open = torch.zeros(B, dtype=torch.long, device=dev)
        self.rates = None if rates is None else IncrementalRates(rates, consts, tau_p)
        self.cache = None
        if cached:  # -inf until the group becomes valid (opened, or the next new one), then refreshed as it changes
            self.cache = torch.full((B, K, tau_p), float("-inf"), device=dev)
            self._refresh(self.n_open)

    def _scores(self, users: torch.Tensor, group: torch.Tensor, option: torch.Tensor) -> torch.Tensor:
        """The MLP on the split inputs: projected users + projected groups + option features."""
        return self.parts.last(self.parts.act(users + group + option @ self.parts.w_option.T)).squeeze(-1)

    def _refresh(self, column: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        """Recompute the cached logits of group ``column[rows]`` of snapshots ``rows`` (default all)."""
        rows = self.batch if rows is None else rows
        col = column[rows]
        n = self.size[rows, col]
        new = col == self.n_open[rows]
        R = len(rows)
        g = torch.where(new[:, None], self.parts.empty_proj.expand(R, -1),
                        self.group_proj[rows, col] / n.clamp(min=1)[:, None])
        opt = option_features(self.sum_cos[rows, col], self.max_cos[rows, col], self.sum_into[rows, col],
                              self.sum_from[rows, col], n[:, None], new[:, None], self.K)  # (R, K, 6)
        if self.rates is not None:
            opt = torch.cat([opt, self.rates.column(col, rows)], dim=-1)
        users = self.parts.user_proj if R == len(self.batch) else self.parts.user_proj[rows]
        self.cache[rows, :, col] = self._scores(users, g[:, None], opt)

    def user_logits(self, user: torch.Tensor, n_open: torch.Tensor) -> torch.Tensor:
        batch, B = self.batch, len(self.batch)
        if self.cache is not None:
            return self.cache[batch, user]
        groups = torch.arange(self.tau_p, device=user.device)
        is_new = groups[None, :] == n_open[:, None]
        mean_proj = self.group_proj / self.size.clamp(min=1)[..., None]
        g = torch.where(is_new[..., None], self.parts.empty_proj.expand(B, self.tau_p, -1), mean_proj)
        option = option_features(self.sum_cos[batch, :, user], self.max_cos[batch, :, user],
                                 self.sum_into[batch, :, user], self.sum_from[batch, :, user], self.size, is_new,
                                 self.K)
        if self.rates is not None:
            option = torch.cat([option, self.rates.user(user)], dim=-1)
        logits = self._scores(self.parts.user_proj[batch, user][:, None], g, option)
        return logits.masked_fill(~(groups[None, :] <= n_open[:, None]), float("-inf"))

    def every_user_logits(self, n_open: torch.Tensor) -> torch.Tensor:
        if self.cache is None:
            raise RuntimeError("every_user_logits needs the cache of a confidence order")
        return self.cache

    def join(self, user: torch.Tensor, choice: torch.Tensor, n_open: torch.Tensor, last: bool) -> None:
        batch = self.batch
        if self.rates is not None:
            self.rates.join(user, choice)
        self.size[batch, choice] += 1.0
        self.group_proj[batch, choice] += self.parts.member_proj[batch, user]
        self.sum_cos[batch, choice] += self.cosine[batch, user]
        self.max_cos[batch, choice] = torch.maximum(self.max_cos[batch, choice], self.cosine[batch, user])
        self.sum_into[batch, choice] += self.contam[batch, :, user]
        self.sum_from[batch, choice] += self.contam[batch, user]
        self.n_open = n_open
        if self.cache is not None and not last:
            self._refresh(choice)
            opened = ((choice + 1 == n_open) & (n_open < self.tau_p)).nonzero().squeeze(1)
            if len(opened):  # the next new group became valid where one was opened
                self._refresh(n_open, opened)
