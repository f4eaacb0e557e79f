"""Closed-form downlink rate of cell-free massive MIMO (docs/model.md §2).

The formula is written once, in :func:`_rate_terms`, against the small
subset of the array API that numpy and torch share (``@``, ``.sum``,
``log1p``, broadcasting). Front ends:

* :func:`user_rates` / :func:`sum_rate` — hard assignments (pilot index
  vectors, or one-hot pilot matrices), numpy or torch, batched over any
  leading dimensions. For numpy inputs the default backend is a compiled
  numba kernel (:mod:`cfenv._kernels`) that visits only same-pilot user
  pairs, O(M K^2 / tau_p) per assignment; ``backend="reference"`` runs the
  array formula, which the kernel is tested against.
* :func:`relaxed_user_rates` / :func:`relaxed_sum_rate` — row-stochastic pilot
  probability matrices Q, torch, differentiable (the unsupervised loss, docs/model.md
  eq. (2.9)): every C[k, j], j != k, becomes q_k . q_j.

Derivation used by both paths, with ``c[m,k] = gamma[m,k] / beta[m,k]
= tau_p rho_p beta[m,k] / (tau_p rho_p sum_j beta[m,j] C[k,j] + 1)``:

* eta[m] = 1 / (L sum_k gamma[m,k]) does not depend on k;
* S_k  = rho_d L^2 Y[k,k]^2 and PC_k = rho_d L^2 sum_{j != k} C[k,j] Y[j,k]^2 with
  ``Y[j,k] = sum_m sqrt(eta[m]) c[m,j] beta[m,k]``;
* BU_k = rho_d L sum_m eta[m] (sum_j gamma[m,j]) beta[m,k] = rho_d sum_m beta[m,k]
  exactly, independent of the assignment (uniform power control).

Every front end checks its input at the boundary, with one ``ValueError`` naming the
problem: beta must be real float32/float64 in (0, 1] (:func:`validate_beta`), assignments
follow the rules of :func:`as_pilot_indices`. Valid input gives finite rates: beta <= 1 and
the ranges of :class:`SystemConfig` bound every intermediate in float64, and an AP whose
gamma[m, k] all underflow to 0 (every beta[m, k] below ~1e-160) gets the weight
sqrt(eta[m]) = 0 instead of a division by zero (its terms lie far below the others' last bit).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np

from cfenv.config import SystemConfig, check_config
from cfenv.objectives import Objective

if TYPE_CHECKING:  # pragma: no cover
    import torch

Backend = Literal["auto", "numba", "reference"]
ONE_HOT_ATOL = 1e-6
"""tolerance on row sums of relaxed pilot matrices"""


class RateTerms(NamedTuple):
    """Per-user terms of the SINR, each ``(..., K)``, linear (normalised by the noise power)."""

    signal: Any
    pilot_contamination: Any
    beamforming_uncertainty: Any


def _is_torch(x: object) -> bool:
    return type(x).__module__.startswith("torch")


def _where(condition: Any, x: Any, y: float) -> Any:
    if _is_torch(condition):
        import torch

        return torch.where(condition, x, y)
    return np.where(condition, x, y)


def _rate_terms(beta: Any, off_coupling: Any, tau_p: int, config: SystemConfig) -> RateTerms:
    """The formula itself, for numpy or torch arrays.

    Args:
        beta: ``(..., M, K)`` linear fading.
        off_coupling: ``(..., K, K)`` symmetric, zero diagonal: C[k, j] for j != k
            (0/1 for hard assignments, q_k . q_j for relaxed ones).
    """
    tau_rho_p = tau_p * config.rho_p
    L = config.L
    # A[m, k] = sum_j beta[m, j] C[k, j], with C[k, k] = 1
    contamination_power = beta @ off_coupling + beta
    c = tau_rho_p * beta / (tau_rho_p * contamination_power + 1.0)  # gamma / beta
    gamma = c * beta
    # An AP whose every gamma[m, k] underflows to 0 (all its beta below ~1e-160 in float64,
    # ~1e-28 in float32) gets the weight sqrt(eta) = 0 instead of 1/0: its terms lie far below
    # the others' precision. Elsewhere the values are those of 1 / sqrt(L sum_k gamma[m, k]).
    gamma_sum = gamma.sum(-1)
    positive = gamma_sum > 0
    sqrt_eta = _where(positive, 1.0 / (L * _where(positive, gamma_sum, 1.0)) ** 0.5, 0.0)  # (..., M)
    u = c * sqrt_eta[..., None]
    y = u.swapaxes(-1, -2) @ beta  # (..., K, K): Y[j, k]
    y_diag = (u * beta).sum(-2)  # (..., K): Y[k, k]
    scale = config.rho_d * L * L
    signal = scale * y_diag * y_diag
    pilot_contamination = scale * (off_coupling * (y * y)).sum(-2)
    beamforming_uncertainty = config.rho_d * beta.sum(-2)
    return RateTerms(signal, pilot_contamination, beamforming_uncertainty)


def _rates_from_terms(terms: RateTerms, config: SystemConfig, log1p: Any) -> Any:
    """R_k = B log2(1 + SINR_k), through log1p so that weak users keep their precision in float32."""
    sinr = terms.signal / (terms.pilot_contamination + terms.beamforming_uncertainty + 1.0)
    return (config.bandwidth_hz / math.log(2.0)) * log1p(sinr)


# --------------------------------------------------------------------- checks
def _shape_of(x: Any) -> tuple[int, ...]:
    return tuple(x.shape)


def _as_array(x: Any, what: str) -> Any:
    """torch tensors as they are, anything else through ``numpy.asarray`` (lists, tuples)."""
    if _is_torch(x) or isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be an array, got {type(x).__name__} ({err})") from None


def float32_overflow_bound(config: SystemConfig) -> float:
    """An upper bound on the signal plus pilot-contamination term for beta in (0, 1]:
    ``rho_d tau_p rho_p L K M^2`` (from ``sqrt(eta[m]) c[m, j] beta[m, k] <= sqrt(tau_p rho_p / L)``)."""
    return config.rho_d * config.tau_p * config.rho_p * config.L * config.K * float(config.M) ** 2


FLOAT32_SAFE = float(np.finfo(np.float32).max) / 16.0
"""float32 beta is refused where :func:`float32_overflow_bound` exceeds this (never at realistic powers)"""


def validate_beta(beta: Any, config: SystemConfig, *, name: str = "beta") -> None:
    """Raise one ``ValueError`` naming the problem unless beta is a valid fading array.

    Valid: a real float32 or float64 numpy array or torch tensor of shape ``(..., M, K)``,
    every entry in (0, 1] (a linear power gain: positive, and a passive channel never gains
    power). Every rate is then finite: the formula cannot overflow in float64 for any
    :class:`SystemConfig`; float32 input is refused where this config's powers could overflow
    float32 (:func:`float32_overflow_bound` above :data:`FLOAT32_SAFE`).
    """
    check_config(config)
    shape = _shape_of(beta)
    if len(shape) < 2 or shape[-2:] != (config.M, config.K):
        raise ValueError(
            f"{name} must have shape (..., M, K) = (..., {config.M}, {config.K}), got {shape}"
        )
    if _is_torch(beta):
        import torch

        if beta.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"{name} must be real float32/float64, got {beta.dtype}")
        is_float32 = beta.dtype == torch.float32
        finite = bool(torch.isfinite(beta).all())
    else:
        if beta.dtype not in (np.float32, np.float64):
            raise ValueError(f"{name} must be real float32/float64, got {beta.dtype}")
        is_float32 = beta.dtype == np.float32
        finite = bool(np.isfinite(beta).all())
    if not finite:
        raise ValueError(f"{name} contains NaN or inf (must be finite)")
    if beta.numel() == 0 if _is_torch(beta) else beta.size == 0:
        return
    low, high = float(beta.min()), float(beta.max())
    if low <= 0:
        raise ValueError(f"{name} must be strictly positive (a linear power gain in (0, 1]), got {low:g}")
    if high > 1:
        raise ValueError(f"{name} must be at most 1 (a linear power gain in (0, 1]: a passive channel "
                         f"never gains power), got {high:g}")
    if is_float32 and float32_overflow_bound(config) > FLOAT32_SAFE:
        raise ValueError(f"{name} is float32, which this config's powers could overflow "
                         f"(rho_p = {config.rho_p:.3g}, rho_d = {config.rho_d:.3g}): pass float64")


def _pilot_kind(x: Any) -> str:
    """``"bool"``, ``"int"`` or ``"float"``; ``ValueError`` for any other dtype (complex, object, ...)."""
    if _is_torch(x):
        import torch

        if x.dtype == torch.bool:
            return "bool"
        if x.is_floating_point():
            return "float"
        if not x.is_complex():
            return "int"
    else:
        kind = {"b": "bool", "i": "int", "u": "int", "f": "float"}.get(x.dtype.kind)
        if kind is not None:
            return kind
    raise ValueError(f"pilots must be integer pilot indices or a 0/1 one-hot matrix, got dtype {x.dtype}")


def _is_integer_dtype(x: Any) -> bool:
    return _pilot_kind(x) == "int"


def _all_integral(x: Any) -> bool:
    if _is_torch(x):
        import torch

        return bool((torch.isfinite(x) & (x == torch.round(x))).all())
    return bool(np.all(np.isfinite(x) & (x == np.round(x))))


def pilots_from_one_hot(pilot_matrix: Any, tau_p: int, K: int | None = None) -> Any:
    """``(..., K, tau_p)`` one-hot pilot matrix -> ``(..., K)`` int64 pilot indices.

    Any real dtype (bool, integer, floating). Raises ``ValueError`` if the last axis is not
    tau_p (or the one before it not ``K``, when given) or a row is not one-hot.
    """
    pilot_matrix = _as_array(pilot_matrix, "a pilot matrix")
    _pilot_kind(pilot_matrix)
    shape = _shape_of(pilot_matrix)
    if len(shape) < 2 or shape[-1] != tau_p or (K is not None and shape[-2] != K):
        want = f"(..., K, tau_p) = (..., {K}, {tau_p})" if K is not None else f"(..., K, tau_p={tau_p})"
        raise ValueError(f"a pilot matrix must have shape {want}, got {shape}")
    if _is_torch(pilot_matrix):
        import torch

        p = pilot_matrix.to(torch.float64)
        ok = bool((((p == 0) | (p == 1)).all()) and bool((p.sum(-1) == 1).all()))
        if not ok:
            raise ValueError("pilot matrix rows must be one-hot (one 1 per row, zeros elsewhere)")
        return p.argmax(-1)
    p = np.asarray(pilot_matrix, dtype=np.float64)
    if not (np.all((p == 0) | (p == 1)) and np.all(p.sum(-1) == 1)):
        raise ValueError("pilot matrix rows must be one-hot (one 1 per row, zeros elsewhere)")
    return p.argmax(-1).astype(np.int64)


PILOT_FORMS = ("auto", "indices", "one-hot")


def as_pilot_indices(pilots: Any, config: SystemConfig, *, form: str = "auto") -> Any:
    """Normalise an assignment to ``(..., K)`` int64 indices in [0, tau_p) (numpy or torch).

    An assignment comes in one of two forms:

    * **pilot indices**: an integer array (not bool) of shape ``(..., K)``; entry k is the
      pilot of user k, in ``[0, tau_p)``;
    * **a one-hot pilot matrix**: shape ``(..., K, tau_p)``, every entry 0 or 1 and exactly
      one 1 per row, of any real dtype (bool, integer or floating).

    ``form="auto"`` tells them apart by dtype, then shape:

    * bool and floating arrays are one-hot matrices (a float is never a pilot index);
    * integer arrays are pilot indices when their last axis is K, and one-hot matrices when
      their shape is ``(..., K, tau_p)`` with ``tau_p != K``. At ``K == tau_p`` an integer
      ``(..., K, K)`` array is therefore a batch of index vectors (what agents return);
      give a one-hot matrix there as bool, or pass ``form="one-hot"``.

    What could be either is refused: at ``K == tau_p`` a floating ``(..., K, K)`` array of
    whole numbers may be float-typed pilot indices as much as a one-hot matrix, so it raises
    (give indices an integer dtype, such a matrix a bool dtype, or pass ``form``).
    ``form="indices"`` or ``"one-hot"`` accepts that form only (the environments pass it:
    a single action's shape is unambiguous). Raises ``ValueError`` naming the problem on a
    bad dtype (complex, object, ...) or shape, an index outside [0, tau_p), or a row that is
    not one-hot.
    """
    if form not in PILOT_FORMS:
        raise ValueError(f"form must be one of {PILOT_FORMS}, got {form!r}")
    pilots = _as_array(pilots, "pilots")
    kind = _pilot_kind(pilots)
    K, tau_p = config.K, config.tau_p
    shape = _shape_of(pilots)
    fits_indices = len(shape) >= 1 and shape[-1] == K
    fits_one_hot = len(shape) >= 2 and shape[-2:] == (K, tau_p)
    if form == "auto":
        if kind == "int":
            form = "one-hot" if fits_one_hot and not fits_indices else "indices"
        elif kind == "float" and fits_one_hot and fits_indices and _all_integral(pilots):
            raise ValueError(
                f"ambiguous pilots: a float array of shape {shape} at K == tau_p == {K} may be pilot indices "
                "(..., K) or a one-hot matrix (..., K, tau_p); give indices an integer dtype and a one-hot "
                "matrix a bool dtype (or pass form='indices' / form='one-hot' to as_pilot_indices)"
            )
        elif not fits_one_hot and fits_indices:
            raise ValueError(
                f"pilot indices must be an integer array, got {pilots.dtype} of shape {shape} "
                f"(a bool or float array is read as a one-hot matrix (..., K, tau_p) = (..., {K}, {tau_p}))"
            )
        else:
            form = "one-hot"
    if form == "one-hot":
        pilots = pilots_from_one_hot(pilots, tau_p, K)
    elif kind != "int":
        raise ValueError(f"pilot indices must be an integer array, got {pilots.dtype}")
    shape = _shape_of(pilots)
    if len(shape) < 1 or shape[-1] != K:
        raise ValueError(f"pilots must have shape (..., K) = (..., {K}), got {shape}")
    if shape and int(np.prod(shape)) > 0:
        low, high = int(pilots.min()), int(pilots.max())
        if low < 0 or high >= tau_p:
            bad = low if low < 0 else high
            raise ValueError(f"pilot indices must lie in [0, tau_p={tau_p}), got {bad}")
    if _is_torch(pilots):
        import torch

        return pilots.to(torch.int64)
    return pilots.astype(np.int64, copy=False)


def _broadcast_batch(beta_shape: tuple[int, ...], pilots_shape: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(beta_shape[:-2], pilots_shape[:-1]))
    except ValueError:
        raise ValueError(
            f"batch dimensions of beta {beta_shape} and pilots {pilots_shape} do not broadcast"
        ) from None


def _off_coupling_hard(pilots: Any) -> Any:
    """``(..., K)`` indices -> ``(..., K, K)`` float64 0/1 same-pilot indicator with zero diagonal."""
    K = _shape_of(pilots)[-1]
    if _is_torch(pilots):
        import torch

        same = (pilots[..., :, None] == pilots[..., None, :]).to(torch.float64)
        return same * (1.0 - torch.eye(K, dtype=torch.float64, device=pilots.device))
    same = (pilots[..., :, None] == pilots[..., None, :]).astype(np.float64)
    return same * (1.0 - np.eye(K))


def _checked_inputs(beta: Any, pilots: Any, config: SystemConfig) -> tuple[Any, Any]:
    """The front ends' boundary: beta validated, pilots as int64 indices of beta's library."""
    beta = _as_array(beta, "beta")
    validate_beta(beta, config)
    pilots = as_pilot_indices(pilots, config)
    if _is_torch(beta) and not _is_torch(pilots):
        import torch

        pilots = torch.as_tensor(pilots, device=beta.device)
    elif not _is_torch(beta) and _is_torch(pilots):
        pilots = pilots.detach().cpu().numpy()
    _broadcast_batch(_shape_of(beta), _shape_of(pilots))
    return beta, pilots


# --------------------------------------------------------------- front ends
def rate_terms(beta: Any, pilots: Any, config: SystemConfig) -> RateTerms:
    """Signal, pilot-contamination and beamforming-uncertainty terms for hard assignments.

    Args:
        beta: ``(..., M, K)`` linear fading, numpy or torch, float32/float64 in (0, 1].
        pilots: ``(..., K)`` integer pilot indices or ``(..., K, tau_p)`` one-hot matrix
            (:func:`as_pilot_indices`).

    Returns:
        :class:`RateTerms` of ``(..., K)`` arrays (reference path).
    """
    beta, pilots = _checked_inputs(beta, pilots, config)
    off = _off_coupling_hard(pilots)
    if _is_torch(off):
        off = off.to(dtype=beta.dtype, device=beta.device)
    else:
        off = off.astype(beta.dtype, copy=False)
    return _rate_terms(beta, off, config.tau_p, config)


def user_rates(
    beta: Any, pilots: Any, config: SystemConfig, *, backend: Backend = "auto"
) -> Any:
    """Per-user downlink rate R_k [bit/s] for hard pilot assignments.

    Args:
        beta: ``(..., M, K)`` large-scale fading, linear, numpy or torch, float32/float64 in
            (0, 1] (float64 advised; :func:`validate_beta`).
        pilots: ``(..., K)`` integer pilot indices in [0, tau_p), or ``(..., K, tau_p)``
            one-hot pilot matrices, read by the rules of :func:`as_pilot_indices`; leading
            dims broadcast with beta's.
        config: supplies M, K, tau_p, L, powers and bandwidth.
        backend: ``"auto"`` (numba for numpy inputs, the reference formula for
            torch), ``"numba"`` or ``"reference"``.

    Returns:
        ``(..., K)`` rates [bit/s], same library and float dtype as beta.
    """
    if backend not in ("auto", "numba", "reference"):
        raise ValueError(f"backend must be 'auto', 'numba' or 'reference', got {backend!r}")
    if _is_torch(beta) or backend == "reference":
        if _is_torch(beta):
            import torch

            terms = rate_terms(beta, pilots, config)
            return _rates_from_terms(terms, config, torch.log1p)
        terms = rate_terms(beta, pilots, config)
        return _rates_from_terms(terms, config, np.log1p)
    return _numba_rates(beta, pilots, config, per_user=True)


def sum_rate(beta: Any, pilots: Any, config: SystemConfig, *, backend: Backend = "auto") -> Any:
    """Sum over users of :func:`user_rates` [bit/s], shape ``(...)``."""
    if backend not in ("auto", "numba", "reference"):
        raise ValueError(f"backend must be 'auto', 'numba' or 'reference', got {backend!r}")
    if _is_torch(beta) or backend == "reference":
        return user_rates(beta, pilots, config, backend="reference").sum(-1)
    return _numba_rates(beta, pilots, config, per_user=False)


def _numba_rates(beta: Any, pilots: Any, config: SystemConfig, *, per_user: bool) -> np.ndarray:
    from cfenv import _kernels

    beta, pilots = _checked_inputs(beta, pilots, config)
    batch = _broadcast_batch(beta.shape, pilots.shape)
    beta_t, bu = prepare_snapshots(beta, config)
    beta_batch = beta.shape[:-2]
    snap_index = np.broadcast_to(
        np.arange(int(np.prod(beta_batch)), dtype=np.int64).reshape(beta_batch), batch
    ).ravel()
    flat_pilots = np.ascontiguousarray(np.broadcast_to(pilots, (*batch, config.K)).reshape(-1, config.K))
    out = _kernels.evaluate(beta_t, bu, snap_index, flat_pilots, config, per_user=per_user)
    out = out.astype(beta.dtype, copy=False)
    return out.reshape((*batch, config.K) if per_user else batch)


def prepare_snapshots(beta: np.ndarray, config: SystemConfig) -> tuple[np.ndarray, np.ndarray]:
    """Kernel layout of a batch of snapshots: ``(S, K, M)`` contiguous float64 beta^T and the
    assignment-independent ``(S, K)`` beamforming-uncertainty term rho_d sum_m beta[m, k]."""
    flat = np.asarray(beta, dtype=np.float64).reshape(-1, config.M, config.K)
    beta_t = np.ascontiguousarray(flat.transpose(0, 2, 1))
    bu = config.rho_d * flat.sum(axis=1)
    return beta_t, bu


def relaxed_user_rates(beta: "torch.Tensor", q: "torch.Tensor", config: SystemConfig) -> "torch.Tensor":
    """Relaxed per-user rate [bit/s] for row-stochastic pilot probabilities (differentiable).

    Args:
        beta: ``(..., M, K)`` linear fading tensor, float32/float64 in (0, 1] (:func:`validate_beta`).
        q: ``(..., K, tau_p)`` real pilot probabilities, rows non-negative and summing to 1.

    Returns:
        ``(..., K)`` rates [bit/s]; equal to :func:`user_rates` when q is one-hot.
    """
    import torch

    if not _is_torch(beta) or not _is_torch(q):
        raise ValueError("relaxed rates need torch tensors beta and q (for numpy, see user_rates)")
    validate_beta(beta, config)
    if not q.is_floating_point():
        raise ValueError(f"q must be a real floating-point tensor, got {q.dtype}")
    shape = _shape_of(q)
    if len(shape) < 2 or shape[-2:] != (config.K, config.tau_p):
        raise ValueError(f"q must have shape (..., K, tau_p) = (..., {config.K}, {config.tau_p}), got {shape}")
    with torch.no_grad():
        if not bool(torch.isfinite(q).all()):
            raise ValueError("q contains NaN or inf")
        if bool((q < 0).any()) or not bool(((q.sum(-1) - 1).abs() <= ONE_HOT_ATOL).all()):
            raise ValueError("q must be row-stochastic: non-negative rows summing to 1")
    _broadcast_batch(_shape_of(beta), shape[:-1])
    q = q.to(beta.dtype)
    overlap = q @ q.swapaxes(-1, -2)
    off = overlap * (1.0 - torch.eye(config.K, dtype=beta.dtype, device=beta.device))
    terms = _rate_terms(beta, off, config.tau_p, config)
    return _rates_from_terms(terms, config, torch.log1p)


def relaxed_sum_rate(beta: "torch.Tensor", q: "torch.Tensor", config: SystemConfig) -> "torch.Tensor":
    """Sum over users of :func:`relaxed_user_rates` [bit/s], shape ``(...)``."""
    return relaxed_user_rates(beta, q, config).sum(-1)


def objective_from_rates(rates: Any, objective: str) -> Any:
    """The objective (:class:`cfenv.objectives.Objective`, or its name) of per-user rates ``(..., K)``
    [bit/s], shape ``(...)``: ``"sum"`` and ``"min"`` in bit/s, ``"proportional"`` = sum_k ln(R_k / 1 Mbit/s)
    [nats], rates floored at 1e-300 bit/s (:meth:`Objective.of_rates`; the reference of
    :func:`cfenv._kernels.objective_of`)."""
    return Objective.parse(objective).of_rates(rates)


def objective_reward(rates_mbps: Any, objective: str) -> Any:
    """The objective of per-user rates ``(..., K)`` in Mbit/s, shape ``(...)``: ``"sum"`` sum_k R_k and
    ``"min"`` min_k R_k in Mbit/s, ``"proportional"`` sum_k ln(R_k / 1 Mbit/s) in nats (docs/model.md
    eqs. (2.8), (2.10), (2.11)): the environments' reward (:meth:`Objective.reward`)."""
    return Objective.parse(objective).reward(rates_mbps)


SMOOTH_MIN_TEMPERATURE = 1e6
"""temperature t [bit/s] of the smooth minimum -t ln sum_k exp(-R_k / t) whose gradient the
relaxed "min" objective carries (docs/model.md eq. (2.13)); 1 Mbit/s, against typical user rates of
tens of Mbit/s, so that users within a few Mbit/s of the weakest share its gradient"""


def objective_value(beta: Any, pilots: Any, config: SystemConfig, *, backend: Backend = "auto") -> Any:
    """``config.objective`` of hard assignments, batched (shapes as :func:`sum_rate`): shape ``(...)``,
    ``"sum"`` and ``"min"`` in bit/s, ``"proportional"`` in nats (docs/model.md eqs. (2.8), (2.10),
    (2.11)).

    ``"sum"`` is :func:`sum_rate` itself (same kernel, same bits), so callers that switch from the
    sum rate to this function change no number under the default objective; the other objectives
    reduce the kernel's per-user rates (:func:`user_rates`) with :func:`objective_from_rates`, the
    reference of the compiled :func:`cfenv._kernels.objective_of` that the searches use."""
    if config.objective is Objective.SUM:
        return sum_rate(beta, pilots, config, backend=backend)
    return config.objective.of_rates(user_rates(beta, pilots, config, backend=backend))


def smooth_min(rates: "torch.Tensor", temperature: float = SMOOTH_MIN_TEMPERATURE) -> "torch.Tensor":
    """Log-sum-exp soft minimum ``-t ln sum_k exp(-R_k / t)`` over the last axis, ``(..., K) -> (...)``,
    in the unit of ``rates`` (``temperature`` in the same unit); it lies in ``[min - t ln K, min]``."""
    import torch

    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    return -temperature * torch.logsumexp(-rates / temperature, dim=-1)


def relaxed_objective(beta: "torch.Tensor", q: "torch.Tensor", config: SystemConfig, *,
                      temperature: float = SMOOTH_MIN_TEMPERATURE) -> "torch.Tensor":
    """The differentiable ``config.objective`` of row-stochastic pilot probabilities ``q``
    (:func:`relaxed_user_rates`), shape ``(...)``; units as :func:`objective_from_rates`.

    * ``"sum"``: :func:`relaxed_sum_rate` (eq. (2.9) summed).
    * ``"min"``: value-exact smooth minimum (eq. (2.13)): its *value* is min_k R~_k (so at one-hot
      ``q`` it equals the hard minimum of :func:`objective_value` exactly), its *gradient* that of
      :func:`smooth_min` at ``temperature`` [bit/s], spread over the users near the minimum
      instead of the one argmin user that the hard minimum's gradient reaches.
    * ``"proportional"``: sum_k ln(max(R~_k, 1e-300) / 1 Mbit/s) [nats], already smooth.
    """
    if config.objective is Objective.SUM:
        return relaxed_sum_rate(beta, q, config)
    rates = relaxed_user_rates(beta, q, config)
    if config.objective is Objective.MIN:
        soft = smooth_min(rates, temperature)
        return rates.amin(-1).detach() + (soft - soft.detach())
    return config.objective.of_rates(rates)
