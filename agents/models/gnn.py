"""Symmetry-aware autoregressive pilot assignment: a graph policy over users.

Why: the sum rate is invariant to relabelling pilots and equivariant to
reordering users, so a network that emits per-user pilot *labels* from a fixed
input layout must learn a one-to-many map and tends to collapse to one constant
assignment (see the collapse diagnostics). This policy has both symmetries by
construction:

* **Users are a set.** Each user is a token with label-free, size-free features
  (its total, strongest and second-strongest gain in dB); attention between
  users is driven by how strongly they would contaminate each other (cosine of
  their fading columns and the log contamination ratio
  ``sum_m beta[m,j] beta[m,k] / sum_m beta[m,k]^2``). Nothing depends on M, K or
  tau_p, so one trained model runs at any size.
* **Pilots are represented by their holders, not their labels.** Users are
  decoded one at a time in a canonical order (descending total gain); each
  decision chooses among the pilot groups opened so far, each represented by
  its current members (mean embedding, summed and largest affinity to the
  user, contamination in both directions, size), and "open a new pilot" while
  fewer than tau_p are open. The output is a restricted-growth string in the
  decoding order, i.e. a pilot partition; pilot indices follow opening order.

Training (see :mod:`agents.learning.trainer`): REINFORCE on the exact sum rate with a
greedy-rollout baseline (``loss="reinforce"``, Kool et al. 2019), optionally
warm-started by imitation of teacher assignments (``loss="supervised"``:
teacher-forced log-likelihood of the canonicalised labels).

The per-decision scorer is an MLP (``gnn``) or the HQCNN circuit
(``hqcnn-ar``: FC -> QCNN -> FC), so the quantum layer can be judged inside a
design that can learn.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from agents.models.base import AssignmentModel
from agents.models.hybrid import HybridFrontEnd
from cfenv.units import normalise_db

LOG_RATIO_CLIP = (-6.0, 2.0)
"""clip of log10 contamination ratios"""
NODE_FEATURES = 3
EDGE_FEATURES = 2
OPTION_FEATURES = 6
DECODE_ORDERS = ("gain", "confidence", "margin")
"""user orders of the decoder: ``gain`` (descending total gain, fixed before decoding: the order
of every model trained before 0.5), ``confidence`` (at each step the undecided user whose most
likely option has the largest probability) or ``margin`` (the largest gap between its two most
likely options)"""
CONFIDENCE_TIE = 1e-6
"""confidences within this of the step's largest count as tied; ties go to the larger order key
(total gain), never to the lower index, so both symmetries hold"""


def user_graph(beta_db: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Node features ``(B, K, 3)``, edge features ``(B, K, K, 2)`` and the log contamination
    ratio ``(B, K, K)`` (entry [k, j]: log10 of how much j would contaminate k) of a batch."""
    beta = torch.pow(10.0, beta_db.to(torch.float64) / 10.0)  # (B, M, K)
    total_db = 10.0 * torch.log10(beta.sum(-2))
    top = torch.topk(beta_db.to(torch.float64), k=min(2, beta_db.shape[-2]), dim=-2).values  # (B, 2|1, K)
    second = top[:, -1]
    nodes = torch.stack([total_db, top[:, 0], second], dim=-1)
    nodes = normalise_db(nodes).float()
    cross = beta.transpose(-1, -2) @ beta  # (B, K, K): sum_m beta[m,k] beta[m,j]
    own = torch.diagonal(cross, dim1=-2, dim2=-1)  # (B, K)
    norm = own.sqrt()
    cosine = cross / (norm[:, :, None] * norm[:, None, :])
    log_ratio = torch.log10(cross / own[:, :, None]).clamp(*LOG_RATIO_CLIP)  # [k, j]: j's power at k's APs
    edges = torch.stack([cosine, log_ratio / 4.0], dim=-1).float()
    return nodes, edges, log_ratio.float()


