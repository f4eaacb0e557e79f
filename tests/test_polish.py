"""The screened polish (agents/polish.py): its eta-corrected move estimate against the exact
objective, exact local optimality when nothing is screened out, and both symmetries."""

from __future__ import annotations

import numpy as np
import pytest

from agents.heuristics import master_ap_pilots
from agents.polish import polish, screened_moves
from cfenv.channel import draw_snapshots
from cfenv.config import SystemConfig
from cfenv.rates import objective_value
from tests.conftest import pair_swaps, single_moves


def moved_values(beta: np.ndarray, pilots: np.ndarray, cfg: SystemConfig) -> np.ndarray:
    """Exact objective of every single move ``(K, tau_p)`` of one assignment (brute force)."""
    moves = single_moves(pilots, cfg.tau_p)
    return objective_value(beta[None, None], moves[None], cfg).reshape(cfg.K, cfg.tau_p)


def swapped_values(beta: np.ndarray, pilots: np.ndarray, cfg: SystemConfig) -> np.ndarray:
    """Exact objective of every pair swap of one assignment (brute force)."""
    return objective_value(beta[None], pair_swaps(pilots)[None], cfg)[0]


@pytest.mark.parametrize("objective", ["sum", "proportional"])
@pytest.mark.parametrize("size", [(60, 2, 30, 6), (40, 2, 24, 8)])
def test_eta_correction_brings_the_estimate_close_to_the_exact_move(size, objective):
    cfg = SystemConfig.from_size(size).replace(objective=objective)
    beta = draw_snapshots(cfg, np.random.default_rng(3), (1,)).beta[0]
    pilots = master_ap_pilots(beta[None], cfg.tau_p)[0]
    exact = moved_values(beta, pilots, cfg)
    val, plain = screened_moves(beta, pilots, cfg, corrected=False)
    _, corrected = screened_moves(beta, pilots, cfg, corrected=True)
    assert val == pytest.approx(objective_value(beta[None], pilots[None], cfg)[0], rel=1e-12)
    ok = np.isfinite(corrected)
    assert np.array_equal(ok, np.isfinite(plain))
    assert ok.sum() >= cfg.K * (cfg.tau_p - 1) - cfg.K  # every move but to a second unused pilot
    err_plain = np.median(np.abs(plain - exact)[ok])
    err_corrected = np.median(np.abs(corrected - exact)[ok])
    assert err_corrected < err_plain / 3
    # the estimate's best move of a user is its exactly best move (almost always)
    masked = np.where(ok, exact, -np.inf)
    hits = np.argmax(np.where(ok, corrected, -np.inf), axis=1) == np.argmax(masked, axis=1)
    assert hits.mean() >= 0.9


def test_the_minimum_rate_is_screened_uncorrected():
    cfg = SystemConfig.from_size((40, 2, 24, 8)).replace(objective="min")
    beta = draw_snapshots(cfg, np.random.default_rng(4), (1,)).beta[0]
    pilots = master_ap_pilots(beta[None], cfg.tau_p)[0]
    np.testing.assert_array_equal(screened_moves(beta, pilots, cfg, True)[1], screened_moves(beta, pilots, cfg, False)[1])


@pytest.mark.parametrize("objective", ["sum", "min", "proportional"])
@pytest.mark.parametrize("swaps", [False, True])
def test_unscreened_polish_ends_at_an_exact_local_optimum(objective, swaps):
    cfg = SystemConfig.from_size((20, 2, 10, 3)).replace(objective=objective)
    snaps = draw_snapshots(cfg, np.random.default_rng(7), (4,))
    start = np.random.default_rng(0).integers(0, cfg.tau_p, (4, cfg.K))
    out, stats = polish(snaps.beta, start, cfg, candidates=0, screen_pilots=0, margin=np.inf, swaps=swaps,
                        max_evals=100_000)
    assert np.all(stats["evals"] < 100_000)
    final = objective_value(snaps.beta, out, cfg)
    np.testing.assert_allclose(stats["val"][:, 0], final, rtol=1e-9)
    assert np.all(final >= objective_value(snaps.beta, start, cfg) - 1e-9 * np.abs(final))
    for b in range(4):
        tol = 1e-9 * abs(final[b])
        assert moved_values(snaps.beta[b], out[b], cfg).max() <= final[b] + tol
        if swaps:
            assert swapped_values(snaps.beta[b], out[b], cfg).max() <= final[b] + tol


def test_swaps_raise_the_polish_end_point():
    cfg = SystemConfig.from_size((60, 2, 30, 6))
    snaps = draw_snapshots(cfg, np.random.default_rng(8), (6,))
    start = master_ap_pilots(snaps.beta, cfg.tau_p)
    moves_only, _ = polish(snaps.beta, start, cfg, max_evals=10_000)
    with_swaps, _ = polish(snaps.beta, start, cfg, max_evals=10_000, swaps=True)
    gain = objective_value(snaps.beta, with_swaps, cfg) - objective_value(snaps.beta, moves_only, cfg)
    assert np.all(gain >= -1e-9) and np.any(gain > 0)


@pytest.mark.parametrize("swaps", [False, True])
def test_screened_polish_keeps_both_symmetries(swaps):
    cfg = SystemConfig.from_size((30, 2, 16, 4))
    snaps = draw_snapshots(cfg, np.random.default_rng(9), (4,))
    start = master_ap_pilots(snaps.beta, cfg.tau_p)
    a, _ = polish(snaps.beta, start, cfg, max_evals=500, swaps=swaps)
    relabel = np.array([3, 1, 0, 2])
    b, _ = polish(snaps.beta, relabel[start], cfg, max_evals=500, swaps=swaps)
    np.testing.assert_array_equal(a, b)  # both canonical: equal partitions are equal labels
    perm = np.random.default_rng(5).permutation(cfg.K)
    c, _ = polish(snaps.beta[..., perm], start[:, perm], cfg, max_evals=500, swaps=swaps)
    np.testing.assert_allclose(objective_value(snaps.beta, a, cfg), objective_value(snaps.beta[..., perm], c, cfg),
                               rtol=1e-12)
    for b_ in range(4):  # the same partition, users permuted
        first = {}
        for k_new, k_old in enumerate(perm):
            first.setdefault(a[b_, k_old], set()).add(k_new)
        groups = {}
        for k_new in range(cfg.K):
            groups.setdefault(c[b_, k_new], set()).add(k_new)
        assert sorted(map(sorted, first.values())) == sorted(map(sorted, groups.values()))


def test_polish_refuses_bad_options():
    cfg = SystemConfig.from_size((10, 2, 6, 3))
    snaps = draw_snapshots(cfg, np.random.default_rng(0), (1,))
    start = master_ap_pilots(snaps.beta, cfg.tau_p)
    for bad in ({"margin": -1.0}, {"candidates": -1}, {"screen_pilots": -2}, {"max_evals": 0}):
        with pytest.raises(ValueError):
            polish(snaps.beta, start, cfg, **bad)
