"""Uplink SE of the scalable model by Monte-Carlo over channel realizations (docs/model.md §8.6): the
combining schemes with no closed form -- LP-MMSE (distributed, each AP on its own estimates) and P-MMSE
(centralized, the serving APs jointly) -- and MR (a check against the closed form (8.4)).

As ``functionChannelEstimates.m`` / ``functionComputeSE_uplink.m`` of the book's code: channel draws
``h ~ CN(0, R)``, MMSE estimates from the received pilots, estimation-error correlations ``C = R - B``.
Distributed schemes (MR, LP-MMSE) use the use-and-then-forget bound of Theorem 5.4 with unit weights
(the sample means of its expectations); P-MMSE the average of the instantaneous SINR (5.5), eq. (5.4).
Too slow to be a step's reward: it rescores given assignments (``benchmarks/scalable_rescore.py``).
"""

from __future__ import annotations

import numpy as np

from cfenv.config import SystemConfig
from cfenv.models.scalable_se import Prepared, _estimation, pre_log, serving_mask

SCHEMES = ("mr", "lp-mmse", "p-mmse")
"""the uplink combining schemes :func:`uplink_se` evaluates"""


def realizations(prep: Prepared, pilots: np.ndarray, config: SystemConfig, n: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` channel draws ``H (n, M, K, L)``, their MMSE estimates ``Hhat`` and the error
    correlations ``C (M, K, L, L)`` under the ``(K,)`` assignment ``pilots``."""
    R = prep.R
    M, K, L, _ = R.shape
    tau, p = config.tau_p, config.pilot_power_w
    roots = np.linalg.cholesky(R + 1e-12 * np.trace(R, axis1=-2, axis2=-1).real[..., None, None] / L * np.eye(L))
    white = (rng.standard_normal((n, M, K, L)) + 1j * rng.standard_normal((n, M, K, L))) / np.sqrt(2.0)
    H = np.einsum("mkab,nmkb->nmka", roots, white)
    noise = (rng.standard_normal((n, M, tau, L)) + 1j * rng.standard_normal((n, M, tau, L))) / np.sqrt(2.0)
    one_hot = (pilots[:, None] == np.arange(tau)).astype(np.float64)  # (K, tau)
    received = np.sqrt(p) * tau * np.einsum("nmka,kt->nmta", H, one_hot) + np.sqrt(tau) * noise
    rp, B = _estimation(prep, pilots[None], tau, p)  # rp = tau p R Psi^-1
    # Hhat_mk = sqrt(p) R_mk Psi^-1 y_{m, t_k} = rp_mk y / (tau sqrt(p))
    Hhat = np.einsum("mkab,nmkb->nmka", rp[0], received[:, :, pilots]) / (tau * np.sqrt(p))
    return H, Hhat, R - B[0]


def uplink_se(prep: Prepared, pilots: np.ndarray, config: SystemConfig, scheme: str | tuple[str, ...], n: int,
              rng: np.random.Generator) -> np.ndarray | dict[str, np.ndarray]:
    """``(K,)`` uplink SE [bit/s/Hz] of one ``(K,)`` assignment under ``scheme`` (:data:`SCHEMES`), the
    config's clusters, from ``n`` realizations drawn from ``rng``; a tuple of schemes gives a dict of
    them, all on the same realizations."""
    schemes = (scheme,) if isinstance(scheme, str) else tuple(scheme)
    for name in schemes:
        if name not in SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, got {name!r}")
    pilots = np.asarray(pilots, dtype=np.int64)
    serve = serving_mask(prep, pilots[None], config.tau_p, config.cluster)[0]  # (M, K)
    H, Hhat, C = realizations(prep, pilots, config, n, rng)
    out = {name: pre_log(config) * (_centralized(H, Hhat, C, serve, config.pilot_power_w) if name == "p-mmse"
                                    else _distributed(H, Hhat, C, serve, config.pilot_power_w, name))
           for name in schemes}
    return out[scheme] if isinstance(scheme, str) else out


def _distributed(H: np.ndarray, Hhat: np.ndarray, C: np.ndarray, serve: np.ndarray, p: float,
                 scheme: str) -> np.ndarray:
    """``(K,)`` log2(1 + SINR) of local MR or LP-MMSE (5.39) combining with unit weights, by the
    use-and-then-forget bound of Theorem 5.4 (its expectations as sample means)."""
    Hs = Hhat * serve[None, :, :, None]
    if scheme == "mr":
        V = Hs
    else:  # LP-MMSE at each AP over the users it serves
        gram = np.einsum("nmka,nmkb->nmab", Hs, Hs.conj()) + np.einsum("mk,mkab->mab", serve, C)[None]
        V = p * np.linalg.solve(p * gram + np.eye(H.shape[-1]), np.swapaxes(Hs, -1, -2)).swapaxes(-1, -2)
        V = V * serve[None, :, :, None]
    g = np.einsum("nmka,nmia->nki", V.conj(), H)  # sum over APs of v_mk^H h_mi, unit weights
    mean_own = np.einsum("nkk->k", g) / len(g)
    power = np.mean(np.abs(g) ** 2, axis=0).sum(axis=1)
    norm = np.mean(np.sum(np.abs(V) ** 2, axis=(1, 3)), axis=0)
    return np.log2(1.0 + p * np.abs(mean_own) ** 2 / (p * power - p * np.abs(mean_own) ** 2 + norm))


def _centralized(H: np.ndarray, Hhat: np.ndarray, C: np.ndarray, serve: np.ndarray, p: float) -> np.ndarray:
    """``(K,)`` E[log2(1 + SINR_k)] of P-MMSE combining over each user's serving APs (5.16), SINR (5.5)."""
    n, M, K, L = H.shape
    out = np.zeros(K)
    for k in range(K):  # one user's stacked cluster at a time: its dimension is |M_k| L
        aps = np.flatnonzero(serve[:, k])
        partners = serve[aps].any(axis=0)  # users served by an AP of k's cluster (5.15)
        est = Hhat[:, aps].transpose(0, 1, 3, 2).reshape(n, len(aps) * L, K)  # (n, |M_k| L, K)
        err_all = _block(C[aps].sum(axis=1))
        err_partial = _block(C[aps][:, partners].sum(axis=1))
        sub = est[:, :, partners]
        matrix = p * (sub @ np.swapaxes(sub.conj(), -1, -2)) + p * err_partial + np.eye(len(aps) * L)
        v = p * np.linalg.solve(matrix, est[:, :, k:k + 1])[..., 0]  # (n, |M_k| L)
        inner = np.einsum("nd,ndi->ni", v.conj(), est)
        signal = p * np.abs(inner[:, k]) ** 2
        rest = p * np.sum(np.abs(inner) ** 2, axis=1) - signal
        noise = np.real(np.einsum("nd,de,ne->n", v.conj(), p * err_all + np.eye(len(aps) * L), v))
        out[k] = np.mean(np.log2(1.0 + signal / (rest + noise)))
    return out


def _block(blocks: np.ndarray) -> np.ndarray:
    """The block-diagonal matrix of ``(A, L, L)`` blocks."""
    A, L, _ = blocks.shape
    out = np.zeros((A, L, A, L), dtype=blocks.dtype)
    out[np.arange(A), :, np.arange(A), :] = blocks
    return out.reshape(A * L, A * L)
