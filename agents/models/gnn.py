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

import numpy as np
import torch
from torch import nn

from agents.models._gnn_kernel import RATE_SCALE
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
RATE_FEATURES = 2
"""extra option features of ``rate_features=True``: the user's own rate if it joins the group and
the members' rate change [bit/s/Hz], see :func:`rate_option_features`"""
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


class RateConstants:
    """What the closed-form rate (docs/model.md eqs. (2.1)-(2.7)) needs beyond beta: the system's
    L, tau_p rho_p and rho_d (taken from a :class:`cfenv.config.SystemConfig`)."""

    def __init__(self, system: Any, tau_p: int) -> None:
        self.L = float(system.L)
        self.tau_rho = float(tau_p * system.rho_p)
        self.rho_d = float(system.rho_d)
        self.scale = self.rho_d * self.L * self.L  # rho_d L^2 of S_k and PC_k

    def setup(self, beta_db: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Linear beta ``(B, K, M)`` (float64, users first), sqrt(eta0) ``(B, M)`` and
        BU_k + 1 ``(B, K)``. eta0 is the power control with every user on a pilot of its own
        (eq. (2.2) with gamma at C = I): held fixed through the decode, so that an option's features
        change only when its group does."""
        beta = torch.pow(10.0, beta_db.to(torch.float64) / 10.0).transpose(1, 2)  # (B, K, M)
        gamma_alone = self.tau_rho * beta * beta / (self.tau_rho * beta + 1.0)
        sqrt_eta = (1.0 / (self.L * gamma_alone.sum(1))).sqrt()
        return beta, sqrt_eta, self.rho_d * beta.sum(-1) + 1.0


def rate_option_features(beta: torch.Tensor, sqrt_eta: torch.Tensor, noise: torch.Tensor, member: torch.Tensor,
                         consts: RateConstants) -> torch.Tensor:
    """Reference rate features ``(B, K, tau_p, 2)`` of every user u joining every group t of the
    partial assignment ``member`` ``(B, tau_p, K)``, recomputed from the members, with the APs'
    power control held at eta0 (:meth:`RateConstants.setup`):

    * own: log2(1 + SINR_u) of u in t ∪ {u} (eqs. (2.1)-(2.6) over t's members, gamma of u and of
      the pilot contamination it meets from group sums that include u);
    * members: sum over t's members j of log2(1 + S_j / (D_j + rho_d L^2 Y_uj^2)) - log2(1 + S_j / D_j),
      the rate they lose to u's contamination: their S_j and denominators D_j = PC_j + BU_j + 1
      as in t now, Y_uj = sum_m sqrt(eta_m) c'_m beta[m,u] beta[m,j] with u's c'.

    Both divided by :data:`RATE_SCALE`. O(B tau_p K^2 M): the incremental decoder keeps running
    group sums and refreshes only the groups that change."""
    tr, sc = consts.tau_rho, consts.scale
    member = member.to(beta.dtype)
    G = member @ beta  # (B, tau, M): group sums of beta
    c = tr / (tr * G + 1.0)
    Z = torch.einsum("btm,bim,bjm->btij", sqrt_eta[:, None] * c, beta, beta)  # (B, tau, K, K)
    diag = torch.diagonal(Z, dim1=-2, dim2=-1)  # (B, tau, K)
    S_mem = sc * diag ** 2
    D_mem = sc * ((Z ** 2 * member[:, :, None, :]).sum(-1) - diag ** 2 * member) + noise[:, None]
    cp = tr / (tr * (G[:, :, None, :] + beta[:, None]) + 1.0)  # (B, tau, K_u, M): u's c' in t
    X = sqrt_eta[:, None, None] * cp * beta[:, None]
    sig = (X * beta[:, None]).sum(-1)  # (B, tau, K)
    Y = X @ beta.transpose(1, 2)[:, None]  # (B, tau, K_u, K_j)
    inside = member[:, :, None, :]
    own = torch.log2(1.0 + sc * sig ** 2 / (sc * (Y ** 2 * inside).sum(-1) + noise[:, None]))
    before = torch.log2(1.0 + S_mem / D_mem)[:, :, None, :]
    after = torch.log2(1.0 + S_mem[:, :, None, :] / (D_mem[:, :, None, :] + sc * Y ** 2))
    change = ((after - before) * inside).sum(-1)
    return torch.stack([own / RATE_SCALE[0], change / RATE_SCALE[1]], dim=-1).transpose(1, 2).float()


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
        logits = self.edge_logits(edges)  # (B, K, K)
        if K > 1:
            logits = logits.masked_fill(torch.eye(K, dtype=torch.bool, device=h.device), float("-inf"))
            message = torch.softmax(logits, dim=-1) @ self.value(h)
        else:
            message = torch.zeros_like(h)
        return self.norm(h + self.update(torch.cat([h, message], dim=-1)))


    def edge_logits(self, edges: torch.Tensor) -> torch.Tensor:
        """Attention logits ``(B, K, K)`` of edge features ``(B, K, K, 2)``. Without gradients the
        edge MLP runs one snapshot at a time: its ``(K^2, width)`` hidden layer then stays in cache
        (3.5x faster at K = 100 on one thread than one batched pass; the same values)."""
        if torch.is_grad_enabled() or edges.shape[0] == 1:
            return self.edge(edges).squeeze(-1)
        return torch.cat([self.edge(e) for e in edges.unbind(0)]).squeeze(-1).reshape(edges.shape[:-1])


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
        rate_features: two more option features, the user's own rate in the group and the
            members' rate change (:func:`rate_option_features`); the decode then needs the system
            (``system=`` a :class:`cfenv.config.SystemConfig`, for L, rho_p, rho_d).
    """

    size_generalisable = True

    def __init__(self, width: int = 64, layers: int = 2, scorer: str = "mlp",
                 quantum: dict[str, Any] | None = None, order: str = "gain", rate_features: bool = False) -> None:
        super().__init__()
        if scorer not in ("mlp", "quantum"):
            raise ValueError(f"scorer must be 'mlp' or 'quantum', got {scorer!r}")
        if order not in DECODE_ORDERS:
            raise ValueError(f"order must be one of {', '.join(DECODE_ORDERS)}, got {order!r}")
        self.width, self.layers, self.scorer_kind, self.order = width, layers, scorer, order
        self.rate_features = bool(rate_features)
        self.quantum_options = dict(quantum or {})
        self.embed = nn.Linear(NODE_FEATURES, width)
        self.encoder = nn.ModuleList(EncoderLayer(width) for _ in range(layers))
        self.empty_group = nn.Parameter(torch.zeros(width))
        in_features = 2 * width + OPTION_FEATURES + (RATE_FEATURES if self.rate_features else 0)
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
               temperature: float = 1.0, order_mix: float = 1.0, order: str | None = None,
               system: Any = None, engine: str = "auto") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
            system: the :class:`cfenv.config.SystemConfig` (L, powers) of the batch; needed by a
                model with ``rate_features`` and ignored by the others.
            engine: how a greedy or sampled decode without gradients runs: ``"numba"``
                (compiled, :mod:`agents.models._gnn_kernel`: the MLP scorer on the CPU),
                ``"torch"`` (:meth:`_decode_incremental`) or ``"auto"`` (numba where it applies).
                The same function and the same draws either way (tested).

        Returns:
            pilots ``(B, K)`` int64 (labels in opening order along the decoding order),
            summed log-probability of the decisions ``(B,)`` and mean decision entropy ``(B,)``.
        """
        if tau_p < 1:
            raise ValueError(f"tau_p must be >= 1, got {tau_p}")
        order_kind = self.order if order is None else order
        if order_kind not in DECODE_ORDERS:
            raise ValueError(f"order must be one of {', '.join(DECODE_ORDERS)}, got {order_kind!r}")
        consts = self._rate_constants(system, tau_p)
        if self._compiled(engine, mode, beta_db):
            return self._decode_compiled(beta_db, tau_p, order_mix, order=order_kind, mode=mode, generator=generator,
                                         temperature=temperature, consts=consts)[:3]
        if mode in ("greedy", "sample") and not torch.is_grad_enabled() and self.scorer_kind == "mlp":
            return self._decode_incremental(beta_db, tau_p, mode, generator, temperature, order_mix,
                                            order=order_kind, consts=consts)[:3]
        rate_inputs = consts.setup(beta_db) if consts is not None else None
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
            rates = None if consts is None else rate_option_features(*rate_inputs, member.detach(), consts)
            if order_kind == "gain":
                user = order[:, step]
            else:  # every undecided user scored against the open groups; no gradient through the choice
                with torch.no_grad():
                    every = self._every_user_logits(h, cosine, log_ratio, member, n_open, tau_p, rates)
                    conf = user_confidence(every, order_kind)
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
            if rates is not None:
                option = torch.cat([option, rates[batch, user]], dim=-1)
            features = torch.cat([h_u[:, None].expand(B, tau_p, d), group_emb, option], dim=-1)
            logits = self.scorer(features).squeeze(-1)
            valid = groups[None, :] <= n_open[:, None]
            logits = logits.masked_fill(~valid, float("-inf"))
            logp, step_entropy, choice = decide(logits, valid, n_open, tau_p, mode, generator, temperature)
            entropy = entropy + step_entropy / K
            if mode == "teacher":
                if actions is None:
                    raise ValueError("teacher mode needs actions")
                label = actions[batch, user]
                mapped = teacher_map[batch, label]
                choice = torch.where(mapped >= 0, mapped, n_open.clamp(max=tau_p - 1))
                teacher_map[batch, label] = choice
            elif mode not in ("greedy", "sample"):
                raise ValueError(f"mode must be greedy, sample or teacher, got {mode!r}")
            log_prob = log_prob + logp[batch, choice]
            pilots[batch, user] = choice
            joined = torch.zeros_like(member)
            joined[batch, choice, user] = 1.0
            member = member + joined  # out of place: earlier steps' graphs still read the old tensor
            n_open = torch.maximum(n_open, choice + 1)
        return pilots, log_prob, entropy

    def _every_user_logits(self, h: torch.Tensor, cosine: torch.Tensor, log_ratio: torch.Tensor,
                           member: torch.Tensor, n_open: torch.Tensor, tau_p: int,
                           rates: torch.Tensor | None = None) -> torch.Tensor:
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
        if rates is not None:
            option = torch.cat([option, rates], dim=-1)
        features = torch.cat([h[:, :, None].expand(B, K, tau_p, d), group_emb[:, None].expand(B, K, tau_p, d),
                              option], dim=-1)
        logits = self.scorer(features).squeeze(-1)
        valid = groups[None, :] <= n_open[:, None]
        return logits.masked_fill(~valid[:, None, :], float("-inf"))

    def _rate_constants(self, system: Any, tau_p: int) -> RateConstants | None:
        if not self.rate_features:
            return None
        if system is None:
            raise ValueError("a gnn with rate_features needs the system to decode: decode(..., system=config)")
        return RateConstants(system, tau_p)

    @staticmethod
    def _order_key(beta_db: torch.Tensor, total: torch.Tensor, order_mix: float) -> torch.Tensor:
        """The decoding-order key: the normalised total gain, mixed with the strongest gain."""
        if order_mix == 1.0:
            return total
        strongest = normalise_db(beta_db.amax(-2))
        return order_mix * total + (1.0 - order_mix) * strongest.to(total.dtype)

    ENGINES = ("auto", "numba", "torch")
    """how a greedy or sampled decode without gradients runs (:meth:`decode`'s ``engine``)"""

    def _compiled(self, engine: str, mode: str, beta_db: torch.Tensor) -> bool:
        """Whether :meth:`decode` runs the compiled greedy decoder; ``ValueError`` if ``engine``
        asks for it where it does not apply."""
        if engine not in self.ENGINES:
            raise ValueError(f"engine must be one of {', '.join(self.ENGINES)}, got {engine!r}")
        applies = (mode in ("greedy", "sample") and not torch.is_grad_enabled() and self.scorer_kind == "mlp"
                   and beta_db.device.type == "cpu")
        if engine == "numba" and not applies:
            raise ValueError("the numba engine decodes (greedy or sampled) without gradients, on the CPU, with "
                             "the MLP scorer")
        return applies and engine != "torch"

    def _decode_compiled(self, beta_db: torch.Tensor, tau_p: int, order_mix: float = 1.0,
                         encoded: tuple[torch.Tensor, ...] | None = None, order: str = "gain", mode: str = "greedy",
                         generator: torch.Generator | None = None, temperature: float = 1.0,
                         consts: RateConstants | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        """:meth:`_decode_incremental` (greedy or sampled) by
        :func:`agents.models._gnn_kernel.decode`: the encoder and the scorer's projections in
        torch, the K decisions (and, with ``rate_features``, their rate features from ``consts``)
        compiled. A sampled decode draws its K uniforms per snapshot from ``generator`` at once,
        the stream :func:`sample_categorical` draws step by step."""
        from agents.models._gnn_kernel import decode

        encoded = self.encode(beta_db) if encoded is None else encoded
        h, cosine, log_ratio, total = encoded
        key = self._order_key(beta_db, total, order_mix)
        d = h.shape[-1]
        first, last = self.scorer[0], self.scorer[2]
        w_user, w_group, w_option = first.weight[:, :d], first.weight[:, d:2 * d], first.weight[:, 2 * d:]
        dtype = first.weight.dtype
        arrays = [h @ w_user.T + first.bias, h @ w_group.T, self.empty_group @ w_group.T, cosine.to(dtype),
                  torch.pow(10.0, log_ratio).to(dtype), key, torch.argsort(key, dim=1, descending=True, stable=True),
                  w_option, last.weight[0]]
        arrays = [np.ascontiguousarray(a.detach().cpu().numpy()) for a in arrays]
        uniforms = None
        if mode == "sample":
            device = generator.device if generator is not None else h.device
            B, K = key.shape
            uniforms = torch.rand(K, B, generator=generator, device=device, dtype=torch.float64).T.cpu().numpy()
        rate_inputs = None
        if consts is not None:
            rate_inputs = (*(a.cpu().numpy() for a in consts.setup(beta_db)), consts.tau_rho, consts.scale)
        pilots, log_prob, entropy = decode(*arrays, float(last.bias[0]), tau_p, order, CONFIDENCE_TIE, uniforms,
                                           temperature, rate_inputs)
        as_tensor = [torch.from_numpy(a).to(h.device) for a in (pilots, log_prob, entropy)]
        return as_tensor[0], as_tensor[1].to(dtype), as_tensor[2].to(dtype), encoded

    def _decode_incremental(self, beta_db: torch.Tensor, tau_p: int, mode: str,
                            generator: torch.Generator | None, temperature: float, order_mix: float = 1.0,
                            encoded: tuple[torch.Tensor, ...] | None = None, order: str = "gain",
                            consts: RateConstants | None = None
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
        O(B K width), then picks the surest undecided user from the cache.

        With ``rate_features`` (``consts``) it keeps the group sums of beta and every decided
        user's S_j and D_j (refreshed for the joined group's members, O(B n_t^2 M)); a user's
        features against every group then cost O(B K M) (gain order), a group's against every
        user O(B K n_t M) (confidence orders)."""
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
        decided = torch.zeros(B, K, dtype=torch.bool, device=dev)
        if consts is not None:
            tr, sc = consts.tau_rho, consts.scale
            beta, sqrt_eta, noise = consts.setup(beta_db)  # (B, K, M), (B, M), (B, K)
            M = beta.shape[-1]
            in_group = torch.zeros(B, tau_p, K, dtype=torch.bool, device=dev)
            G = torch.zeros(B, tau_p, M, dtype=beta.dtype, device=dev)
            S_mem = torch.zeros(B, K, dtype=beta.dtype, device=dev)
            D_mem = noise.clone()
            b_shift = beta + 1.0 / tr  # c' = tau rho_p / (tau rho_p (G + beta_u) + 1) = 1 / (G + b_shift)
            s_beta = sqrt_eta[:, None] * beta
            s_beta2 = s_beta * beta

            def members_of(mask: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
                """indices (R, n) of the True entries of (R, K) ``mask`` (padded), their mask and beta"""
                n = int(mask.sum(-1).max()) if mask.numel() else 0
                idx = torch.argsort(mask.to(torch.int8), dim=1, descending=True, stable=True)[:, :n]
                return idx, mask.gather(1, idx), b.gather(1, idx[..., None].expand(-1, -1, M))

            def rate_column(column: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
                """(R, K, 2): every user joining group ``column`` (R,) of snapshots ``rows`` (R,)"""
                full = len(rows) == B
                b_r, sb_r, sb2_r = (beta, s_beta, s_beta2) if full else (beta[rows], s_beta[rows], s_beta2[rows])
                cp = torch.reciprocal(G[rows, column][:, None] + (b_shift if full else b_shift[rows]))  # u's c'
                sig = (cp * sb2_r).sum(-1)
                idx, ok, bm = members_of(in_group[rows, column], b_r)
                Y2 = ((cp * sb_r) @ bm.transpose(1, 2)) ** 2  # (R, K, n)
                okf = ok.to(beta.dtype)[:, None]
                own = torch.log2(1.0 + sc * sig ** 2 / (sc * (Y2 * okf).sum(-1) + (noise if full else noise[rows])))
                Sj, Dj = S_mem[rows].gather(1, idx)[:, None], D_mem[rows].gather(1, idx)[:, None]
                change = ((torch.log2(1.0 + Sj / (Dj + sc * Y2)) - torch.log2(1.0 + Sj / Dj)) * okf).sum(-1)
                return torch.stack([own / RATE_SCALE[0], change / RATE_SCALE[1]], dim=-1).float()

            def rate_user(user: torch.Tensor) -> torch.Tensor:  # (B, tau, 2): `user` joining every group
                b_u = beta[batch, user]  # (B, M)
                cp = tr / (tr * (G + b_u[:, None]) + 1.0)  # (B, tau, M)
                sig = (sqrt_eta[:, None] * cp * b_u[:, None] ** 2).sum(-1)
                cp_j = cp.gather(1, pilots[..., None].expand(-1, -1, M))  # (B, K, M): c' of each user's group
                Y2 = ((sqrt_eta[:, None] * cp_j * b_u[:, None] * beta).sum(-1) ** 2) * decided  # (B, K)
                held = in_group.to(beta.dtype)
                pc = (held * Y2[:, None]).sum(-1)
                own = torch.log2(1.0 + sc * sig ** 2 / (sc * pc + noise[batch, user][:, None]))
                loss = torch.log2(1.0 + S_mem / (D_mem + sc * Y2)) - torch.log2(1.0 + S_mem / D_mem)
                change = (held * loss[:, None]).sum(-1)
                return torch.stack([own / RATE_SCALE[0], change / RATE_SCALE[1]], dim=-1).float()

            def join_rates(user: torch.Tensor, choice: torch.Tensor) -> None:  # the joined group's S_j, D_j
                in_group[batch, choice, user] = True
                G[batch, choice] += beta[batch, user]
                idx, ok, bm = members_of(in_group[batch, choice], beta)
                w = sqrt_eta * tr / (tr * G[batch, choice] + 1.0)
                Z = (bm * w[:, None]) @ bm.transpose(1, 2)  # (B, n, n)
                diag = torch.diagonal(Z, dim1=-2, dim2=-1)
                S = sc * diag ** 2
                D = sc * ((Z ** 2 * ok.to(beta.dtype)[:, None]).sum(-1) - diag ** 2) + noise.gather(1, idx)
                S_mem.scatter_(1, idx, torch.where(ok, S, S_mem.gather(1, idx)))
                D_mem.scatter_(1, idx, torch.where(ok, D, D_mem.gather(1, idx)))
        if confident:
            # logits of every (user, group): -inf until the group becomes valid (opened, or the next new one),
            # then refreshed whenever it changes
            cached = torch.full((B, K, tau_p), float("-inf"), device=dev)

            def refresh(column: torch.Tensor, rows: torch.Tensor = batch) -> None:
                """recompute the cached logits of group ``column[rows]`` of snapshots ``rows``"""
                col = column[rows]
                n = size[rows, col]
                new = col == n_open[rows]
                R = len(rows)
                g = torch.where(new[:, None], empty_proj.expand(R, -1), group_proj[rows, col] / n.clamp(min=1)[:, None])
                opt = torch.stack([
                    sum_cos[rows, col], max_cos[rows, col],
                    torch.log10(sum_into[rows, col] + 1e-6) / 4.0,
                    torch.log10(sum_from[rows, col] + 1e-6) / 4.0,
                    (n / K)[:, None].expand(R, K), new.float()[:, None].expand(R, K)], dim=-1)  # (R, K, 6)
                if consts is not None:
                    opt = torch.cat([opt, rate_column(col, rows)], dim=-1)
                users = user_proj if R == B else user_proj[rows]
                cached[rows, :, col] = last(act(users + g[:, None] + opt @ w_option.T)).squeeze(-1)

            refresh(n_open)
        for step in range(K):
            if confident:
                valid = groups[None, :] <= n_open[:, None]
                user = pick_confident_user(user_confidence(cached, order_kind), decided, total)
                logits = cached[batch, user]
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
                if consts is not None:
                    option = torch.cat([option, rate_user(user)], dim=-1)
                hidden = act(user_proj[batch, user][:, None] + g + option @ w_option.T)
                logits = last(hidden).squeeze(-1)
                valid = groups[None, :] <= n_open[:, None]
                logits = logits.masked_fill(~valid, float("-inf"))
            logp, step_entropy, choice = decide(logits, valid, n_open, tau_p, mode, generator, temperature)
            entropy = entropy + step_entropy / K
            log_prob = log_prob + logp[batch, choice]
            pilots[batch, user] = choice
            decided[batch, user] = True
            if consts is not None:
                join_rates(user, choice)
            size[batch, choice] += 1.0
            group_proj[batch, choice] += member_proj[batch, user]
            sum_cos[batch, choice] += cosine[batch, user]
            max_cos[batch, choice] = torch.maximum(max_cos[batch, choice], cosine[batch, user])
            sum_into[batch, choice] += contam[batch, :, user]
            sum_from[batch, choice] += contam[batch, user]
            n_open = torch.maximum(n_open, choice + 1)
            if confident and step < K - 1:
                refresh(choice)
                opened = ((choice + 1 == n_open) & (n_open < tau_p)).nonzero().squeeze(1)
                if len(opened):  # the next new group became valid where one was opened
                    refresh(n_open, opened)
        return pilots, log_prob, entropy, encoded

    def greedy_orders(self, beta_db: torch.Tensor, tau_p: int, mixes: tuple[float, ...],
                      order: str = "gain", system: Any = None) -> torch.Tensor:
        """Greedy decodes ``(len(mixes), B, K)`` in the user orders of ``mixes`` (see ``order_mix``
        of :meth:`decode`; ``order``: :data:`DECODE_ORDERS`, ``"gain"`` by default, whatever the
        model's own); the encoder runs once for all of them when the scorer is the MLP."""
        with torch.no_grad():
            if self.scorer_kind != "mlp":
                return torch.stack([self.decode(beta_db, tau_p, "greedy", order_mix=m, order=order, system=system)[0]
                                    for m in mixes])
            consts = self._rate_constants(system, tau_p)
            compiled = self._compiled("auto", "greedy", beta_db)
            encoded, out = None, []
            for mix in mixes:
                if compiled:
                    pilots, _, _, encoded = self._decode_compiled(beta_db, tau_p, mix, encoded, order, consts=consts)
                else:
                    pilots, _, _, encoded = self._decode_incremental(beta_db, tau_p, "greedy", None, 1.0, mix,
                                                                     encoded, order, consts)
                out.append(pilots)
            return torch.stack(out)

    def sample(self, beta_db: torch.Tensor, tau_p: int, n: int, generator: torch.Generator | None = None,
               temperature: float = 1.0, order: str | None = None, system: Any = None,
               engine: str = "auto") -> torch.Tensor:
        """``n`` sampled decodes of each snapshot, ``(B * n, K)`` snapshot-major: those of
        ``decode(beta_db.repeat_interleave(n, 0), tau_p, "sample", ...)``, with the encoder run once
        per snapshot when the compiled decoder runs."""
        order_kind = self.order if order is None else order
        repeated = beta_db.repeat_interleave(n, 0)
        with torch.no_grad():
            if self._compiled(engine, "sample", beta_db):
                encoded = tuple(t.repeat_interleave(n, 0) for t in self.encode(beta_db))
                return self._decode_compiled(repeated, tau_p, encoded=encoded, order=order_kind, mode="sample",
                                             generator=generator, temperature=temperature,
                                             consts=self._rate_constants(system, tau_p))[0]
            return self.decode(repeated, tau_p, "sample", generator=generator, temperature=temperature,
                               order=order_kind, system=system, engine=engine)[0]

    def greedy(self, beta_db: torch.Tensor, tau_p: int, system: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        pilots, _, entropy = self.decode(beta_db, tau_p, "greedy", system=system)
        return pilots, entropy
