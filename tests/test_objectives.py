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
    assignment_objective,
    objective_from_rates,
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
def test_assignment_objective_hand_computed_network(objective, pilots, tau_p, hand):
    """The two-user network of tests/test_rates.py, rates in bit/s/Hz (B = 1 Hz)."""
    cfg = unit_config(tau_p).replace(objective=objective)
    rates = hand()
    expected = {"sum": rates.sum(), "min": rates.min(),
                "proportional": float(np.sum(np.log(rates / 1e6)))}[objective]
    for backend in ("numba", "reference"):
        got = assignment_objective(HAND_BETA, np.array(pilots), cfg, backend=backend)
        assert float(got) == pytest.approx(expected, rel=1e-9)


def test_assignment_objective_sum_is_sum_rate_bit_for_bit(rng):
    cfg = SystemConfig.from_size((10, 2, 9, 3))
    beta = draw_snapshots(cfg, rng, (20,)).beta
    pilots = rng.integers(0, 3, size=(20, 9))
    assert np.array_equal(assignment_objective(beta, pilots, cfg), sum_rate(beta, pilots, cfg))


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_assignment_objective_batched(objective, rng):
    cfg = SystemConfig.from_size((10, 2, 6, 3)).replace(objective=objective)
    beta = draw_snapshots(cfg, rng, (5,)).beta
    pilots = rng.integers(0, 3, size=(5, 4, 6))  # 4 assignments per snapshot
    got = assignment_objective(beta[:, None], pilots, cfg)
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
    np.testing.assert_allclose(value.detach().numpy(), assignment_objective(beta, pilots, cfg), rtol=1e-10)
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
