"""The faithful variants (agents/faithful.py) against the authors' MATLAB code's behaviour.

Two kinds of checks: hand-built cases traced through the code by reading it (the lines named in each
test), and, for the tabu search, a literal transcription of ``functiontabu_new.m`` and ``change.m``
written here loop by loop (1-based bookkeeping as in MATLAB) run beside the vectorised agent.
"""

from __future__ import annotations

import numpy as np
import pytest

from agents.faithful import (GraphColouringLiu2020Agent, TabuLiu2020Agent, colour_classes,
                             graph_colouring_liu2020, least_used_pilot, matlab_round, served_by_threshold,
                             tabu_liu2020)
from cfenv.config import SystemConfig
from cfenv.models import model_of


# ------------------------------------------------------------------------------- tabu
def _toy_rates(pilots: np.ndarray) -> np.ndarray:
    """K = 2: user 0 has rate 1 when it shares its pilot with user 1, else 2; user 1 always 2."""
    same = pilots[..., 0] == pilots[..., 1]
    return np.stack([np.where(same, 1.0, 2.0), np.full(same.shape, 2.0)], axis=-1)


def test_tabu_hand_traced_through_functiontabu_new():
    """Start [0, 0] (tau_p = 2), three iterations, read from functiontabu_new.m / change.m:

    1. order [0, 1] (rates 1, 2); least-used pilot 1; candidates [1, 0] (4), [0, 1] (4); the first beats
       max_tabu (lines 35-50): taken, best = 4, listed.
    2. order [0, 1] (rates 2, 2, stable); use counts [1, 1] -> pilot 0; candidates [0, 0] (3) and [1, 0]
       unchanged (4); 4 is not above the best, so lines 55-68: [1, 0] is tabu, [0, 0] is taken (a worse move).
    3. from [0, 0] again: [1, 0] is still tabu, [0, 1] is taken. The best taken, [1, 0], is returned.
    """
    start = np.array([[0, 0]])
    seen = []

    def rates(pilots):
        seen.append(pilots.copy())
        return _toy_rates(pilots)

    out = tabu_liu2020(start, 2, rates, lambda r: r.sum(-1), iterations=3)
    np.testing.assert_array_equal(out, [[1, 0]])
    currents = [s[0, 0] for s in seen[::2]]  # each iteration: the current assignment, then its candidates
    np.testing.assert_array_equal(currents, [[0, 0], [1, 0], [0, 0]])
    np.testing.assert_array_equal(seen[3][0], [[0, 0], [1, 0]])  # iteration 2's candidates, in user order


def _matlab_tabu(start: np.ndarray, tau_p: int, rate_of, n_iter: int = 20, tenure: int = 5) -> np.ndarray:
    """functiontabu_new.m and change.m, transcribed loop by loop for one snapshot (pilots 1-based as there)."""
    K = len(start)
    Point = start + 1
    LEN = K
    TabuList = np.zeros((K, K + 1))
    TabuList[:, 0] = np.inf
    max_tabu, max_point = -np.inf, None
    i_iter = 1
    while i_iter < n_iter:
        for i in range(K):
            if TabuList[i, 0] <= 0:
                TabuList[i, :] = np.concatenate([[np.inf], np.zeros(K)])
        R_cfta = rate_of(Point - 1)
        which = np.argsort(R_cfta, kind="stable")
        RRr, PPiont = np.zeros(LEN), np.zeros((LEN, K), dtype=np.int64)
        for ii in range(LEN):  # change.m
            use_number = np.array([np.sum(Point == s) for s in range(1, tau_p + 1)])
            minindex = int(np.argmin(use_number)) + 1
            colo = Point.copy()
            colo[which[ii]] = minindex
            RRr[ii], PPiont[ii] = rate_of(colo - 1).sum(), colo
        index = np.argsort(-RRr, kind="stable")
        mr = RRr[index]
        if mr[0] > max_tabu:
            max_tabu = mr[0]
            Point = PPiont[index[0]].copy()
            max_point = Point.copy()
            TabuList[:, 0] -= 1
            exit_ = np.all(TabuList[:, 1:] == Point, axis=1)
            if exit_.max() == 0:
                TabuList[np.flatnonzero(TabuList[:, 0] == np.inf).min()] = np.concatenate([[tenure], Point])
            else:
                TabuList[int(exit_.max()) - 1] = np.concatenate([[tenure], Point])  # row max(exit) = 1
        else:
            for i in range(LEN):
                eexit = np.all(TabuList[:, 1:] == PPiont[index[i]], axis=1)
                if eexit.max() == 0:
                    TabuList[:, 0] -= 1
                    TabuList[np.flatnonzero(TabuList[:, 0] == np.inf).min()] = np.concatenate([[tenure], PPiont[index[i]]])
                    Point = PPiont[index[i]].copy()
                    break
        i_iter += 1
    return max_point - 1


