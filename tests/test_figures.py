"""The figures: results.png from records, Fig. 3a/3b from a tiny runs folder, the env's frame."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from agents.lab import figures
from agents.lab.results import AGENT_FAMILIES, agent_family, agent_styles, plot_records, sort_agents
from cfenv.render import torus_segments

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
AGENTS_ALL = [name for members in AGENT_FAMILIES.values() for name in members] + ["my-agent", "other-agent", "third-agent"]
SIZES = [(10, 2, 6, 3), (10, 2, 12, 3), (30, 2, 20, 10)]
COLLAPSED = {"mlp", "light-cnn", "heavy-cnn", "hqcnn", "a2c"}


def is_png(path: Path) -> bool:
    return path.exists() and path.read_bytes()[:8] == PNG_MAGIC


def synthetic_records() -> list[dict]:
    rng = np.random.default_rng(0)
    records = []
    for size in SIZES:
        reference = "exhaustive" if size[2] <= 12 else "best (local-search)"
        for name in AGENTS_ALL:
            ratio = 1.0 if name in ("local-search", "exhaustive") else float(0.88 + 0.1 * rng.random())
            ran = not (name == "exhaustive" and reference != "exhaustive")
            records.append({"M": size[0], "L": size[1], "K": size[2], "tau_p": size[3], "agent": name,
                            "status": "ok" if ran else "skipped",
                            "mean_sum_rate_mbps": 15.0 * size[2] * ratio if ran else None,
                            "ci95_mbps": 2.0 if ran else None, "ratio": ratio if ran else None,
                            "ratio_to": reference if ran else None,
                            "collapsed": (name in COLLAPSED) if ran else None})
    return records


def test_plot_records_writes_png_for_every_agent_with_collapsed_ones(tmp_path):
    records = synthetic_records()
    assert len({r["agent"] for r in records}) == len(AGENTS_ALL) and any(r["collapsed"] for r in records)
    path = plot_records(records, tmp_path / "results.png", agents=AGENTS_ALL)
    assert path == tmp_path / "results.png" and is_png(path)


def test_the_default_selection_is_the_references_and_each_familys_best():
    from agents.lab.results import PLOT_REFERENCES, plot_selection

    records = synthetic_records()
    chosen = plot_selection(records)
    assert set(PLOT_REFERENCES) <= set(chosen) and len(chosen) < len(AGENTS_ALL)
    ratio = {}
    for r in records:
        if r["status"] == "ok":
            ratio.setdefault(r["agent"], []).append(r["ratio"])
    for family, members in AGENT_FAMILIES.items():
        rest = [m for m in members if m not in PLOT_REFERENCES]
        if rest:  # the family's best by mean ratio is drawn, its others are not
            best = max(rest, key=lambda m: np.mean(ratio[m]))
            assert best in chosen and not [m for m in rest if m != best and m in chosen], family
    assert plot_selection(records, ["gnn", "nope", "random"]) == ["gnn", "random"]
    few = [r for r in records if r["agent"] in ("random", "gnn", "tabu")]
    assert plot_selection(few) == ["random", "tabu", "gnn"]  # up to 10 agents: all of them, in table order


def test_the_ratio_ci_is_paired_on_the_same_networks():
    from agents.lab.results import paired_ratio_ci
    from agents.lab.stats import ci95

    ref = {"agent": "exhaustive", "per_snapshot_sum_rate_mbps": [10.0, 20.0, 30.0, 40.0], "objective": "sum"}
    shifted = {"agent": "a", "ratio_to": "exhaustive", "objective": "sum",
               "per_snapshot_sum_rate_mbps": [9.0, 19.0, 29.0, 39.0]}  # always 1 below: no paired spread
    assert paired_ratio_ci(shifted, {"exhaustive": ref}) == 0.0
    noisy = dict(shifted, per_snapshot_sum_rate_mbps=[9.0, 21.0, 28.0, 41.0])
    assert paired_ratio_ci(noisy, {"exhaustive": ref}) == pytest.approx(ci95(np.array([-1.0, 1, -2, 1])) / 25.0)
    assert paired_ratio_ci(dict(noisy, objective="min"), {"exhaustive": ref}) is None


def test_agents_grouped_by_family_with_distinct_styles():
    assert agent_family("local-search") == agent_family("exhaustive") == "search"
    assert agent_family("hqcnn-ar") == "symmetry-aware" and agent_family("no-such-agent") == "other"
    styles = agent_styles(AGENTS_ALL)
    assert len(set(styles.values())) == len(AGENTS_ALL)  # no two agents look alike
    for members in AGENT_FAMILIES.values():
        assert len({styles[m][1] for m in members}) == len(members)  # distinct markers within a family
    assert agent_styles(["gnn"])["gnn"] == styles["gnn"]  # the same look in every figure
    assert sort_agents(["ppo", "zeta", "gnn", "random"]) == ["random", "gnn", "ppo", "zeta"]


def test_sizes_sort_numerically_not_as_strings():
    slugs = ["6-2-4-2", "10-2-6-3", "45-2-20-10", "10-2-12-3", "6-2-4-2"]
    assert sorted(set(slugs)) != figures.sorted_sizes(slugs)
    assert figures.sorted_sizes(slugs) == ["6-2-4-2", "10-2-6-3", "10-2-12-3", "45-2-20-10"]


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    """Two tiny mlp runs, (6,2,4,2) then (10,2,6,3), plus a copy relabelled as a gnn REINFORCE
    run whose first epoch imitates (as gnn's default budget does)."""
    from agents.learning import TrainSettings, train

    tmp = tmp_path_factory.mktemp("figures")
    for size in [(6, 2, 4, 2), (10, 2, 6, 3)]:
        train(TrainSettings(agent="mlp", size=size, train_snapshots=32, val_snapshots=16, epochs=2, batch_size=16,
                            runs_dir=tmp / "runs", cache_dir=tmp / "cache", progress=False))
    source = tmp / "runs" / "mlp" / "10-2-6-3" / "unsupervised-seed0"
    target = tmp / "runs" / "gnn" / "10-2-6-3" / "reinforce-seed0"
    shutil.copytree(source, target)
    meta = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**meta, "agent": "gnn"}))
    history = json.loads((target / "history.json").read_text())
    history[0]["train/imitation"] = 1.0
    (target / "history.json").write_text(json.dumps(history))
    return tmp / "runs"


