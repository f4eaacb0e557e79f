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

Where the parts live: the graph, the option features and their constants in
:mod:`agents.models.gnn_features`, the rate features in :mod:`agents.models.rate_features`,
the torch decoder (reference and incremental) in :mod:`agents.models.gnn_decoder`, its compiled
form in :mod:`agents.models._gnn_kernel`; this module holds the policy and dispatches its decodes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from agents.models.base import AssignmentModel
from agents.models.gnn_decoder import (Encoded, MemberGroups, RunningGroups, decide, pick_confident_user,
                                       run_decoder, sample_categorical, split_scorer, user_confidence)
from agents.models.gnn_features import (CONFIDENCE_TIE, CONTAMINATION_FLOOR, EDGE_FEATURES, LOG_RATIO_CLIP,
                                        LOG_SCALE, NODE_FEATURES, OPTION_FEATURES, option_features, user_graph)
from agents.models.hybrid import HybridFrontEnd
from agents.models.rate_features import (RATE_FEATURES, RATE_SCALE, rate_constants, rate_inputs,
                                         rate_option_features)
from agents.models.rate_features import unsupported_reason as rate_features_unsupported
from cfenv.models.paper import PaperRateConstants
from cfenv.units import normalise_db

RateConstants = PaperRateConstants
"""the rate features' constants (before 0.8 a class of this module built from ``(system, tau_p)``;
now the system model's: ``cfenv.models.model_of(config).rate_features``)"""
DECODE_ORDERS = ("gain", "confidence", "margin")
"""user orders of the decoder: ``gain`` (descending total gain, fixed before decoding: the order
of every model trained before 0.5), ``confidence`` (at each step the undecided user whose most
likely option has the largest probability) or ``margin`` (the largest gap between its two most
likely options)"""


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
            members' rate change (:mod:`agents.models.rate_features`); the decode then needs the
            system (``system=`` a :class:`cfenv.config.SystemConfig`) and its model's rate features
            (``cfenv.models.model_of(system).rate_features``: L, tau_p rho_p, rho_d), which a model
            without that fast path lacks (:meth:`unsupported_reason`).
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

    def unsupported_reason(self, config: Any) -> str | None:
        """Why this model cannot decode on ``config``'s system model (a rate-features model on a
        model without rate features), else ``None``."""
        return rate_features_unsupported(config) if self.rate_features else None

    def encode(self, beta_db: torch.Tensor) -> Encoded:
        """The user embeddings, cosines, log contamination ratios and normalised total gains."""
        nodes, edges, log_ratio = user_graph(beta_db)
        h = self.embed(nodes)
        for layer in self.encoder:
            h = layer(h, edges)
        cosine = edges[..., 0]
        return Encoded(h, cosine, log_ratio, nodes[..., 0])

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
            system: the :class:`cfenv.config.SystemConfig` of the batch; a model with
                ``rate_features`` needs it, and a system model that offers rate features
                (``cfenv.models.model_of(system).rate_features``, else ``ValueError``); the others ignore it.
            engine: how a greedy or sampled decode without gradients runs: ``"numba"``
                (compiled, :mod:`agents.models._gnn_kernel`: the MLP scorer on the CPU),
                ``"torch"`` (:class:`agents.models.gnn_decoder.RunningGroups`) or ``"auto"`` (numba
                where it applies). The same function and the same draws either way (tested).

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
        return self._decode_torch(beta_db, tau_p, mode, actions, generator, temperature, order_mix, order_kind,
                                  consts)[:3]

    def _decode_torch(self, beta_db: torch.Tensor, tau_p: int, mode: str, actions: torch.Tensor | None = None,
                      generator: torch.Generator | None = None, temperature: float = 1.0, order_mix: float = 1.0,
                      order: str = "gain", consts: PaperRateConstants | None = None, encoded: Encoded | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Encoded]:
        """:func:`agents.models.gnn_decoder.run_decoder` over the groups of this model: the
        incremental :class:`~agents.models.gnn_decoder.RunningGroups` for a greedy or sampled
        decode without gradients with the MLP scorer, else the reference
        :class:`~agents.models.gnn_decoder.MemberGroups`. Also returns the encoding (reusable)."""
        encoded = self.encode(beta_db) if encoded is None else encoded
        key = self._order_key(beta_db, encoded.total, order_mix)
        rates = None if consts is None else rate_inputs(beta_db, consts)
        if mode in ("greedy", "sample") and not torch.is_grad_enabled() and self.scorer_kind == "mlp":
            groups = RunningGroups(split_scorer(self.scorer, self.empty_group, encoded.h), encoded, tau_p,
                                   cached=order != "gain", rates=rates, consts=consts)
        else:
            groups = MemberGroups(self.scorer, self.empty_group, encoded, tau_p, rates, consts)
        return (*run_decoder(groups, key, tau_p, order, mode, actions, generator, temperature), encoded)

    def _rate_constants(self, system: Any, tau_p: int) -> PaperRateConstants | None:
        """The rate features' constants (:func:`agents.models.rate_features.rate_constants`), None without them."""
        return rate_constants(system, tau_p) if self.rate_features else None

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
                         encoded: Encoded | None = None, order: str = "gain", mode: str = "greedy",
                         generator: torch.Generator | None = None, temperature: float = 1.0,
                         consts: PaperRateConstants | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Encoded]:
        """The incremental decode (greedy or sampled) by :func:`agents.models._gnn_kernel.decode`:
        the encoder and the scorer's projections in torch, the K decisions (and, with
        ``rate_features``, their rate features from ``consts``) compiled. A sampled decode draws its
        K uniforms per snapshot from ``generator`` at once, the stream :func:`sample_categorical`
        draws step by step."""
        from agents.models._gnn_kernel import DecodeBatch, ScorerWeights, decode

        encoded = self.encode(beta_db) if encoded is None else encoded
        key = self._order_key(beta_db, encoded.total, order_mix)
        parts = split_scorer(self.scorer, self.empty_group, encoded.h)
        dtype = self.scorer[0].weight.dtype

        def array(a: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(a.detach().cpu().numpy())

        batch = DecodeBatch(*(array(a) for a in (
            parts.user_proj, parts.member_proj, encoded.cosine.to(dtype), torch.pow(10.0, encoded.log_ratio).to(dtype),
            key, torch.argsort(key, dim=1, descending=True, stable=True))))
        scorer = ScorerWeights(array(parts.empty_proj), array(parts.w_option), array(parts.last.weight[0]),
                               float(parts.last.bias[0]))
        uniforms = None
        if mode == "sample":
            device = generator.device if generator is not None else encoded.h.device
            B, K = key.shape
            uniforms = torch.rand(K, B, generator=generator, device=device, dtype=torch.float64).T.cpu().numpy()
        rates = None
        if consts is not None:
            rates = tuple(a.cpu().numpy() for a in rate_inputs(beta_db, consts))
        out = decode(batch, scorer, tau_p, order, uniforms, temperature, rates,
                     *((consts.tau_rho, consts.scale) if consts is not None else ()))
        as_tensor = [torch.from_numpy(a).to(encoded.h.device) for a in out]
        return as_tensor[0], as_tensor[1].to(dtype), as_tensor[2].to(dtype), encoded

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
                    pilots, _, _, encoded = self._decode_torch(beta_db, tau_p, "greedy", order_mix=mix, order=order,
                                                               consts=consts, encoded=encoded)
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
                encoded = Encoded(*(t.repeat_interleave(n, 0) for t in self.encode(beta_db)))
                return self._decode_compiled(repeated, tau_p, encoded=encoded, order=order_kind, mode="sample",
                                             generator=generator, temperature=temperature,
                                             consts=self._rate_constants(system, tau_p))[0]
            return self.decode(repeated, tau_p, "sample", generator=generator, temperature=temperature,
                               order=order_kind, system=system, engine=engine)[0]

    def greedy(self, beta_db: torch.Tensor, tau_p: int, system: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        pilots, _, entropy = self.decode(beta_db, tau_p, "greedy", system=system)
        return pilots, entropy


__all__ = ["CONFIDENCE_TIE", "CONTAMINATION_FLOOR", "DECODE_ORDERS", "EDGE_FEATURES", "LOG_RATIO_CLIP", "LOG_SCALE",
           "NODE_FEATURES", "OPTION_FEATURES", "RATE_FEATURES", "RATE_SCALE", "EncoderLayer", "GNNPolicy",
           "QuantumScorer", "RateConstants", "decide", "option_features", "pick_confident_user", "rate_option_features",
           "sample_categorical", "user_confidence", "user_graph"]
