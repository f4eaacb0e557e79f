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


def assert_deterministic_and_never_above_exhaustive(agent_class, size: tuple[int, int, int, int], seed: int) -> None:
    """Two agents of the same seed give the same pilots, whose objective never exceeds EPAS's."""
    from agents.search import ExhaustiveAgent

    config = SystemConfig.from_size(size)
    snaps = model_of(config).draw(np.random.default_rng(1), 5)
    a = agent_class(config=config, seed=seed).assign(snaps)
    np.testing.assert_array_equal(a, agent_class(config=config, seed=seed).assign(snaps))
    best = model_of(config).objective(snaps, ExhaustiveAgent(config=config).assign(snaps))
    assert np.all(model_of(config).objective(snaps, a) <= best * (1 + 1e-12))


def test_tabu_is_deterministic_given_the_seed_and_never_above_exhaustive():
    assert_deterministic_and_never_above_exhaustive(TabuLiu2020Agent, (8, 1, 5, 2), seed=11)
    config = SystemConfig.from_size((8, 1, 5, 2))
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


# ------------------------------------------------------------------ matching (Gao 2024)
def _literal_gao_matching(beta_users_aps: np.ndarray, q_ap: int) -> np.ndarray:
    """``match_users_to_aps`` of the port (src/pilot_schemes/matching_gao.py), loop by loop: ``(users, APs)``
    gains in, ``(users, APs)`` matching out; UE quota = every AP, as its default."""
    m_count, k_count = beta_users_aps.shape
    q_ue = k_count
    prefs = [list(row) for row in np.argsort(-beta_users_aps, axis=1)]
    ap_rank = np.empty((k_count, m_count), dtype=int)
    for ap in range(k_count):
        ap_rank[ap, np.argsort(-beta_users_aps[:, ap])] = np.arange(m_count)
    matching = np.zeros((m_count, k_count), dtype=bool)
    free = set(range(m_count))
    while free:
        proposals: list[list[int]] = [[] for _ in range(k_count)]
        for ue in list(free):
            if matching[ue].sum() >= q_ue or not prefs[ue]:
                continue
            proposals[prefs[ue].pop(0)].append(ue)
        if not any(proposals):
            break
        for ap, proposed in enumerate(proposals):
            if not proposed:
                continue
            candidates = np.array(sorted(set(np.flatnonzero(matching[:, ap]).tolist() + proposed)))
            accepted = candidates if candidates.size <= q_ap else candidates[np.argsort(ap_rank[ap, candidates])[:q_ap]]
            matching[:, ap] = False
            matching[accepted, ap] = True
        for ue in list(free):
            if matching[ue].sum() >= q_ue or not prefs[ue]:
                free.remove(ue)
    return matching


@pytest.mark.parametrize("size", [(6, 1, 5, 2), (20, 2, 12, 3), (40, 1, 30, 5)])
def test_gao_groups_equal_a_literal_transcription_of_the_ported_matching(size):
    from agents.faithful import gao_groups

    config = SystemConfig.from_size(size)
    for beta in model_of(config).draw(np.random.default_rng(4), 3).beta:
        np.testing.assert_array_equal(gao_groups(beta, config.tau_p), _literal_gao_matching(beta.T, config.tau_p).T)


def test_gao_scores_and_pilots_by_hand():
    """Three APs, four users, tau_p = 2. Groups (each AP's two strongest): AP 0 {0, 1}, AP 1 {1, 2},
    AP 2 {0, 1}. Matched APs per user: 2, 3, 1, 0; common APs: (0, 1) 2, (1, 2) 1. Scores (Eqs. (9)-(10)
    as ported): AP 0 and AP 2: 2/2 + 2/3 = 5/3; AP 1: 1/3 + 1/1 = 4/3. Algorithm 2 takes AP 0 first: users
    0 and 1 get the two pilots in a random order; AP 2 has nothing left; AP 1: user 2 takes the pilot user 1
    does not hold, so user 2 shares user 0's pilot; user 3, in no group, draws any pilot."""
    from agents.faithful import gao_groups, gao_scores, matching_gao2024

    beta = np.array([[0.9, 0.8, 0.1, 0.05], [0.1, 0.9, 0.8, 0.05], [0.7, 0.6, 0.5, 0.4]])
    groups = gao_groups(beta, 2)
    np.testing.assert_array_equal(groups, [[1, 1, 0, 0], [0, 1, 1, 0], [1, 1, 0, 0]])
    np.testing.assert_allclose(gao_scores(groups), [5 / 3, 4 / 3, 5 / 3])
    for seed in range(6):
        pilots = matching_gao2024(beta, 2, np.random.default_rng(seed))
        assert pilots[0] != pilots[1] and pilots[2] == pilots[0] and 0 <= pilots[3] < 2


