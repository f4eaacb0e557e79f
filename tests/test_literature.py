"""The literature's classical pilot-assignment agents (agents/literature.py, docs/literature.md)."""

import numpy as np
import pytest

import agents
from agents.literature import (
    balanced_kmeans,
    colour_graph,
    contamination_weights,
    serving_sets,
    weighted_graph_pilots,
)
from cfenv import SystemConfig, draw_snapshots, sum_rate
from cfenv.channel import Snapshot

LITERATURE = ["tabu", "graph-colouring", "wgf", "hungarian", "kmeans"]
TINY = 1e-9


def snapshots(size, n=3, seed=0):
    cfg = SystemConfig.from_size(size)
    return cfg, draw_snapshots(cfg, np.random.default_rng(seed), (n,))


def hand_snapshot(beta, ue=None):
    """One snapshot from a hand-written ``(M, K)`` beta (positions arbitrary unless given)."""
    beta = np.asarray(beta, dtype=np.float64)
    M, K = beta.shape
    ap = np.linspace(100.0, 900.0, M)[:, None].repeat(2, axis=1)
    ue = np.linspace(100.0, 900.0, K)[:, None].repeat(2, axis=1) if ue is None else np.asarray(ue, float)
    return Snapshot(beta=beta, ap_positions=ap, ue_positions=ue)


# ------------------------------------------------------------------- protocol
@pytest.mark.parametrize("name", LITERATURE)
@pytest.mark.parametrize("size", [(4, 1, 2, 5), (6, 2, 7, 7), (45, 2, 20, 10), (10, 2, 9, 3), (5, 1, 4, 1)],
                         ids=str)
def test_protocol(name, size):
    cfg, snap = snapshots(size, n=4)
    agent = agents.make(name, config=cfg, seed=0)
    pilots = agent.assign(snap)
    assert pilots.shape == (4, cfg.K) and pilots.dtype == np.int64
    assert pilots.min() >= 0 and pilots.max() < cfg.tau_p
    np.testing.assert_array_equal(pilots, agents.make(name, config=cfg, seed=0).assign(snap))
    np.testing.assert_array_equal(pilots[1], agent.assign(snap[1]))  # batching does not matter
    if cfg.K <= cfg.tau_p and name != "tabu":  # constructive rules: distinct pilots when they suffice
        assert all(len(set(p)) == cfg.K for p in pilots)


@pytest.mark.parametrize("name", LITERATURE)
def test_never_above_exhaustive(name):
    cfg, snap = snapshots((6, 2, 5, 2), n=6, seed=3)
    best = sum_rate(snap.beta, agents.make("exhaustive", config=cfg).assign(snap), cfg)
    got = sum_rate(snap.beta, agents.make(name, config=cfg).assign(snap), cfg)
    assert np.all(got <= best * (1 + 1e-12))
    assert np.all(got > 0)


# ----------------------------------------------------------------------- tabu
def test_tabu_reaches_optimum_on_tiny_systems_and_never_below_master_ap():
    cfg, snap = snapshots((6, 2, 5, 2), n=8, seed=1)
    best = sum_rate(snap.beta, agents.make("exhaustive", config=cfg).assign(snap), cfg)
    master = sum_rate(snap.beta, agents.make("master-ap", config=cfg).assign(snap), cfg)
    got = sum_rate(snap.beta, agents.make("tabu", config=cfg).assign(snap), cfg)
    assert np.all(got >= master * (1 - 1e-12))
    assert np.sum(np.isclose(got, best, rtol=1e-9)) >= 6
    assert np.any(got > master * (1 + 1e-9))


def test_tabu_without_iterations_is_master_ap():
    cfg, snap = snapshots((10, 2, 9, 3), n=4)
    np.testing.assert_array_equal(agents.make("tabu", config=cfg, iterations=0).assign(snap),
                                  agents.make("master-ap", config=cfg).assign(snap))


