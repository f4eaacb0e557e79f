"""The searches and the polish on a model without fast paths (issue #26, item 1).

On ``SystemConfig(model="paper-reference")`` (the paper's physics, no ``incremental`` fast path)
EPAS, local search, tabu and the polish run :mod:`agents.search.generic`, built on
``model.objective`` alone. They are checked against brute force and against the compiled paths
on the paper's model (same snapshots), and the compiled entry points are made to raise so that a
test cannot pass through them by accident.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from agents import polish as polish_module
from agents.heuristics import master_ap_pilots
from agents.polish import polish
from agents.search import ExhaustiveAgent, LocalSearchAgent, TabuAgent, exhaustive, generic, local, tabu
from cfenv import SystemConfig
from cfenv.config import OBJECTIVES
from cfenv.models import model_of
from tests.conftest import pair_swaps, single_moves

SIZES = [(4, 1, 5, 2), (6, 2, 6, 3)]
RTOL = 1e-9  # the reference formula against the compiled kernel


def configs(size, objective):
    """The generic (``paper-reference``) and the compiled (``paper``) config of one size."""
    return (SystemConfig.from_size(size, objective=objective, model="paper-reference"),
            SystemConfig.from_size(size, objective=objective))


def draw(cfg, n=4, seed=11):
    return model_of(cfg).draw(np.random.default_rng(seed), (n,))


@pytest.fixture
def compiled_paths_raise(monkeypatch):
    """The compiled searches' and the polish's entry points raise: only the generic path runs."""
    def refuse(*args, **kwargs):
        raise AssertionError("a compiled search kernel ran on a model without fast paths")

    for module, name in [(exhaustive, "_exhaustive"), (local, "_local_search"), (local, "_kick_search"),
                         (tabu, "tabu_search"), (polish_module, "_polish")]:
        monkeypatch.setattr(module, name, refuse)


def optimum(cfg, snaps):
    """Per snapshot, the best objective over all tau_p^K assignments (brute force)."""
    every = np.array(list(itertools.product(range(cfg.tau_p), repeat=cfg.K)))
    return model_of(cfg).objective(snaps[:, None], every).max(axis=1)


def values(cfg, snaps, pilots):
    return model_of(cfg).objective(snaps, pilots)


def at_most(a, b):
    """a <= b up to a relative 1e-12 (values may be negative: the proportional objective)."""
    return bool(np.all(a <= b + 1e-12 * np.abs(b)))


def test_only_the_paper_model_offers_the_pairwise_kernels():
    assert generic.pairwise_kernel(SystemConfig.from_size((4, 1, 5, 2))).layout == "paper-pairwise"
    assert generic.pairwise_kernel(SystemConfig.from_size((4, 1, 5, 2), model="paper-reference")) is None


def test_neighbourhoods_are_the_brute_force_ones(rng):
    pilots = rng.integers(0, 3, (2, 5))
    for row, got_moves, got_swaps in zip(pilots, generic.moves(pilots, 3), generic.swaps(pilots)):
        every = single_moves(row, 3)
        np.testing.assert_array_equal(got_moves, every[(every != row).any(axis=1)])  # own pilot left out
        np.testing.assert_array_equal(got_swaps, pair_swaps(row))


@pytest.mark.parametrize("batch", [generic.BATCH, 5])  # 5: many batches, ties across them
@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("size", SIZES, ids=str)
def test_generic_exhaustive_equals_compiled_epas_and_brute_force(size, objective, batch, monkeypatch,
                                                                 compiled_paths_raise):
    monkeypatch.setattr(generic, "BATCH", batch)
    cfg, paper = configs(size, objective)
    snaps = draw(cfg)
    got = ExhaustiveAgent(config=cfg).assign(snaps)
    monkeypatch.undo()  # the compiled EPAS on the paper's model, same snapshots
    want = ExhaustiveAgent(config=paper).assign(snaps)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(values(cfg, snaps, got), values(paper, snaps, want), rtol=RTOL)
    np.testing.assert_allclose(values(cfg, snaps, got), optimum(cfg, snaps), rtol=1e-12)


def test_generic_exhaustive_keeps_the_cap():
    cfg = SystemConfig.from_size((6, 2, 6, 3), model="paper-reference")
    assert "above max_assignments" in ExhaustiveAgent(config=cfg, max_assignments=100).unsupported_reason(cfg)
    assert ExhaustiveAgent(config=cfg).unsupported_reason(cfg) is None


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("size", SIZES, ids=str)
def test_generic_local_search_ends_at_a_local_optimum_between_master_ap_and_epas(size, objective,
                                                                                 compiled_paths_raise):
    cfg, _ = configs(size, objective)
    snaps = draw(cfg, n=5)
    agent = LocalSearchAgent(config=cfg, seed=3)
    got = agent.assign(snaps)
    val = values(cfg, snaps, got)
    np.testing.assert_allclose(agent.last_stats["best_val"], val, rtol=1e-12)
    assert at_most(values(cfg, snaps, master_ap_pilots(snaps.beta, cfg.tau_p)), val)
    assert at_most(val, optimum(cfg, snaps))
    for s in range(len(got)):
        around = np.concatenate([single_moves(got[s], cfg.tau_p), pair_swaps(got[s])])
        assert at_most(values(cfg, snaps[s], around).max(), val[s])
    np.testing.assert_array_equal(LocalSearchAgent(config=cfg, seed=3).assign(snaps), got)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_generic_local_search_is_the_compiled_exact_ascent_where_that_is_exact(objective):
    # at (6, 2, 6, 3) the neighbourhood has 27 candidates: the compiled search scores all of them
    # exactly (plain steepest ascent), the same rule from the same starts and kicks
    cfg, paper = configs((6, 2, 6, 3), objective)
    snaps = draw(cfg, n=5, seed=4)
    np.testing.assert_array_equal(LocalSearchAgent(config=cfg, seed=9).assign(snaps),
                                  LocalSearchAgent(config=paper, seed=9).assign(snaps))


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("size", SIZES, ids=str)
def test_generic_tabu_between_its_start_and_epas_and_deterministic(size, objective, compiled_paths_raise):
    cfg, _ = configs(size, objective)
    snaps = draw(cfg, n=5)
    got = TabuAgent(config=cfg, seed=1, iterations=15, tenure=3).assign(snaps)
    assert got.shape == (5, cfg.K) and got.min() >= 0 and got.max() < cfg.tau_p
    val = values(cfg, snaps, got)
    assert at_most(values(cfg, snaps, master_ap_pilots(snaps.beta, cfg.tau_p)), val)
    assert at_most(val, optimum(cfg, snaps))
    np.testing.assert_array_equal(TabuAgent(config=cfg, seed=1, iterations=15, tenure=3).assign(snaps), got)


def test_generic_tabu_from_a_local_optimum_reports_the_exact_value_of_its_best():
    cfg = SystemConfig.from_size((6, 2, 6, 3), model="paper-reference")
    snaps = draw(cfg, n=5)
    model = model_of(cfg)
    start = LocalSearchAgent(config=cfg, restarts=0, kicks=0).assign(snaps)
    best, top = generic.tabu(model, snaps, start, cfg.tau_p, iterations=10, tenure=2)
    np.testing.assert_allclose(top, values(cfg, snaps, best), rtol=1e-12)
    assert np.all(top >= values(cfg, snaps, start))


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("size", SIZES, ids=str)
def test_generic_polish_between_its_start_and_epas_within_budget(size, objective, compiled_paths_raise):
    cfg, _ = configs(size, objective)
    snaps = draw(cfg, n=5)
    rng = np.random.default_rng(2)
    starts = np.stack([master_ap_pilots(snaps.beta, cfg.tau_p), rng.integers(0, cfg.tau_p, (5, cfg.K))], axis=1)
    got, stats = polish(snaps, starts, cfg, candidates=0, max_evals=25)
    assert got.shape == (5, cfg.K) and got.min() >= 0 and got.max() < cfg.tau_p
    start_val = values(cfg, snaps[:, None], starts)
    assert at_most(start_val, stats["val"])
    assert np.all(stats["evals"] <= 25)
    val = values(cfg, snaps, got)
    np.testing.assert_allclose(val, stats["val"].max(axis=1), rtol=1e-12)
    assert at_most(val, optimum(cfg, snaps))
    again, _ = polish(snaps.beta, starts, cfg, candidates=0, max_evals=25)  # bare beta: the same
    np.testing.assert_array_equal(again, got)


@pytest.mark.parametrize("candidates", [0, 1])
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_generic_polish_is_the_compiled_unscreened_polish(objective, candidates):
    cfg, paper = configs((6, 2, 6, 3), objective)
    snaps = draw(cfg, n=5, seed=8)
    starts = np.random.default_rng(8).integers(0, cfg.tau_p, (5, 2, cfg.K))
    got, stats = polish(snaps.beta, starts, cfg, candidates=candidates, max_evals=30)
    want, want_stats = polish(snaps.beta, starts, paper, candidates=candidates, max_evals=30, screen=False)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(stats["evals"], want_stats["evals"])
    np.testing.assert_array_equal(stats["moves"], want_stats["moves"])
    np.testing.assert_allclose(stats["val"], want_stats["val"], rtol=RTOL)


def test_the_paper_model_keeps_its_compiled_paths(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a generic search ran on the paper's model")

    for name in ("exhaustive", "local_search", "tabu", "polish", "score"):
        monkeypatch.setattr(generic, name, refuse)
    cfg = SystemConfig.from_size((6, 2, 6, 3))
    snaps = draw(cfg, n=2)
    for agent in (ExhaustiveAgent(config=cfg), LocalSearchAgent(config=cfg), TabuAgent(config=cfg)):
        agent.assign(snaps)
    polish(snaps.beta, master_ap_pilots(snaps.beta, cfg.tau_p), cfg)
