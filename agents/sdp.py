"""Max-k-cut pilot assignment by semidefinite relaxation and randomised rounding.

After R. M. Guedes, J. F. de Rezende, V. C. Barbosa, "Near-optimal pilot assignment in
cell-free massive MIMO", arXiv:2308.03547: users are the vertices of a weighted
contamination graph, the tau_p pilots are the k = tau_p blocks of a partition, and the
assignment maximises the weight of the edges *cut* (users of a heavy edge on different
pilots), i.e. minimises the contamination weight inside the pilot groups. The max-k-cut is
relaxed to the semidefinite program of Frieze and Jerrum and rounded with random Gaussian
vectors (A. Frieze, M. Jerrum, "Improved approximation algorithms for MAX k-CUT and MAX
BISECTION", Algorithmica 18, 1997).

The solver is CVXPY with SCS, an optional extra: ``pip install cfpilot[sdp]``. Without it
the agent reports itself unsupported (one line naming the extra) and the rest of cfpilot
runs unchanged. The rule, with the choices where the paper is open, is in
docs/literature.md §6.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.base import AGENT_STREAM, Agent, canonical_pilots, stream_rng
from agents.literature import contamination_weights
from agents.search import snapshot_key
from cfenv.channel import Snapshot
from cfenv.config import SystemConfig
from cfenv.models import model_of

DEFAULT_MAX_USERS = 100
"""the agent refuses larger K (one SDP with a K x K matrix variable and K^2 inequalities per
snapshot; measured about 1 s per snapshot at (100, 4, 100, 20) with SCS at eps 1e-3 on 2 shared
cores, docs/literature.md §6)"""
DEFAULT_ROUNDINGS = 64
"""random roundings per snapshot; the best by the true objective is kept"""
DEFAULT_EPS = 1e-3
"""SCS's absolute and relative tolerance (eps_abs = eps_rel)"""
DEFAULT_MAX_ITERS = 20_000
"""SCS's iteration cap"""
SDP_EXTRA = "pip install cfpilot[sdp]"
_ACCEPTED = ("optimal", "optimal_inaccurate")
SELECT = ("objective", "cut")
"""what picks the kept rounding: the true objective (``config.objective``) or the cut weight"""


def sdp_available() -> bool:
    """Whether CVXPY and SCS import (the ``sdp`` extra is installed and works); imported once."""
    global _AVAILABLE
    if _AVAILABLE is None:
        try:
            import cvxpy  # noqa: F401
            import scs  # noqa: F401

            _AVAILABLE = True
        except ImportError:
            _AVAILABLE = False
    return _AVAILABLE


_AVAILABLE: bool | None = None


def cut_value(weights: np.ndarray, pilots: np.ndarray) -> np.ndarray:
    """Weight of the edges between users on different pilots, ``sum_{i<j} W[i,j] [p_i != p_j]``.

    Args:
        weights: ``(..., K, K)`` symmetric, zero diagonal.
        pilots: ``(..., K)`` int pilots (broadcast against ``weights``' batch shape).
    Returns:
        ``(...)`` float64 cut weights.
    """
    pilots = np.asarray(pilots)
    differ = pilots[..., :, None] != pilots[..., None, :]
    return 0.5 * np.sum(np.asarray(weights, dtype=np.float64) * differ, axis=(-2, -1))


def _relaxation(K: int, k: int) -> tuple[Any, Any, Any, Any, Any]:
    """The Frieze-Jerrum relaxation for K vertices and k blocks, with the weights a parameter:
    minimise ``<W, X>`` over ``X`` PSD with ``X_ii = 1`` and ``X_ij >= -1/(k-1)``."""
    import cvxpy as cp

    weights = cp.Parameter((K, K), symmetric=True)
    X = cp.Variable((K, K), PSD=True)
    diagonal = cp.diag(X) == 1
    floor = X >= -1.0 / (k - 1)
    problem = cp.Problem(cp.Minimize(cp.sum(cp.multiply(weights, X))), [diagonal, floor])
    return problem, weights, X, diagonal, floor


_RELAXATIONS: dict[tuple[int, int], tuple[Any, ...]] = {}


