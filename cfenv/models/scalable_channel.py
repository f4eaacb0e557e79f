"""Snapshots of the scalable user-centric model (docs/model.md §8.1): drops, 3GPP path loss,
shadowing correlated between users, and local-scattering spatial correlation matrices.

It follows the set-up of Demir, Bjornson & Sanguinetti, *Foundations of User-Centric Cell-Free
Massive MIMO* (2021), Section 5.3, and its public code (``generateSetup.m``,
``functionRlocalscattering.m``): the same distributions, drawn from a numpy ``Generator`` and
batched over snapshots. Two numerical choices differ from the MATLAB code and are declared in
docs/model.md §8.1: the shadowing is drawn jointly from its covariance (the book draws it user by
user from the conditional Gaussians: the same distribution), and the local-scattering integral is a
trapezoidal product rule on +-8 standard deviations, with enough nodes for the array's largest
phase (:func:`quadrature_nodes`; the book calls ``integral2``): it converges exponentially on these
smooth Gaussian-weighted integrands.
"""

from __future__ import annotations

import numpy as np

from cfenv.config import SystemConfig

QUADRATURE_SPAN = 8.0
"""the local-scattering integral covers +-8 standard deviations of each angle (the Gaussian beyond
weighs e^-32 ~ 1e-14; the book's code integrates +-20)"""
PAIRS_PER_CHUNK = 2048
"""AP-user pairs per vectorised block of the quadrature (bounds its memory)"""


def wrapped_offsets(ap_positions: np.ndarray, ue_positions: np.ndarray, side_m: float,
                    wrap_around: bool) -> np.ndarray:
    """``(..., M, K, 2)`` horizontal vectors from each AP (its nearest image on the torus when
    ``wrap_around``, as the book's nine wrapped AP positions) to each user [m]."""
    delta = ue_positions[..., None, :, :] - ap_positions[..., :, None, :]
    if wrap_around:
        delta = delta - side_m * np.round(delta / side_m)
    return delta


def user_distances(ue_positions: np.ndarray, side_m: float, wrap_around: bool) -> np.ndarray:
    """``(..., K, K)`` horizontal distances between users [m] (on the torus when ``wrap_around``)."""
    delta = np.abs(ue_positions[..., :, None, :] - ue_positions[..., None, :, :])
    if wrap_around:
        delta = np.minimum(delta, side_m - delta)
    return np.sqrt(np.sum(delta * delta, axis=-1))


def correlated_shadowing_db(ue_positions: np.ndarray, M: int, config: SystemConfig,
                            rng: np.random.Generator) -> np.ndarray:
    """``(..., M, K)`` shadow fading [dB]: for each AP, Gaussian over users with covariance
    ``sigma^2 2^(-d_ij / d_decorr)`` (the book's eq. (5.43)), independent between APs.

    The covariance may be singular (users at one spot) or, measured on the torus, slightly
    indefinite: its symmetric square root clips negative eigenvalues to zero."""
    sigma = config.shadowing_std_db
    batch, K = ue_positions.shape[:-2], ue_positions.shape[-2]
    z = rng.standard_normal((*batch, K, M))
    if sigma == 0.0:
        return np.zeros((*batch, M, K))
    cov = sigma**2 * np.exp2(-user_distances(ue_positions, config.area_side_m, config.wrap_around)
                             / config.decorrelation_m)
    eigval, eigvec = np.linalg.eigh(cov)
    root = eigvec * np.sqrt(np.clip(eigval, 0.0, None))[..., None, :]
    return np.swapaxes(root @ z, -1, -2)


def path_gain_db(distance_3d_m: np.ndarray, config: SystemConfig) -> np.ndarray:
    """3GPP Urban Microcell path gain ``intercept - slope log10(d / 1 m)`` [dB] (the book's eq. (5.42))."""
    return config.path_loss_intercept_db - config.path_loss_slope_db * np.log10(distance_3d_m)


def quadrature_nodes(asd_rad: float, max_phase: float) -> int:
    """Nodes per angle of the trapezoidal rule: the Fourier transform of a Gaussian-weighted
    ``exp(i b sin(.))`` (b <= ``max_phase``) lives below ``b + 8 / sigma``, and a step ``h`` is exact
    to about 1e-13 while ``2 pi / h`` stays above it."""
    step = 2.0 * np.pi / (1.2 * max_phase + 9.0 / asd_rad + 12.0)
    return max(17, int(np.ceil(2.0 * QUADRATURE_SPAN * asd_rad / step)) | 1)


