import pickle
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import cfenv
from cfenv import CellFreePilotEnv, FlattenFadingObservation, SystemConfig, sum_rate
from cfenv.channel import draw_snapshots

SIZES = [dict(), dict(M=45, K=20, tau_p=10), dict(M=3, K=1, tau_p=1), dict(M=4, K=2, tau_p=5)]


@pytest.mark.parametrize("kwargs", SIZES, ids=str)
def test_gymnasium_check_env_without_warnings(kwargs):
    env = gym.make("CellFreePilot-v0", render_mode="rgb_array", **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)


def test_sb3_check_env_on_flattened_env():
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_check_env(FlattenFadingObservation(CellFreePilotEnv()))


def test_make_with_module_prefix_and_config_fields():
    env = gym.make("cfenv:CellFreePilot-v0", M=12, K=5, tau_p=2, shadowing_std_db=4.0)
    assert env.unwrapped.config == SystemConfig(M=12, K=5, tau_p=2, shadowing_std_db=4.0)
    assert env.observation_space.shape == (12, 5)
    assert list(env.action_space.nvec) == [2] * 5


def test_make_rejects_unknown_field():
    with pytest.raises(TypeError):
        gym.make("CellFreePilot-v0", antennas=4)


def test_make_rejects_invalid_value():
    with pytest.raises(ValueError, match="tau_p"):
        gym.make("CellFreePilot-v0", tau_p=0)


def test_same_seed_same_rollout_and_different_seeds_differ():
    def rollout(seed):
        env = gym.make("CellFreePilot-v0")
        obs, info = env.reset(seed=seed)
        env.action_space.seed(seed)
        _, reward, *_ = env.step(env.action_space.sample())
        obs2, _ = env.reset()
        return obs, reward, obs2, info["beta"]

    a, b, c = rollout(3), rollout(3), rollout(4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_reward_is_sum_rate_in_mbps():
    env = CellFreePilotEnv(M=10, K=6, tau_p=3)
    obs, info = env.reset(seed=0)
    pilots = np.array([0, 1, 2, 0, 1, 2])
    _, reward, terminated, truncated, info2 = env.step(pilots)
    assert reward == pytest.approx(float(sum_rate(info["beta"], pilots, env.config)) / 1e6, rel=1e-12)
    assert terminated is True and truncated is False
    assert info2["sum_rate"] == pytest.approx(reward) and info2["rates"].shape == (6,)
    np.testing.assert_allclose(obs, 10 * np.log10(info["beta"]), rtol=1e-6)


def test_one_hot_action_equals_index_action():
    env = CellFreePilotEnv()
    env.reset(seed=1)
    pilots = np.array([2, 0, 1, 1, 0, 2])
    r1 = env.step(pilots)[1]
    r2 = env.step(np.eye(3)[pilots])[1]
    r3 = env.step(np.eye(3, dtype=np.int64)[pilots])[1]
    assert r1 == r2 == r3


@pytest.mark.parametrize(
    "action,match",
    [
        (np.array([0, 1, 2]), "shape"),
        (np.array([0, 1, 2, 3, 0, 1]), r"\[0, tau_p=3\)"),
        (np.array([0, 1, -1, 0, 1, 2]), r"\[0, tau_p=3\)"),
        (np.full((6, 3), 1 / 3), "one-hot"),
        (np.array([0.5, 1, 2, 0, 1, 2]), "integers"),
    ],
)
def test_bad_actions_raise_value_error(action, match):
    env = CellFreePilotEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        env.step(action)


def test_step_before_reset_raises():
    with pytest.raises(RuntimeError, match="reset"):
        CellFreePilotEnv().step(np.zeros(6, np.int64))


def test_reset_with_given_snapshot_reproduces_it():
    cfg = SystemConfig()
    snap = draw_snapshots(cfg, np.random.default_rng(5))
    env = CellFreePilotEnv()
    obs, info = env.reset(options={"snapshot": snap})
    np.testing.assert_array_equal(info["beta"], snap.beta)
    _, _, _, _, info2 = env.step(np.zeros(6, np.int64))
    obs_dict, _ = env.reset(options={"snapshot": {"beta": snap.beta, "ap_positions": snap.ap_positions,
                                                  "ue_positions": snap.ue_positions}})
    np.testing.assert_array_equal(obs, obs_dict)


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"beta": np.ones((3, 3))}, "beta must have shape"),
        ({"beta": np.full((10, 6), np.nan)}, "finite"),
        ({"ap_positions": np.ones((2, 2))}, "ap_positions"),
    ],
)
def test_reset_with_bad_snapshot_raises(bad, match):
    snap = draw_snapshots(SystemConfig(), np.random.default_rng(5))
    given = {"beta": snap.beta, "ap_positions": snap.ap_positions, "ue_positions": snap.ue_positions}
    given.update(bad)
    with pytest.raises(ValueError, match=match):
        CellFreePilotEnv().reset(options={"snapshot": given})