def solve_relaxation(weights: np.ndarray, k: int, eps: float = DEFAULT_EPS,
                     max_iters: int = DEFAULT_MAX_ITERS) -> tuple[np.ndarray, float]:
    """Solve the max-k-cut SDP of one graph with SCS.

    Args:
        weights: ``(K, K)`` symmetric nonnegative weights, zero diagonal, K >= 2; k >= 2.
    Returns:
        ``(V, bound)``: ``V`` ``(K, K)`` with ``V V^T`` the solver's Gram matrix projected onto
        the PSD cone (rows: the users' vectors), and ``bound``, an upper bound on the max-k-cut
        of ``weights`` certified from SCS's dual variables (weak duality; the dual is made
        feasible by shifting it by the most negative eigenvalue of its slack, so the bound
        holds however loosely SCS converged; ``inf`` if SCS reported no dual variables).
    Raises:
        RuntimeError: SCS gave no solution (one line with its status).
    """
    import cvxpy as cp

    K = weights.shape[0]
    key = (K, k)
    if key not in _RELAXATIONS:
        _RELAXATIONS[key] = _relaxation(K, k)
    problem, param, X, diagonal, floor = _RELAXATIONS[key]
    scale = float(weights.max())
    scale = scale if scale > 0 else 1.0
    param.value = weights / scale
    # warm_start=False: a snapshot's answer must not depend on the one solved before it
    problem.solve(solver=cp.SCS, eps_abs=eps, eps_rel=eps, max_iters=max_iters, warm_start=False)
    if problem.status not in _ACCEPTED or X.value is None:
        raise RuntimeError(f"max-k-cut: SCS returned status {problem.status!r} for K={K}, k={k}")
    gram = 0.5 * (X.value + X.value.T)
    lam, vec = np.linalg.eigh(gram)
    V = vec * np.sqrt(np.clip(lam, 0.0, None))
    # certified bound: for mu >= 0 and any y, sum(y) + c sum(mu) <= <W, X> on the feasible set
    # when W - Diag(y) - mu is PSD; lowering y by the slack's most negative eigenvalue makes it so
    if floor.dual_value is None or diagonal.dual_value is None:
        return V, float("inf")
    c = -1.0 / (k - 1)
    w = weights / scale
    mu = np.clip(np.asarray(floor.dual_value, dtype=np.float64), 0.0, None)
    mu = 0.5 * (mu + mu.T)
    y0 = np.asarray(diagonal.dual_value, dtype=np.float64).reshape(K)
    lower = -np.inf
    for y in (y0, -y0):  # whichever sign convention the solver reports, both bounds are valid
        slack_min = float(np.linalg.eigvalsh(w - np.diag(y) - mu)[0])
        lower = max(lower, float(y.sum()) + c * float(mu.sum()) + K * min(slack_min, 0.0))
    total = 0.5 * float(w.sum())
    bound = (k - 1) / k * (total - 0.5 * lower) * scale
    return V, bound


