"""The gnn decoder's per-option rate features (docs/model.md eqs. (2.1)-(2.7)), in one place.

For every user u and pilot group t of a partial assignment, two features: u's own closed-form
rate if it joins t, and the rate its members lose to u's contamination, with the APs' power
control held at eta0 (every user on a pilot of its own, eq. (2.2) with C = I) for the whole
decode, so that an option's features change only when its group does. Three forms of the same
formula, each written once:

* torch reference, :func:`rate_option_features`: every option recomputed from the members
  (the differentiable decode's);
* torch incremental, :class:`IncrementalRates`: group sums of beta and each decided user's S_j
  and D_j kept up to date (the no-gradient torch decode's);
* numba, :func:`rate_pair` / :func:`join_rates` over a :class:`RateState` (the compiled decoder's).

The physics reaches them only through the system model: ``cfenv.models.model_of(config).rate_features``,
for the paper's model a :class:`cfenv.models.paper.PaperRateConstants` (L, tau_p rho_p, rho_d,
rho_d L^2); a model without that fast path (``None``, e.g. ``paper-reference``) cannot give a gnn
rate features (:func:`rate_constants` refuses it with :func:`unsupported_reason`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from numba import njit

from cfenv._kernels import FASTMATH
from cfenv.config import SystemConfig
from cfenv.models import model_of
from cfenv.models.paper import PaperRateConstants

RATE_FEATURES = 2
"""extra option features of ``rate_features=True``: the user's own rate if it joins the group and
the members' rate change [bit/s/Hz], each divided by its :data:`RATE_SCALE`"""
RATE_SCALE = (8.0, 2.0)
"""divisors of the two rate features (own rate, members' change), bringing them near unit scale"""


def unsupported_reason(config: SystemConfig) -> str | None:
    """Why a gnn with rate features cannot run on ``config``'s system model (``None`` if it can)."""
    if model_of(config).rate_features is None:
        return (f"rate features need a system model with the rate_features fast path; model {config.model!r} "
                "has none (docs/model.md §0.2)")
    return None


def rate_constants(system: SystemConfig | None, tau_p: int) -> PaperRateConstants:
    """The rate-feature constants of ``system``'s model at ``tau_p`` pilots (a size-generalised
    model may decode at another tau_p than the config's); ``ValueError`` without a system or on a
    model without rate features."""
    if system is None:
        raise ValueError("a gnn with rate_features needs the system to decode: decode(..., system=config)")
    reason = unsupported_reason(system)
    if reason is not None:
        raise ValueError(reason)
    return model_of(system if system.tau_p == tau_p else system.replace(tau_p=tau_p)).rate_features


class RateInputs(NamedTuple):
    """The per-snapshot inputs of the rate features (float64, users first); batched ``(B, ...)`` or one snapshot."""

    beta: torch.Tensor | np.ndarray
    """linear beta ``(B, K, M)``"""
    sqrt_eta: torch.Tensor | np.ndarray
    """sqrt(eta0) ``(B, M)``: the power control with every user on a pilot of its own"""
    noise: torch.Tensor | np.ndarray
    """BU_k + 1 ``(B, K)``, the assignment-independent part of every denominator"""


def rate_inputs(beta_db: torch.Tensor, consts: PaperRateConstants) -> RateInputs:
    """:class:`RateInputs` of a ``(B, M, K)`` dB batch: eta0 is eq. (2.2) with gamma at C = I (eq. (2.1)),
    BU_k + 1 eq. (2.5)."""
    beta = torch.pow(10.0, beta_db.to(torch.float64) / 10.0).transpose(1, 2)  # (B, K, M)
    gamma_alone = consts.tau_rho * beta * beta / (consts.tau_rho * beta + 1.0)
    sqrt_eta = (1.0 / (consts.L * gamma_alone.sum(1))).sqrt()
    return RateInputs(beta, sqrt_eta, consts.rho_d * beta.sum(-1) + 1.0)


