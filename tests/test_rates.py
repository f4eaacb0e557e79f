import math
from itertools import permutations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cfenv.channel import draw_snapshots
from cfenv.config import SystemConfig
from cfenv.rates import (
    rate_terms,
    relaxed_sum_rate,
    relaxed_user_rates,
    sum_rate,
    user_rates,
)
from cfenv.reference import user_rates_loop
from tests.conftest import RTOL_FLOAT32, RTOL_FLOAT64

BACKENDS = ["numba", "reference"]


def unit_config(tau_p: int) -> SystemConfig:
    """2 APs x 2 antennas, 2 users, rho_p = rho_d = 1, B = 1 Hz: rates in bit/s/Hz."""
    n0 = SystemConfig(bandwidth_hz=1.0).noise_power_w
    return SystemConfig(M=2, L=2, K=2, tau_p=tau_p, bandwidth_hz=1.0, pilot_power_w=n0, ap_power_w=n0)


HAND_BETA = np.array([[1.0, 0.5], [0.25, 1.0]])  # beta[m, k]


def test_unit_config_normalises_powers():
    cfg = unit_config(1)
    assert cfg.rho_p == pytest.approx(1.0, rel=1e-12) and cfg.rho_d == pytest.approx(1.0, rel=1e-12)


def hand_rates_distinct_pilots() -> np.ndarray:
    # tau_p rho_p = 2; gamma = 2 b^2 / (2 b + 1): g00 = 2/3, g01 = 1/4, g10 = 1/12, g11 = 2/3
    eta0 = 1 / (2 * (2 / 3 + 1 / 4))  # = 6/11
    eta1 = 1 / (2 * (1 / 12 + 2 / 3))  # = 2/3
    s0 = 4 * (math.sqrt(eta0) * 2 / 3 + math.sqrt(eta1) / 12) ** 2
    s1 = 4 * (math.sqrt(eta0) / 4 + math.sqrt(eta1) * 2 / 3) ** 2
    # no contamination; BU_k = rho_d sum_m beta[m, k]
    return np.array([math.log2(1 + s0 / (1.25 + 1)), math.log2(1 + s1 / (1.5 + 1))])


