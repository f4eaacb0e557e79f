"""Stable-Baselines3 agents and the sequential environment (issue 7)."""

import json
import os
import pickle
import re
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import agents
from agents import rl
from agents.base import LearnableAgent
from agents.registry import agent_class, is_learnable
from cfenv import (
    CellFreePilotEnv,
    CellFreePilotSequentialEnv,
    FlattenFadingObservation,
    SystemConfig,
    draw_snapshots,
    sum_rate,
)
from cfenv.sequential import partial_sum_rate_mbps, sequential_observation

ROOT = Path(__file__).resolve().parents[1]
RL_AGENTS = ["ppo", "a2c", "dqn", "ppo-hqcnn"]
SIZE = (10, 2, 6, 3)
TINY_BUDGET = 512
"""environment steps of the interface tests (one PPO update at 64 envs x 8 steps)"""


# ------------------------------------------------------------------ environments
@pytest.mark.parametrize("reward_mode", ["final", "increments"])
@pytest.mark.parametrize("kwargs", [dict(), dict(M=4, K=2, tau_p=5), dict(M=3, K=1, tau_p=1)], ids=str)
def test_sequential_env_passes_gymnasium_check_env_without_warnings(kwargs, reward_mode):
    env = gym.make("CellFreePilotSequential-v0", reward_mode=reward_mode, render_mode="ansi", **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)


@pytest.mark.parametrize("reward_mode", ["final", "increments"])
def test_sequential_env_passes_sb3_check_env(reward_mode):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_check_env(CellFreePilotSequentialEnv(reward_mode=reward_mode))


def test_one_step_env_passes_gymnasium_and_sb3_check_env():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(gym.make("CellFreePilot-v0").unwrapped)
        sb3_check_env(FlattenFadingObservation(CellFreePilotEnv()))


@pytest.mark.parametrize("size", [SIZE, (6, 1, 7, 2), (4, 2, 5, 5)], ids=str)
def test_sequential_final_reward_equals_sum_rate_of_completed_assignment(size):
    cfg = SystemConfig.from_size(size)
    env = gym.make("CellFreePilotSequential-v0", config=cfg)
    env.action_space.seed(5)
    for seed in range(3):
        _, info = env.reset(seed=seed)
        rewards = []
        for _ in range(cfg.K):
            _, reward, terminated, truncated, info = env.step(env.action_space.sample())
            rewards.append(reward)
        assert terminated and not truncated
        expected = float(sum_rate(info["beta"], info["pilots"], cfg)) / 1e6
        assert rewards[-1] == pytest.approx(expected, rel=1e-12)
        assert rewards[:-1] == [0.0] * (cfg.K - 1)
        assert info["sum_rate"] == pytest.approx(expected, rel=1e-12)


def test_sequential_increments_add_up_to_final_sum_rate():
    cfg = SystemConfig.from_size(SIZE)
    env = CellFreePilotSequentialEnv(config=cfg, reward_mode="increments")
    _, info = env.reset(seed=3)
    pilots = [0, 1, 2, 0, 1, 2]
    total = 0.0
    for k, pilot in enumerate(pilots):
        _, reward, terminated, _, info = env.step(np.int64(pilot))
        total += reward
        partial = partial_sum_rate_mbps(info["beta"], np.array(pilots), k + 1, cfg)
        assert total == pytest.approx(partial, rel=1e-12)
    assert terminated
    assert total == pytest.approx(float(sum_rate(info["beta"], np.array(pilots), cfg)) / 1e6, rel=1e-12)


def test_sequential_env_same_seed_same_rollout_and_pickles():
    def rollout(env, seed):
        obs, info = env.reset(seed=seed)
        out = [obs]
        for k in range(env.unwrapped.config.K):
            obs, reward, *_ = env.step(k % env.unwrapped.config.tau_p)
            out += [obs, np.array([reward])]
        return np.concatenate(out)

    env = gym.make("CellFreePilotSequential-v0", reward_mode="increments")
    a = rollout(env, 7)
    twin = gym.make("CellFreePilotSequential-v0", reward_mode="increments")
    np.testing.assert_array_equal(a, rollout(twin, 7))
    assert not np.array_equal(a, rollout(env, 8))
    np.testing.assert_array_equal(a, rollout(pickle.loads(pickle.dumps(env)), 7))


def test_sequential_env_refuses_step_after_the_last_user_and_bad_actions():
    env = CellFreePilotSequentialEnv(K=2, tau_p=2)
    with pytest.raises(RuntimeError):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="pilot index"):
        env.step(2)
    env.step(0)
    env.step(1)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    with pytest.raises(ValueError, match="reward_mode"):
        CellFreePilotSequentialEnv(reward_mode="dense")


