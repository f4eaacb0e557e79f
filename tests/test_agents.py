import itertools

import numpy as np
import pytest

import agents
from agents.base import canonical_pilots, thread_limits
from agents.heuristics import LocationAgent, greedy_pilots, master_ap_pilots
from agents.registry import is_learnable
from agents.search import ExhaustiveAgent, LocalSearchAgent, count_assignments
from cfenv import CellFreePilotEnv, SystemConfig, draw_snapshots, sum_rate, user_rates
from cfenv.channel import Snapshot
from tests.conftest import single_moves

ALL_AGENTS = list(agents.available())
MODEL_FREE = [name for name in ALL_AGENTS if not is_learnable(name)]
EDGE_SIZES = [(10, 2, 6, 3), (4, 1, 2, 5), (3, 2, 1, 3), (5, 1, 4, 1), (6, 2, 7, 7), (45, 2, 20, 10)]


def snapshots(size, n=3, seed=0):
    cfg = SystemConfig.from_size(size)
    return cfg, draw_snapshots(cfg, np.random.default_rng(seed), (n,))


@pytest.mark.parametrize("name", ALL_AGENTS)
@pytest.mark.parametrize("size", EDGE_SIZES, ids=str)
def test_every_agent_returns_valid_assignments(name, size):
    cfg, snap = snapshots(size)
    agent = agents.make(name, config=cfg)
    if is_learnable(name):
        agent.initialise(cfg)  # an untrained model still has to produce valid assignments
    if agent.unsupported_reason(cfg):
        with pytest.raises(ValueError, match="cannot run"):
            agent.assign(snap)
        return
    pilots = agent.assign(snap)
    assert pilots.shape == (3, cfg.K) and pilots.dtype == np.int64
    assert pilots.min() >= 0 and pilots.max() < cfg.tau_p
    one = agent.assign(snap[0])
    assert one.shape == (cfg.K,)


@pytest.mark.parametrize("name", ALL_AGENTS)
def test_act_on_environment(name):
    env = CellFreePilotEnv(M=8, K=5, tau_p=2)
    agent = agents.make(name, config=env.config)
    if is_learnable(name):
        agent.initialise(env.config)
    if agent.unsupported_reason(env.config) and "pilots used" in agent.unsupported_reason(env.config):
        # the pilot-length agents run where the pre-log counts the pilots used: the scalable model's option
        env = CellFreePilotEnv(model="scalable", M=8, L=2, K=5, tau_p=2, link="uplink", pilot_overhead="used")
        agent = agents.make(name, config=env.config)
    if agent.unsupported_reason(env.config):  # e.g. max-k-cut without its optional extra
        pytest.skip(agent.unsupported_reason(env.config))
    action = agent.act(*env.reset(seed=3))
    assert env.action_space.contains(action)
    _, reward, *_ = env.step(action)
    assert reward > 0


@pytest.mark.parametrize("name", ["random", "greedy", "location", "local-search"])
def test_same_seed_same_assignments(name):
    cfg, snap = snapshots((10, 2, 9, 3), n=5)
    a = agents.make(name, config=cfg, seed=7).assign(snap)
    b = agents.make(name, config=cfg, seed=7).assign(snap)
    np.testing.assert_array_equal(a, b)


def test_random_agent_depends_on_seed():
    cfg, snap = snapshots((10, 2, 9, 3), n=5)
    a = agents.make("random", config=cfg, seed=1).assign(snap)
    b = agents.make("random", config=cfg, seed=2).assign(snap)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("size", [(4, 2, 5, 3), (3, 1, 4, 4), (5, 2, 7, 2), (4, 2, 3, 5)], ids=str)
def test_exhaustive_equals_brute_force(size):
    cfg, snap = snapshots(size, n=4, seed=11)
    every = np.array(list(itertools.product(range(cfg.tau_p), repeat=cfg.K)))
    best = ExhaustiveAgent(config=cfg).assign(snap)
    for s in range(4):
        rates = sum_rate(snap.beta[s], every, cfg)
        assert float(sum_rate(snap.beta[s], best[s], cfg)) == pytest.approx(rates.max(), rel=1e-12)


@pytest.mark.parametrize("K,tau_p", [(1, 1), (4, 2), (5, 3), (6, 6), (3, 5), (7, 3)])
def test_count_assignments_counts_distinct_partitions(K, tau_p):
    every = np.array(list(itertools.product(range(tau_p), repeat=K)))
    distinct = {tuple(r) for r in canonical_pilots(every)}
    assert count_assignments(K, tau_p) == len(distinct)


