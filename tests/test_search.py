"""Searches on every objective (issue #16) and the torch-device exhaustive search (issue #17).

Exhaustive search is checked against brute force over all tau_p^K assignments scored by the
numpy reference (:func:`cfenv.rates.objective_value`), local search and tabu against master-AP
and the exact optimum, and all of them for independence of batching and thread count.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import agents
from agents.base import AGENT_STREAM, canonical_pilots, stream_rng
from agents.heuristics import master_ap_pilots
from agents.literature import TabuAgent
from agents.search import ExhaustiveAgent, LocalSearchAgent, count_assignments, rgs_prefixes, unrank_rgs
from cfenv import SystemConfig, draw_snapshots
from cfenv.config import OBJECTIVES
from cfenv.rates import objective_value
from tests.conftest import pair_swaps, single_moves

RTOL = 1e-12
cuda = pytest.mark.cuda
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def snapshots(size, n=3, seed=0, objective="sum"):
    cfg = SystemConfig.from_size(size, objective=objective)
    return cfg, draw_snapshots(cfg, np.random.default_rng(seed), (n,))


def brute_force(beta, cfg):
    """Best objective over all tau_p^K assignments and its first maximiser, numpy reference."""
    every = np.array(list(itertools.product(range(cfg.tau_p), repeat=cfg.K)))
    values = objective_value(beta, every, cfg, backend="reference")
    return values.max(), values


def value(snap, pilots, cfg):
    return objective_value(snap.beta, pilots, cfg, backend="reference")


# ----------------------------------------------------------------- exhaustive
@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("size", [(4, 1, 5, 2), (6, 2, 6, 3), (3, 2, 4, 4)], ids=str)
def test_exhaustive_equals_brute_force_for_every_objective(size, objective):
    cfg, snap = snapshots(size, n=3, seed=7, objective=objective)
    got = ExhaustiveAgent(config=cfg).assign(snap)
    for s in range(len(snap)):
        best, values = brute_force(snap.beta[s], cfg)
        assert abs(value(snap[s:s + 1], got[s:s + 1], cfg)[0] - best) <= RTOL * abs(best)
        # the first maximiser in lexicographic order among the restricted-growth strings
        rgs = rgs_prefixes(cfg.K, cfg.tau_p, cfg.K)
        rgs_values = objective_value(snap.beta[s], rgs, cfg)
        np.testing.assert_array_equal(got[s], rgs[np.argmax(rgs_values)])


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_two_identical_users_never_share_a_pilot(objective):
    """Hand-checkable: two users with the same fading contaminate each other fully if they share
    a pilot and not at all otherwise, so every objective separates them."""
    cfg = SystemConfig(M=4, L=1, K=2, tau_p=2, objective=objective)
    beta = np.array([[1e-7, 1e-7], [1e-9, 1e-9], [1e-10, 1e-10], [1e-8, 1e-8]])
    snap = draw_snapshots(cfg, np.random.default_rng(0), (1,))
    snap = type(snap)(beta=beta[None], ap_positions=snap.ap_positions, ue_positions=snap.ue_positions)
    np.testing.assert_array_equal(ExhaustiveAgent(config=cfg).assign(snap), [[0, 1]])
    np.testing.assert_array_equal(LocalSearchAgent(config=cfg).assign(snap), [[0, 1]])


def test_min_and_proportional_optima_differ_from_the_sum_optimum_somewhere():
    """The objective is honoured: over a few tiny networks, the min-rate optimum has a strictly
    larger minimum rate than the sum-rate optimum on at least one."""
    cfg, snap = snapshots((6, 1, 6, 3), n=12, seed=3)
    by_sum = ExhaustiveAgent(config=cfg).assign(snap)
    by_min = ExhaustiveAgent(config=cfg.replace(objective="min")).assign(snap)
    low = cfg.replace(objective="min")
    assert np.all(value(snap, by_min, low) >= value(snap, by_sum, low) * (1 - RTOL))
    assert np.any(value(snap, by_min, low) > value(snap, by_sum, low) * (1 + 1e-6))


def test_unrank_rgs_enumerates_in_lexicographic_order():
    for K, tau_p in [(1, 3), (5, 2), (7, 3), (6, 6)]:
        got = unrank_rgs(torch.arange(count_assignments(K, tau_p)), K, tau_p).numpy()
        np.testing.assert_array_equal(got, rgs_prefixes(K, tau_p, K))


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_exhaustive_on_torch_cpu_equals_numba(objective):
    cfg, snap = snapshots((10, 2, 8, 3), n=3, seed=5, objective=objective)
    want = ExhaustiveAgent(config=cfg).assign(snap)
    for block in (97, None):  # several blocks (first-maximiser rule across blocks) and one
        got = ExhaustiveAgent(config=cfg, device=torch.device("cpu"), block=block).assign(snap)
        np.testing.assert_array_equal(got, want)


@cuda
@needs_cuda
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_exhaustive_on_cuda_equals_numba(objective):
    cfg, snap = snapshots((10, 2, 9, 3), n=2, seed=6, objective=objective)
    np.testing.assert_array_equal(ExhaustiveAgent(config=cfg, device="cuda").assign(snap),
                                  ExhaustiveAgent(config=cfg).assign(snap))


def test_exhaustive_device_auto_without_cuda_is_numba():
    agent = ExhaustiveAgent(device="auto")
    assert (agent.device is None) == (not torch.cuda.is_available())


# --------------------------------------------------------- local search, tabu
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_local_search_never_below_master_ap_and_never_above_the_optimum(objective):
    cfg, snap = snapshots((30, 2, 20, 10), n=3, seed=2, objective=objective)
    agent = LocalSearchAgent(config=cfg, restarts=2, kicks=2)
    got = value(snap, agent.assign(snap), cfg)
    master = value(snap, master_ap_pilots(snap.beta, cfg.tau_p), cfg)
    assert np.all(got >= master - RTOL * np.abs(master))
    assert np.all(agent.last_stats["final_val"] >= agent.last_stats["start_val"] - RTOL * np.abs(master[:, None]))
    tiny, small = snapshots((6, 2, 7, 3), n=4, seed=9, objective=objective)
    best = value(small, ExhaustiveAgent(config=tiny).assign(small), tiny)
    local = value(small, LocalSearchAgent(config=tiny).assign(small), tiny)
    assert np.all(local <= best + RTOL * np.abs(best))
    assert np.mean(local >= best - RTOL * np.abs(best)) >= 0.75  # reaches the optimum on most


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_verified_local_search_ends_at_an_exact_local_optimum(objective):
    cfg, snap = snapshots((10, 2, 9, 3), n=2, seed=4, objective=objective)
    pilots = LocalSearchAgent(config=cfg, restarts=0, kicks=0, verify=True).assign(snap)
    for s in range(2):
        here = value(snap[s:s + 1], pilots[s:s + 1], cfg)[0]
        neighbours = np.concatenate([single_moves(pilots[s], cfg.tau_p), pair_swaps(pilots[s])])
        values = objective_value(snap.beta[s], neighbours, cfg, backend="reference")
        assert values.max() <= here + 1e-9 * abs(here)


def test_small_neighbourhoods_get_exact_steepest_ascent():
    """At most EXACT_NEIGHBOURHOOD candidates: every one is scored exactly, so even without
    ``verify`` every start ends at an exact local optimum (moves and swaps)."""
    from agents.search import DEFAULT_N_EXACT, EXACT_NEIGHBOURHOOD

    cfg, snap = snapshots((10, 2, 9, 3), n=3, seed=14)
    agent = LocalSearchAgent(config=cfg, restarts=0, kicks=0)
    assert agent.exact_per_round(cfg) == cfg.K * (cfg.tau_p - 1) + cfg.K * (cfg.K - 1) // 2 + 1 <= EXACT_NEIGHBOURHOOD + 1
    assert LocalSearchAgent(n_exact=2).exact_per_round(cfg) == 2
    assert agent.exact_per_round(SystemConfig.from_size((100, 4, 40, 10))) == DEFAULT_N_EXACT
    pilots = agent.assign(snap)
    for s in range(len(snap)):
        here = value(snap[s:s + 1], pilots[s:s + 1], cfg)[0]
        neighbours = np.concatenate([single_moves(pilots[s], cfg.tau_p), pair_swaps(pilots[s])])
        values = objective_value(snap.beta[s], neighbours, cfg, backend="reference")
        assert values.max() <= here + 1e-9 * abs(here)


def test_sum_objective_is_the_default_search():
    cfg, snap = snapshots((30, 2, 20, 10), n=2, seed=1)
    assert cfg.objective == "sum"
    plain = SystemConfig.from_size((30, 2, 20, 10))
    np.testing.assert_array_equal(LocalSearchAgent(config=cfg.replace(objective="sum")).assign(snap),
                                  LocalSearchAgent(config=plain).assign(snap))


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_tabu_never_below_master_ap_for_every_objective(objective):
    cfg, snap = snapshots((30, 2, 20, 10), n=3, seed=4, objective=objective)
    master = master_ap_pilots(snap.beta, cfg.tau_p)
    got = TabuAgent(config=cfg).assign(snap)
    assert np.all(value(snap, got, cfg) >= value(snap, master, cfg) - RTOL * np.abs(value(snap, master, cfg)))
    np.testing.assert_array_equal(TabuAgent(config=cfg, iterations=0).assign(snap), master)
    tiny, small = snapshots((6, 2, 6, 3), n=3, seed=8, objective=objective)
    best = value(small, ExhaustiveAgent(config=tiny).assign(small), tiny)
    assert np.all(value(small, TabuAgent(config=tiny).assign(small), tiny) <= best + RTOL * np.abs(best))


def _in_chunks(name, cfg, snap, chunk, threads):
    import numba

    old = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        agent = agents.make(name, config=cfg, seed=0)
        return np.concatenate([agent.assign(snap[lo:lo + chunk], cfg,
                                            stream_rng(0, AGENT_STREAM, name, *cfg.size, lo))
                               for lo in range(0, len(snap), chunk)])
    finally:
        numba.set_num_threads(old)


@pytest.mark.parametrize("objective", ["min", "proportional"])
@pytest.mark.parametrize("name", ["local-search", "tabu", "exhaustive"])
def test_objective_searches_do_not_depend_on_chunking_or_threads(name, objective):
    import numba

    size = (10, 2, 8, 3) if name == "exhaustive" else (20, 2, 14, 5)
    cfg, snap = snapshots(size, n=6, seed=12, objective=objective)
    want = _in_chunks(name, cfg, snap, 6, 1)
    for chunk in (1, 4):
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            np.testing.assert_array_equal(_in_chunks(name, cfg, snap, chunk, threads), want)
    if name != "tabu":
        np.testing.assert_array_equal(want, canonical_pilots(want))


# ----------------------------------------------------------------- parameters
@pytest.mark.parametrize("kwargs, match", [({"n_exact": 0}, "n_exact"), ({"margin": -1.0}, "margin"),
                                           ({"kicks": -1}, "kicks"), ({"kick_users": 0}, "kick_users"),
                                           ({"restarts": -1}, "restarts")])
def test_local_search_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LocalSearchAgent(**kwargs)


def test_bad_device_block_and_tabu_parameters_are_refused():
    with pytest.raises(ValueError, match="device"):
        ExhaustiveAgent(device="no-such-device")
    with pytest.raises(ValueError, match="block"):
        ExhaustiveAgent(block=0)
    with pytest.raises(ValueError, match="n_exact"):
        TabuAgent(n_exact=0)
