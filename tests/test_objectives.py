"""Fairness objectives (issue #16): the rate engine, the environments, the learners and the
results records under ``objective`` = "sum" | "min" | "proportional"."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from numba import njit

import cfenv  # noqa: F401  (registers the environments)
from cfenv._kernels import objective_of
from cfenv.channel import draw_snapshots
from cfenv.config import OBJECTIVES, SystemConfig
from cfenv.rates import (
    SMOOTH_MIN_TEMPERATURE,
    objective_from_rates,
    objective_value,
    relaxed_objective,
    smooth_min,
    sum_rate,
    user_rates,
)
from tests.test_rates import HAND_BETA, hand_rates_distinct_pilots, hand_rates_shared_pilot, unit_config

HAND_RATES = np.array([10e6, 20e6, 5e6])
"""per-user rates [bit/s] whose objectives are easy by hand"""
HAND_OBJECTIVES = {"sum": 35e6, "min": 5e6, "proportional": math.log(10 * 20 * 5)}


@njit(cache=False)
def _kernel_objectives(rates, code):
    out = np.empty(rates.shape[0])
    for i in range(rates.shape[0]):
        out[i] = objective_of(rates[i], code)
    return out


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_objective_of_hand_computed_rates(objective):
    assert objective_from_rates(HAND_RATES, objective) == pytest.approx(HAND_OBJECTIVES[objective], rel=1e-12)
    as_torch = objective_from_rates(torch.tensor(HAND_RATES), objective)
    assert float(as_torch) == pytest.approx(HAND_OBJECTIVES[objective], rel=1e-12)
    code = OBJECTIVES.index(objective)
    assert _kernel_objectives(HAND_RATES[None], code)[0] == pytest.approx(HAND_OBJECTIVES[objective], rel=1e-12)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_kernel_reduction_matches_reference(objective, rng):
    rates = rng.uniform(0.0, 5e7, size=(40, 7))
    rates[0, 3] = 0.0  # floored, finite
    code = OBJECTIVES.index(objective)
    np.testing.assert_allclose(_kernel_objectives(rates, code), objective_from_rates(rates, objective), rtol=1e-12)


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize(("pilots", "tau_p", "hand"), [((0, 1), 2, hand_rates_distinct_pilots),
                                                        ((0, 0), 1, hand_rates_shared_pilot)])
def test_objective_value_hand_computed_network(objective, pilots, tau_p, hand):
    """The two-user network of tests/test_rates.py, rates in bit/s/Hz (B = 1 Hz)."""
    cfg = unit_config(tau_p).replace(objective=objective)
    rates = hand()
    expected = {"sum": rates.sum(), "min": rates.min(),
                "proportional": float(np.sum(np.log(rates / 1e6)))}[objective]
    for backend in ("numba", "reference"):
        got = objective_value(HAND_BETA, np.array(pilots), cfg, backend=backend)
        assert float(got) == pytest.approx(expected, rel=1e-9)


def test_objective_value_sum_is_sum_rate_bit_for_bit(rng):
    cfg = SystemConfig.from_size((10, 2, 9, 3))
    beta = draw_snapshots(cfg, rng, (20,)).beta
    pilots = rng.integers(0, 3, size=(20, 9))
    assert np.array_equal(objective_value(beta, pilots, cfg), sum_rate(beta, pilots, cfg))


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_objective_value_batched(objective, rng):
    cfg = SystemConfig.from_size((10, 2, 6, 3)).replace(objective=objective)
    beta = draw_snapshots(cfg, rng, (5,)).beta
    pilots = rng.integers(0, 3, size=(5, 4, 6))  # 4 assignments per snapshot
    got = objective_value(beta[:, None], pilots, cfg)
    assert got.shape == (5, 4)
    np.testing.assert_allclose(got, objective_from_rates(user_rates(beta[:, None], pilots, cfg), objective),
                               rtol=1e-12)


def test_unknown_objective_is_one_value_error():
    with pytest.raises(ValueError, match="objective must be one of sum, min, proportional"):
        objective_from_rates(HAND_RATES, "max")
    with pytest.raises(ValueError, match="objective must be one of"):
        SystemConfig(objective="fair")


# ----------------------------------------------------------------- relaxed objectives
def _one_hot(pilots: np.ndarray, tau_p: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.as_tensor(pilots), tau_p).to(torch.float64)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_relaxed_objective_equals_hard_at_one_hot_with_finite_gradients(objective, rng):
    cfg = SystemConfig.from_size((10, 2, 6, 3)).replace(objective=objective)
    beta = draw_snapshots(cfg, rng, (8,)).beta
    pilots = rng.integers(0, 3, size=(8, 6))
    logits = (20.0 * _one_hot(pilots, 3)).requires_grad_(True)
    q = torch.softmax(logits, -1)
    q_exact = _one_hot(pilots, 3).requires_grad_(True)
    value = relaxed_objective(torch.as_tensor(beta), q_exact, cfg)
    np.testing.assert_allclose(value.detach().numpy(), objective_value(beta, pilots, cfg), rtol=1e-10)
    value.sum().backward()
    assert torch.isfinite(q_exact.grad).all() and q_exact.grad.abs().sum() > 0
    relaxed_objective(torch.as_tensor(beta), q, cfg).sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_relaxed_min_gradient_is_the_smooth_minimum(rng):
    """Value: the hard minimum of the relaxed rates; gradient: that of the log-sum-exp soft minimum."""
    cfg = SystemConfig.from_size((10, 2, 6, 3)).replace(objective="min")
    beta = torch.as_tensor(draw_snapshots(cfg, rng).beta)
    q1 = torch.softmax(torch.as_tensor(rng.normal(size=(6, 3))), -1).requires_grad_(True)
    q2 = q1.detach().clone().requires_grad_(True)
    value = relaxed_objective(beta, q1, cfg)
    from cfenv.rates import relaxed_user_rates

    rates = relaxed_user_rates(beta, q2, cfg)
    assert float(value.detach()) == float(rates.detach().amin())
    smooth_min(rates).backward()
    value.backward()
    torch.testing.assert_close(q1.grad, q2.grad, rtol=1e-12, atol=0.0)


def test_smooth_min_bounds_and_temperature():
    rates = torch.tensor([10e6, 20e6, 10.5e6], dtype=torch.float64)
    soft = float(smooth_min(rates))
    assert 10e6 - SMOOTH_MIN_TEMPERATURE * math.log(3) <= soft <= 10e6
    assert float(smooth_min(rates, 1.0)) == pytest.approx(10e6, rel=1e-12)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        smooth_min(rates, 0.0)


# ----------------------------------------------------------------- environments
ACTION = np.array([0, 1, 2, 0, 1, 2])


def _step(objective: str | None, env_id: str = "CellFreePilot-v0") -> tuple[float, dict]:
    kwargs = {} if objective is None else {"objective": objective}
    env = gym.make(env_id, **kwargs)
    env.reset(seed=3)
    _, reward, _, _, info = env.step(ACTION)
    return reward, info


def test_env_sum_reward_unchanged():
    reward, info = _step(None)
    cfg = SystemConfig()
    expected = float((user_rates(info["beta"], ACTION, cfg) / 1e6).sum())
    assert reward == expected == info["sum_rate"]
    assert _step("sum")[0] == reward


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_env_rewards_the_objective_and_reports_all(objective):
    reward, info = _step(objective)
    rates = info["rates"]
    assert info["sum_rate"] == pytest.approx(rates.sum()) and info["min_rate"] == rates.min()
    expected = {"sum": rates.sum(), "min": rates.min(), "proportional": np.log(rates).sum()}[objective]
    assert reward == pytest.approx(expected, rel=1e-12) and info["objective"] == reward
    assert isinstance(reward, float)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_vector_env_rewards_the_objective(objective):
    env = gym.make_vec("CellFreePilot-v0", num_envs=3, objective=objective)
    env.reset(seed=1)
    _, rewards, _, _, infos = env.step(np.tile(ACTION, (3, 1)))
    rates = infos["rates"]
    expected = {"sum": rates.sum(-1), "min": rates.min(-1), "proportional": np.log(rates).sum(-1)}[objective]
    np.testing.assert_allclose(rewards, expected, rtol=1e-12)
    np.testing.assert_array_equal(infos["min_rate"], rates.min(-1))
    np.testing.assert_array_equal(infos["final_info"]["objective"], rewards)


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("mode", ["final", "increments"])
def test_sequential_env_rewards_the_objective(objective, mode):
    env = gym.make("CellFreePilotSequential-v0", objective=objective, reward_mode=mode)
    env.reset(seed=2)
    total = 0.0
    for pilot in ACTION:
        _, reward, done, _, info = env.step(np.int64(pilot))
        total += reward
    assert done
    one_shot_env = gym.make("CellFreePilot-v0", objective=objective)
    one_shot_env.reset(seed=2)
    one_shot = one_shot_env.step(ACTION)[1]
    assert total == pytest.approx(one_shot, rel=1e-9)
    assert info["objective"] == pytest.approx(one_shot, rel=1e-12) and "min_rate" in info


# ----------------------------------------------------------------- fairness statistics and records
def test_95_percent_likely_rate_is_numpy_percentile(rng):
    from agents.lab.stats import fairness_summary, rate_percentile

    rates = rng.gamma(2.0, 10.0, size=(37, 9))
    assert rate_percentile(rates) == np.percentile(rates.ravel(), 5)
    summary = fairness_summary(rates)
    assert summary["rate_5pct_mbps"] == np.percentile(rates, 5)
    assert summary["mean_min_rate_mbps"] == pytest.approx(rates.min(1).mean())
    assert 0 < summary["ci95_rate_5pct_mbps"] < 10 and 0 < summary["ci95_min_rate_mbps"] < 10
    assert fairness_summary(rates) == summary  # the bootstrap has a fixed seed


def test_jain_index_hand_computed():
    from agents.lab.stats import jain_index

    assert jain_index(np.array([5.0, 5.0, 5.0])) == pytest.approx(1.0)
    assert jain_index(np.array([1.0, 0.0, 0.0, 0.0])) == pytest.approx(0.25)
    assert jain_index(np.array([[1.0, 3.0]]))[0] == pytest.approx(16 / 20)


def _parts(pilots: np.ndarray, beta: np.ndarray, config: SystemConfig) -> list[dict]:
    rates = sum_rate(beta, pilots, config) / 1e6
    return [{"status": "ok", "train_time_s": None, "parameters": None, "rates": rates.tolist(),
             "pilots": pilots.tolist(), "elapsed_s": 0.1, "warm_up_s": 0.0}]


@pytest.fixture
def cell_inputs(rng):
    size = (6, 1, 5, 2)
    cfg = SystemConfig.from_size(size)
    snaps = draw_snapshots(cfg, rng, (12,))
    pilots = {name: rng.integers(0, 2, size=(12, 5)) for name in ("a", "b")}
    return size, cfg, snaps, pilots


def test_sum_records_keep_their_numbers(cell_inputs):
    """Under the default objective the published numbers are those computed before objectives existed."""
    from agents.lab.results import add_ratios, cell_record

    size, cfg, snaps, pilots = cell_inputs
    records = [cell_record(n, size, _parts(p, snaps.beta, cfg), None, snaps, 12, 0) for n, p in pilots.items()]
    add_ratios(records)
    means = {n: float(np.mean(sum_rate(snaps.beta, p, cfg) / 1e6)) for n, p in pilots.items()}
    best = max(means.values())
    for r in records:
        assert r["mean_sum_rate_mbps"] == means[r["agent"]] == r["mean_objective"]
        assert r["ratio"] == means[r["agent"]] / best and r["objective"] == "sum"


def test_min_records_rank_by_the_minimum_and_carry_fairness(cell_inputs):
    from agents.lab.results import FAIRNESS_FIELDS, add_ratios, cell_record, markdown_tables

    size, cfg, snaps, pilots = cell_inputs
    records = [cell_record(n, size, _parts(p, snaps.beta, cfg), None, snaps, 12, 0, cfg.replace(objective="min"))
               for n, p in pilots.items()]
    add_ratios(records)
    minima = {n: float((user_rates(snaps.beta, p, cfg) / 1e6).min(-1).mean()) for n, p in pilots.items()}
    for r in records:
        assert r["mean_objective"] == pytest.approx(minima[r["agent"]], rel=1e-12)
        assert r["mean_min_rate_mbps"] == pytest.approx(minima[r["agent"]], rel=1e-12)
        assert r["ratio"] == pytest.approx(minima[r["agent"]] / max(minima.values()), rel=1e-12)
        assert all(r[f] is not None for f in FAIRNESS_FIELDS)
    text = markdown_tables(records)
    assert "Objective 'min'" in text and "Fairness, whatever the objective" in text


def test_rate_cdf_panel_is_drawn(cell_inputs, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from agents.lab.results import add_ratios, cell_record, draw_rate_cdf, plot_records

    size, cfg, snaps, pilots = cell_inputs
    records = [cell_record(n, size, _parts(p, snaps.beta, cfg), None, snaps, 12, 0)
               for n, p in zip(("master-ap", "greedy"), pilots.values())]
    add_ratios(records)
    fig, ax = plt.subplots()
    assert draw_rate_cdf(ax, records, {size: snaps}) == ["greedy", "master-ap"]
    curves = [line for line in ax.get_lines() if len(line.get_xdata()) == 12 * 5]
    assert len(curves) == 2
    np.testing.assert_allclose(np.sort(curves[0].get_xdata()),  # greedy (drawn first) has pilots "b"
                               np.sort((user_rates(snaps.beta, pilots["b"], cfg) / 1e6).ravel()))
    plt.close(fig)
    assert plot_records(records, tmp_path / "r.png", {size: snaps}).stat().st_size > 1000


# ----------------------------------------------------------------- learners
def test_run_folders_and_old_checkpoints_read_as_sum(tmp_path):
    from agents.learning import TrainSettings
    from agents.learning.trainer import settings_differences

    base = dict(agent="mlp", size=(6, 2, 4, 2), runs_dir=tmp_path)
    assert TrainSettings(**base).run_dir.name == "unsupervised-seed0"
    fair = TrainSettings(**base, objective="min")
    assert fair.run_dir.name == "unsupervised-min-seed0" and fair.config.objective == "min"
    old = TrainSettings(**base).to_json()
    del old["objective"]  # a run recorded before objectives existed
    assert settings_differences(old, TrainSettings(**base)) == ""
    assert "objective" in settings_differences(old, fair)
    with pytest.raises(ValueError, match="objective must be one of"):
        TrainSettings(**base, objective="max")


@pytest.mark.parametrize("objective", ["min", "proportional"])
def test_unsupervised_loss_is_the_relaxed_objective(objective, rng):
    from agents.learning.losses import unsupervised_loss

    cfg = SystemConfig.from_size((10, 2, 6, 3)).replace(objective=objective)
    beta = draw_snapshots(cfg, rng, (4,)).beta
    pilots = rng.integers(0, 3, size=(4, 6))
    logits = (60.0 * _one_hot(pilots, 3)).requires_grad_(True)  # softmax one-hot to float64 precision
    loss = unsupervised_loss(logits, torch.as_tensor(beta), cfg)
    hard = objective_value(beta, pilots, cfg).mean()
    assert float(loss.detach()) == pytest.approx(-hard / (1.0 if objective == "proportional" else 1e6), rel=1e-9)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_sum_losses_unchanged(rng):
    from agents.learning.losses import reinforce_advantage, unsupervised_loss
    from cfenv.rates import relaxed_sum_rate

    cfg = SystemConfig.from_size((10, 2, 6, 3))
    beta = draw_snapshots(cfg, rng, (4,)).beta
    logits = torch.as_tensor(rng.normal(size=(4, 6, 3)))
    q = torch.softmax(logits, -1)
    assert torch.equal(unsupervised_loss(logits, torch.as_tensor(beta), cfg),
                       -relaxed_sum_rate(torch.as_tensor(beta), q, cfg).mean() / 1e6)
    pilots = rng.integers(0, 3, size=(4, 6))
    assert np.array_equal(objective_value(beta, pilots, cfg), sum_rate(beta, pilots, cfg))
    reward, base = np.array([110.0, 90.0]), np.array([100.0, 100.0])
    np.testing.assert_array_equal(reinforce_advantage(reward, base, cfg), (reward - base) / base)
    prop = cfg.replace(objective="proportional")
    np.testing.assert_allclose(reinforce_advantage(np.array([1.0]), np.array([-0.2]), prop), [1.2 / 6])


def test_gnn_reinforce_trains_for_min_and_records_it(tmp_path):
    from agents.learning import TrainSettings, load_model, train

    settings = TrainSettings(agent="gnn", size=(6, 2, 4, 2), loss="reinforce", objective="min", train_snapshots=32,
                             val_snapshots=16, epochs=1, batch_size=16, samples=2, runs_dir=tmp_path / "runs",
                             cache_dir=tmp_path / "cache", progress=False)
    summary = train(settings)
    assert summary["run_dir"].endswith("reinforce-min-seed0")
    assert "val/objective" in summary["final"] and "val/min_rate_mbps" in summary["final"]
    _, meta = load_model(settings.run_dir)
    assert meta["system"]["objective"] == "min" and meta["train"]["objective"] == "min"
    with pytest.raises(ValueError, match="trained for the 'min' objective, not 'sum'"):
        load_model(settings.run_dir, expected=SystemConfig.from_size((6, 2, 4, 2)))
    assert load_model(settings.run_dir, expected=SystemConfig.from_size((6, 2, 4, 2)).replace(objective="min"))


def test_train_and_evaluate_cli_keep_objectives_apart(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    import evaluate

    root = Path(__file__).resolve().parents[1]
    runs = tmp_path / "runs"
    out = subprocess.run([sys.executable, "train.py", "--agent", "mlp", "--sizes", "6,2,4,2", "--epochs", "1",
                          "--train-snapshots", "32", "--val-snapshots", "16", "--out", str(runs), "--objective", "min",
                          "--no-progress"], cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["run_dir"].endswith("unsupervised-min-seed0")
    common = ["--agents", "mlp,master-ap", "--sizes", "6,2,4,2", "--snapshots", "3", "--checkpoints", str(runs),
              "--no-train", "--no-progress"]
    assert evaluate.main([*common, "--objective", "min", "--out", str(tmp_path / "min")]) == 0
    records = {r["agent"]: r for r in json.loads((tmp_path / "min" / "results.json").read_text())}
    assert records["mlp"]["status"] == "ok" and records["mlp"]["objective"] == "min"
    assert evaluate.main([*common, "--out", str(tmp_path / "sum")]) == 0  # the min model never serves "sum"
    records = {r["agent"]: r for r in json.loads((tmp_path / "sum" / "results.json").read_text())}
    assert records["mlp"]["status"] == "skipped" and "no checkpoint" in records["mlp"]["reason"]
    bad = subprocess.run([sys.executable, "evaluate.py", "--objective", "fair"], cwd=root, capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "objective must be one of" in bad.stderr


@pytest.mark.parametrize("scaling", ["mbps", "master-ap"])
def test_sb3_training_env_rewards_the_objective(scaling):
    from agents.heuristics import master_ap_pilots
    from agents.rl.envs import BatchedPilotVecEnv

    cfg = SystemConfig.from_size((6, 2, 4, 2)).replace(objective="min")
    venv = BatchedPilotVecEnv(3, cfg, seed=0, reward_scaling=scaling)
    venv.reset()
    beta = venv.venv._snapshots.beta.copy()
    actions = np.array([[0, 1, 0, 1]] * 3)
    venv.step_async(actions)
    _, rewards, _, infos = venv.step_wait()
    rates = user_rates(beta, actions, cfg) / 1e6
    expected = rates.min(-1)
    if scaling == "master-ap":
        expected = expected / (user_rates(beta, master_ap_pilots(beta, 2), cfg) / 1e6).min(-1)
    np.testing.assert_allclose(rewards, expected.astype(np.float32), rtol=1e-6)
    np.testing.assert_allclose([i["sum_rate"] for i in infos], rates.sum(-1), rtol=1e-12)


def test_proportional_records_in_nats(cell_inputs):
    from agents.lab.results import add_ratios, cell_record

    size, cfg, snaps, pilots = cell_inputs
    records = [cell_record(n, size, _parts(p, snaps.beta, cfg), None, snaps, 12, 0, cfg.replace(objective="proportional"))
               for n, p in pilots.items()]
    add_ratios(records)
    for r, p in zip(records, pilots.values()):
        nats = np.log(user_rates(snaps.beta, p, cfg) / 1e6).sum(-1)
        assert r["mean_objective"] == pytest.approx(nats.mean(), rel=1e-12)
        assert r["ci95_objective"] > 0 and r["objective"] == "proportional"


def test_a_checkpoint_from_before_objectives_reads_as_sum(tmp_path):
    import json

    from agents.learning import TrainSettings, load_model, train

    settings = TrainSettings(agent="mlp", size=(6, 2, 4, 2), train_snapshots=32, val_snapshots=16, epochs=1,
                             batch_size=16, runs_dir=tmp_path / "runs", cache_dir=tmp_path / "cache", progress=False)
    train(settings)
    path = settings.run_dir / "config.json"
    meta = json.loads(path.read_text())
    del meta["system"]["objective"], meta["train"]["objective"]  # as 0.3.0 wrote it
    path.write_text(json.dumps(meta))
    assert train(settings).get("already_trained")  # the same settings: nothing to retrain
    sum_config = SystemConfig.from_size((6, 2, 4, 2))
    assert load_model(settings.run_dir, expected=sum_config)[1]["agent"] == "mlp"
    with pytest.raises(ValueError, match="trained for the 'sum' objective, not 'min'"):
        load_model(settings.run_dir, expected=sum_config.replace(objective="min"))