def test_env_pickles():
    env = CellFreePilotEnv(K=5)
    env.reset(seed=2)
    clone = pickle.loads(pickle.dumps(env))
    a = env.step(np.zeros(5, np.int64))
    b = clone.step(np.zeros(5, np.int64))
    assert a[1] == b[1]
    np.testing.assert_array_equal(env.reset()[0], clone.reset()[0])


def test_rgb_array_render_is_uint8_image():
    env = CellFreePilotEnv(render_mode="rgb_array")
    env.reset(seed=0)
    before = env.render()
    env.step(np.array([0, 1, 2, 0, 1, 2]))
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    assert frame.shape == before.shape and not np.array_equal(frame, before)


def test_ansi_render_lists_users_and_sum_rate():
    env = CellFreePilotEnv(render_mode="ansi")
    env.reset(seed=0)
    _, reward, *_ = env.step(np.array([0, 1, 2, 0, 1, 2]))
    text = env.render()
    assert text.count("user") == 6 and f"{reward:.2f}" in text


def test_vector_env_scores_in_one_call_and_autoresets():
    venv = gym.make_vec("CellFreePilot-v0", num_envs=8, K=4, tau_p=2)
    assert isinstance(venv, cfenv.CellFreePilotVectorEnv)
    obs, infos = venv.reset(seed=0)
    assert obs.shape == (8, 10, 4) and obs.dtype == np.float32
    actions = np.tile([0, 1, 0, 1], (8, 1))
    obs2, rewards, terminated, truncated, infos2 = venv.step(actions)
    want = sum_rate(infos["beta"], actions, venv.unwrapped.config) / 1e6
    np.testing.assert_allclose(rewards, want, rtol=1e-12)
    assert terminated.all() and not truncated.any()
    np.testing.assert_array_equal(infos2["final_obs"], obs)
    assert not np.array_equal(obs2, obs)
    with pytest.raises(ValueError, match="actions must have shape"):
        venv.step(np.zeros((3, 4), np.int64))


def test_vector_env_is_deterministic_given_seed():
    a = gym.make_vec("CellFreePilot-v0", num_envs=3)
    b = gym.make_vec("CellFreePilot-v0", num_envs=3)
    np.testing.assert_array_equal(a.reset(seed=9)[0], b.reset(seed=9)[0])


def test_import_cfenv_is_light():
    code = ("import sys, cfenv, gymnasium as gym; gym.make('CellFreePilot-v0');"
            "heavy = [m for m in ('torch', 'pennylane', 'stable_baselines3', 'agents', 'matplotlib')"
            " if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_second_import_does_not_reregister():
    code = ("import importlib, warnings, cfenv; warnings.simplefilter('error');"
            "importlib.reload(cfenv); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_a_second_step_after_terminated_warns_once_and_scores_the_same_network():
    import warnings

    env = CellFreePilotEnv()
    env.reset(seed=0)
    first = env.step(np.zeros(6, np.int64))[1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = env.step(np.zeros(6, np.int64))[1]
        env.step(np.zeros(6, np.int64))
    assert again == first
    assert len([w for w in caught if "after the episode terminated" in str(w.message)]) == 1
    env.reset(seed=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env.step(np.zeros(6, np.int64))
    assert not [w for w in caught if "after the episode terminated" in str(w.message)]