def test_figures_from_a_tiny_runs_folder(runs_dir, tmp_path):
    runs = figures.collect_runs(runs_dir)
    assert {(r["agent"], r["size"], r["loss"]) for r in runs} == {
        ("mlp", "6-2-4-2", "unsupervised"), ("mlp", "10-2-6-3", "unsupervised"),
        ("gnn", "10-2-6-3", "reinforce")}
    series = figures.convergence_series(runs)
    assert {s["agent"] for s in series} == {"mlp", "gnn"}
    assert {(s["agent"], s["loss"], s["imitation"]) for s in series if s["agent"] == "gnn"} == {
        ("gnn", "supervised", True), ("gnn", "reinforce", False)}
    bars = figures.efficiency_bars(runs)
    assert [(b["agent"], b["size"], b["loss"]) for b in bars] == [
        ("mlp", "6-2-4-2", "unsupervised"), ("mlp", "10-2-6-3", "unsupervised"), ("gnn", "10-2-6-3", "reinforce")]
    assert figures.sorted_sizes(r["size"] for r in runs) == ["6-2-4-2", "10-2-6-3"]
    assert is_png(figures.plot_convergence(runs, tmp_path / "convergence.png"))
    assert is_png(figures.plot_convergence(runs, tmp_path / "supervised.png", loss="supervised"))
    assert is_png(figures.plot_parameter_efficiency(runs, tmp_path / "parameter_efficiency.png"))
    assert figures.plot_convergence(runs, tmp_path / "none.png", loss="no-such-loss") is None


def test_figures_cli_names_a_skipped_figure_and_why(runs_dir, tmp_path, capsys):
    only_supervised = tmp_path / "runs"
    shutil.copytree(runs_dir / "mlp" / "6-2-4-2" / "unsupervised-seed0",
                    only_supervised / "mlp" / "6-2-4-2" / "supervised-seed0")
    assert figures.main(["--runs", str(only_supervised), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and is_png(tmp_path / "out" / "convergence.png")
    assert "skipped Fig. 3b (parameter efficiency): no runs with loss 'unsupervised'" in out
    assert not (tmp_path / "out" / "parameter_efficiency.png").exists()


def test_rgb_array_frame_before_and_after_a_step():
    import gymnasium as gym

    import cfenv  # noqa: F401  (registers the environment)

    env = gym.make("CellFreePilot-v0", render_mode="rgb_array", M=10, L=2, K=6, tau_p=3)
    env.reset(seed=0)
    before = env.render()
    env.step(np.array([0, 1, 2, 0, 1, 2]))
    after = env.render()
    for frame in (before, after):
        assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8
    assert before.shape == after.shape and not np.array_equal(before, after)


def test_torus_links_go_the_short_way_split_at_the_border():
    side = 1000.0
    a, b = np.array([20.0, 500.0]), np.array([980.0, 520.0])
    assert len(torus_segments(a, b, side, wrap_around=False)) == 1
    (p0, q0), (p1, q1) = torus_segments(a, b, side)
    np.testing.assert_allclose(q0 - p0, [-40.0, 20.0])  # 40 m to the left, across x = 0
    np.testing.assert_allclose(q1 - p1, [-40.0, 20.0])  # and in from x = 1000 on the other side
    np.testing.assert_allclose(p0, a)
    np.testing.assert_allclose(q1, b)
    near = torus_segments(np.array([400.0, 400.0]), np.array([600.0, 450.0]), side)
    assert len(near) == 1


def test_results_png_is_redrawn_from_a_folder_with_a_chosen_selection(tmp_path):
    import evaluate

    out = tmp_path / "out"
    assert evaluate.main(["--agents", "master-ap,random,greedy", "--sizes", "6,1,4,2", "--snapshots", "3",
                          "--no-progress", "--out", str(out), "--plot-agents", "master-ap", "random"]) == 0
    assert is_png(out / "results.png")
    assert figures.main(["--results", str(out), "--plot-agents", "greedy", "--out", str(tmp_path / "mine.png")]) == 0
    assert is_png(tmp_path / "mine.png")
    with pytest.raises(SystemExit):
        evaluate.main(["--agents", "master-ap", "--plot-agents", "tabu", "--out", str(tmp_path / "x")])
