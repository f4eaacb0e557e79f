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
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np

from cfenv.config import SystemConfig

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
    sqrt_eta = 1.0 / (L * gamma.sum(-1)) ** 0.5  # (..., M)
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


def validate_beta(beta: Any, config: SystemConfig) -> None:
    """Raise ``ValueError`` unless beta is ``(..., M, K)``, finite and positive."""
    shape = _shape_of(beta)
    if len(shape) < 2 or shape[-2:] != (config.M, config.K):
        raise ValueError(
            f"beta must have shape (..., M, K) = (..., {config.M}, {config.K}), got {shape}"
        )
    if _is_torch(beta):
        import torch

        finite = bool(torch.isfinite(beta).all())
        positive = bool((beta > 0).all())
        if not beta.is_floating_point():
            raise ValueError(f"beta must be a floating-point tensor, got {beta.dtype}")
    else:
        if not np.issubdtype(beta.dtype, np.floating):
            raise ValueError(f"beta must be a floating-point array, got {beta.dtype}")
        finite = bool(np.isfinite(beta).all())
        positive = bool((beta > 0).all())
    if not finite:
        raise ValueError("beta contains NaN or inf")
    if not positive:
        raise ValueError("beta must be strictly positive (a linear power gain)")


def _is_integer_dtype(x: Any) -> bool:
    if _is_torch(x):
        return not x.is_floating_point() and not x.is_complex() and x.dtype.__str__() != "torch.bool"
    return np.issubdtype(x.dtype, np.integer)


def pilots_from_one_hot(pilot_matrix: Any, tau_p: int) -> Any:
    """``(..., K, tau_p)`` one-hot pilot matrix -> ``(..., K)`` int64 pilot indices.

    Raises ``ValueError`` if the last axis is not tau_p or a row is not one-hot.
    """
    shape = _shape_of(pilot_matrix)
    if len(shape) < 2 or shape[-1] != tau_p:
        raise ValueError(f"a pilot matrix must have shape (..., K, tau_p={tau_p}), got {shape}")
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


def as_pilot_indices(pilots: Any, config: SystemConfig) -> Any:
    """Normalise an assignment to ``(..., K)`` int64 indices in [0, tau_p).

    Integer arrays are pilot indices; floating-point or boolean arrays are
    one-hot pilot matrices ``(..., K, tau_p)``. Raises ``ValueError`` on a bad
    shape, an index outside [0, tau_p) or a row that is not one-hot.
    """
    if not _is_torch(pilots):
        pilots = np.asarray(pilots)
    if not _is_integer_dtype(pilots):
        pilots = pilots_from_one_hot(pilots, config.tau_p)
    shape = _shape_of(pilots)
    if len(shape) < 1 or shape[-1] != config.K:
        raise ValueError(f"pilots must have shape (..., K) = (..., {config.K}), got {shape}")
    if shape and int(np.prod(shape)) > 0:
        low, high = int(pilots.min()), int(pilots.max())
        if low < 0 or high >= config.tau_p:
            bad = low if low < 0 else high
            raise ValueError(f"pilot indices must lie in [0, tau_p={config.tau_p}), got {bad}")
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


# --------------------------------------------------------------- front ends
def rate_terms(beta: Any, pilots: Any, config: SystemConfig) -> RateTerms:
    """Signal, pilot-contamination and beamforming-uncertainty terms for hard assignments.

    Args:
        beta: ``(..., M, K)`` linear fading, numpy or torch, float.
        pilots: ``(..., K)`` integer pilot indices or ``(..., K, tau_p)`` one-hot matrix.

    Returns:
        :class:`RateTerms` of ``(..., K)`` arrays (reference path).
    """
    validate_beta(beta, config)
    pilots = as_pilot_indices(pilots, config)
    _broadcast_batch(_shape_of(beta), _shape_of(pilots))
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
        beta: ``(..., M, K)`` large-scale fading, linear, numpy or torch (float64 advised).
        pilots: ``(..., K)`` integer pilot indices in [0, tau_p), or ``(..., K, tau_p)``
            floating/boolean one-hot pilot matrices; leading dims broadcast with beta's.
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

    beta = np.asarray(beta)
    validate_beta(beta, config)
    pilots = as_pilot_indices(pilots, config)
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
        beta: ``(..., M, K)`` linear fading tensor.
        q: ``(..., K, tau_p)`` pilot probabilities, rows non-negative and summing to 1.

    Returns:
        ``(..., K)`` rates [bit/s]; equal to :func:`user_rates` when q is one-hot.
    """
    import torch

    validate_beta(beta, config)
    if not _is_torch(q):
        raise ValueError("relaxed rates need a torch tensor q")
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