def test_tabu_longer_search_never_worse():
    cfg, snap = snapshots((10, 2, 9, 3), n=6, seed=2)
    short = sum_rate(snap.beta, agents.make("tabu", config=cfg, iterations=5).assign(snap), cfg)
    long = sum_rate(snap.beta, agents.make("tabu", config=cfg, iterations=30).assign(snap), cfg)
    assert np.all(long >= short * (1 - 1e-12))


# ------------------------------------------------------------ graph colouring
def test_serving_set_is_smallest_set_holding_ninety_percent():
    beta = np.array([[0.5, 0.6, 0.3], [0.45, 0.3, 0.3], [0.05, 0.1, 0.3]])  # (M=3, K=3), columns sum to 1/1/0.9
    s = serving_sets(beta[None])[0]
    np.testing.assert_array_equal(s[:, 0], [True, True, False])  # 0.5 + 0.45 >= 0.9
    np.testing.assert_array_equal(s[:, 1], [True, True, False])  # 0.6 + 0.3 = 0.9 exactly
    np.testing.assert_array_equal(s[:, 2], [True, True, True])  # equal gains: all three needed


def test_graph_colouring_overlapping_users_differ_disjoint_may_share():
    # users 0 and 1 overlap at AP 0; user 2 is alone at AP 2 and must share (tau_p = 2):
    # with the pilot whose holder puts less fading on AP 2 (user 1: 1e-6 < user 0: 1e-5)
    beta = np.array([[1e-3, 5e-4, TINY], [TINY, 5e-4, TINY], [1e-5, 1e-6, 1e-3]])
    cfg = SystemConfig(M=3, L=1, K=3, tau_p=2)
    pilots = agents.make("graph-colouring", config=cfg).assign(hand_snapshot(beta))
    assert pilots[0] != pilots[1]
    assert pilots[2] == pilots[1]


def test_graph_colouring_full_neighbourhood_takes_least_interfered_colour():
    # a triangle on 2 colours: users 0, 1 take colours 0, 1 (index order at equal degree);
    # user 2 sees 0.5 from user 0 and 0.1 from user 1 at its serving AP, so it takes colour 1
    serving = np.ones((1, 1, 3), dtype=bool)
    beta = np.array([[[0.5, 0.1, 0.2]]])
    np.testing.assert_array_equal(colour_graph(beta, serving, 2)[0], [0, 1, 1])