def test_sequential_observation_holds_fading_pilots_and_next_user():
    cfg = SystemConfig.from_size(SIZE)
    env = CellFreePilotSequentialEnv(config=cfg)
    obs, info = env.reset(seed=1)
    flat = FlattenFadingObservation(CellFreePilotEnv(config=cfg)).observation(
        CellFreePilotEnv(config=cfg).reset(options={"snapshot": env.snapshot})[0])
    n = cfg.M * cfg.K
    np.testing.assert_array_equal(obs[:n], flat)
    assert obs[n:].tolist() == [0.0] * (cfg.K * cfg.tau_p) + [1.0] + [0.0] * (cfg.K - 1)
    obs, *_ = env.step(2)
    pilots_part = obs[n:n + cfg.K * cfg.tau_p].reshape(cfg.K, cfg.tau_p)
    assert pilots_part[0].tolist() == [0, 0, 1] and not pilots_part[1:].any()
    assert obs[n + cfg.K * cfg.tau_p:].tolist() == [0, 1, 0, 0, 0, 0]
    given = np.array([[2, -1, -1, -1, -1, -1]] * 3)
    batch = sequential_observation(info["beta"][None].repeat(3, 0), given, 1, cfg)
    np.testing.assert_array_equal(batch, np.stack([obs] * 3))


def test_flat_observation_matches_flatten_wrapper():
    cfg = SystemConfig.from_size(SIZE)
    env = FlattenFadingObservation(CellFreePilotEnv(config=cfg))
    obs, info = env.reset(seed=2)
    np.testing.assert_array_equal(rl.flat_observation(info["beta"][None])[0], obs)


@pytest.mark.parametrize("scaling", ["mbps", "master-ap"])
def test_batched_vec_env_scores_like_the_single_env(scaling):
    cfg = SystemConfig.from_size(SIZE)
    venv = rl.BatchedPilotVecEnv(8, cfg, seed=0, reward_scaling=scaling)
    obs = venv.reset()
    assert obs.shape == (8, cfg.M * cfg.K) and venv.observation_space.contains(obs[0])
    actions = np.random.default_rng(0).integers(0, cfg.tau_p, (8, cfg.K))
    beta = venv.venv._infos()["beta"]
    np.testing.assert_array_equal(obs, rl.flat_observation(beta))
    next_obs, rewards, dones, infos = venv.step(actions)
    raw = sum_rate(beta, actions, cfg) / 1e6
    expected = raw / rl.master_ap_sum_rate_mbps(beta, cfg) if scaling == "master-ap" else raw
    np.testing.assert_allclose(rewards, expected, rtol=1e-6)
    assert dones.all() and not np.array_equal(next_obs, obs)
    assert [i["episode"]["r"] for i in infos] == pytest.approx(raw.tolist(), rel=1e-12)
    np.testing.assert_array_equal(np.stack([i["terminal_observation"] for i in infos]), obs)


def test_bad_training_options_raise_value_error():
    cfg = SystemConfig.from_size(SIZE)
    with pytest.raises(ValueError, match="reward_scaling"):
        rl.make_vec_env(cfg, 4, reward_scaling="db")
    with pytest.raises(ValueError, match="vec_env"):
        rl.make_vec_env(cfg, 4, kind="threads")
    with pytest.raises(ValueError, match="batched"):
        rl.make_vec_env(cfg, 4, kind="batched", sequential=True)