@pytest.mark.parametrize("size", [(8, 1, 6, 3), (12, 2, 9, 2)])
def test_tabu_equals_a_literal_transcription_of_the_code(size):
    config = SystemConfig.from_size(size)
    model = model_of(config)
    snaps = model.draw(np.random.default_rng(7), 4)
    got = TabuLiu2020Agent(config=config, seed=3).assign(snaps)
    start = agent_start(TabuLiu2020Agent(config=config, seed=3), snaps)  # a fresh agent: the same stream
    for b in range(4):
        expected = _matlab_tabu(start[b], config.tau_p, lambda p, b=b: model.user_rates(snaps[b], p))
        np.testing.assert_array_equal(got[b], expected)


def agent_start(agent: TabuLiu2020Agent, snaps) -> np.ndarray:
    """The random start the agent drew (its first draw from the generator ``assign`` hands it)."""
    captured = {}

    def spy(start, tau_p, rates, objective, iterations, tenure):
        captured["start"] = start.copy()
        return start

    import agents.faithful as faithful

    original = faithful.tabu_liu2020
    faithful.tabu_liu2020 = spy
    try:
        agent.assign(snaps)
    finally:
        faithful.tabu_liu2020 = original
    return captured["start"]


def test_least_used_pilot_takes_the_first_on_ties():
    np.testing.assert_array_equal(least_used_pilot(np.array([[0, 0, 1, 2], [2, 2, 0, 0]]), 3), [1, 1])


def test_tabu_is_deterministic_given_the_seed_and_never_above_exhaustive():
    config = SystemConfig.from_size((8, 1, 5, 2))
    snaps = model_of(config).draw(np.random.default_rng(1), 5)
    a = TabuLiu2020Agent(config=config, seed=11).assign(snaps)
    np.testing.assert_array_equal(a, TabuLiu2020Agent(config=config, seed=11).assign(snaps))
    from agents.search import ExhaustiveAgent

    best = model_of(config).objective(snaps, ExhaustiveAgent(config=config).assign(snaps))
    assert np.all(model_of(config).objective(snaps, a) <= best * (1 + 1e-12))
    with pytest.raises(ValueError, match="iterations"):
        TabuLiu2020Agent(config=config, iterations=0)


def test_tabu_runs_on_the_uplink_of_the_scalable_model():
    """The code's objective is an uplink sum rate: the scalable model's uplink gives one."""
    config = SystemConfig(model="scalable", M=6, L=2, K=5, tau_p=2, link="uplink", asd_deg=15.0)
    snaps = model_of(config).draw(np.random.default_rng(2), 2)
    pilots = TabuLiu2020Agent(config=config, seed=0).assign(snaps)
    assert pilots.shape == (2, 5) and pilots.min() >= 0 and pilots.max() < 2


# -------------------------------------------------------------------- graph colouring
def test_matlab_round_rounds_halves_away_from_zero():
    assert [matlab_round(x) for x in (2.5, 3.5, 2.4, 0.5, -2.5)] == [3, 4, 2, 1, -3]


def test_ap_selection_by_hand():
    """functionAPSelection.m: gains 0.5, 0.3, 0.2 of one user reach 0.94 of their sum only with all three
    (0.5, 0.8, 1.0), 0.75 with two; funcnumofcolor.m lines 8-9 then serve every AP at or above the
    threshold gain."""
    beta = np.array([[0.3], [0.5], [0.2]])
    np.testing.assert_array_equal(served_by_threshold(beta, 0.94)[:, 0], [True, True, True])
    np.testing.assert_array_equal(served_by_threshold(beta, 0.75)[:, 0], [True, True, False])
    np.testing.assert_array_equal(served_by_threshold(beta, 0.5)[:, 0], [False, True, False])


