"""SE of the scalable model by Monte-Carlo over channel realizations (docs/model.md §8.6): the combining
and precoding schemes with no closed form, in the uplink and the downlink --

* ``lp-mmse``: local partial MMSE, distributed (each AP on its own estimates of the users it serves),
* ``p-mmse``: partial MMSE, centralized (each user's serving APs jointly, over the users they serve),
* ``mmse``: MMSE, centralized over every user (not scalable; the book's upper reference),
* ``mr``: MR, distributed (a check: it equals the closed forms (8.4) / (8.5) within the sampling error).

As ``functionChannelEstimates.m``, ``functionComputeSE_uplink.m`` and ``functionComputeSE_downlink.m`` of
the book's code: channel draws ``h ~ CN(0, R)``, MMSE estimates from the received pilots, estimation-error
correlations ``C = R - B``. Uplink: distributed schemes by the use-and-then-forget bound (Theorem 5.4, unit
weights), centralized ones as the mean of the instantaneous SINR (5.5). Downlink: the hardening bound
(Theorem 6.1) for all, precoders the normalised combiners: distributed ``w_mk = sqrt(rho_mk / E||v_mk||^2)
v_mk`` with the power heuristic (6.36), centralized ``w_k = sqrt(rho_k / E||v_k||^2) v_k`` with the
scalable centralized allocation (7.43) (upsilon = -1/2, kappa = 1/2).

Realizations come in batches of :data:`BATCH`, batch b from its own seed drawn from the caller's ``rng``,
so the numbers depend on ``n`` and the seed only, and a downlink's second pass (precoders normalised by
the first pass's means) sees the same draws. Too slow to be a step's reward: ``evaluate.py --score``
rescores the assignments the agents chose (:func:`agents.lab.rescore.rescore_records`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from cfenv.config import SystemConfig
from cfenv.models.scalable_se import Prepared, _estimation, distributed_power, pilot_lengths, pre_log, serving_mask

SCHEMES = ("mr", "lp-mmse", "p-mmse", "mmse")
"""the processing schemes :func:`monte_carlo_se` evaluates (uplink combining / downlink precoding)"""
CENTRALIZED = ("p-mmse", "mmse")
BATCH = 50
"""channel realizations drawn and processed at once (bounds the memory; the numbers do not depend on
the machine, only on ``n`` and the seed)"""
UPSILON, KAPPA = -0.5, 0.5
"""the exponents of the centralized power allocation (7.43), as in the book's downlink scripts"""


def check_schemes(schemes: tuple[str, ...]) -> None:
    """``ValueError`` naming a scheme outside :data:`SCHEMES`."""
    for name in schemes:
        if name not in SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, got {name!r}")


def monte_carlo_se(prep: Prepared, pilots: np.ndarray, config: SystemConfig, scheme: str | tuple[str, ...], n: int,
                   rng: np.random.Generator) -> np.ndarray | dict[str, np.ndarray]:
    """``(K,)`` SE [bit/s/Hz] of one ``(K,)`` assignment on the config's link under ``scheme``
    (:data:`SCHEMES`; the config's clusters, pre-log included), from ``n`` realizations drawn from ``rng``;
    a tuple of schemes gives a dict of them, all on the same realizations."""
    schemes = (scheme,) if isinstance(scheme, str) else tuple(scheme)
    check_schemes(schemes)
    if n < 1:
        raise ValueError(f"realizations must be >= 1, got {n}")
    pilots = np.asarray(pilots, dtype=np.int64)
    sim = _Simulation(prep, pilots, config, n, rng)
    run = sim.uplink if config.link == "uplink" else sim.downlink
    out = {name: pre_log(config, sim.length) * run(name) for name in schemes}
    return out[scheme] if isinstance(scheme, str) else out