# ------------------------------------------------------------------ agents
def test_registry_lists_the_rl_agents_as_learnable():
    for name in RL_AGENTS:
        assert is_learnable(name)
        cls = agent_class(name)
        assert issubclass(cls, rl.RLAgent) and issubclass(cls, LearnableAgent) and cls.name == name


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Every RL agent after a tiny training run at SIZE, saved into its run folder."""
    runs = tmp_path_factory.mktemp("runs")
    cfg = SystemConfig.from_size(SIZE)
    out = {}
    for name in RL_AGENTS:
        agent = agents.make(name, config=cfg, seed=0, loss="unsupervised")
        summary = agent.fit(cfg, total_timesteps=TINY_BUDGET, runs_dir=runs, progress=False, val_snapshots=32)
        out[name] = (agent, summary)
    return out


@pytest.mark.parametrize("name", RL_AGENTS)
def test_rl_agent_acts_on_the_env_and_assigns_batches(trained, name):
    agent, _ = trained[name]
    cfg = agent.config
    env = gym.make("CellFreePilot-v0", config=cfg)
    obs, info = env.reset(seed=4)
    action = agent.act(obs, info)
    assert action.shape == (cfg.K,) and env.action_space.contains(action)
    _, reward, terminated, *_ = env.step(action)
    assert terminated and reward > 0
    snaps = draw_snapshots(cfg, np.random.default_rng(0), (5,))
    pilots = agent.assign(snaps)
    assert pilots.shape == (5, cfg.K) and pilots.dtype == np.int64
    assert pilots.min() >= 0 and pilots.max() < cfg.tau_p
    np.testing.assert_array_equal(pilots, agent.assign(snaps))  # deterministic
    np.testing.assert_array_equal(pilots[2], agent.assign(snaps[2]))  # batch == one by one


@pytest.mark.parametrize("name", RL_AGENTS)
def test_rl_save_load_round_trip_gives_same_actions(trained, name, tmp_path):
    agent, summary = trained[name]
    run = Path(summary["run_dir"])
    assert run == type(agent).run_dir(run.parents[2], agent.config, 0, "supervised")
    assert run.name == "rl-seed0" and run.parent.name == "10-2-6-3" and run.parents[1].name == name
    assert type(agent).has_checkpoint(run) and (run / rl.POLICY_PT).exists() and not (run / rl.MODEL_ZIP).exists()
    assert list(run.rglob("events.out.tfevents.*"))
    meta = json.loads((run / "config.json").read_text())
    assert meta["agent"] == name and meta["system"]["K"] == 6 and meta["train_time_s"] > 0
    loaded = agent_class(name).load(run, config=agent.config)
    assert loaded.meta["train_time_s"] == pytest.approx(summary["train_time_s"])
    assert loaded.parameter_count() == agent.parameter_count() > 0
    snaps = draw_snapshots(agent.config, np.random.default_rng(1), (16,))
    np.testing.assert_array_equal(loaded.assign(snaps), agent.assign(snaps))
    again = agent.save(tmp_path / "copy")
    np.testing.assert_array_equal(rl.RLAgent.load(again).assign(snaps), agent.assign(snaps))


@pytest.mark.parametrize("name", ["ppo", "dqn"])
def test_rl_load_into_another_size_raises_value_error(trained, name):
    agent, summary = trained[name]
    with pytest.raises(ValueError, match=r"\(10, 2, 6, 3\)"):
        agent_class(name).load(summary["run_dir"], config=SystemConfig.from_size((10, 2, 9, 3)))
    with pytest.raises(ValueError, match="trained for"):
        agent.assign(draw_snapshots(SystemConfig(K=9), np.random.default_rng(0), (2,)), SystemConfig(K=9))
    other = "a2c" if name == "ppo" else "ppo"
    with pytest.raises(ValueError, match="holds"):
        agent_class(other).load(summary["run_dir"])


@pytest.mark.parametrize("argv, message", [
    (["--agent", "ppo", "--hidden", "16"], "ppo has no option hidden"),
    (["--agent", "ppo-hqcnn", "--qubits", "5"], "n_qubits must be one of 4, 8, 16"),
])
def test_train_cli_refuses_bad_rl_options_in_one_line(argv, message, capsys):
    import train

    assert train.main([*argv, "--sizes", "6,2,4,2"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_untrained_rl_agent_refuses_to_assign():
    agent = agents.make("ppo", config=SystemConfig.from_size(SIZE))
    with pytest.raises(ValueError, match="not trained"):
        agent.assign(draw_snapshots(agent.config, np.random.default_rng(0), (2,)))


def test_fit_summary_and_same_seed_same_policy(trained, tmp_path):
    agent, summary = trained["ppo"]
    for key in ("train_time_s", "val_sum_rate_mbps", "initial_val_sum_rate_mbps", "val_ratio_to_master_ap",
                "val_history", "parameters"):
        assert key in summary
    assert agent.meta["train_time_s"] == summary["train_time_s"]
    again = agents.make("ppo", config=agent.config, seed=0)
    second = again.fit(total_timesteps=TINY_BUDGET, runs_dir=tmp_path, progress=False, val_snapshots=32)
    assert [h["val/sum_rate_mbps"] for h in second["val_history"]] == \
           [h["val/sum_rate_mbps"] for h in summary["val_history"]]


def test_short_ppo_run_improves_validation_sum_rate_over_initial_policy(tmp_path):
    cfg = SystemConfig.from_size(SIZE)
    agent = agents.make("ppo", config=cfg, seed=0)
    summary = agent.fit(cfg, total_timesteps=16_384, runs_dir=tmp_path, progress=False)
    initial, final = summary["initial_val_sum_rate_mbps"], summary["val_sum_rate_mbps"]
    assert final > initial + 1.0, (initial, final)
    # the logged numbers are the agent's own deterministic assignments on the validation stream
    val = draw_snapshots(cfg, agents.base.stream_rng(0, agents.base.VALIDATION_STREAM, *cfg.size), (256,))
    assert float((sum_rate(val.beta, agent.assign(val), cfg) / 1e6).mean()) == pytest.approx(final, rel=1e-9)


# ------------------------------------------------------------------ docs
def test_rl_docs_snippet_runs(tmp_path):
    text = (ROOT / "docs" / "rl.md").read_text()
    blocks = re.findall(r"```python\n(.*?)\n```", text, flags=re.S)[:1]
    assert blocks and len([line for line in blocks[0].splitlines() if line.strip()]) <= 10
    # One thread each: on a busy 2-core machine torch's and numba's pools fight.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    for block in blocks:
        out = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True,
                             text=True)
        assert out.returncode == 0, out.stderr
        assert "Mbit/s with pilots" in out.stdout