def hand_rates_shared_pilot() -> np.ndarray:
    # tau_p rho_p = 1; A = [1.5, 1.25]: g00 = 0.4, g01 = 0.1, g10 = 1/36, g11 = 4/9
    eta0, eta1 = 1.0, 18 / 17
    s0 = 4 * (0.4 + math.sqrt(eta1) / 36) ** 2
    s1 = 4 * (0.1 + math.sqrt(eta1) * 4 / 9) ** 2
    # PC_0 = 4 (sum_m sqrt(eta_m) g[m,1] b[m,0] / b[m,1])^2 = 4 (0.1 * 2 + sqrt(eta1) 4/9 * 1/4)^2
    pc0 = 4 * (0.2 + math.sqrt(eta1) / 9) ** 2
    pc1 = 4 * (0.4 * 0.5 + math.sqrt(eta1) / 36 * 4) ** 2
    # BU_k = rho_d L sum_m eta_m (sum_j g[m,j]) b[m,k] = [2 (0.5 + 18/17 * 17/36 / 4), ...]
    bu0 = 2 * (eta0 * 0.5 * 1.0 + eta1 * (17 / 36) * 0.25)
    bu1 = 2 * (eta0 * 0.5 * 0.5 + eta1 * (17 / 36) * 1.0)
    return np.array([math.log2(1 + s0 / (pc0 + bu0 + 1)), math.log2(1 + s1 / (pc1 + bu1 + 1))])


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_computed_distinct_pilots(backend):
    got = user_rates(HAND_BETA, np.array([0, 1]), unit_config(2), backend=backend)
    np.testing.assert_allclose(got, hand_rates_distinct_pilots(), rtol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_computed_shared_pilot(backend):
    got = user_rates(HAND_BETA, np.array([0, 0]), unit_config(1), backend=backend)
    np.testing.assert_allclose(got, hand_rates_shared_pilot(), rtol=1e-9)


def test_torch_hand_computed_shared_pilot():
    got = user_rates(torch.tensor(HAND_BETA), torch.tensor([0, 0]), unit_config(1))
    np.testing.assert_allclose(got.numpy(), hand_rates_shared_pilot(), rtol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_loop_transcription_of_spec(small_config, rng, backend):
    snap = draw_snapshots(small_config, rng, (3,))
    pilots = rng.integers(0, small_config.tau_p, (3, small_config.K))
    got = user_rates(snap.beta, pilots, small_config, backend=backend)
    for i in range(3):
        want = user_rates_loop(snap.beta[i], pilots[i], small_config)
        np.testing.assert_allclose(got[i], want, rtol=RTOL_FLOAT64)


def test_numpy_and_torch_agree(small_config, rng):
    snap = draw_snapshots(small_config, rng, (4,))
    pilots = rng.integers(0, small_config.tau_p, (4, small_config.K))
    a = user_rates(snap.beta, pilots, small_config)
    b = user_rates(torch.tensor(snap.beta), torch.tensor(pilots), small_config).numpy()
    np.testing.assert_allclose(a, b, rtol=RTOL_FLOAT64)


def test_float32_close_to_float64(small_config, rng):
    snap = draw_snapshots(small_config, rng, (4,))
    pilots = rng.integers(0, small_config.tau_p, (4, small_config.K))
    want = user_rates(snap.beta, pilots, small_config)
    got32 = user_rates(snap.beta.astype(np.float32), pilots, small_config, backend="reference")
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, want, rtol=RTOL_FLOAT32)
    t32 = user_rates(torch.tensor(snap.beta, dtype=torch.float32), torch.tensor(pilots), small_config)
    assert t32.dtype == torch.float32
    np.testing.assert_allclose(t32.numpy(), want, rtol=RTOL_FLOAT32)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), size=st.sampled_from([(3, 2, 5, 3), (10, 2, 6, 3), (5, 1, 8, 4)]))
def test_rates_invariant_under_pilot_relabelling(seed, size):
    cfg = SystemConfig.from_size(size)
    rng = np.random.default_rng(seed)
    beta = draw_snapshots(cfg, rng).beta
    pilots = rng.integers(0, cfg.tau_p, cfg.K)
    relabel = rng.permutation(cfg.tau_p)
    np.testing.assert_allclose(
        user_rates(beta, relabel[pilots], cfg), user_rates(beta, pilots, cfg), rtol=RTOL_FLOAT64
    )


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_rates_equivariant_under_user_permutation(seed):
    cfg = SystemConfig(M=6, K=7, tau_p=3)
    rng = np.random.default_rng(seed)
    beta = draw_snapshots(cfg, rng).beta
    pilots = rng.integers(0, cfg.tau_p, cfg.K)
    perm = rng.permutation(cfg.K)
    got = user_rates(beta[:, perm], pilots[perm], cfg)
    np.testing.assert_allclose(got, user_rates(beta, pilots, cfg)[perm], rtol=RTOL_FLOAT64)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_equals_loop_over_elements(rng, backend):
    cfg = SystemConfig(M=8, K=6, tau_p=3)
    snap = draw_snapshots(cfg, rng, (5, 3))
    pilots = rng.integers(0, cfg.tau_p, (5, 3, cfg.K))
    batch = sum_rate(snap.beta, pilots, cfg, backend=backend)
    assert batch.shape == (5, 3)
    for i in range(5):
        for j in range(3):
            one = sum_rate(snap.beta[i, j], pilots[i, j], cfg, backend=backend)
            assert one.shape == ()
            assert batch[i, j] == pytest.approx(float(one), rel=RTOL_FLOAT64)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_snapshot_many_assignments_broadcast(rng, backend):
    cfg = SystemConfig(M=8, K=6, tau_p=3)
    beta = draw_snapshots(cfg, rng).beta
    pilots = rng.integers(0, cfg.tau_p, (50, cfg.K))
    many = sum_rate(beta, pilots, cfg, backend=backend)
    assert many.shape == (50,)
    np.testing.assert_allclose(many, [sum_rate(beta, p, cfg) for p in pilots], rtol=RTOL_FLOAT64)


