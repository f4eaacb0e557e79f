"""The max-k-cut agent (agents/sdp.py, docs/literature.md §6): protocol, hand cases, bounds."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import agents
from agents import sdp
from agents.base import canonical_pilots
from agents.literature import contamination_weights
from agents.search import ExhaustiveAgent
from cfenv import SystemConfig, draw_snapshots
from cfenv.rates import objective_value, sum_rate


def snapshots(size, n=4, seed=0):
    cfg = SystemConfig.from_size(size)
    return cfg, draw_snapshots(cfg, np.random.default_rng(seed), (n,))


def test_unsupported_without_cvxpy_names_the_extra(monkeypatch):
    monkeypatch.setattr(sdp, "sdp_available", lambda: False)
    cfg, snap = snapshots((10, 2, 6, 3), n=1)
    agent = agents.make("max-k-cut", config=cfg)
    reason = agent.unsupported_reason(cfg)
    assert reason and "pip install cfpilot[sdp]" in reason and "\n" not in reason
    with pytest.raises(ValueError, match=r"cannot run.*cfpilot\[sdp\]"):
        agent.assign(snap)


def test_refuses_above_max_users():
    cfg = SystemConfig(M=10, K=12, tau_p=3)
    reason = sdp.MaxKCutAgent(max_users=10).unsupported_reason(cfg)
    if sdp.sdp_available():
        assert "K=12" in reason and "max_users=10" in reason
    assert sdp.MaxKCutAgent().max_users == sdp.DEFAULT_MAX_USERS == 100


@pytest.mark.parametrize("kwargs", [{"roundings": 0}, {"select": "best"}, {"eps": 0.0}, {"max_users": 0},
                                    {"max_iters": 0}])
def test_rejects_bad_options(kwargs):
    with pytest.raises(ValueError):
        sdp.MaxKCutAgent(**kwargs)


def test_cut_value_by_hand():
    W = np.array([[0, 1, 2], [1, 0, 4], [2, 4, 0]], dtype=float)
    assert sdp.cut_value(W, np.array([0, 0, 1])) == 6.0  # edges 0-2 and 1-2
    assert sdp.cut_value(W, np.array([0, 1, 2])) == 7.0
    np.testing.assert_array_equal(sdp.cut_value(W, np.array([[0, 0, 0], [0, 1, 1]])), [0.0, 3.0])


needs_cvxpy = pytest.mark.skipif(not sdp.sdp_available(), reason="needs the sdp extra: pip install cfpilot[sdp]")


@needs_cvxpy
@pytest.mark.parametrize("size", [(10, 2, 6, 3), (8, 1, 7, 2), (6, 2, 5, 5), (5, 1, 4, 1), (3, 2, 1, 3)], ids=str)
def test_protocol_shape_range_and_canonical(size):
    cfg, snap = snapshots(size, n=3)
    pilots = agents.make("max-k-cut", config=cfg).assign(snap)
    assert pilots.shape == (3, cfg.K) and pilots.dtype == np.int64
    assert pilots.min() >= 0 and pilots.max() < cfg.tau_p
    np.testing.assert_array_equal(pilots, canonical_pilots(pilots))


@needs_cvxpy
def test_deterministic_given_seed_and_batch_independent():
    cfg, snap = snapshots((10, 2, 9, 3), n=5, seed=3)
    a = agents.make("max-k-cut", config=cfg, seed=7).assign(snap)
    b = agents.make("max-k-cut", config=cfg, seed=7).assign(snap)
    np.testing.assert_array_equal(a, b)
    agent = agents.make("max-k-cut", config=cfg, seed=7)
    alone = np.stack([agent.assign(snap[i]) for i in reversed(range(5))])[::-1]
    np.testing.assert_array_equal(a, alone)
    np.testing.assert_array_equal(agent.assign(snap[2:4]), a[2:4])
    # one rounding per snapshot: the seed matters
    one = [agents.make("max-k-cut", config=cfg, seed=s, roundings=1, select="cut").assign(snap) for s in range(4)]
    assert any(not np.array_equal(one[0], other) for other in one[1:])


@needs_cvxpy
def test_two_obvious_groups():
    # two triangles of heavy edges, light edges across: the max 3-cut puts each triangle on 3
    # different pilots; the SDP bound equals that cut (the relaxation is tight here)
    heavy, light = 10.0, 0.1
    W = np.full((6, 6), light)
    for group in ([0, 1, 2], [3, 4, 5]):
        for i, j in itertools.combinations(group, 2):
            W[i, j] = W[j, i] = heavy
    np.fill_diagonal(W, 0.0)
    V, bound = sdp.solve_relaxation(W, 3, eps=1e-6)
    agent = sdp.MaxKCutAgent(roundings=32)
    candidates = agent.round(V, 3, np.random.default_rng(0))
    cuts = sdp.cut_value(W, candidates)
    best = candidates[int(np.argmax(cuts))]
    assert len(set(best[:3])) == 3 and len(set(best[3:])) == 3
    every = np.array(list(itertools.product(range(3), repeat=6)))
    optimum = sdp.cut_value(W, every).max()
    assert cuts.max() == pytest.approx(optimum) == pytest.approx(6 * heavy + 6 * light)
    assert optimum <= bound * (1 + 1e-9) and bound == pytest.approx(optimum, rel=1e-3)


@needs_cvxpy
@pytest.mark.parametrize("size", [(10, 2, 6, 3), (10, 2, 9, 3), (6, 1, 7, 2)], ids=str)
def test_bound_is_above_every_cut_and_rounding_finds_the_max_cut(size):
    cfg, snap = snapshots(size, n=4, seed=5)
    agent = agents.make("max-k-cut", config=cfg, select="cut")
    pilots = agent.assign(snap)
    W = contamination_weights(snap.beta)
    every = np.array(list(itertools.product(range(cfg.tau_p), repeat=cfg.K)))
    for b in range(4):
        optimum = sdp.cut_value(W[b], every).max()
        bound, cut = agent.last_stats["sdp_bound"][b], agent.last_stats["cut"][b]
        assert cut == pytest.approx(sdp.cut_value(W[b], pilots[b]))
        assert cut <= optimum * (1 + 1e-12) and optimum <= bound * (1 + 1e-9)
        assert cut >= 0.9 * optimum  # measured: 64 roundings reach the optimum on these graphs


@needs_cvxpy
@pytest.mark.parametrize("objective", ["sum", "min", "proportional"])
def test_kept_rounding_is_the_best_by_the_configs_objective(objective):
    cfg, snap = snapshots((10, 2, 9, 3), n=3, seed=2)
    cfg = SystemConfig.from_size(cfg.size, objective=objective)
    agent = agents.make("max-k-cut", config=cfg, roundings=16)
    pilots = agent.assign(snap)
    for b in range(3):
        V, _ = sdp.solve_relaxation(contamination_weights(snap.beta[b][None])[0], cfg.tau_p)
        candidates = agent.round(V, cfg.tau_p, agent.rounding_rng(snap.beta[b], cfg))
        values = objective_value(snap.beta[b][None], candidates, cfg)
        assert float(objective_value(snap.beta[b], pilots[b], cfg)) == pytest.approx(float(values.max()), rel=1e-9)


@needs_cvxpy
@pytest.mark.parametrize("size", [(10, 2, 6, 3), (6, 1, 7, 2)], ids=str)
def test_never_above_exhaustive(size):
    cfg, snap = snapshots(size, n=5, seed=9)
    best = sum_rate(snap.beta, ExhaustiveAgent(config=cfg).assign(snap), cfg)
    got = sum_rate(snap.beta, agents.make("max-k-cut", config=cfg).assign(snap), cfg)
    assert np.all(got <= best * (1 + 1e-12))
    assert np.all(got >= 0.8 * best)