class MaxKCutAgent(Agent):
    """Max-k-cut (k = tau_p) on the users' contamination graph: Frieze-Jerrum SDP + rounding.

    After Guedes, de Rezende, Barbosa, "Near-optimal pilot assignment in cell-free massive
    MIMO", arXiv:2308.03547. Rule (docs/literature.md §6), per snapshot:

    1. Weights ``W = agents.literature.contamination_weights(beta)`` ``(K, K)``: the relative
       fading a user puts on another's pilot at its 90 % serving APs, symmetrised (choice:
       the same weights as ``wgf`` and ``hungarian``; the paper's own weights are not used).
    2. SDP (Frieze-Jerrum): maximise ``(k-1)/k sum_{i<j} W_ij (1 - X_ij)`` over ``X`` PSD,
       ``X_ii = 1``, ``X_ij >= -1/(k-1)``; solved by SCS (CVXPY) on ``W / max W``
       (choice: tolerance ``eps`` = 1e-3, at most ``max_iters`` iterations).
    3. Rounding: ``X = V V^T`` (eigendecomposition, negative eigenvalues clipped); k Gaussian
       vectors ``g_1..g_k ~ N(0, I)``; user i takes pilot ``argmax_t <v_i, g_t>``.
       ``roundings`` draws (choice: 64), from the snapshot's own stream
       ``stream_rng(seed, AGENT_STREAM, "max-k-cut", M, L, K, tau_p, crc32(beta))``, so the
       answer does not depend on the batch or on the order of the snapshots.
    4. Keep the rounding with the best true objective (the model's ``objective``)
       (``config.objective``: sum rate, minimum rate or proportional fairness; choice,
       ``select="objective"``), or with the largest cut (``select="cut"``, the max-k-cut
       rule itself); ties to the first draw; returned in canonical (restricted-growth) form.

    Special cases: tau_p = 1 or K = 1 -> every user on pilot 0 (no SDP). Refuses K above
    ``max_users`` (default 100) and runs only with the ``sdp`` extra installed
    (:meth:`unsupported_reason`). After :meth:`assign`, :attr:`last_stats` holds per
    snapshot the certified SDP upper bound on the max-k-cut (``sdp_bound``) and the cut of
    the returned assignment (``cut``), both in units of ``W``.

    Args:
        roundings: random roundings per snapshot (>= 1).
        select: ``"objective"`` (default) or ``"cut"``: what picks the kept rounding.
        max_users: largest K accepted.
        eps: SCS tolerance (absolute and relative).
        max_iters: SCS iteration cap.
    """

    name = "max-k-cut"

    def __init__(self, config: SystemConfig | None = None, seed: int = 0, roundings: int = DEFAULT_ROUNDINGS,
                 select: str = "objective", max_users: int = DEFAULT_MAX_USERS, eps: float = DEFAULT_EPS,
                 max_iters: int = DEFAULT_MAX_ITERS) -> None:
        super().__init__(config, seed)
        if select not in SELECT:
            raise ValueError(f"select must be one of {', '.join(SELECT)}, got {select!r}")
        if int(roundings) < 1:
            raise ValueError(f"roundings must be >= 1, got {roundings}")
        if int(max_users) < 1:
            raise ValueError(f"max_users must be >= 1, got {max_users}")
        if not 0.0 < float(eps) < 1.0:
            raise ValueError(f"eps must be in (0, 1), got {eps}")
        if int(max_iters) < 1:
            raise ValueError(f"max_iters must be >= 1, got {max_iters}")
        self.roundings = int(roundings)
        self.select = select
        self.max_users = int(max_users)
        self.eps = float(eps)
        self.max_iters = int(max_iters)
        self.last_stats: dict[str, np.ndarray] = {}

    def unsupported_reason(self, config: SystemConfig) -> str | None:
        if not sdp_available():
            return f"needs CVXPY and SCS, not installed: {SDP_EXTRA}"
        if config.K > self.max_users:
            return (f"K={config.K} users is above max_users={self.max_users} (one K x K SDP per snapshot; "
                    "pass max_users= to try)")
        return None

    def rounding_rng(self, beta: np.ndarray, config: SystemConfig) -> np.random.Generator:
        """The random stream of one ``(M, K)`` snapshot's roundings (see the class doc)."""
        return stream_rng(self.seed, AGENT_STREAM, self.name, *config.size, snapshot_key(beta))

    def round(self, V: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """``(roundings, K)`` canonical pilots: each user to the Gaussian vector it leans on most."""
        G = rng.standard_normal((self.roundings, k, V.shape[1]))
        scores = np.einsum("ir,ntr->nit", V, G)  # (roundings, K, k)
        return canonical_pilots(scores.argmax(axis=2))

    def _assign(self, snapshots: Snapshot, config: SystemConfig, rng: np.random.Generator) -> np.ndarray:
        beta = model_of(config).gains(snapshots)
        B, K, k = beta.shape[0], config.K, config.tau_p
        out = np.zeros((B, K), dtype=np.int64)
        bounds = np.zeros(B)
        cuts = np.zeros(B)
        if k < 2 or K < 2:
            self.last_stats = {"sdp_bound": bounds, "cut": cuts}
            return out
        weights = contamination_weights(beta)
        for b in range(B):
            V, bounds[b] = solve_relaxation(weights[b], k, self.eps, self.max_iters)
            candidates = self.round(V, k, self.rounding_rng(beta[b], config))
            if self.select == "cut":
                values = cut_value(weights[b], candidates)
            else:
                values = np.asarray(model_of(config).objective(snapshots[b][None], candidates), dtype=np.float64)
            out[b] = candidates[int(np.argmax(values))]
            cuts[b] = cut_value(weights[b], out[b])
        self.last_stats = {"sdp_bound": bounds, "cut": cuts}
        return out
