"""Numerics and input checks at the boundary: SystemConfig ranges, the memory cap, valid and
invalid fading, the two action forms, reset options, the vector environment, Agent.assign.

Valid input (beta real float32/float64 in (0, 1], a config inside its documented ranges)
gives finite rates however extreme; anything else is one ValueError naming the problem.
"""

from __future__ import annotations

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import agents
import cfenv  # noqa: F401  (registers the environments)
from agents.lab.cli import field_docs
from cfenv import CellFreePilotEnv, CellFreePilotSequentialEnv, Snapshot, SystemConfig, sum_rate, user_rates
from cfenv.channel import draw_snapshots
from cfenv.config import FIELD_RANGES, MAX_SNAPSHOT_BYTES
from cfenv.rates import (
    FLOAT32_SAFE,
    _rate_terms,
    as_pilot_indices,
    float32_overflow_bound,
    relaxed_user_rates,
)

BACKENDS = ["numba", "reference"]


# ------------------------------------------------------------------ SystemConfig
def test_every_float_field_has_a_documented_range():
    floats = {f.name for f in dataclasses.fields(SystemConfig) if f.type in ("float", "float | None")}
    assert floats == set(FIELD_RANGES)
    docs = field_docs(SystemConfig)
    for f in dataclasses.fields(SystemConfig):
        if f.type in ("float", "float | None", "int"):
            assert "in [" in docs[f.name] or ">= 1" in docs[f.name], f.name


@pytest.mark.parametrize("field,value", [
    ("carrier_freq_mhz", 1e-300), ("noise_figure_db", 1e308), ("shadowing_std_db", 1e6),
    ("area_side_m", 1e300), ("pilot_power_w", 1e300), ("ap_power_w", 1e-320), ("bandwidth_hz", 1e-300),
    ("thermal_noise_dbm_per_hz", 1e308), ("ue_height_m", 1e6), ("L", 10**9),
])
def test_absurd_finite_constants_are_refused_at_construction(field, value):
    with pytest.raises(ValueError, match=field):
        SystemConfig(**{field: value})
    with pytest.raises(ValueError, match=field):
        gym.make("CellFreePilot-v0", **{field: value})


@settings(max_examples=60, deadline=None)
@given(field=st.sampled_from(sorted(FIELD_RANGES)), outside=st.floats(0.0, 1e300), above=st.booleans())
def test_values_outside_a_field_range_raise_naming_it(field, outside, above):
    low, high, _ = FIELD_RANGES[field]
    value = high + max(outside, high * 1e-9, 1e-9) if above else low - max(outside, abs(low) * 1e-9, 1e-9)
    assume(math.isfinite(value) and not low <= value <= high)
    with pytest.raises(ValueError, match=field):
        SystemConfig(**{field: value})


@pytest.mark.parametrize("field", sorted(FIELD_RANGES))
def test_bool_is_not_a_number(field):
    with pytest.raises(ValueError, match=field):
        SystemConfig(**{field: True})


def test_path_gain_above_0_db_is_refused():
    with pytest.raises(ValueError, match="gain"):
        SystemConfig(d0_m=0.01, d1_m=0.02)
    assert SystemConfig().max_path_gain_db < 0


@pytest.mark.parametrize("size", [(10**5, 2, 10**5, 3), (100_000_000, 1, 4, 2), (10, 2, 6, 10**9)])
def test_sizes_beyond_the_memory_cap_are_refused_before_allocating(size):
    with pytest.raises(ValueError, match="GiB"):
        SystemConfig.from_size(size)
    with pytest.raises(ValueError, match="GiB"):
        SystemConfig.from_size(",".join(map(str, size)))
    M, L, K, tau_p = size
    with pytest.raises(ValueError, match="MAX_SNAPSHOT_BYTES"):
        gym.make("CellFreePilot-v0", M=M, L=L, K=K, tau_p=tau_p)
    assert SystemConfig.from_size((45, 2, 20, 10)).snapshot_bytes < MAX_SNAPSHOT_BYTES


