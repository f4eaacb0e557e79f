import numpy as np
import pytest

from cfenv.channel import draw_snapshots, large_scale_fading, pairwise_distance_m, path_loss_db
from cfenv.config import SystemConfig


def test_three_slopes_and_boundaries():
    cfg = SystemConfig()
    lc = cfg.path_loss_const_db
    d = np.array([1.0, 10.0, 30.0, 50.0, 200.0])  # metres
    pl = path_loss_db(d, cfg)
    flat = -lc - 15 * np.log10(0.05) - 20 * np.log10(0.01)
    assert pl[0] == pytest.approx(flat)
    assert pl[1] == pytest.approx(flat)  # d == d0 belongs to the flat part
    assert pl[2] == pytest.approx(-lc - 15 * np.log10(0.05) - 20 * np.log10(0.03))
    assert pl[3] == pytest.approx(-lc - 15 * np.log10(0.05) - 20 * np.log10(0.05))
    assert pl[4] == pytest.approx(-lc - 35 * np.log10(0.2))


def test_path_loss_is_continuous_at_break_points():
    cfg = SystemConfig()
    for b in (cfg.d0_m, cfg.d1_m):
        left, right = path_loss_db(np.array([b - 1e-9, b + 1e-9]), cfg)
        assert left == pytest.approx(right, abs=1e-6)


def test_path_loss_decreases_with_distance():
    pl = path_loss_db(np.linspace(0, 800, 500), SystemConfig())
    assert np.all(np.diff(pl) <= 1e-12)


def test_wrap_around_distance_bounded_and_uses_nearest_image():
    rng = np.random.default_rng(0)
    side = 1000.0
    ap = rng.uniform(0, side, (500, 2))
    ue = rng.uniform(0, side, (400, 2))
    d = pairwise_distance_m(ap, ue, side, wrap_around=True)
    assert d.max() <= side / np.sqrt(2) + 1e-9
    corner = pairwise_distance_m(np.array([[5.0, 5.0]]), np.array([[995.0, 995.0]]), side, True)
    assert corner[0, 0] == pytest.approx(np.hypot(10.0, 10.0))
    plain = pairwise_distance_m(np.array([[5.0, 5.0]]), np.array([[995.0, 995.0]]), side, False)
    assert plain[0, 0] == pytest.approx(np.hypot(990.0, 990.0))


def test_shadowing_only_beyond_d1_by_default():
    cfg = SystemConfig()
    d = np.array([[5.0, 30.0, 49.0]])
    beta = large_scale_fading(d, cfg, np.random.default_rng(1))
    np.testing.assert_allclose(10 * np.log10(beta), path_loss_db(d, cfg), rtol=1e-12)
    near = large_scale_fading(d, cfg.replace(shadow_near=True), np.random.default_rng(1))
    assert not np.allclose(near, beta, rtol=1e-6, atol=0)


def test_snapshot_shapes_and_determinism():
    cfg = SystemConfig(M=7, K=4)
    a = draw_snapshots(cfg, np.random.default_rng(3), (5, 2))
    b = draw_snapshots(cfg, np.random.default_rng(3), (5, 2))
    assert a.beta.shape == (5, 2, 7, 4)
    assert a.ap_positions.shape == (5, 2, 7, 2) and a.ue_positions.shape == (5, 2, 4, 2)
    np.testing.assert_array_equal(a.beta, b.beta)
    c = draw_snapshots(cfg, np.random.default_rng(4), (5, 2))
    assert not np.array_equal(a.beta, c.beta)
    assert np.all(a.beta > 0) and np.all(np.isfinite(a.beta))
    assert np.all((a.ue_positions >= 0) & (a.ue_positions < cfg.area_side_m))


def test_shadowing_statistics():
    cfg = SystemConfig(M=50, K=50)
    s = draw_snapshots(cfg, np.random.default_rng(7), (20,))
    d = pairwise_distance_m(s.ap_positions, s.ue_positions, cfg.area_side_m)
    resid = 10 * np.log10(s.beta) - path_loss_db(d, cfg)
    far = resid[d > cfg.d1_m]
    assert abs(far.mean()) < 0.2 and abs(far.std() - cfg.shadowing_std_db) < 0.2
