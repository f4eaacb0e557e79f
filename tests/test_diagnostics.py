import numpy as np

from agents.heuristics import master_ap_pilots
from agents.learning.diagnostics import best_constant_assignment, collapse_report, distinct_assignments
from cfenv import SystemConfig, draw_snapshots, sum_rate

CFG = SystemConfig(M=10, K=6, tau_p=3)
SNAPS = draw_snapshots(CFG, np.random.default_rng(3), (60,))


def test_constant_policy_is_flagged_collapsed():
    constant = np.tile([0, 1, 2, 0, 1, 2], (60, 1))
    report = collapse_report(constant, SNAPS.beta, CFG)
    assert report["distinct_assignments"] == 1 and report["collapsed"]
    assert report["ratio_to_best_constant"] <= 1 + 1e-12


def test_relabelled_constant_policy_is_still_one_partition():
    rng = np.random.default_rng(0)
    relabelled = np.stack([rng.permutation(3)[[0, 1, 2, 0, 1, 2]] for _ in range(60)])
    assert distinct_assignments(relabelled) == 1


def test_master_ap_is_not_flagged():
    pilots = master_ap_pilots(SNAPS.beta, CFG.tau_p)
    report = collapse_report(pilots, SNAPS.beta, CFG)
    assert not report["collapsed"] and report["distinct_assignments"] > 10


def test_best_constant_exact_beats_every_constant_tried():
    pilots, value, method = best_constant_assignment(SNAPS.beta, CFG)
    assert method == "exact"
    rng = np.random.default_rng(1)
    for _ in range(20):
        other = rng.integers(0, 3, 6)
        assert sum_rate(SNAPS.beta, other, CFG).mean() <= value * (1 + 1e-12)


def test_best_constant_local_search_for_large_systems():
    cfg = SystemConfig(M=20, K=20, tau_p=10)
    snaps = draw_snapshots(cfg, np.random.default_rng(0), (8,))
    pilots, value, method = best_constant_assignment(snaps.beta, cfg)
    assert method == "local" and pilots.shape == (20,)
    assert value >= sum_rate(snaps.beta, np.arange(20) % 10, cfg).mean()