def test_one_hot_matrix_equals_indices(rng):
    cfg = SystemConfig(M=8, K=6, tau_p=4)
    beta = draw_snapshots(cfg, rng, (3,)).beta
    pilots = rng.integers(0, cfg.tau_p, (3, cfg.K))
    one_hot = np.eye(cfg.tau_p)[pilots]
    np.testing.assert_array_equal(user_rates(beta, one_hot, cfg), user_rates(beta, pilots, cfg))
    t = user_rates(torch.tensor(beta), torch.tensor(one_hot), cfg)
    np.testing.assert_allclose(t.numpy(), user_rates(beta, pilots, cfg), rtol=RTOL_FLOAT64)


def test_distinct_pilots_have_exactly_zero_contamination(rng):
    for K, tau_p in [(3, 3), (4, 6), (1, 1)]:
        cfg = SystemConfig(M=5, K=K, tau_p=tau_p)
        beta = draw_snapshots(cfg, rng, (4,)).beta
        pilots = np.stack([rng.permutation(tau_p)[:K] for _ in range(4)])
        terms = rate_terms(beta, pilots, cfg)
        assert np.all(terms.pilot_contamination == 0.0)
        t_terms = rate_terms(torch.tensor(beta), torch.tensor(pilots), cfg)
        assert bool((t_terms.pilot_contamination == 0).all())


def test_sharing_a_pilot_contaminates(rng):
    cfg = SystemConfig(M=5, K=3, tau_p=3)
    beta = draw_snapshots(cfg, rng).beta
    terms = rate_terms(beta, np.array([0, 0, 1]), cfg)
    assert terms.pilot_contamination[0] > 0 and terms.pilot_contamination[2] == 0


def test_beamforming_uncertainty_independent_of_assignment(rng):
    cfg = SystemConfig(M=5, K=4, tau_p=2)
    beta = draw_snapshots(cfg, rng).beta
    a = rate_terms(beta, np.array([0, 0, 1, 1]), cfg).beamforming_uncertainty
    b = rate_terms(beta, np.array([0, 1, 0, 1]), cfg).beamforming_uncertainty
    np.testing.assert_allclose(a, b, rtol=RTOL_FLOAT64)
    np.testing.assert_allclose(a, cfg.rho_d * beta.sum(0), rtol=RTOL_FLOAT64)


def test_relaxed_rate_equals_hard_rate_for_one_hot_q(small_config, rng):
    snap = draw_snapshots(small_config, rng, (4,))
    pilots = rng.integers(0, small_config.tau_p, (4, small_config.K))
    q = torch.nn.functional.one_hot(torch.tensor(pilots), small_config.tau_p).to(torch.float64)
    relaxed = relaxed_user_rates(torch.tensor(snap.beta), q, small_config)
    np.testing.assert_allclose(relaxed.numpy(), user_rates(snap.beta, pilots, small_config), rtol=RTOL_FLOAT64)