def test_gao_agent_is_deterministic_given_the_seed_and_never_above_exhaustive():
    from agents.faithful import MatchingGao2024Agent

    assert_deterministic_and_never_above_exhaustive(MatchingGao2024Agent, (8, 1, 6, 2), seed=3)


# -------------------------------------------------------------- beam domain (Mussbah 2024)
def test_dsatur_by_hand():
    """A path 0-1-2 and an isolated 3: all saturations 0, user 1 has the highest degree: colour 0; then 0
    and 2 have saturation 1, 0 wins on index: colour 1; then 2: colour 1; then 3: colour 0. A triangle
    needs three colours."""
    from agents.faithful import dsatur

    path = np.zeros((4, 4), dtype=bool)
    for a, b in ((0, 1), (1, 2)):
        path[a, b] = path[b, a] = True
    np.testing.assert_array_equal(dsatur(path), [1, 0, 1, 0])
    np.testing.assert_array_equal(dsatur(~np.eye(3, dtype=bool)), [0, 1, 2])


def test_mussbah_conflicts_by_hand():
    """One AP, two beams, three users (SNR 10 = reported). User 0: beams 100, 10 -> active {0} (100/110 >=
    0.95? no: 0.909, so both active). User 1: beams 0.5, 50 -> beam 0 unreported, active {1}. User 2:
    beams 1000, 20 -> active {0} (1000/1020 = 0.98), moderate {1}. Conflicts: 0-1 (beam 1 active in both),
    0-2 (beam 0), 1-2 (beam 1 active for 1, moderate for 2)."""
    from agents.faithful import mussbah_conflicts

    snr = np.array([[[100.0, 10.0], [0.5, 50.0], [1000.0, 20.0]]])
    np.testing.assert_array_equal(mussbah_conflicts(snr), ~np.eye(3, dtype=bool))
    snr[0, 2] = [1000.0, 0.5]  # user 2's beam 1 no longer reported: no conflict with user 1
    conflict = mussbah_conflicts(snr)
    assert conflict[0, 2] and conflict[0, 1] and not conflict[1, 2]


def test_beam_snr_of_independent_fading_is_rho_p_beta_on_every_beam():
    from agents.faithful import beam_snr

    config = SystemConfig.from_size((6, 3, 4, 2))
    snaps = model_of(config).draw(np.random.default_rng(0), 2)
    np.testing.assert_allclose(beam_snr(snaps, config), config.rho_p * snaps.beta[..., None] * np.ones(3))
    scalable = SystemConfig.from_size((6, 4, 4, 2), model="scalable", asd_deg=15.0)
    snaps = model_of(scalable).draw(np.random.default_rng(0), 2)
    snr = beam_snr(snaps, scalable)  # the DFT is unitary: the beams' SNRs sum to p trace(R)
    np.testing.assert_allclose(snr.sum(-1), scalable.pilot_power_w * 4 * snaps.beta / scalable.noise_power_w)


@pytest.mark.parametrize("size", [(10, 2, 9, 3), (20, 4, 12, 4)])
def test_mussbah_agent_stays_in_the_budget_and_is_deterministic(size):
    from agents.faithful import BeamMussbah2024Agent
    from agents.search import ExhaustiveAgent

    config = SystemConfig.from_size(size, model="scalable", link="uplink", asd_deg=15.0)
    snaps = model_of(config).draw(np.random.default_rng(6), 3)
    pilots = BeamMussbah2024Agent(config=config).assign(snaps)
    assert pilots.min() >= 0 and pilots.max() < config.tau_p
    np.testing.assert_array_equal(pilots, BeamMussbah2024Agent(config=config, seed=4).assign(snaps))
    if config.K <= 9:
        best = model_of(config).objective(snaps, ExhaustiveAgent(config=config).assign(snaps))
        assert np.all(model_of(config).objective(snaps, pilots) <= best * (1 + 1e-12))