class _Simulation:
    """One assignment on one snapshot: its clusters, estimators and batches of realizations."""

    def __init__(self, prep: Prepared, pilots: np.ndarray, config: SystemConfig, n: int,
                 rng: np.random.Generator) -> None:
        self.prep, self.pilots, self.config, self.n = prep, pilots, config, n
        self.p = config.pilot_power_w
        self.serve = serving_mask(prep, pilots[None], config.tau_p, config.cluster)[0]  # (M, K)
        self.length = float(pilot_lengths(pilots[None], config)[0])  # the pilot sequences' length
        rp, B = _estimation(prep, pilots[None], config.tau_p, self.p, np.array([self.length]))
        self.rp, self.B, self.C = rp[0], B[0], prep.R - B[0]
        L = prep.R.shape[-1]
        gain = np.real(np.trace(prep.R, axis1=-2, axis2=-1)) / L
        self.roots = np.linalg.cholesky(prep.R + 1e-12 * gain[..., None, None] * np.eye(L))
        self.seeds = rng.integers(0, 2**63, size=-(-n // BATCH), dtype=np.int64)

    def batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(H, Hhat)`` of each batch, ``(b, M, K, L)``: channels and their MMSE estimates."""
        M, K, L, _ = self.prep.R.shape
        tau, p, n_len = self.config.tau_p, self.p, self.length
        one_hot = (self.pilots[:, None] == np.arange(tau)).astype(np.float64)  # (K, tau)
        for i, seed in enumerate(self.seeds):
            rng = np.random.default_rng(int(seed))
            b = min(BATCH, self.n - i * BATCH)
            white = (rng.standard_normal((b, M, K, L)) + 1j * rng.standard_normal((b, M, K, L))) / np.sqrt(2.0)
            H = np.einsum("mkab,nmkb->nmka", self.roots, white)
            noise = (rng.standard_normal((b, M, tau, L)) + 1j * rng.standard_normal((b, M, tau, L))) / np.sqrt(2.0)
            # each pilot sequence has length n_len (tau_p, or the pilots used): y_t = sqrt(p) n sum h + sqrt(n) noise
            received = np.sqrt(p) * n_len * np.einsum("nmka,kt->nmta", H, one_hot) + np.sqrt(n_len) * noise
            # Hhat_mk = sqrt(p) R_mk Psi^-1 y_{m, t_k} = rp_mk y / (n sqrt(p)), rp = n p R Psi^-1
            yield H, np.einsum("mkab,nmkb->nmka", self.rp, received[:, :, self.pilots]) / (n_len * np.sqrt(p))

    # -- combiners -------------------------------------------------------------------------------------

    def local(self, Hhat: np.ndarray, scheme: str) -> np.ndarray:
        """``(b, M, K, L)`` local MR or LP-MMSE (5.39) combiners, zero where the AP does not serve."""
        Hs = Hhat * self.serve[None, :, :, None]
        if scheme == "mr":
            return Hs
        p = self.p
        gram = np.einsum("nmka,nmkb->nmab", Hs, Hs.conj()) + np.einsum("mk,mkab->mab", self.serve, self.C)[None]
        V = p * np.linalg.solve(p * gram + np.eye(Hhat.shape[-1]), np.swapaxes(Hs, -1, -2)).swapaxes(-1, -2)
        return V * self.serve[None, :, :, None]

    def cluster(self, k: int) -> np.ndarray:
        """The APs serving user ``k``."""
        return np.flatnonzero(self.serve[:, k])

    def joint(self, Hhat: np.ndarray, k: int, scheme: str) -> np.ndarray:
        """``(b, |M_k| L)`` user k's P-MMSE (5.16) or MMSE combiner over its serving APs (stacked AP by AP)."""
        aps, p = self.cluster(k), self.p
        b, _, K, L = Hhat.shape
        est = Hhat[:, aps].transpose(0, 1, 3, 2).reshape(b, len(aps) * L, K)
        partners = self.serve[aps].any(axis=0) if scheme == "p-mmse" else np.ones(K, dtype=bool)  # (5.15)
        sub = est[:, :, partners]
        err = _block(self.C[aps][:, partners].sum(axis=1))
        matrix = p * (sub @ np.swapaxes(sub.conj(), -1, -2)) + p * err + np.eye(len(aps) * L)
        return p * np.linalg.solve(matrix, est[:, :, k:k + 1])[..., 0]

    # -- uplink ----------------------------------------------------------------------------------------

    def uplink(self, scheme: str) -> np.ndarray:
        """``(K,)`` uplink log2(1 + SINR) (no pre-log)."""
        return self._uplink_joint(scheme) if scheme in CENTRALIZED else self._uplink_local(scheme)

    def _uplink_local(self, scheme: str) -> np.ndarray:
        """Use-and-then-forget bound (Theorem 5.4), unit weights, its expectations as sample means."""
        K, p = self.pilots.size, self.p
        own, power, norm = np.zeros(K, complex), np.zeros(K), np.zeros(K)
        for H, Hhat in self.batches():
            V = self.local(Hhat, scheme)
            g = np.einsum("nmka,nmia->nki", V.conj(), H)  # sum over APs of v_mk^H h_mi
            own += np.einsum("nkk->k", g)
            power += np.sum(np.abs(g) ** 2, axis=(0, 2))
            norm += np.sum(np.abs(V) ** 2, axis=(0, 1, 3))
        own, power, norm = own / self.n, power / self.n, norm / self.n
        return np.log2(1.0 + p * np.abs(own) ** 2 / (p * power - p * np.abs(own) ** 2 + norm))

    def _uplink_joint(self, scheme: str) -> np.ndarray:
        """Mean of log2(1 + the instantaneous SINR (5.5)) of each user's centralized combiner."""
        M, K, L, _ = self.prep.R.shape
        p, total = self.p, np.zeros(K)
        for _, Hhat in self.batches():
            b = Hhat.shape[0]
            for k in range(K):  # one user's stacked cluster at a time: its dimension is |M_k| L
                aps = self.cluster(k)
                v = self.joint(Hhat, k, scheme)
                est = Hhat[:, aps].transpose(0, 1, 3, 2).reshape(b, len(aps) * L, K)
                inner = np.einsum("nd,ndi->ni", v.conj(), est)
                signal = p * np.abs(inner[:, k]) ** 2
                rest = p * np.sum(np.abs(inner) ** 2, axis=1) - signal
                noise_cov = p * _block(self.C[aps].sum(axis=1)) + np.eye(len(aps) * L)
                noise = np.real(np.einsum("nd,de,ne->n", v.conj(), noise_cov, v))
                total[k] += np.sum(np.log2(1.0 + signal / (rest + noise)))
        return total / self.n

    # -- downlink --------------------------------------------------------------------------------------

    def downlink(self, scheme: str) -> np.ndarray:
        """``(K,)`` downlink log2(1 + SINR) by the hardening bound (Theorem 6.1) (no pre-log)."""
        gains = self._downlink_joint(scheme) if scheme in CENTRALIZED else self._downlink_local(scheme)
        K = self.pilots.size
        signal, interference = np.zeros(K, complex), np.zeros(K)
        for G in gains:  # G (b, i, k): h_i^H w_k, user i receiving user k's precoded signal
            signal += np.einsum("nkk->k", G)
            interference += np.sum(np.abs(G) ** 2, axis=(0, 2))
        signal, interference = signal / self.n, interference / self.n
        return np.log2(1.0 + np.abs(signal) ** 2 / (interference - np.abs(signal) ** 2 + 1.0))

    def _downlink_local(self, scheme: str) -> Iterator[np.ndarray]:
        """Gains of the distributed precoders: each AP's combiners normalised to its power heuristic."""
        rho = distributed_power(self.prep, self.serve[None], self.config.ap_power_w)[0]  # (M, K) [W]
        if scheme == "mr":  # E||v_mk||^2 = tr(B_mk) exactly, as the book's code
            scaling = np.real(np.trace(self.B, axis1=-2, axis2=-1))
        else:
            scaling = sum(np.sum(np.abs(self.local(Hhat, scheme)) ** 2, axis=(0, 3)) for _, Hhat in self.batches())
            scaling = scaling / self.n
        factor = np.where(self.serve, np.sqrt(rho / np.where(self.serve, scaling, 1.0)), 0.0)
        for H, Hhat in self.batches():
            W = self.local(Hhat, scheme) * factor[None, :, :, None]
            yield np.einsum("nmia,nmka->nik", H.conj(), W)

    def _downlink_joint(self, scheme: str) -> Iterator[np.ndarray]:
        """Gains of the centralized precoders, normalised to the centralized allocation (7.43)."""
        M, K, L, _ = self.prep.R.shape
        scaling, portion = np.zeros(K), np.zeros((M, K))
        for _, Hhat in self.batches():
            for k in range(K):
                v = self.joint(Hhat, k, scheme)
                per_ap = np.sum(np.abs(v.reshape(v.shape[0], -1, L)) ** 2, axis=(0, 2))
                scaling[k] += per_ap.sum()
                portion[self.cluster(k), k] += per_ap
        portion /= np.where(scaling > 0, scaling, 1.0)[None]
        rho = centralized_power(self.prep.gain, self.serve, self.config.ap_power_w, portion)
        factor = np.sqrt(rho / np.where(scaling > 0, scaling / self.n, 1.0))
        for H, Hhat in self.batches():
            G = np.zeros((H.shape[0], K, K), complex)
            for k in range(K):
                aps = self.cluster(k)
                w = self.joint(Hhat, k, scheme) * factor[k]
                G[:, :, k] = np.einsum("nmia,nma->ni", H[:, aps].conj(), w.reshape(w.shape[0], len(aps), L))
            yield G


def centralized_power(gain: np.ndarray, serve: np.ndarray, ap_power: float, portion: np.ndarray,
                      upsilon: float = UPSILON, kappa: float = KAPPA) -> np.ndarray:
    """``(K,)`` the book's scalable centralized downlink power allocation (7.43)
    (``functionCentralizedPowerAllocation.m``): ``rho_k`` proportional to ``(sum_{m in M_k} gain_mk)^upsilon
    / omega_k^kappa`` with ``omega_k = max_{m in M_k} portion_mk`` (the share of ``E||v_k||^2`` on AP m),
    scaled so that every AP's ``sum_{i in D_m} omega_i rho_i`` stays within ``ap_power``. ``gain``,
    ``serve``, ``portion``: ``(M, K)``."""
    omega = np.max(np.where(serve, portion, 0.0), axis=0)
    weight = np.sum(np.where(serve, gain, 0.0), axis=0) ** upsilon / omega**kappa
    load = serve.astype(np.float64) @ (omega * weight) / ap_power  # (M,): each AP's sum over its users
    return weight / np.max(np.where(serve, load[:, None], 0.0), axis=0)


def _block(blocks: np.ndarray) -> np.ndarray:
    """The block-diagonal matrix of ``(A, L, L)`` blocks."""
    A, L, _ = blocks.shape
    out = np.zeros((A, L, A, L), dtype=blocks.dtype)
    out[np.arange(A), :, np.arange(A), :] = blocks
    return out.reshape(A * L, A * L)