def test_exhaustive_known_counts():
    assert count_assignments(15, 3) == 2_391_485  # sum_{j<=3} S(15, j)
    assert count_assignments(6, 3) == 122


@pytest.mark.parametrize("size", [(10, 2, 6, 3), (10, 2, 9, 3), (6, 1, 5, 4)], ids=str)
def test_no_agent_beats_exhaustive(size):
    cfg, snap = snapshots(size, n=6, seed=5)
    best = sum_rate(snap.beta, ExhaustiveAgent(config=cfg).assign(snap), cfg)
    for name in MODEL_FREE:
        if agents.make(name, config=cfg).unsupported_reason(cfg):  # e.g. max-k-cut without its optional extra
            continue
        got = sum_rate(snap.beta, agents.make(name, config=cfg).assign(snap), cfg)
        assert np.all(got <= best * (1 + 1e-12)), name


def test_exhaustive_refuses_beyond_cap_with_count():
    cfg = SystemConfig(K=12, tau_p=3)
    agent = ExhaustiveAgent(config=cfg, max_assignments=1000)
    assert "88,574" in agent.unsupported_reason(cfg)
    with pytest.raises(ValueError, match="88,574"):
        agent.assign(draw_snapshots(cfg, np.random.default_rng(0)))


def test_master_ap_hand_example():
    # 3 APs, 5 users, 2 pilots. Master APs: users 0,1 -> AP 0; user 2 -> AP 1; user 3 -> AP 0; user 4 -> AP 2.
    beta = np.array([
        [9.0, 8.0, 1.0, 7.0, 1.0],
        [1.0, 1.0, 9.0, 1.0, 2.0],
        [2.0, 3.0, 1.0, 1.0, 5.0],
    ])[None] * 1e-10
    # users 0, 1 take pilots 0, 1. User 2 at AP 1: pilot 0 holds user 0 (1.0), pilot 1 holds user 1 (1.0):
    # tie -> pilot 0. User 3 at AP 0: pilot 0 = 9 + 1 = 10, pilot 1 = 8 -> pilot 1.
    # User 4 at AP 2: pilot 0 = 2 + 1 = 3, pilot 1 = 3 + 1 = 4 -> pilot 0.
    np.testing.assert_array_equal(master_ap_pilots(beta, 2), [[0, 1, 0, 1, 0]])


def test_master_ap_fewer_users_than_pilots():
    beta = np.full((1, 3, 2), 1e-10)
    np.testing.assert_array_equal(master_ap_pilots(beta, 5), [[0, 1]])


def test_greedy_hand_example():
    cfg = SystemConfig(M=2, K=3, tau_p=2)
    # users 0 and 1 strong (user 0 stronger), user 2 very weak: user 2 is the weakest under any assignment
    beta = np.array([[1e-9, 1e-10, 1e-14], [1e-10, 1e-11, 1e-14]])[None]
    start = np.array([[0, 1, 0]])
    assert user_rates(beta, start, cfg).argmin() == 2
    # contamination for user 2: pilot 0 holds user 0 (1.1e-9), pilot 1 holds user 1 (1.1e-10) -> pilot 1
    np.testing.assert_array_equal(greedy_pilots(beta, start, cfg, iterations=1), [[0, 1, 1]])
    # next round user 2 is still the weakest and pilot 1 is still its least contaminated
    np.testing.assert_array_equal(greedy_pilots(beta, start, cfg, iterations=3), [[0, 1, 1]])


def test_local_search_never_ends_below_its_start():
    cfg, snap = snapshots((30, 2, 20, 10), n=4, seed=2)
    agent = LocalSearchAgent(config=cfg, restarts=3)
    pilots = agent.assign(snap)
    stats = agent.last_stats
    assert np.all(stats["final_val"] >= stats["start_val"])
    master = sum_rate(snap.beta, master_ap_pilots(snap.beta, cfg.tau_p), cfg)
    assert np.all(sum_rate(snap.beta, pilots, cfg) >= master * (1 - 1e-12))


def test_local_search_is_a_local_optimum():
    cfg, snap = snapshots((10, 2, 9, 3), n=2, seed=4)
    pilots = LocalSearchAgent(config=cfg, restarts=0, kicks=0, verify=True).assign(snap)
    for s in range(2):
        here = float(sum_rate(snap.beta[s], pilots[s], cfg))
        assert sum_rate(snap.beta[s], single_moves(pilots[s], cfg.tau_p), cfg).max() <= here * (1 + 1e-9)