def test_relaxed_rate_gradient_is_finite_and_nonzero(rng):
    cfg = SystemConfig(M=10, K=6, tau_p=3)
    beta = torch.tensor(draw_snapshots(cfg, rng, (8,)).beta)
    logits = torch.randn(8, cfg.K, cfg.tau_p, dtype=torch.float64, requires_grad=True)
    loss = -relaxed_sum_rate(beta, torch.softmax(logits, -1), cfg).mean()
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_relaxed_rate_at_uniform_q_is_below_best_hard_rate(rng):
    cfg = SystemConfig(M=6, K=3, tau_p=3)
    beta = draw_snapshots(cfg, rng).beta
    uniform = torch.full((cfg.K, cfg.tau_p), 1 / 3, dtype=torch.float64)
    relaxed = float(relaxed_sum_rate(torch.tensor(beta), uniform, cfg))
    best = max(float(sum_rate(beta, np.array(p), cfg)) for p in permutations(range(3)))
    assert relaxed < best


# ------------------------------------------------------------------ bad input
def test_beta_shape_mismatch_raises():
    cfg = SystemConfig(M=4, K=3, tau_p=2)
    with pytest.raises(ValueError, match="beta must have shape"):
        user_rates(np.ones((4, 4)) * 1e-9, np.zeros(3, np.int64), cfg)


def test_pilots_shape_mismatch_raises():
    cfg = SystemConfig(M=4, K=3, tau_p=2)
    with pytest.raises(ValueError, match="pilots must have shape"):
        user_rates(np.ones((4, 3)) * 1e-9, np.zeros(4, np.int64), cfg)


def test_batch_dimensions_that_do_not_broadcast_raise():
    cfg = SystemConfig(M=4, K=3, tau_p=2)
    with pytest.raises(ValueError, match="broadcast"):
        user_rates(np.ones((2, 4, 3)) * 1e-9, np.zeros((3, 3), np.int64), cfg)


@settings(max_examples=30, deadline=None)
@given(bad=st.one_of(st.integers(-100, -1), st.integers(3, 100)), position=st.integers(0, 3))
def test_pilot_index_out_of_range_raises(bad, position):
    cfg = SystemConfig(M=4, K=4, tau_p=3)
    pilots = np.zeros(4, np.int64)
    pilots[position] = bad
    for backend in BACKENDS:
        with pytest.raises(ValueError, match=r"\[0, tau_p=3\)"):
            user_rates(np.full((4, 4), 1e-9), pilots, cfg, backend=backend)
    with pytest.raises(ValueError, match=r"\[0, tau_p=3\)"):
        user_rates(torch.full((4, 4), 1e-9, dtype=torch.float64), torch.tensor(pilots), cfg)


@pytest.mark.parametrize(
    "matrix",
    [
        [[1.0, 1.0], [0.0, 1.0]],  # two ones in a row
        [[0.0, 0.0], [0.0, 1.0]],  # empty row
        [[0.5, 0.5], [0.0, 1.0]],  # soft row
    ],
)
def test_non_one_hot_pilot_matrix_raises(matrix):
    cfg = SystemConfig(M=3, K=2, tau_p=2)
    with pytest.raises(ValueError, match="one-hot"):
        user_rates(np.full((3, 2), 1e-9), np.array(matrix), cfg)
    with pytest.raises(ValueError, match="one-hot"):
        user_rates(torch.full((3, 2), 1e-9, dtype=torch.float64), torch.tensor(matrix), cfg)


@pytest.mark.parametrize("value,match", [(np.nan, "NaN or inf"), (np.inf, "NaN or inf"),
                                         (0.0, "strictly positive"), (-1e-9, "strictly positive")])
def test_bad_beta_values_raise(value, match):
    cfg = SystemConfig(M=3, K=2, tau_p=2)
    beta = np.full((3, 2), 1e-9)
    beta[1, 1] = value
    for backend in BACKENDS:
        with pytest.raises(ValueError, match=match):
            user_rates(beta, np.array([0, 1]), cfg, backend=backend)
    with pytest.raises(ValueError, match=match):
        relaxed_user_rates(torch.tensor(beta), torch.full((2, 2), 0.5, dtype=torch.float64), cfg)