def _gaussian_rule(asd_rad: float, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes on +-:data:`QUADRATURE_SPAN` standard deviations and normalised Gaussian weights."""
    x = np.linspace(-QUADRATURE_SPAN, QUADRATURE_SPAN, nodes) * asd_rad
    w = np.exp(-0.5 * (x / asd_rad) ** 2)
    return x, w / w.sum()


def local_scattering(N: int, azimuth: np.ndarray, elevation: np.ndarray, asd_rad: float,
                     spacing: float = 0.5) -> np.ndarray:
    """Normalised spatial correlation matrices ``(..., N, N)`` complex (trace N) of a uniform linear
    array (``spacing`` wavelengths) under the local scattering model with Gaussian azimuth and
    elevation deviations of standard deviation ``asd_rad`` (the book's eq. (2.18),
    ``functionRlocalscattering.m``): ``[R]_{a,b} = E[exp(2 pi i spacing (b - a) sin(phi + delta)
    cos(theta + eps))]`` for ``b >= a``, Hermitian Toeplitz."""
    azimuth = np.asarray(azimuth, dtype=np.float64)
    elevation = np.broadcast_to(np.asarray(elevation, dtype=np.float64), azimuth.shape)
    distance = spacing * np.arange(N)  # (N,) from the first antenna, in wavelengths
    if asd_rad > 0.0:
        nodes = quadrature_nodes(asd_rad, 2.0 * np.pi * distance[-1])
        dev, w = _gaussian_rule(asd_rad, nodes)
        weights = w[:, None] * w[None, :]
        flat_phi, flat_theta = azimuth.reshape(-1), elevation.reshape(-1)
        first_row = np.empty((flat_phi.size, N), dtype=np.complex128)
        for lo in range(0, flat_phi.size, PAIRS_PER_CHUNK):
            sin_phi = np.sin(flat_phi[lo:lo + PAIRS_PER_CHUNK, None, None] + dev[:, None])
            cos_theta = np.cos(flat_theta[lo:lo + PAIRS_PER_CHUNK, None, None] + dev[None, :])
            step = np.exp(2j * np.pi * spacing * sin_phi * cos_theta)  # (chunk, n, n): one antenna further
            power = step
            for column in range(1, N):  # exp(i c phase) as the c-th power: a product instead of an exp
                first_row[lo:lo + PAIRS_PER_CHUNK, column] = np.einsum("pij,ij->p", power, weights)
                if column + 1 < N:
                    power = power * step
        first_row = first_row.reshape(*azimuth.shape, N)
    else:
        first_row = np.exp(2j * np.pi * (np.sin(azimuth) * np.cos(elevation))[..., None] * distance)
    first_row[..., 0] = 1.0
    lag = np.arange(N)[None, :] - np.arange(N)[:, None]  # b - a
    upper = first_row[..., np.abs(lag)]
    return np.where(lag >= 0, upper, np.conj(upper))


def correlation_matrices(beta: np.ndarray, ap_positions: np.ndarray, ue_positions: np.ndarray,
                         config: SystemConfig) -> np.ndarray:
    """``(..., M, K, L, L)`` complex spatial correlation matrices normalised by the noise power (the
    book's ``R``, so ``trace(R[m, k]) / L = beta[m, k] / N0``): the local scattering model at each
    AP-user pair's nominal angles, or ``beta / N0 * I`` when ``config.asd_deg`` is ``None``."""
    gain_over_noise = beta / config.noise_power_w
    L = config.L
    if config.asd_deg is None:
        return gain_over_noise[..., None, None] * np.eye(L)
    offset = wrapped_offsets(ap_positions, ue_positions, config.area_side_m, config.wrap_around)
    azimuth = np.arctan2(offset[..., 1], offset[..., 0])
    vertical = config.ap_height_m - config.ue_height_m
    distance_3d = np.sqrt(np.sum(offset * offset, axis=-1) + vertical**2)
    elevation = np.arcsin(vertical / distance_3d)
    normalised = local_scattering(L, azimuth, elevation, np.deg2rad(config.asd_deg), config.antenna_spacing)
    return gain_over_noise[..., None, None] * normalised


def draw_scalable(config: SystemConfig, rng: np.random.Generator,
                  batch_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """APs and users uniform on the D x D square, their gains and correlation matrices.

    Returns ``beta (..., M, K)`` linear gains in (0, 1], ``ap_positions (..., M, 2)``,
    ``ue_positions (..., K, 2)`` [m] and ``R (..., M, K, L, L)`` (:func:`correlation_matrices`).
    The draws, in this order: AP positions, user positions, shadowing."""
    side = config.area_side_m
    ap = rng.uniform(0.0, side, size=(*batch_shape, config.M, 2))
    ue = rng.uniform(0.0, side, size=(*batch_shape, config.K, 2))
    offset = wrapped_offsets(ap, ue, side, config.wrap_around)
    vertical = config.ap_height_m - config.ue_height_m
    distance_3d = np.sqrt(np.sum(offset * offset, axis=-1) + vertical**2)
    gain_db = path_gain_db(distance_3d, config) + correlated_shadowing_db(ue, config.M, config, rng)
    beta = np.minimum(10.0 ** (gain_db / 10.0), 1.0)
    return beta, ap, ue, correlation_matrices(beta, ap, ue, config)