def test_location_agent_distinct_pilots_within_uncrowded_regions():
    cfg = SystemConfig(M=10, K=12, tau_p=3)
    agent = LocationAgent(config=cfg)
    G = agent.grid_size(cfg)
    assert G == 2
    snap = draw_snapshots(cfg, np.random.default_rng(8), (20,))
    pilots = agent.assign(snap)
    cell = cfg.area_side_m / G
    region = (snap.ue_positions[..., 1] // cell) * G + snap.ue_positions[..., 0] // cell
    for b in range(20):
        for r in np.unique(region[b]):
            in_region = pilots[b][region[b] == r]
            n_distinct = len(np.unique(in_region))
            assert n_distinct == min(len(in_region), cfg.tau_p)


def test_canonical_pilots():
    np.testing.assert_array_equal(canonical_pilots(np.array([2, 2, 0, 1, 0])), [0, 0, 1, 2, 1])
    np.testing.assert_array_equal(canonical_pilots(np.array([[1, 0], [0, 1]])), [[0, 1], [0, 1]])


def test_registry_rejects_unknown_name_listing_valid_ones():
    with pytest.raises(ValueError, match="unknown agent 'nope'.*master-ap"):
        agents.make("nope")


def test_registry_descriptions_are_one_line():
    for name, text in agents.available().items():
        assert text and "\n" not in text, name


def test_assign_rejects_bad_snapshots():
    cfg = SystemConfig(M=4, K=3, tau_p=2)
    agent = agents.make("master-ap", config=cfg)
    bad = Snapshot(np.full((2, 4, 4), 1e-9), np.zeros((2, 4, 2)), np.zeros((2, 4, 2)))
    with pytest.raises(ValueError, match="snapshots.beta must be"):
        agent.assign(bad)
    nan = Snapshot(np.full((4, 3), np.nan), np.zeros((4, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="finite"):
        agent.assign(nan)
    with pytest.raises(ValueError, match="needs a SystemConfig"):
        agents.make("random").assign(draw_snapshots(cfg, np.random.default_rng(0)))


def _assign_in_chunks(name, cfg, snap, chunk, threads):
    """Assign the way the evaluation harness does: one generator per chunk, keyed by its start."""
    import numba

    from agents.base import AGENT_STREAM, stream_rng

    old = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        agent = agents.make(name, config=cfg, seed=0)
        n = len(snap)
        pilots = np.concatenate([agent.assign(snap[lo:lo + chunk], cfg,
                                              stream_rng(0, AGENT_STREAM, name, *cfg.size, *([lo] if lo else [])))
                                 for lo in range(0, n, chunk)])
    finally:
        numba.set_num_threads(old)
    return pilots, sum_rate(snap.beta, pilots, cfg)


@pytest.mark.parametrize("name", ["local-search", "exhaustive"])
def test_search_results_do_not_depend_on_chunking_or_threads(name):
    """Local search used to return the same partition under chunk-dependent labels, and a sum
    rate differing in the last bit."""
    import numba

    cfg, snap = snapshots((10, 2, 9, 3), n=12, seed=21)
    pilots, rates = _assign_in_chunks(name, cfg, snap, 12, 1)
    np.testing.assert_array_equal(pilots, canonical_pilots(pilots))
    for chunk in (1, 5, 7, 12):
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            got, got_rates = _assign_in_chunks(name, cfg, snap, chunk, threads)
            np.testing.assert_array_equal(got, pilots)
            np.testing.assert_array_equal(got_rates.view(np.uint64), rates.view(np.uint64))


def test_local_search_final_values_are_those_of_the_returned_pilots():
    cfg, snap = snapshots((10, 2, 9, 3), n=3, seed=8)
    agent = LocalSearchAgent(config=cfg, restarts=2)
    pilots = agent.assign(snap)
    best = agent.last_stats["final_val"].max(axis=1)
    np.testing.assert_array_equal(best, sum_rate(snap.beta, pilots, cfg))


def test_thread_limits_set_and_restore_torch_and_numba_threads():
    import numba
    import torch

    before = torch.get_num_threads(), numba.get_num_threads()
    with pytest.raises(RuntimeError):
        with thread_limits(1, 1):
            assert (torch.get_num_threads(), numba.get_num_threads()) == (1, 1)
            raise RuntimeError("restored even on an error")
    assert (torch.get_num_threads(), numba.get_num_threads()) == before
    with thread_limits(numba_threads=1):
        assert (torch.get_num_threads(), numba.get_num_threads()) == (before[0], 1)
    assert (torch.get_num_threads(), numba.get_num_threads()) == before