def test_relaxed_q_must_be_row_stochastic():
    cfg = SystemConfig(M=3, K=2, tau_p=2)
    beta = torch.full((3, 2), 1e-9, dtype=torch.float64)
    with pytest.raises(ValueError, match="row-stochastic"):
        relaxed_user_rates(beta, torch.tensor([[0.7, 0.7], [0.5, 0.5]], dtype=torch.float64), cfg)
    with pytest.raises(ValueError, match="row-stochastic"):
        relaxed_user_rates(beta, torch.tensor([[1.5, -0.5], [0.5, 0.5]], dtype=torch.float64), cfg)
    with pytest.raises(ValueError, match="q must have shape"):
        relaxed_user_rates(beta, torch.full((2, 3), 1 / 3, dtype=torch.float64), cfg)


def test_unknown_backend_raises():
    cfg = SystemConfig(M=3, K=2, tau_p=2)
    with pytest.raises(ValueError, match="backend"):
        user_rates(np.full((3, 2), 1e-9), np.array([0, 1]), cfg, backend="fast")


# ------------------------------------------------------- the compiled kernel's records
@pytest.mark.parametrize("objective", ["sum", "min", "proportional"])
def test_kernel_takes_a_rate_params_record_and_leaves_its_state_in_a_named_scratch(objective):
    """rates_one / objective_one called with a RateParams and a Scratch record give the reference
    rates; the record's fields are the exact state the screened searches read (groups, weights)."""
    from cfenv import _kernels
    from cfenv.rates import objective_value, prepare_snapshots

    cfg = SystemConfig.from_size((12, 2, 9, 4), objective=objective)
    rng = np.random.default_rng(5)
    beta = draw_snapshots(cfg, rng, (1,)).beta[0]
    pilots = np.array([0, 2, 2, 0, 1, 2, 0, 0, 2], dtype=np.int64)  # pilot 3 unused
    params = _kernels.rate_params(cfg)
    assert isinstance(params, _kernels.RateParams)
    assert (params.tau_p, params.code) == (cfg.tau_p, cfg.objective_code)
    assert params.tau_rho_p == cfg.tau_p * cfg.rho_p and params.n_antennas == cfg.L
    beta_t, bu = prepare_snapshots(beta[None], cfg)
    scratch = _kernels.new_scratch(cfg.K, cfg.M, cfg.tau_p)
    assert isinstance(scratch, _kernels.Scratch) and scratch._fields[-1] == "rates"
    value = _kernels.objective_one(beta_t[0], bu[0], pilots, params, scratch)
    reference = user_rates(beta, pilots, cfg, backend="reference")
    np.testing.assert_allclose(scratch.rates, reference, rtol=RTOL_FLOAT64)
    np.testing.assert_allclose(scratch.rates, user_rates_loop(beta, pilots, cfg), rtol=RTOL_FLOAT64)
    assert value == pytest.approx(objective_value(beta, pilots, cfg, backend="reference"), rel=RTOL_FLOAT64)
    for t in range(cfg.tau_p):  # users bucketed by pilot, ascending; group sums and weights named
        users = np.flatnonzero(pilots == t)
        np.testing.assert_array_equal(scratch.members[scratch.start[t]:scratch.start[t + 1]], users)
        np.testing.assert_allclose(scratch.group_sum[t], beta[:, users].sum(axis=1), rtol=1e-14)
        np.testing.assert_allclose(scratch.group_sq[t], (beta[:, users] ** 2).sum(axis=1), rtol=1e-14)
        c = params.tau_rho_p / (params.tau_rho_p * scratch.group_sum[t] + 1.0)
        np.testing.assert_allclose(scratch.weights[t], scratch.sqrt_eta * c, rtol=1e-14)
    gamma_sum = (scratch.weights / scratch.sqrt_eta * scratch.group_sq).sum(axis=0)
    np.testing.assert_allclose(scratch.sqrt_eta, 1.0 / np.sqrt(cfg.L * gamma_sum), rtol=1e-14)