def test_graph_colouring_proper_when_colours_suffice():
    # a path 0-1-2-3 (serving sets {0}, {0,1}, {1,2}, {2}) needs 2 colours: adjacent users differ
    serving = np.array([[[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]], dtype=bool)
    beta = np.full((1, 3, 4), 0.1)
    colours = colour_graph(beta, serving, 2)[0]
    assert colours[0] != colours[1] and colours[1] != colours[2] and colours[2] != colours[3]


# ------------------------------------------------------------------------ wgf
def test_wgf_weights_hand_example():
    beta = np.array([[[0.9, 0.2], [0.05, 0.4]]])  # serving sets: user 0 {AP 0}, user 1 {AP 0, AP 1}
    W = contamination_weights(beta)[0]
    # w[0,1] = 0.2 / 0.9, w[1,0] = (0.9 + 0.05) / (0.2 + 0.4)
    w = 0.2 / 0.9 + 0.95 / 0.6
    np.testing.assert_allclose(W, [[0, w], [w, 0]])


def test_wgf_heaviest_pair_gets_different_pilots():
    W = np.array([[[0, 5, 1], [5, 0, 2], [1, 2, 0]]], dtype=float)
    pilots = weighted_graph_pilots(W, 2)[0]
    assert pilots[0] != pilots[1]
    assert pilots[2] == pilots[0]  # weight 1 to user 0 < weight 2 to user 1
    cfg, snap = snapshots((10, 2, 9, 3), n=10, seed=4)
    W = contamination_weights(snap.beta)
    pilots = agents.make("wgf", config=cfg).assign(snap)
    for b in range(10):
        k, j = np.unravel_index(W[b].argmax(), W[b].shape)
        assert pilots[b, k] != pilots[b, j]


# ------------------------------------------------------------------ hungarian
def test_hungarian_two_users_two_pilots():
    cfg = SystemConfig(M=2, L=1, K=2, tau_p=2)
    pilots = agents.make("hungarian", config=cfg).assign(hand_snapshot([[1e-3, 5e-4], [1e-5, 1e-4]]))
    assert pilots[0] != pilots[1]


def test_hungarian_pairs_share_across_clusters():
    # users 0, 1 near AP 0; users 2, 3 near AP 1. Order by gain: 0, 2 | 1, 3 -> the second group
    # is matched across: 1 onto 2's pilot, 3 onto 0's
    beta = np.array([[1e-3, 8e-4, TINY, TINY], [TINY, TINY, 9e-4, 7e-4]])
    cfg = SystemConfig(M=2, L=1, K=4, tau_p=2)
    pilots = agents.make("hungarian", config=cfg, passes=0).assign(hand_snapshot(beta))
    np.testing.assert_array_equal(pilots, [0, 1, 1, 0])
    refined = agents.make("hungarian", config=cfg).assign(hand_snapshot(beta))
    assert refined[0] != refined[1] and refined[2] != refined[3]


def test_hungarian_refinement_never_lowers_sum_rate():
    cfg, snap = snapshots((10, 2, 9, 3), n=8, seed=6)
    plain = sum_rate(snap.beta, agents.make("hungarian", config=cfg, passes=0).assign(snap), cfg)
    refined = sum_rate(snap.beta, agents.make("hungarian", config=cfg).assign(snap), cfg)
    assert np.all(refined >= plain * (1 - 1e-12))


# --------------------------------------------------------------------- kmeans
@pytest.mark.parametrize("size", [(10, 2, 9, 3), (45, 2, 20, 10), (20, 2, 17, 4)], ids=str)
def test_kmeans_clusters_capped_and_get_distinct_pilots(size):
    cfg, snap = snapshots(size, n=5, seed=7)
    pilots = agents.make("kmeans", config=cfg).assign(snap)
    for b in range(5):
        labels, _ = balanced_kmeans(snap.ue_positions[b], cfg.tau_p, cfg.area_side_m, cfg.wrap_around)
        assert np.bincount(labels).max() <= cfg.tau_p
        for c in np.unique(labels):
            members = pilots[b, labels == c]
            assert len(set(members)) == len(members)


def test_kmeans_groups_across_the_torus_edge():
    # two groups of three: one straddles the x = 0 / x = D edge (a group only on the torus)
    ue = np.array([[5.0, 500.0], [995.0, 510.0], [10.0, 490.0], [500.0, 100.0], [510.0, 110.0], [490.0, 90.0]])
    labels, _ = balanced_kmeans(ue, 3, 1000.0, True)
    assert len(set(labels[:3])) == 1 and len(set(labels[3:])) == 1 and labels[0] != labels[3]
    cfg = SystemConfig(M=2, L=1, K=6, tau_p=3)
    beta = np.full((2, 6), 1e-4)
    pilots = agents.make("kmeans", config=cfg).assign(hand_snapshot(beta, ue))
    assert len(set(pilots[:3])) == 3 and len(set(pilots[3:])) == 3


# --------------------------------------------------------------------- quality
def test_quality_against_local_search():
    """Not a bound: each rule should keep most of local search's sum rate at (10, 2, 9, 3)."""
    cfg, snap = snapshots((10, 2, 9, 3), n=20, seed=11)
    ref = sum_rate(snap.beta, agents.make("local-search", config=cfg).assign(snap), cfg)
    for name in LITERATURE:
        ratio = sum_rate(snap.beta, agents.make(name, config=cfg).assign(snap), cfg) / ref
        assert ratio.mean() > 0.8, name