def user_confidence(logp: torch.Tensor, order: str) -> torch.Tensor:
    """How sure the policy is of each user's decision: ``logp`` ``(B, K, T)`` log-probabilities
    (invalid options at -inf) -> ``(B, K)``, the largest probability (``confidence``) or the gap
    between the two largest (``margin``; 1 for a user with one valid option)."""
    probs = logp.exp()
    if order == "confidence" or probs.shape[-1] == 1:
        return probs.amax(-1)
    top = torch.topk(probs, k=2, dim=-1).values
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


class EncoderLayer(nn.Module):
    """Residual attention over users, with attention logits from the edge features."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.edge = nn.Sequential(nn.Linear(EDGE_FEATURES, width), nn.ReLU(), nn.Linear(width, 1))
        self.value = nn.Linear(width, width)
        self.update = nn.Sequential(nn.Linear(2 * width, width), nn.ReLU(), nn.Linear(width, width))
        self.norm = nn.LayerNorm(width)

    def forward(self, h: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        K = h.shape[1]
        logits = self.edge(edges).squeeze(-1)  # (B, K, K)
        if K > 1:
            logits = logits.masked_fill(torch.eye(K, dtype=torch.bool, device=h.device), float("-inf"))
            message = torch.softmax(logits, dim=-1) @ self.value(h)
        else:
            message = torch.zeros_like(h)
        return self.norm(h + self.update(torch.cat([h, message], dim=-1)))


class QuantumScorer(nn.Module):
    """FC -> QCNN -> FC scorer for one decision option (the HQCNN as a per-decision scorer)."""

    def __init__(self, in_features: int, n_qubits: int = 8, share: str = "level", readout: str = "all",
                 backend: str | None = None) -> None:
        super().__init__()
        self.front = HybridFrontEnd(in_features, n_qubits, share, readout, backend)
        self.post = nn.Linear(self.front.out_features, 1)
        self.register_load_state_dict_pre_hook(HybridFrontEnd.upgrade_state_dict)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[:-1]
        return self.post(self.front(x.reshape(-1, x.shape[-1]))).reshape(*shape, 1)


class GNNPolicy(AssignmentModel):
    """Permutation-equivariant, pilot-relabelling-invariant autoregressive policy.

    Args:
        width: embedding width.
        layers: encoder layers.
        scorer: ``"mlp"`` or ``"quantum"`` (then ``quantum`` holds the QCNN options).
        order: the user order of the decoder (:data:`DECODE_ORDERS`; ``"gain"``: descending total
            gain, the order of the models trained before this option existed).
    """

    size_generalisable = True

    def __init__(self, width: int = 64, layers: int = 2, scorer: str = "mlp",
                 quantum: dict[str, Any] | None = None, order: str = "gain") -> None:
        super().__init__()
        if scorer not in ("mlp", "quantum"):
            raise ValueError(f"scorer must be 'mlp' or 'quantum', got {scorer!r}")
        if order not in DECODE_ORDERS:
            raise ValueError(f"order must be one of {', '.join(DECODE_ORDERS)}, got {order!r}")
        self.width, self.layers, self.scorer_kind, self.order = width, layers, scorer, order
        self.quantum_options = dict(quantum or {})
        self.embed = nn.Linear(NODE_FEATURES, width)
        self.encoder = nn.ModuleList(EncoderLayer(width) for _ in range(layers))
        self.empty_group = nn.Parameter(torch.zeros(width))
        in_features = 2 * width + OPTION_FEATURES
        if scorer == "mlp":
            self.scorer: nn.Module = nn.Sequential(nn.Linear(in_features, width), nn.ReLU(), nn.Linear(width, 1))
        else:
            self.scorer = QuantumScorer(in_features, **self.quantum_options)

    def encode(self, beta_db: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        nodes, edges, log_ratio = user_graph(beta_db)
        h = self.embed(nodes)
        for layer in self.encoder:
            h = layer(h, edges)
        cosine = edges[..., 0]
        return h, cosine, log_ratio, nodes[..., 0]

    def decode(self, beta_db: torch.Tensor, tau_p: int, mode: str = "greedy",
               actions: torch.Tensor | None = None, generator: torch.Generator | None = None,
               temperature: float = 1.0, order_mix: float = 1.0, order: str | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Assign every user of a ``(B, M, K)`` dB batch.

        Args:
            mode: ``"greedy"`` (argmax), ``"sample"`` or ``"teacher"`` (follow ``actions``).
            actions: ``(B, K)`` pilots to follow in teacher mode (any labelling).
            temperature: sample mode draws from softmax(logits / temperature) (the returned
                log-probabilities and entropy stay those of the policy itself).
            order_mix: users are decoded in descending ``order_mix * total gain + (1 - order_mix)
                * strongest gain`` (dB; 1: the trained order). Other mixes give other decodes of
                the same model that keep both symmetries (test-time augmentation). Under a
                confidence order this key only breaks ties.
            order: the user order (:data:`DECODE_ORDERS`; ``None``: the model's own). Under
                ``confidence`` / ``margin`` every step scores every undecided user against the
                open groups and decides the one the policy is surest of; teacher mode then
                follows the teacher's label for that user.

        Returns:
            pilots ``(B, K)`` int64 (labels in opening order along the decoding order),
            summed log-probability of the decisions ``(B,)`` and mean decision entropy ``(B,)``.
        """
        if tau_p < 1:
            raise ValueError(f"tau_p must be >= 1, got {tau_p}")
        order_kind = self.order if order is None else order
        if order_kind not in DECODE_ORDERS:
            raise ValueError(f"order must be one of {', '.join(DECODE_ORDERS)}, got {order_kind!r}")
        if mode in ("greedy", "sample") and not torch.is_grad_enabled() and self.scorer_kind == "mlp":
            return self._decode_incremental(beta_db, tau_p, mode, generator, temperature, order_mix,
                                            order=order_kind)[:3]
        h, cosine, log_ratio, total = self.encode(beta_db)
        total = self._order_key(beta_db, total, order_mix)
        B, K, d = h.shape
        batch = torch.arange(B, device=h.device)
        order = torch.argsort(total, dim=1, descending=True, stable=True)
        decided = torch.zeros(B, K, dtype=torch.bool, device=h.device)
        member = torch.zeros(B, tau_p, K, device=h.device)  # member[b, t, j] = 1 if user j holds group t
        n_open = torch.zeros(B, dtype=torch.long, device=h.device)
        pilots = torch.zeros(B, K, dtype=torch.long, device=h.device)
        log_prob = torch.zeros(B, device=h.device)
        entropy = torch.zeros(B, device=h.device)
        teacher_map = torch.full((B, int(actions.max()) + 1 if actions is not None else 1), -1,
                                 dtype=torch.long, device=h.device)
        groups = torch.arange(tau_p, device=h.device)
        for step in range(K):
            if order_kind == "gain":
                user = order[:, step]
            else:  # every undecided user scored against the open groups; no gradient through the choice
                with torch.no_grad():
                    every = self._every_user_logits(h, cosine, log_ratio, member, n_open, tau_p)
                    conf = user_confidence(torch.log_softmax(every, dim=-1), order_kind)
                user = pick_confident_user(conf, decided, total)
            decided[batch, user] = True
            h_u = h[batch, user]  # (B, d)
            size = member.sum(-1)  # (B, tau_p)
            mean_member = (member @ h) / size.clamp(min=1)[..., None]
            is_new = (groups[None, :] == n_open[:, None])
            group_emb = torch.where(is_new[..., None], self.empty_group.expand(B, tau_p, d), mean_member)
            cos_u = cosine[batch, user]  # (B, K): cos(u, j)
            into_u = log_ratio[batch, user]  # (B, K): log contamination of j on u
            from_u = log_ratio[batch, :, user]  # (B, K): log contamination of u on j
            weight = member  # (B, tau, K)
            option = torch.stack([
                (weight * cos_u[:, None]).sum(-1),
                (weight * cos_u[:, None] - (1 - weight)).amax(-1).clamp(min=0),
                torch.log10((weight * torch.pow(10.0, into_u)[:, None]).sum(-1) + 1e-6) / 4.0,
                torch.log10((weight * torch.pow(10.0, from_u)[:, None]).sum(-1) + 1e-6) / 4.0,
                size / K,
                is_new.float(),
            ], dim=-1)
            features = torch.cat([h_u[:, None].expand(B, tau_p, d), group_emb, option], dim=-1)
            logits = self.scorer(features).squeeze(-1)
            valid = groups[None, :] <= n_open[:, None]
            logits = logits.masked_fill(~valid, float("-inf"))
            logp = torch.log_softmax(logits, dim=-1)
            probs = logp.exp()
            entropy = entropy + -(probs * logp.masked_fill(~valid, 0.0)).sum(-1) / K
            if mode == "greedy":
                choice = logits.argmax(-1)
            elif mode == "sample":
                draw = probs if temperature == 1.0 else torch.softmax(logits / temperature, dim=-1)
                choice = sample_categorical(draw, n_open.clamp(max=tau_p - 1), generator)
            elif mode == "teacher":
                if actions is None:
                    raise ValueError("teacher mode needs actions")
                label = actions[batch, user]
                mapped = teacher_map[batch, label]
                choice = torch.where(mapped >= 0, mapped, n_open.clamp(max=tau_p - 1))
                teacher_map[batch, label] = choice
            else:
                raise ValueError(f"mode must be greedy, sample or teacher, got {mode!r}")
            log_prob = log_prob + logp[batch, choice]
            pilots[batch, user] = choice
            joined = torch.zeros_like(member)
            joined[batch, choice, user] = 1.0
            member = member + joined  # out of place: earlier steps' graphs still read the old tensor
            n_open = torch.maximum(n_open, choice + 1)
        return pilots, log_prob, entropy

    def _every_user_logits(self, h: torch.Tensor, cosine: torch.Tensor, log_ratio: torch.Tensor,
                           member: torch.Tensor, n_open: torch.Tensor, tau_p: int) -> torch.Tensor:
        """Logits ``(B, K, tau_p)`` of every user against every group of the partial assignment
        ``member`` ``(B, tau_p, K)`` (invalid groups at -inf), recomputed from the members: the
        reference that the confidence orders of :meth:`_decode_incremental` are tested against."""
        B, K, d = h.shape
        groups = torch.arange(tau_p, device=h.device)
        size = member.sum(-1)  # (B, tau_p)
        mean_member = (member @ h) / size.clamp(min=1)[..., None]
        is_new = groups[None, :] == n_open[:, None]
        group_emb = torch.where(is_new[..., None], self.empty_group.expand(B, tau_p, d), mean_member)
        contam = torch.pow(10.0, log_ratio)  # [k, j]: contamination of j on k
        outside = (1 - member)[:, :, None, :]  # (B, tau, 1, K)
        option = torch.stack([
            member @ cosine,  # [t, u]: sum over members j of cos(j, u)
            (member[:, :, None, :] * cosine[:, None] - outside).amax(-1).clamp(min=0),
            torch.log10(member @ contam.transpose(-1, -2) + 1e-6) / 4.0,  # the members' contamination on u
            torch.log10(member @ contam + 1e-6) / 4.0,  # u's contamination on the members
            (size / K)[..., None].expand(B, tau_p, K),
            is_new.float()[..., None].expand(B, tau_p, K),
        ], dim=-1).transpose(1, 2)  # (B, K, tau, 6)
        features = torch.cat([h[:, :, None].expand(B, K, tau_p, d), group_emb[:, None].expand(B, K, tau_p, d),
                              option], dim=-1)
        logits = self.scorer(features).squeeze(-1)
        valid = groups[None, :] <= n_open[:, None]
        return logits.masked_fill(~valid[:, None, :], float("-inf"))

    @staticmethod
    def _order_key(beta_db: torch.Tensor, total: torch.Tensor, order_mix: float) -> torch.Tensor:
        """The decoding-order key: the normalised total gain, mixed with the strongest gain."""
        if order_mix == 1.0:
            return total
        strongest = normalise_db(beta_db.amax(-2))
        return order_mix * total + (1.0 - order_mix) * strongest.to(total.dtype)

    def _decode_incremental(self, beta_db: torch.Tensor, tau_p: int, mode: str,
                            generator: torch.Generator | None, temperature: float, order_mix: float = 1.0,
                            encoded: tuple[torch.Tensor, ...] | None = None, order: str = "gain"
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        """:meth:`decode` without gradients, for the MLP scorer: the same function, computed with
        per-group running sums instead of re-reducing every member at every step.

        A user joining group t adds its row of each pairwise quantity to that group's sums
        (cosines, contamination both ways, the largest cosine, the projected embedding), so a
        decision costs O(B (K + tau_p width)) instead of O(B tau_p (K + width^2)); the scorer's
        first layer is split over [user | group | option] so that the user and group parts are
        projected once per user rather than once per (user, option). Results equal
        :meth:`decode`'s up to float rounding (tested).

        Under a confidence ``order`` the logits of every (user, group) pair are cached: a step
        changes only the joined group and the next new one, so it recomputes those two columns,
        O(B K width), then picks the surest undecided user from the cache."""
        order_kind = order
        encoded = self.encode(beta_db) if encoded is None else encoded
        h, cosine, log_ratio, total = encoded
        total = self._order_key(beta_db, total, order_mix)
        B, K, d = h.shape
        dev = h.device
        first, act, last = self.scorer[0], self.scorer[1], self.scorer[2]
        w_user, w_group, w_option = first.weight[:, :d], first.weight[:, d:2 * d], first.weight[:, 2 * d:]
        user_proj = h @ w_user.T + first.bias  # (B, K, width)
        member_proj = h @ w_group.T  # (B, K, width)
        empty_proj = self.empty_group @ w_group.T  # (width,)
        contam = torch.pow(10.0, log_ratio)  # [k, j]: contamination of j on k (as decode's, clipped)
        batch = torch.arange(B, device=dev)
        order = torch.argsort(total, dim=1, descending=True, stable=True)
        groups = torch.arange(tau_p, device=dev)
        size = torch.zeros(B, tau_p, device=dev)
        group_proj = torch.zeros(B, tau_p, member_proj.shape[-1], device=dev)
        sum_cos = torch.zeros(B, tau_p, K, device=dev)  # [b, t, u]: sum over t's members j of cos(u, j)
        max_cos = torch.zeros(B, tau_p, K, device=dev)  # largest such cosine (0 for an empty group)
        sum_into = torch.zeros(B, tau_p, K, device=dev)  # contamination of the members on u
        sum_from = torch.zeros(B, tau_p, K, device=dev)  # contamination of u on the members
        n_open = torch.zeros(B, dtype=torch.long, device=dev)
        pilots = torch.zeros(B, K, dtype=torch.long, device=dev)
        log_prob = torch.zeros(B, device=dev)
        entropy = torch.zeros(B, device=dev)
        confident = order_kind != "gain"
        if confident:
            cached = torch.zeros(B, K, tau_p, device=dev)  # logits of every (user, group); valid columns current
            decided = torch.zeros(B, K, dtype=torch.bool, device=dev)

            def refresh(column: torch.Tensor) -> None:  # (B,) group index per snapshot
                n = size[batch, column]
                new = column == n_open
                g = torch.where(new[:, None], empty_proj.expand(B, -1), group_proj[batch, column] / n.clamp(min=1)[:, None])
                opt = torch.stack([
                    sum_cos[batch, column], max_cos[batch, column],
                    torch.log10(sum_into[batch, column] + 1e-6) / 4.0,
                    torch.log10(sum_from[batch, column] + 1e-6) / 4.0,
                    (n / K)[:, None].expand(B, K), new.float()[:, None].expand(B, K)], dim=-1)  # (B, K, 6)
                cached[batch, :, column] = last(act(user_proj + g[:, None] + opt @ w_option.T)).squeeze(-1)

            refresh(n_open)
        for step in range(K):
            if confident:
                valid = groups[None, :] <= n_open[:, None]
                every = torch.log_softmax(cached.masked_fill(~valid[:, None, :], float("-inf")), dim=-1)
                user = pick_confident_user(user_confidence(every, order_kind), decided, total)
                decided[batch, user] = True
            else:
                user = order[:, step]
            is_new = groups[None, :] == n_open[:, None]
            mean_proj = group_proj / size.clamp(min=1)[..., None]
            g = torch.where(is_new[..., None], empty_proj.expand(B, tau_p, -1), mean_proj)
            option = torch.stack([
                sum_cos[batch, :, user],
                max_cos[batch, :, user],
                torch.log10(sum_into[batch, :, user] + 1e-6) / 4.0,
                torch.log10(sum_from[batch, :, user] + 1e-6) / 4.0,
                size / K,
                is_new.float(),
            ], dim=-1)
            hidden = act(user_proj[batch, user][:, None] + g + option @ w_option.T)
            logits = last(hidden).squeeze(-1)
            valid = groups[None, :] <= n_open[:, None]
            logits = logits.masked_fill(~valid, float("-inf"))
            logp = torch.log_softmax(logits, dim=-1)
            probs = logp.exp()
            entropy = entropy + -(probs * logp.masked_fill(~valid, 0.0)).sum(-1) / K
            if mode == "greedy":
                choice = logits.argmax(-1)
            else:
                draw = probs if temperature == 1.0 else torch.softmax(logits / temperature, dim=-1)
                choice = sample_categorical(draw, n_open.clamp(max=tau_p - 1), generator)
            log_prob = log_prob + logp[batch, choice]
            pilots[batch, user] = choice
            size[batch, choice] += 1.0
            group_proj[batch, choice] += member_proj[batch, user]
            sum_cos[batch, choice] += cosine[batch, user]
            max_cos[batch, choice] = torch.maximum(max_cos[batch, choice], cosine[batch, user])
            sum_into[batch, choice] += contam[batch, :, user]
            sum_from[batch, choice] += contam[batch, user]
            n_open = torch.maximum(n_open, choice + 1)
            if confident and step < K - 1:
                refresh(choice)
                refresh(n_open.clamp(max=tau_p - 1))
        return pilots, log_prob, entropy, encoded

    def greedy_orders(self, beta_db: torch.Tensor, tau_p: int, mixes: tuple[float, ...],
                      order: str = "gain") -> torch.Tensor:
        """Greedy decodes ``(len(mixes), B, K)`` in the user orders of ``mixes`` (see ``order_mix``
        of :meth:`decode`; ``order``: :data:`DECODE_ORDERS`, ``"gain"`` by default, whatever the
        model's own); the encoder runs once for all of them when the scorer is the MLP."""
        with torch.no_grad():
            if self.scorer_kind != "mlp":
                return torch.stack([self.decode(beta_db, tau_p, "greedy", order_mix=m, order=order)[0]
                                    for m in mixes])
            encoded, out = None, []
            for mix in mixes:
                pilots, _, _, encoded = self._decode_incremental(beta_db, tau_p, "greedy", None, 1.0, mix, encoded,
                                                                 order)
                out.append(pilots)
            return torch.stack(out)

    def greedy(self, beta_db: torch.Tensor, tau_p: int) -> tuple[torch.Tensor, torch.Tensor]:
        pilots, _, entropy = self.decode(beta_db, tau_p, "greedy")
        return pilots, entropy