def scaled(own: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
    """The two features ``(..., 2)`` (float32) of own rates and members' changes [bit/s/Hz]."""
    return torch.stack([own / RATE_SCALE[0], change / RATE_SCALE[1]], dim=-1).float()


def rate_option_features(beta: torch.Tensor, sqrt_eta: torch.Tensor, noise: torch.Tensor, member: torch.Tensor,
                         consts: PaperRateConstants) -> torch.Tensor:
    """Reference rate features ``(B, K, tau_p, 2)`` of every user u joining every group t of the
    partial assignment ``member`` ``(B, tau_p, K)``, recomputed from the members (inputs: :func:`rate_inputs`):

    * own: log2(1 + SINR_u) of u in t ∪ {u} (eqs. (2.1)-(2.6) over t's members, gamma of u and of
      the pilot contamination it meets from group sums that include u);
    * members: sum over t's members j of log2(1 + S_j / (D_j + rho_d L^2 Y_uj^2)) - log2(1 + S_j / D_j),
      the rate they lose to u's contamination: their S_j and denominators D_j = PC_j + BU_j + 1
      as in t now, Y_uj = sum_m sqrt(eta_m) c'_m beta[m,u] beta[m,j] with u's c'.

    Both divided by :data:`RATE_SCALE`. O(B tau_p K^2 M)."""
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
    return scaled(own, change).transpose(1, 2)


class IncrementalRates:
    """:func:`rate_option_features` kept up to date through a no-gradient decode: the group sums of
    beta and every decided user's S_j and D_j (refreshed for the joined group's members,
    O(B n_t^2 M)); a user's features against every group then cost O(B K M) (:meth:`user`), a
    group's against every user O(B K n_t M) (:meth:`column`). Equal to the reference up to float
    rounding (tested through the decoders)."""

    def __init__(self, inputs: RateInputs, consts: PaperRateConstants, tau_p: int) -> None:
        beta, sqrt_eta, noise = inputs  # (B, K, M), (B, M), (B, K)
        self.beta, self.sqrt_eta, self.noise = beta, sqrt_eta, noise
        self.tau_rho, self.scale = consts.tau_rho, consts.scale
        B, K, M = beta.shape
        dev = beta.device
        self.batch = torch.arange(B, device=dev)
        self.in_group = torch.zeros(B, tau_p, K, dtype=torch.bool, device=dev)
        self.G = torch.zeros(B, tau_p, M, dtype=beta.dtype, device=dev)
        self.S_mem = torch.zeros(B, K, dtype=beta.dtype, device=dev)
        self.D_mem = noise.clone()
        self.pilots = torch.zeros(B, K, dtype=torch.long, device=dev)
        self.decided = torch.zeros(B, K, dtype=torch.bool, device=dev)
        self.b_shift = beta + 1.0 / self.tau_rho  # c' = tau rho_p / (tau rho_p (G + beta_u) + 1) = 1 / (G + b_shift)
        self.s_beta = sqrt_eta[:, None] * beta
        self.s_beta2 = self.s_beta * beta

    def _members_of(self, mask: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """indices (R, n) of the True entries of (R, K) ``mask`` (padded), their mask and beta"""
        n = int(mask.sum(-1).max()) if mask.numel() else 0
        idx = torch.argsort(mask.to(torch.int8), dim=1, descending=True, stable=True)[:, :n]
        return idx, mask.gather(1, idx), b.gather(1, idx[..., None].expand(-1, -1, b.shape[-1]))

    def column(self, column: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``(R, K, 2)``: every user joining group ``column`` ``(R,)`` of snapshots ``rows`` ``(R,)``."""
        sc, full = self.scale, len(rows) == len(self.batch)
        beta, s_beta, s_beta2, b_shift, noise = ((self.beta, self.s_beta, self.s_beta2, self.b_shift, self.noise)
                                                 if full else (self.beta[rows], self.s_beta[rows],
                                                               self.s_beta2[rows], self.b_shift[rows],
                                                               self.noise[rows]))
        cp = torch.reciprocal(self.G[rows, column][:, None] + b_shift)  # u's c'
        sig = (cp * s_beta2).sum(-1)
        idx, ok, bm = self._members_of(self.in_group[rows, column], beta)
        Y2 = ((cp * s_beta) @ bm.transpose(1, 2)) ** 2  # (R, K, n)
        okf = ok.to(beta.dtype)[:, None]
        own = torch.log2(1.0 + sc * sig ** 2 / (sc * (Y2 * okf).sum(-1) + noise))
        Sj, Dj = self.S_mem[rows].gather(1, idx)[:, None], self.D_mem[rows].gather(1, idx)[:, None]
        change = ((torch.log2(1.0 + Sj / (Dj + sc * Y2)) - torch.log2(1.0 + Sj / Dj)) * okf).sum(-1)
        return scaled(own, change)

    def user(self, user: torch.Tensor) -> torch.Tensor:
        """``(B, tau_p, 2)``: ``user`` ``(B,)`` joining every group."""
        tr, sc, beta, sqrt_eta, batch = self.tau_rho, self.scale, self.beta, self.sqrt_eta, self.batch
        b_u = beta[batch, user]  # (B, M)
        cp = tr / (tr * (self.G + b_u[:, None]) + 1.0)  # (B, tau, M)
        sig = (sqrt_eta[:, None] * cp * b_u[:, None] ** 2).sum(-1)
        cp_j = cp.gather(1, self.pilots[..., None].expand(-1, -1, beta.shape[-1]))  # (B, K, M): c' of each user's group
        Y2 = ((sqrt_eta[:, None] * cp_j * b_u[:, None] * beta).sum(-1) ** 2) * self.decided  # (B, K)
        held = self.in_group.to(beta.dtype)
        pc = (held * Y2[:, None]).sum(-1)
        own = torch.log2(1.0 + sc * sig ** 2 / (sc * pc + self.noise[batch, user][:, None]))
        loss = torch.log2(1.0 + self.S_mem / (self.D_mem + sc * Y2)) - torch.log2(1.0 + self.S_mem / self.D_mem)
        change = (held * loss[:, None]).sum(-1)
        return scaled(own, change)

    def join(self, user: torch.Tensor, choice: torch.Tensor) -> None:
        """``user`` ``(B,)`` joins group ``choice`` ``(B,)``: its group sums and the members' S_j, D_j."""
        tr, sc, beta, batch = self.tau_rho, self.scale, self.beta, self.batch
        self.pilots[batch, user] = choice
        self.decided[batch, user] = True
        self.in_group[batch, choice, user] = True
        self.G[batch, choice] += beta[batch, user]
        idx, ok, bm = self._members_of(self.in_group[batch, choice], beta)
        w = self.sqrt_eta * tr / (tr * self.G[batch, choice] + 1.0)
        Z = (bm * w[:, None]) @ bm.transpose(1, 2)  # (B, n, n)
        diag = torch.diagonal(Z, dim1=-2, dim2=-1)
        S = sc * diag ** 2
        D = sc * ((Z ** 2 * ok.to(beta.dtype)[:, None]).sum(-1) - diag ** 2) + self.noise.gather(1, idx)
        self.S_mem.scatter_(1, idx, torch.where(ok, S, self.S_mem.gather(1, idx)))
        self.D_mem.scatter_(1, idx, torch.where(ok, D, self.D_mem.gather(1, idx)))


class RateState(NamedTuple):
    """One snapshot's rate-feature state in the compiled decoder (numba reads it by field name)."""

    beta: np.ndarray
    """linear beta ``(K, M)`` float64, users first"""
    b_shift: np.ndarray
    """``(K, M)`` beta + 1 / (tau_p rho_p): u's c' in group t is 1 / (G[t] + b_shift[u])"""
    sqrt_eta: np.ndarray
    """sqrt(eta0) ``(M,)``"""
    noise: np.ndarray
    """BU_k + 1 ``(K,)``"""
    G: np.ndarray
    """group sums of beta ``(tau_p, M)``"""
    members: np.ndarray
    """``(tau_p, K)`` int64: each group's members, the first ``n_members[t]`` entries"""
    n_members: np.ndarray
    """``(tau_p,)`` int64"""
    S_mem: np.ndarray
    """every decided user's S_j ``(K,)`` in its group now"""
    D_mem: np.ndarray
    """every decided user's PC_j + BU_j + 1 ``(K,)``"""
    scratch: np.ndarray
    """``(M,)`` work space"""
    own: np.ndarray
    """``(tau_p, K)`` the own-rate feature of (group, user), scaled, in the decoder's dtype"""
    change: np.ndarray
    """``(tau_p, K)`` the members' change feature, scaled"""
    tau_rho: float
    scale: float


@njit(cache=True)
def rate_state(beta, sqrt_eta, noise, tau_rho, scale, tau_p, like):  # pragma: no cover - compiled
    """A fresh :class:`RateState` of one snapshot (features in ``like``'s dtype; ``beta`` with
    M = 0 when the decoder has no rate features)."""
    K, M = like.shape[0], beta.shape[1]
    return RateState(beta, beta + 1.0 / tau_rho, sqrt_eta, noise, np.zeros((tau_p, M)),
                     np.zeros((tau_p, K), np.int64), np.zeros(tau_p, np.int64), np.zeros(K), noise.copy(),
                     np.empty(M), np.zeros((tau_p, K), like.dtype), np.zeros((tau_p, K), like.dtype), tau_rho, scale)


@njit(cache=True, fastmath=FASTMATH)
def rate_pair(rs, u, t):  # pragma: no cover - compiled
    """The rate features of user ``u`` joining group ``t`` into ``rs.own[t, u]`` and
    ``rs.change[t, u]`` (:func:`rate_option_features`): u's c' in t from the group sums, u's
    signal, the contamination Y_uj^2 it meets from each member j and adds to j's interference."""
    M = rs.beta.shape[1]
    cp = rs.scratch
    sig = 0.0
    for m in range(M):
        cp[m] = rs.sqrt_eta[m] * rs.beta[u, m] / (rs.G[t, m] + rs.b_shift[u, m])
        sig += cp[m] * rs.beta[u, m]
    pc = 0.0
    change = 0.0
    for i in range(rs.n_members[t]):
        j = rs.members[t, i]
        y = 0.0
        for m in range(M):
            y += cp[m] * rs.beta[j, m]
        y2 = rs.scale * y * y
        pc += y2
        change += math.log2(1.0 + rs.S_mem[j] / (rs.D_mem[j] + y2)) - math.log2(1.0 + rs.S_mem[j] / rs.D_mem[j])
    rs.own[t, u] = math.log2(1.0 + rs.scale * sig * sig / (pc + rs.noise[u])) / RATE_SCALE[0]
    rs.change[t, u] = change / RATE_SCALE[1]


@njit(cache=True, fastmath=FASTMATH)
def join_rates(rs, user, c):  # pragma: no cover - compiled
    """``user`` joins group ``c``: its group sums, member list and every member's S_j and D_j
    (their signal and the pilot contamination within the group, eta held at eta0)."""
    M = rs.beta.shape[1]
    w = rs.scratch
    rs.members[c, rs.n_members[c]] = user
    rs.n_members[c] += 1
    for m in range(M):
        rs.G[c, m] += rs.beta[user, m]
        w[m] = rs.sqrt_eta[m] * rs.tau_rho / (rs.tau_rho * rs.G[c, m] + 1.0)
    n = rs.n_members[c]
    for a in range(n):
        i = rs.members[c, a]
        diag = 0.0
        inter = 0.0
        for e in range(n):
            k = rs.members[c, e]
            z = 0.0
            for m in range(M):
                z += rs.beta[i, m] * w[m] * rs.beta[k, m]
            if k == i:
                diag = z
            else:
                inter += z * z
        rs.S_mem[i] = rs.scale * diag * diag
        rs.D_mem[i] = rs.scale * inter + rs.noise[i]