# ------------------------------------------------------------------ fading in (0, 1]
def extreme_beta(shape):
    """Entries anywhere in (0, 1]: subnormals, 1, and log-uniform in between."""
    value = st.one_of(st.floats(5e-324, 1.0), st.floats(-323.0, 0.0).map(lambda e: max(10.0 ** e, 5e-324)),
                      st.sampled_from([5e-324, 1e-320, 1e-300, 1e-160, 1e-30, 1.0]))
    return arrays(np.float64, shape, elements=value)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), size=st.sampled_from([(3, 2, 4, 2), (2, 1, 3, 3), (4, 3, 5, 5)]))
def test_valid_extreme_fading_gives_finite_rates(data, size):
    cfg = SystemConfig.from_size(size)
    beta = data.draw(extreme_beta((2, cfg.M, cfg.K)))
    pilots = data.draw(arrays(np.int64, (2, cfg.K), elements=st.integers(0, cfg.tau_p - 1)))
    for backend in BACKENDS:
        rates = user_rates(beta, pilots, cfg, backend=backend)
        assert np.all(np.isfinite(rates)) and np.all(rates >= 0), backend
    t = user_rates(torch.tensor(beta), torch.tensor(pilots), cfg)
    assert bool(torch.isfinite(t).all())
    q = torch.softmax(torch.tensor(data.draw(arrays(np.float64, (2, cfg.K, cfg.tau_p),
                                                        elements=st.floats(-5, 5)))), -1)
    assert bool(torch.isfinite(relaxed_user_rates(torch.tensor(beta), q, cfg)).all())


@settings(max_examples=40, deadline=None)
@given(data=st.data(),
       log_powers=st.tuples(st.floats(-30, 6), st.floats(-30, 6)),
       bandwidth_exp=st.floats(0, 12), noise_figure=st.floats(0, 30), thermal=st.floats(-200, -100),
       L=st.integers(1, 10_000))
def test_any_valid_config_gives_finite_rates(data, log_powers, bandwidth_exp, noise_figure, thermal, L):
    cfg = SystemConfig(M=3, L=L, K=4, tau_p=2, pilot_power_w=10.0 ** log_powers[0],
                       ap_power_w=10.0 ** log_powers[1], bandwidth_hz=10.0 ** bandwidth_exp,
                       noise_figure_db=noise_figure, thermal_noise_dbm_per_hz=thermal)
    beta = data.draw(extreme_beta((cfg.M, cfg.K)))
    pilots = np.array([0, 1, 0, 1])
    for backend in BACKENDS:
        assert np.all(np.isfinite(user_rates(beta, pilots, cfg, backend=backend)))
    beta32 = beta.astype(np.float32)
    if np.all(beta32 > 0):
        if float32_overflow_bound(cfg) > FLOAT32_SAFE:
            with pytest.raises(ValueError, match="float32"):
                user_rates(beta32, pilots, cfg, backend="reference")
        else:
            assert np.all(np.isfinite(user_rates(beta32, pilots, cfg, backend="reference")))


def test_tiny_fading_raised_zero_division_in_the_kernel():
    cfg = SystemConfig()
    pilots = np.array([0, 1, 2, 0, 1, 2])
    for value in (1e-320, 5e-324, 1e-200):
        for backend in BACKENDS:
            assert np.isfinite(sum_rate(np.full((10, 6), value), pilots, cfg, backend=backend))
    # one far-away AP among normal ones changes nothing measurable
    beta = draw_snapshots(cfg, np.random.default_rng(0)).beta
    far = beta.copy()
    far[3] = 1e-320
    assert np.isfinite(sum_rate(far, pilots, cfg))


def test_guard_leaves_normal_values_bit_for_bit():
    """The underflow guard of the formula must not move a normal rate by one ulp: compare with
    the unguarded lines of docs/model.md eqs. (2.1)-(2.5) as they were."""
    cfg = SystemConfig(M=8, K=7, tau_p=3)
    rng = np.random.default_rng(3)
    beta = draw_snapshots(cfg, rng, (6,)).beta
    pilots = rng.integers(0, cfg.tau_p, (6, cfg.K))
    off = (pilots[..., :, None] == pilots[..., None, :]) * (1.0 - np.eye(cfg.K))
    for b, o in ((beta, off), (torch.tensor(beta), torch.tensor(off)),
                 (torch.tensor(beta, dtype=torch.float32), torch.tensor(off, dtype=torch.float32))):
        a = cfg.tau_p * cfg.rho_p
        c = a * b / (a * (b @ o + b) + 1.0)
        sqrt_eta = 1.0 / (cfg.L * (c * b).sum(-1)) ** 0.5
        u = c * sqrt_eta[..., None]
        y = u.swapaxes(-1, -2) @ b
        y_diag = (u * b).sum(-2)
        scale = cfg.rho_d * cfg.L * cfg.L
        got = _rate_terms(b, o, cfg.tau_p, cfg)
        for want, have in ((scale * y_diag * y_diag, got.signal), (scale * (o * (y * y)).sum(-2), got.pilot_contamination)):
            assert np.array_equal(np.asarray(want), np.asarray(have))