def test_colour_classes_by_hand():
    """funcnumofcolor.m lines 24-52. Five users, edges 0-1, 0-2, 1-2, 3-4, tau_p = 2 (so up to
    round(5/2) = 3 may join a colour): user 0 (most uncoloured neighbours, lowest index) opens colour 0
    and blocks 1, 2; user 3 joins and blocks 4. Among 1, 2, 4, user 1 has the most uncoloured neighbours
    (one: user 2): colour 1, joined by 4. User 2 is left: colour 2."""
    adjacent = np.zeros((5, 5), dtype=bool)
    for a, b in ((0, 1), (0, 2), (1, 2), (3, 4)):
        adjacent[a, b] = adjacent[b, a] = True
    np.testing.assert_array_equal(colour_classes(adjacent, 2), [0, 1, 2, 0, 1])
    # no edges: the cap is round(5/2) = 3 joiners (Python's round would give 2): colours 0,0,0,0 then 1
    np.testing.assert_array_equal(colour_classes(np.zeros((5, 5), dtype=bool), 2), [0, 0, 0, 0, 1])


@pytest.mark.parametrize("size", [(10, 2, 9, 3), (100, 4, 40, 10), (30, 1, 20, 5)])
def test_graph_colouring_gives_exactly_tau_p_colours_within_the_cap(size):
    config = SystemConfig.from_size(size)
    snaps = model_of(config).draw(np.random.default_rng(5), 6)
    pilots = GraphColouringLiu2020Agent(config=config).assign(snaps)
    K, tau_p = config.K, config.tau_p
    for row, beta in zip(pilots, snaps.beta):
        assert len(np.unique(row)) == tau_p  # the bisection ends at exactly tau_p colours on these networks
        assert np.bincount(row).max() <= matlab_round(K / tau_p) + 1
        np.testing.assert_array_equal(row, graph_colouring_liu2020(beta, tau_p))
    np.testing.assert_array_equal(pilots, GraphColouringLiu2020Agent(config=config, seed=9).assign(snaps))


# ------------------------------------------------------------------ structured access (Chen 2021)
def test_chen_initial_access_by_hand():
    """functionAPselection.m, 2 APs, 3 users, tau_p = 1 (rows APs): user 0 takes AP 0 then AP 1; user 1
    takes AP 0, is its weakest (0.5 < 0.9), is barred there -- barred from M - 1 = 1 APs, so weak (l. 48-49)
    -- and as a weak user takes AP 1 without the cap (l. 33-35); user 2 takes AP 1 and evicts user 0 (0.2),
    who becomes weak and is not re-queued, then takes AP 0, is the weakest there (0.1), and becomes weak."""
    from agents.faithful import chen_initial_access

    beta = np.array([[0.9, 0.5, 0.1], [0.2, 0.4, 0.8]])
    selected, weak = chen_initial_access(beta, 1)
    np.testing.assert_array_equal(selected, [[True, False, False], [False, True, True]])
    assert weak == [1, 0, 2]


def test_chen_user_groups_by_hand():
    """functionUEgroup.m steps 1-2, users 0-3, conflicts 0-1 and 2-3. MatC: 0 -> [2, 3], 1 -> [2, 3],
    2 -> []. Step 1: user 2 has no later compatible user: a group of its own; removed from the rows
    (0 -> [3], 1 -> [3]). Step 2: user 0 opens a group and takes 3 (the last user ends the group);
    user 1's row lost 3: a group of its own. Pilots in the order the groups formed."""
    from agents.faithful import chen_groups

    conflict = np.zeros((4, 4), dtype=bool)
    for a, b in ((0, 1), (2, 3)):
        conflict[a, b] = conflict[b, a] = True
    assert chen_groups(conflict) == [[2], [0, 3], [1]]
    assert chen_groups(np.zeros((3, 3), dtype=bool)) == [[0, 1, 2]]  # everyone compatible: one group
    assert chen_groups(~np.eye(3, dtype=bool)) == [[0], [1], [2]]  # all in conflict: K groups


@pytest.mark.parametrize("size", [(10, 2, 9, 3), (100, 4, 40, 10)])
def test_structured_access_gives_exactly_tau_p_groups(size):
    from agents.faithful import StructuredChen2021Agent

    config = SystemConfig.from_size(size, model="scalable", link="uplink")
    snaps = model_of(config).draw(np.random.default_rng(3), 4)
    pilots = StructuredChen2021Agent(config=config).assign(snaps)
    assert all(len(np.unique(row)) == config.tau_p for row in pilots)
    np.testing.assert_array_equal(pilots, StructuredChen2021Agent(config=config, seed=5).assign(snaps))
