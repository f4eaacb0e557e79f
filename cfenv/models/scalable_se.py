"""Spectral efficiency of the scalable user-centric model, closed forms (docs/model.md §8.2-8.4).

MMSE channel estimation with the assignment's pilot sharing, the dynamic cooperation clusters
that follow it, and the per-user SE [bit/s/Hz] of

* the uplink with local MR combining in distributed operation (the book's Corollary 5.6), with
  equal weights or with n-opt large-scale fading decoding (eq. (5.41)),
* the downlink with MR precoding (Corollary 6.3) and the distributed power heuristic (6.36),

as in ``functionComputeSE_uplink.m`` / ``functionComputeSE_downlink.m`` of the book's code, for a
batch of assignments on one snapshot, vectorised over assignments, APs and users. With
``p`` the user power and ``Psi_{t,m} = tau_p p sum_{i: t_i = t} R_mi + I`` (all normalised by the
noise power), ``B_mk = tau_p p R_mk Psi^-1 R_mk`` and ``g_kim = tau_p p tr(R_mk Psi^-1 R_mi)``
(= the book's ``tr(B_mk R_mk^-1 R_mi)``, written without the inverse of ``R_mk``, which may be
singular).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cfenv.config import SystemConfig

ELEMENTS_PER_CHUNK = 1 << 21
"""complex entries of the largest per-chunk array (assignments x M x K x L^2): bounds the memory of
a batch to about 32 MiB per array"""


@dataclass(frozen=True)
class Prepared:
    """What the SE of any assignment on one snapshot needs, computed once.

    Attributes:
        R: ``(M, K, L, L)`` complex correlation matrices over the noise power.
        gain: ``(M, K)`` gains over the noise power, ``trace(R) / L``.
        master: ``(K,)`` each user's master AP (the strongest; the lowest index on ties).
        total: ``(M, L, L)`` the sum of ``R`` over users.
        transposed: ``(M, L^2, K)`` the entries of ``R[m, i]^T`` as columns, so that
            ``vec(X) @ transposed[m]`` gives ``tr(X R[m, i])`` for every user i at once.
        with_total: ``(M, K, L, L)`` ``R[m, k] @ total[m]`` (for ``tr(B_mk S_m)`` without ``B``).
        by_user: ``(K, M, L, L)`` ``R`` with the users first, contiguous (gathers of a user's matrices).
    """

    R: np.ndarray
    gain: np.ndarray
    master: np.ndarray
    total: np.ndarray
    transposed: np.ndarray
    with_total: np.ndarray
    by_user: np.ndarray

    @classmethod
    def of(cls, R: np.ndarray) -> "Prepared":
        M, K, L, _ = R.shape
        gain = np.real(np.trace(R, axis1=-2, axis2=-1)) / L
        total = R.sum(axis=1)
        return cls(R, gain, np.argmax(gain, axis=0), total,
                   np.ascontiguousarray(R.transpose(0, 3, 2, 1).reshape(M, L * L, K)), R @ total[:, None],
                   np.ascontiguousarray(R.transpose(1, 0, 2, 3)))


def serving_mask(prep: Prepared, pilots: np.ndarray, tau_p: int, cluster: str) -> np.ndarray:
    """``(A, M, K)`` bool: AP m serves user k under each ``(A, K)`` assignment (:func:`serving_in_groups`
    with each pilot's users as one group)."""
    A, K = pilots.shape
    on_pilot = pilots[:, None, :] == np.arange(tau_p)[None, :, None]  # (A, tau_p, K): pilot t's group
    users = np.broadcast_to(np.arange(K), (A * tau_p, K))
    serve = serving_in_groups(prep, users, on_pilot.reshape(A * tau_p, K), cluster).reshape(A, tau_p, K, -1)
    return serve.any(axis=1).transpose(0, 2, 1)  # a user is a member of its own pilot's group only


def serving_in_groups(prep: Prepared, idx: np.ndarray, valid: np.ndarray, cluster: str) -> np.ndarray:
    """``(G, g, M)`` bool: AP m serves member k of each group of ``(G, g)`` users (``valid`` marks the
    members; ascending, so the first slot is the lowest user index). ``"dcc"``: the book's dynamic
    cooperation clusters (``generateSetup.m``): each user's master AP, and at each AP the group's user
    with the largest gain (the lowest user index on ties); ``"all"``: every AP serves every member."""
    M = prep.gain.shape[0]
    if cluster == "all":
        return np.broadcast_to(valid[:, :, None], (*idx.shape, M)).copy()
    member_gain = np.where(valid[:, :, None], prep.gain.T[idx], -np.inf)  # (G, g, M)
    strongest = np.argmax(member_gain, axis=1)  # (G, M)
    serve = strongest[:, None, :] == np.arange(idx.shape[1])[None, :, None]
    serve |= prep.master[idx][:, :, None] == np.arange(M)
    return serve & valid[:, :, None]


def pilot_lengths(pilots: np.ndarray, config: SystemConfig) -> np.ndarray:
    """``(A,)`` the pilot length of each ``(A, K)`` assignment: ``tau_p`` with ``pilot_overhead="budget"``, the
    number of distinct pilots it uses with ``"used"`` (docs/model.md §8.7)."""
    if config.pilot_overhead == "budget":
        return np.full(pilots.shape[0], float(config.tau_p))
    used = (pilots[:, :, None] == np.arange(config.tau_p)).any(axis=1)
    return used.sum(axis=1).astype(np.float64)


def _estimation(prep: Prepared, pilots: np.ndarray, tau_p: int, power: float,
                length: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``RP (A, M, K, L, L) = n p R_mk Psi_{t_k, m}^-1`` and ``B (A, M, K, L, L)`` (eq. (4.7)), ``n`` the pilot
    length of each assignment (``length (A,)``; default ``tau_p``) and ``tau_p`` the number of pilot labels."""
    R = prep.R
    M, K, L, _ = R.shape
    A = pilots.shape[0]
    gain = (np.full(A, float(tau_p)) if length is None else np.asarray(length, dtype=np.float64)) * power
    one_hot = (pilots[:, :, None] == np.arange(tau_p)).astype(np.float64).transpose(0, 2, 1)  # (A, tau_p, K)
    shared = (one_hot @ R.transpose(1, 0, 2, 3).reshape(K, M * L * L)).reshape(A, tau_p, M, L, L)
    psi_inv = np.linalg.inv(gain[:, None, None, None, None] * shared + np.eye(L))
    own = psi_inv[np.arange(A)[:, None], pilots]  # (A, K, M, L, L): Psi^-1 of each user's pilot
    rp = gain[:, None, None, None, None] * (R[None] @ own.transpose(0, 2, 1, 3, 4))
    return rp, rp @ R[None]


def _traces_with_all(prep: Prepared, X: np.ndarray) -> np.ndarray:
    """``(A, M, K, K)`` real ``tr(X[a, m, k] R[m, i])`` for every user i, of ``X (A, M, K, L, L)``."""
    A, M, K, L, _ = X.shape
    return np.real(X.reshape(A, M, K, L * L) @ prep.transposed[None])


def _co_pilot(pilots: np.ndarray) -> np.ndarray:
    """``(A, K, K)`` bool: users k != i share a pilot."""
    same = pilots[:, :, None] == pilots[:, None, :]
    return same & ~np.eye(pilots.shape[1], dtype=bool)


def _uplink_sinr(prep: Prepared, serve: np.ndarray, rp: np.ndarray, B: np.ndarray, pilots: np.ndarray,
                 power: float, lsfd: bool) -> np.ndarray:
    """``(A, K)`` uplink SINR, local MR combining, distributed operation (Corollary 5.6; n-opt LSFD
    weights (5.41) when ``lsfd``, else all weights one)."""
    trace_b = np.real(np.trace(B, axis1=-2, axis2=-1))  # (A, M, K)
    g = _traces_with_all(prep, rp)  # (A, M, K, K): g_kim
    co = _co_pilot(pilots)
    through_all = np.real(np.einsum("amkxy,myx->amk", B, prep.total))  # sum_i tr(B_mk R_mi)
    if not lsfd:
        signal = np.sum(serve * trace_b, axis=1)
        leak = np.einsum("amk,amki->aki", serve.astype(np.float64), g)  # sum over serving APs of g_kim
        contamination = np.sum(np.where(co, leak * leak, 0.0), axis=-1)
        interference = np.sum(serve * through_all, axis=1)
        return power * signal**2 / (power * interference + power * contamination + signal)
    return _lsfd_sinr(prep, serve, B, trace_b, g, co, through_all, power)


def _lsfd_sinr(prep: Prepared, serve: np.ndarray, B: np.ndarray, trace_b: np.ndarray, g: np.ndarray,
               co: np.ndarray, through_all: np.ndarray, power: float) -> np.ndarray:
    """``(A, K)`` uplink SINR with n-opt LSFD: weights ``a = D_partial^-1 b`` from the users served by
    the same APs (eq. (5.41)), scored against the full ``D`` (Theorem 5.4). APs outside a user's
    cluster enter as identity rows with ``b = 0`` (their weight is zero)."""
    A, M, K = serve.shape
    served_with = np.einsum("amk,ami->aki", serve.astype(np.float64), serve.astype(np.float64)) > 0  # U_k
    h = _traces_with_all(prep, B)  # (A, M, K, K): tr(B_mk R_mi)
    partial_through = np.einsum("amki,aki->amk", h, served_with.astype(np.float64))
    b = np.sqrt(power) * np.where(serve, trace_b, 0.0)  # (A, M, K)
    gk = np.where(serve[:, :, :, None], g, 0.0).transpose(0, 2, 3, 1)  # (A, K, i, M)

    def matrix(weights: np.ndarray, diagonal: np.ndarray) -> np.ndarray:
        outer = np.swapaxes(gk * weights[..., None], -1, -2) @ gk  # sum_i w_ki g_kim g_kin, as one batched matmul
        d = power * outer
        d[..., np.arange(M), np.arange(M)] += np.where(serve, power * diagonal + trace_b, 1.0).transpose(0, 2, 1)
        return d

    full = matrix(co.astype(np.float64), through_all)
    partial = matrix((co & served_with).astype(np.float64), partial_through)
    bt = b.transpose(0, 2, 1)  # (A, K, M)
    weights = np.linalg.solve(partial, bt[..., None])[..., 0]
    numerator = np.einsum("akm,akm->ak", weights, bt) ** 2
    return numerator / np.einsum("akm,akmn,akn->ak", weights, full, weights)


def distributed_power(prep: Prepared, serve: np.ndarray, ap_power: float) -> np.ndarray:
    """``(A, M, K)`` [W] the book's distributed downlink power heuristic (6.36): AP m gives each user it
    serves ``ap_power sqrt(gain_mk) / sum over its served users of sqrt(gain)``; ``serve (A, M, K)``."""
    root = np.where(serve, np.sqrt(prep.gain)[None], 0.0)
    return ap_power * root / np.maximum(root.sum(axis=-1, keepdims=True), np.finfo(float).tiny)


def _downlink_sinr(prep: Prepared, serve: np.ndarray, rp: np.ndarray, B: np.ndarray, pilots: np.ndarray,
                   ap_power: float) -> np.ndarray:
    """``(A, K)`` downlink SINR, MR precoding with the distributed power heuristic (6.36): AP m gives
    user k ``rho_tot sqrt(gain_mk) / sum over its served users of sqrt(gain)`` (Corollary 6.3)."""
    trace_b = np.real(np.trace(B, axis1=-2, axis2=-1))
    rho = distributed_power(prep, serve, ap_power)
    signal = np.sum(np.sqrt(rho * trace_b), axis=1)
    per_trace = np.where(serve, rho / trace_b, 0.0)  # (A, M, K)
    A, M, K, L, _ = B.shape
    combined = np.einsum("amk,amkxy->amxy", per_trace, B).reshape(A, M, L * L)  # T_m = sum_k w_mk B_mk
    interference = np.einsum("amx,mxi->ai", combined, prep.transposed)  # sum_m tr(T_m R_mi)
    leak = np.einsum("amk,amki->aki", np.sqrt(per_trace), _traces_with_all(prep, rp))  # cont(i, k) as [k, i]
    contamination = np.sum(np.where(_co_pilot(pilots), leak * leak, 0.0), axis=1)
    return signal**2 / (np.real(interference) + contamination + 1.0)


def pre_log(config: SystemConfig, length: np.ndarray | float | None = None) -> np.ndarray | float:
    """The fraction ``(tau_c - n) / tau_c`` of each coherence block that carries data, ``n`` the pilot length
    (default ``tau_p``; an ``(A,)`` array of :func:`pilot_lengths` gives one per assignment)."""
    n = config.tau_p if length is None else length
    return (config.tau_c - n) / config.tau_c


def spectral_efficiency(prep: Prepared, pilots: np.ndarray, config: SystemConfig) -> np.ndarray:
    """``(A, K)`` SE [bit/s/Hz] of ``(A, K)`` assignments on one snapshot: the configured link,
    cluster and LSFD option, times the pre-log factor ``(tau_c - n) / tau_c`` (``n``: :func:`pilot_lengths`)."""
    pilots = np.asarray(pilots, dtype=np.int64)
    M, K, L, _ = prep.R.shape
    chunk = max(1, ELEMENTS_PER_CHUNK // (M * K * L * L + (M * K * K if config.lsfd else 0)))
    power = config.pilot_power_w  # [W]: R is over the noise power already
    out = np.empty(pilots.shape, dtype=np.float64)
    for lo in range(0, pilots.shape[0], chunk):
        part = pilots[lo:lo + chunk]
        serve = serving_mask(prep, part, config.tau_p, config.cluster)
        length = pilot_lengths(part, config)
        rp, B = _estimation(prep, part, config.tau_p, power, length)
        if config.link == "uplink":
            sinr = _uplink_sinr(prep, serve, rp, B, part, power, config.lsfd)
        else:
            sinr = _downlink_sinr(prep, serve, rp, B, part, config.ap_power_w)
        out[lo:lo + chunk] = pre_log(config, length)[:, None] * np.log2(1.0 + sinr)
    return out