@pytest.mark.parametrize("beta,match", [
    (np.full((3, 2), 1e308), "at most 1"),
    (np.full((3, 2), 5.0), "at most 1"),
    (np.full((3, 2), 1e-9, dtype=np.float16), "float32/float64"),
    (np.full((3, 2), 1e-9 + 1e-9j), "float32/float64"),
    (np.ones((3, 2), dtype=np.int64), "float32/float64"),
    (np.full((3, 2), np.inf), "NaN or inf"),
    (np.zeros((3, 2)), "strictly positive"),
])
def test_invalid_fading_raises_everywhere(beta, match):
    cfg = SystemConfig(M=3, K=2, tau_p=2)
    for backend in BACKENDS:
        with pytest.raises(ValueError, match=match):
            user_rates(beta, np.array([0, 1]), cfg, backend=backend)
    with pytest.raises(ValueError, match=match):
        user_rates(torch.tensor(beta), torch.tensor([0, 1]), cfg)
    with pytest.raises(ValueError, match=match):
        relaxed_user_rates(torch.tensor(beta), torch.full((2, 2), 0.5, dtype=torch.float64), cfg)


def test_complex_or_numpy_q_in_relaxed_rates_raise():
    cfg = SystemConfig(M=3, K=2, tau_p=2)
    beta = torch.full((3, 2), 1e-9, dtype=torch.float64)
    with pytest.raises(ValueError, match="real floating"):
        relaxed_user_rates(beta, torch.full((2, 2), 0.5 + 0.1j), cfg)
    with pytest.raises(ValueError, match="torch"):
        relaxed_user_rates(beta.numpy(), torch.full((2, 2), 0.5, dtype=torch.float64), cfg)


# ------------------------------------------------------------------ pilot forms
def k_equals_tau():
    cfg = SystemConfig(M=5, K=3, tau_p=3)
    return cfg, draw_snapshots(cfg, np.random.default_rng(1), (3,)).beta


def test_float_pilot_vectors_are_not_read_as_one_hot_at_k_equal_tau():
    """A (3, 3) float batch of pilot vectors at K == tau_p used to be read as one one-hot matrix."""
    cfg, beta = k_equals_tau()
    vectors = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    with pytest.raises(ValueError, match="ambiguous"):
        sum_rate(beta, vectors, cfg)
    with pytest.raises(ValueError, match="ambiguous"):
        sum_rate(torch.tensor(beta), torch.tensor(vectors), cfg)
    with pytest.raises(ValueError, match="integer"):
        sum_rate(beta[0], np.array([0.0, 1.0, 2.0]), cfg)
    # the unambiguous spellings
    indices = vectors.astype(np.int64)
    np.testing.assert_array_equal(sum_rate(beta, vectors.astype(bool), cfg), sum_rate(beta, np.array([0, 1, 2]), cfg))
    assert sum_rate(beta, indices, cfg).shape == (3,)
    np.testing.assert_array_equal(as_pilot_indices(vectors, cfg, form="one-hot"), [0, 1, 2])
    np.testing.assert_array_equal(as_pilot_indices(indices, cfg, form="indices"), indices)


@settings(max_examples=40, deadline=None)
@given(values=arrays(np.float64, 6, elements=st.floats(-10, 10)))
def test_float_pilot_vectors_raise_in_rate_functions(values):
    cfg = SystemConfig(M=4, K=6, tau_p=3)
    with pytest.raises(ValueError, match="integer"):
        user_rates(np.full((4, 6), 1e-9), values, cfg)


def test_one_hot_in_any_real_dtype_and_complex_rejected():
    cfg = SystemConfig(M=4, K=5, tau_p=3)
    beta = draw_snapshots(cfg, np.random.default_rng(2)).beta
    pilots = np.array([0, 2, 1, 1, 0])
    want = sum_rate(beta, pilots, cfg)
    for dtype in (np.float32, np.float64, np.int8, np.int64, np.uint8, bool):
        assert sum_rate(beta, np.eye(3, dtype=dtype)[pilots], cfg) == want
    for bad in (pilots.astype(complex), np.eye(3, dtype=complex)[pilots], np.array(["0"] * 5), pilots.astype(object)):
        with pytest.raises(ValueError, match="dtype"):
            sum_rate(beta, bad, cfg)
    with pytest.raises(ValueError, match="dtype"):
        sum_rate(torch.tensor(beta), torch.tensor(pilots).to(torch.complex64), cfg)
    with pytest.raises(ValueError, match="form"):
        as_pilot_indices(pilots, cfg, form="matrix")


def test_env_tells_the_action_forms_apart_by_dimensions_at_k_equal_tau():
    env = CellFreePilotEnv(M=5, K=3, tau_p=3)
    env.reset(seed=0)
    pilots = np.array([1, 0, 0])
    reward = env.step(pilots)[1]
    assert env.step(pilots.astype(float))[1] == reward
    assert env.step(np.eye(3)[pilots])[1] == reward
    assert env.step(np.eye(3, dtype=np.int64)[pilots])[1] == reward
    assert env.step(np.eye(3, dtype=bool)[pilots])[1] == reward
    for bad, match in ((pilots.astype(complex), "real"), (np.array([1e30, 0, 0]), r"\[0, tau_p=3\)"),
                       (np.array([True, False, False]), "integers"), (np.array([[1, 0, 0]]), "shape")):
        with pytest.raises(ValueError, match=match):
            env.step(bad)


# ------------------------------------------------------------------ reset options, snapshots
def valid_snapshot():
    return draw_snapshots(SystemConfig(), np.random.default_rng(5))


@pytest.mark.parametrize("env_cls", [CellFreePilotEnv, CellFreePilotSequentialEnv])
def test_snapshot_from_lists_and_bad_options(env_cls):
    snap = valid_snapshot()
    env = env_cls()
    listed = Snapshot(snap.beta.tolist(), snap.ap_positions.tolist(), snap.ue_positions.tolist())
    _, info = env.reset(options={"snapshot": listed})
    np.testing.assert_array_equal(info["beta"], snap.beta)
    _, info = env.reset(options={"snapshot": {"beta": snap.beta.tolist(), "ap_positions": snap.ap_positions,
                                              "ue_positions": snap.ue_positions.tolist()}})
    np.testing.assert_array_equal(info["ue_positions"], snap.ue_positions)
    for options, match in (([1, 2], "options must be a dict"), ({"snapshots": snap}, "unknown reset option"),
                           ({"snapshot": [1, 2]}, "Snapshot or a dict"), ("snapshot", "options must be a dict")):
        with pytest.raises(ValueError, match=match):
            env.reset(options=options)


@pytest.mark.parametrize("change,match", [
    ({"beta": lambda s: s.beta * 1e12}, "at most 1"),
    ({"beta": lambda s: s.beta.astype(complex)}, "float32/float64"),
    ({"beta": lambda s: s.beta.astype(np.float16)}, "float32/float64"),
    ({"ap_positions": lambda s: np.full_like(s.ap_positions, np.nan)}, "ap_positions contains NaN"),
    ({"ue_positions": lambda s: np.full_like(s.ue_positions, np.inf)}, "ue_positions contains NaN"),
    ({"ue_positions": lambda s: s.ue_positions + 2000.0}, "inside the area"),
    ({"ap_positions": lambda s: -s.ap_positions - 1.0}, "inside the area"),
    ({"ap_positions": lambda s: s.ap_positions.astype(complex)}, "real"),
])
def test_reset_refuses_invalid_snapshots(change, match):
    snap = valid_snapshot()
    given = {name: getattr(snap, name) for name in ("beta", "ap_positions", "ue_positions")}
    for name, fn in change.items():
        given[name] = fn(snap)
    with pytest.raises(ValueError, match=match):
        CellFreePilotEnv().reset(options={"snapshot": given})
    with pytest.raises(ValueError, match=match):
        agents.make("master-ap", config=SystemConfig()).assign(given)


def test_snapshot_shapes_must_agree():
    with pytest.raises(ValueError, match="Snapshot shapes"):
        Snapshot(np.ones((3, 2)), np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="must be an array"):
        Snapshot([[1.0], [1.0, 2.0]], np.ones((2, 2)), np.ones((1, 2)))


def test_observation_of_valid_fading_is_never_clipped_to_zero():
    cfg = SystemConfig()
    snap = valid_snapshot()
    beta = snap.beta.copy()
    beta[0, 0] = 1.0
    obs, _ = CellFreePilotEnv().reset(options={"snapshot": Snapshot(beta, snap.ap_positions, snap.ue_positions)})
    assert obs[0, 0] == 0.0 and np.all(obs[1:] < 0)
    assert np.all(draw_snapshots(cfg.replace(shadow_near=True), np.random.default_rng(0), (200,)).beta <= 1.0)


# ------------------------------------------------------------------ vector environment
@pytest.mark.parametrize("num_envs", [2.5, "4", True, 0, -1, None, 4.0])
def test_num_envs_must_be_a_positive_int(num_envs):
    with pytest.raises(ValueError, match="num_envs must be a positive int"):
        gym.make_vec("CellFreePilot-v0", num_envs=num_envs)


def test_num_envs_numpy_int_and_memory_cap():
    assert gym.make_vec("CellFreePilot-v0", num_envs=np.int64(3)).num_envs == 3
    with pytest.raises(ValueError, match="MAX_SNAPSHOT_BYTES"):
        gym.make_vec("CellFreePilot-v0", num_envs=10**9)


def test_vector_env_loads_a_batch_of_snapshots():
    cfg = SystemConfig(K=4, tau_p=2)
    snaps = draw_snapshots(cfg, np.random.default_rng(3), (3,))
    venv = gym.make_vec("CellFreePilot-v0", num_envs=3, K=4, tau_p=2)
    _, infos = venv.reset(seed=0, options={"snapshot": snaps})
    np.testing.assert_array_equal(infos["beta"], snaps.beta)
    actions = np.tile([0, 1, 1, 0], (3, 1))
    _, rewards, *_, infos2 = venv.step(actions)
    np.testing.assert_array_equal(rewards, (user_rates(snaps.beta, actions, cfg) / 1e6).sum(-1))
    np.testing.assert_array_equal(infos2["final_info"]["beta"], snaps.beta)
    with pytest.raises(ValueError, match=r"beta must have shape \(3, 10, 4\)"):
        venv.reset(options={"snapshot": snaps[0]})
    with pytest.raises(ValueError, match="options must be a dict"):
        venv.reset(options=[snaps])
    # one-hot actions, including at K == tau_p
    venv3 = gym.make_vec("CellFreePilot-v0", num_envs=3, M=5, K=3, tau_p=3)
    venv3.reset(seed=1)
    idx = np.array([[0, 1, 2], [1, 1, 0], [2, 0, 0]])
    beta = venv3.unwrapped._snapshots.beta
    want = (user_rates(beta, idx, venv3.unwrapped.config) / 1e6).sum(-1)
    np.testing.assert_array_equal(venv3.step(np.eye(3)[idx])[1], want)


# ------------------------------------------------------------------ Agent.assign
def test_agent_assign_validates_like_the_environment():
    cfg = SystemConfig(M=4, K=3, tau_p=2)
    snap = draw_snapshots(cfg, np.random.default_rng(0), (2,))
    agent = agents.make("master-ap", config=cfg)
    np.testing.assert_array_equal(agent.assign({"beta": snap.beta.tolist(), "ap_positions": snap.ap_positions,
                                                "ue_positions": snap.ue_positions}), agent.assign(snap))
    for beta, match in ((snap.beta.astype(complex), "float32/float64"), (snap.beta + 1.0, "at most 1"),
                        (np.full_like(snap.beta, 1e-320), None)):
        bad = Snapshot(beta, snap.ap_positions, snap.ue_positions)
        if match is None:
            assert agent.assign(bad).shape == (2, 3)
            continue
        with pytest.raises(ValueError, match=match):
            agent.assign(bad)
