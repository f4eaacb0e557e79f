"""The scalable user-centric model (docs/model.md §8) against an independent Monte-Carlo simulation,
hand-checkable special cases, the book's own rules, and planted errors.

The Monte-Carlo simulation below is written for these tests from the book's definitions, not from
:mod:`cfenv.models.scalable_se`: channel realizations ``h ~ CN(0, R)``, the received pilot signals,
the MMSE estimates of eq. (4.5), local MR combining / MR precoding, and the use-and-then-forget
bounds (Theorem 5.4 with unit weights; Theorem 6.1) as sample means.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from cfenv.channel import Snapshot
from cfenv.config import SystemConfig
from cfenv.models import model_of
from cfenv.models import scalable_se
from cfenv.models.scalable_channel import local_scattering
from agents.search.screening import DEFAULT_N_EXACT
from cfenv.models.scalable_se import Prepared, serving_mask

SMALL = dict(model="scalable", M=5, L=2, K=6, tau_p=2, tau_c=10, area_side_m=250.0)  # pre-log 0.8: a missing one shows
REALIZATIONS = 40_000


def monte_carlo_sinr(R: np.ndarray, pilots: np.ndarray, serve: np.ndarray, config: SystemConfig,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(K,)`` SINRs by simulation: uplink local MR with unit LSFD weights, uplink with the optimal
    LSFD weights (from the simulated moments), and downlink MR with the power heuristic (6.36)."""
    M, K, L, _ = R.shape
    n, tau, p = REALIZATIONS, config.tau_p, config.pilot_power_w
    roots = np.linalg.cholesky(R + 1e-12 * np.eye(L))
    white = (rng.standard_normal((n, M, K, L)) + 1j * rng.standard_normal((n, M, K, L))) / np.sqrt(2)
    h = np.einsum("mkab,nmkb->nmka", roots, white)  # (n, M, K, L) ~ CN(0, R)
    noise = (rng.standard_normal((n, M, tau, L)) + 1j * rng.standard_normal((n, M, tau, L))) / np.sqrt(2)
    estimate = np.zeros_like(h)
    for t in range(tau):
        users = np.flatnonzero(pilots == t)
        received = np.sqrt(p) * tau * h[:, :, users].sum(axis=2) + np.sqrt(tau) * noise[:, :, t]
        psi = tau * p * R[:, users].sum(axis=1) + np.eye(L)
        for k in users:
            estimate[:, :, k] = np.sqrt(p) * np.einsum("mab,nmb->nma", R[:, k] @ np.linalg.inv(psi), received)
    v = estimate * serve[None, :, :, None]  # local MR, zero where an AP does not serve
    # uplink: g[n, m, k, i] = v_mk^H h_mi
    g = np.einsum("nmka,nmia->nmki", v.conj(), h)
    total = g.sum(axis=1)  # (n, K, K) with unit weights
    mean_kk = np.einsum("nkk->k", total) / n
    power_ki = np.mean(np.abs(total) ** 2, axis=0)  # (K, K)
    norm = np.mean(np.sum(np.abs(v) ** 2, axis=(1, 3)), axis=0)
    up = p * np.abs(mean_kk) ** 2 / (p * power_ki.sum(axis=1) - p * np.abs(mean_kk) ** 2 + norm)
    # optimal LSFD from the same moments (the book's (5.30) on simulated statistics)
    up_opt = np.empty(K)
    for k in range(K):
        gk = g[:, serve[:, k], k, :]  # (n, serving APs, K)
        b = np.mean(gk[:, :, k], axis=0)
        second = np.einsum("nmi,nli->ml", gk, gk.conj()) / n
        field = np.diag(np.mean(np.sum(np.abs(v[:, serve[:, k], k]) ** 2, axis=-1), axis=0))
        matrix = p * second - p * np.outer(b, b.conj()) + field
        a = np.linalg.solve(matrix, b)
        up_opt[k] = np.real(p * np.abs(a.conj() @ b) ** 2 / (a.conj() @ matrix @ a))
    # downlink: w_mk = sqrt(rho_mk / tr B_mk) hat h_mk
    gain = np.real(np.trace(R, axis1=-2, axis2=-1)) / L
    root = np.where(serve, np.sqrt(gain), 0.0)
    rho = config.ap_power_w * root / root.sum(axis=1, keepdims=True)
    trace_b = np.mean(np.sum(np.abs(estimate) ** 2, axis=-1), axis=0)
    w = v * np.sqrt(rho / trace_b)[None, :, :, None]
    inner = np.einsum("nmka,nmia->nki", h.conj(), w)  # h_k^H w_i summed over APs
    mean_own = np.einsum("nkk->k", inner) / n
    down = np.abs(mean_own) ** 2 / (np.mean(np.abs(inner) ** 2, axis=0).sum(axis=1) - np.abs(mean_own) ** 2 + 1)
    return up, up_opt, down


def _scene(asd_deg: float | None, cluster: str = "dcc", seed: int = 3):
    config = SystemConfig(**SMALL, asd_deg=asd_deg, cluster=cluster)
    snapshot = model_of(config).draw(np.random.default_rng(seed))
    pilots = np.array([0, 1, 0, 1, 0, 1])
    return config, snapshot, pilots


def _simulated_se(config: SystemConfig, sinr: np.ndarray) -> np.ndarray:
    return (config.tau_c - config.tau_p) / config.tau_c * np.log2(1.0 + sinr)


@pytest.mark.parametrize("asd_deg", [None, 15.0])
def test_closed_forms_agree_with_a_monte_carlo_simulation(asd_deg):
    config, snapshot, pilots = _scene(asd_deg)
    serve = model_of(config).serving(snapshot, pilots)
    up, _, down = monte_carlo_sinr(snapshot.extras["R"], pilots, serve, config, np.random.default_rng(7))
    uplink = model_of(config.replace(link="uplink")).spectral_efficiency(snapshot, pilots)
    downlink = model_of(config).spectral_efficiency(snapshot, pilots)
    np.testing.assert_allclose(uplink, _simulated_se(config, up), rtol=0.015, atol=0.002)
    np.testing.assert_allclose(downlink, _simulated_se(config, down), rtol=0.015, atol=0.002)


def test_lsfd_equals_the_simulated_optimal_weights_when_every_ap_serves_everyone():
    config, snapshot, pilots = _scene(15.0, cluster="all")
    serve = np.ones((config.M, config.K), dtype=bool)
    _, up_opt, _ = monte_carlo_sinr(snapshot.extras["R"], pilots, serve, config, np.random.default_rng(8))
    lsfd = model_of(config.replace(link="uplink", lsfd=True)).spectral_efficiency(snapshot, pilots)
    plain = model_of(config.replace(link="uplink")).spectral_efficiency(snapshot, pilots)
    np.testing.assert_allclose(lsfd, _simulated_se(config, up_opt), rtol=0.015, atol=0.002)
    assert np.all(lsfd >= plain * (1 - 1e-12))  # unit weights are one choice the optimum beats


@pytest.mark.parametrize("planted", ["wrong trace", "no pre-log", "no contamination"])
def test_a_planted_error_in_the_formula_is_caught(planted, monkeypatch):
    config, snapshot, pilots = _scene(None)
    uplink = config.replace(link="uplink")
    serve = model_of(config).serving(snapshot, pilots)
    up, _, _ = monte_carlo_sinr(snapshot.extras["R"], pilots, serve, config, np.random.default_rng(7))
    if planted == "wrong trace":
        original = scalable_se._traces_with_all
        monkeypatch.setattr(scalable_se, "_traces_with_all", lambda prep, X: 1.1 * original(prep, X))
    elif planted == "no pre-log":
        monkeypatch.setattr(scalable_se, "pre_log", lambda config, length=None: np.ones_like(length, dtype=float))
    else:
        monkeypatch.setattr(scalable_se, "_co_pilot", lambda p: np.zeros((*p.shape, p.shape[-1]), dtype=bool))
    se = model_of(uplink).spectral_efficiency(snapshot, pilots)
    assert not np.allclose(se, _simulated_se(config, up), rtol=0.015, atol=0.002)


def test_one_antenna_iid_estimate_reduces_to_the_scalar_formula():
    """N = 1, i.i.d.: B = p tau beta^2 / (p tau sum_{co-pilot} beta + 1); uplink SE by hand."""
    config = SystemConfig(model="scalable", M=2, L=1, K=3, tau_p=2, link="uplink", cluster="all")
    beta_over_noise = np.array([[4.0, 1.0, 2.0], [0.5, 3.0, 1.0]])
    R = beta_over_noise[:, :, None, None].astype(complex)
    beta = beta_over_noise * config.noise_power_w
    snap = Snapshot(beta, np.zeros((2, 2)), np.zeros((3, 2)), {"R": R})
    pilots = np.array([0, 1, 0])
    p, tau = config.pilot_power_w, 2
    b = np.zeros((2, 3))
    for m in range(2):
        for k in range(3):
            co = [i for i in range(3) if pilots[i] == pilots[k]]
            b[m, k] = p * tau * beta_over_noise[m, k] ** 2 / (p * tau * beta_over_noise[m, co].sum() + 1)
    se = []
    for k in range(3):
        signal = p * b[:, k].sum() ** 2
        interference = p * sum(b[m, k] * beta_over_noise[m, :].sum() for m in range(2))
        contamination = p * sum((sum(b[m, k] * beta_over_noise[m, i] / beta_over_noise[m, k] for m in range(2))) ** 2
                                for i in range(3) if i != k and pilots[i] == pilots[k])
        se.append((198 / 200) * np.log2(1 + signal / (interference + contamination + b[:, k].sum())))
    np.testing.assert_allclose(model_of(config).spectral_efficiency(snap, pilots), se, rtol=1e-12)


def test_pilot_reuse_lowers_the_co_pilot_users_se_with_lsfd():
    config = SystemConfig(model="scalable", M=20, L=2, K=3, tau_p=3, link="uplink", lsfd=True, asd_deg=15.0)
    model = model_of(config)
    snap = model.draw(np.random.default_rng(1))
    alone = model.spectral_efficiency(snap, np.array([0, 1, 2]))
    shared = model.spectral_efficiency(snap, np.array([0, 0, 2]))
    assert shared[0] < alone[0] and shared[1] < alone[1]
    assert shared[2] == pytest.approx(alone[2], rel=1e-9)  # uplink: another pilot's users do not matter


def test_cooperation_clusters_on_a_hand_built_example_with_ties():
    # gains over noise (M=3 APs, K=4 users); users 0 and 2 tie at AP 1 on pilot 0
    gain = np.array([[9.0, 1.0, 2.0, 1.0],
                     [5.0, 2.0, 5.0, 7.0],
                     [1.0, 8.0, 3.0, 2.0]])
    prep = Prepared.of(gain[:, :, None, None].astype(complex))
    pilots = np.array([[0, 1, 0, 1]])
    serve = serving_mask(prep, pilots, 2, "dcc")[0]
    expected = np.array([[1, 1, 0, 0],   # AP 0: strongest on pilot 0 is user 0, on pilot 1 user 1 (tie 1 = 1: lower index)
                         [1, 0, 1, 1],   # AP 1: pilot 0 tie 5 = 5 -> user 0; user 2's master; pilot 1 -> user 3
                         [0, 1, 1, 0]],  # AP 2: pilot 0 -> user 2 (3 > 1); pilot 1 -> user 1 (its master)
                        dtype=bool)
    np.testing.assert_array_equal(serve, expected)
    assert serving_mask(prep, pilots, 2, "all").all()


def test_local_scattering_matches_adaptive_quadrature_of_the_book_integral():
    from scipy import integrate

    asd = np.deg2rad(15.0)
    for phi, theta in [(0.4, 0.1), (-2.2, 0.6)]:
        R = local_scattering(4, np.array(phi), np.array(theta), asd)
        for column in (1, 3):
            def part(fn):
                def integrand(eps, delta):
                    weight = np.exp(-delta**2 / (2 * asd**2) - eps**2 / (2 * asd**2)) / (2 * np.pi * asd**2)
                    return fn(np.exp(1j * np.pi * column * np.sin(phi + delta) * np.cos(theta + eps))) * weight
                return integrate.dblquad(integrand, -8 * asd, 8 * asd, -8 * asd, 8 * asd, epsabs=1e-11)[0]
            assert abs(R[0, column] - (part(np.real) + 1j * part(np.imag))) < 1e-8
        assert np.allclose(R, R.conj().T) and np.trace(R).real == pytest.approx(4.0)


def test_the_environment_gives_r_se_and_rates_of_the_configured_link():
    env = gym.make("CellFreePilot-v0", model="scalable", M=8, L=2, K=5, tau_p=2, link="uplink", asd_deg=15.0)
    _, info = env.reset(seed=0)
    config = env.unwrapped.config
    assert config.noise_figure_db == 7.0 and config.cluster == "dcc"
    R = info["R"]
    assert R.shape == (8, 5, 2, 2) and R.dtype == np.complex128
    np.testing.assert_allclose(np.real(np.trace(R, axis1=-2, axis2=-1)) / 2, info["beta"] / config.noise_power_w)
    _, reward, *_, info = env.step(np.array([0, 1, 0, 1, 0]))
    snap = Snapshot(info["beta"], info["ap_positions"], info["ue_positions"], {"R": info["R"]})
    np.testing.assert_allclose(info["se"], model_of(config).spectral_efficiency(snap, np.array([0, 1, 0, 1, 0])))
    np.testing.assert_allclose(info["rates"], info["se"] * 20.0)  # Mbit/s at 20 MHz
    assert reward == pytest.approx(info["se"].sum() * 20.0, rel=1e-12)  # the sum objective in Mbit/s


def test_validate_rebuilds_r_from_gains_and_positions_and_refuses_a_wrong_one():
    model = model_of(SystemConfig(**SMALL, asd_deg=15.0))
    snap = model.draw(np.random.default_rng(0))
    given = {"beta": snap.beta, "ap_positions": snap.ap_positions, "ue_positions": snap.ue_positions}
    np.testing.assert_allclose(model.validate(given).extras["R"], snap.extras["R"], atol=1e-9 * np.abs(snap.extras["R"]).max())
    with pytest.raises(ValueError, match="does not match beta"):
        model.validate({**given, "R": 2 * snap.extras["R"]})
    with pytest.raises(ValueError, match="Hermitian"):
        model.validate({**given, "R": snap.extras["R"] + 1j * np.abs(snap.extras["R"]).max()})
    with pytest.raises(ValueError, match="shape"):
        model.validate({**given, "R": snap.extras["R"][..., :1]})


# ------------------------------------------------------------------ searches on the scalable model
@pytest.mark.parametrize("extra", [dict(link="uplink"), dict(link="uplink", asd_deg=15.0, cluster="all"),
                                   dict(link="uplink", objective="min"), dict(link="uplink", objective="proportional"),
                                   dict()])
def test_neighbourhood_values_equal_the_full_evaluation(extra):
    """Uplink: exact; downlink with i.i.d. fading: exact too (each AP then spends its whole power, so the
    interference does not depend on the assignment). A user alone on a pilot leaves an empty group."""
    from agents.search import generic

    config = SystemConfig(model="scalable", M=9, L=2, K=7, tau_p=3, **extra)
    model = model_of(config)
    snaps = model.draw(np.random.default_rng(4), (2,))
    pilots = np.array([[0, 1, 1, 2, 1, 0, 1], [2, 2, 2, 0, 1, 1, 0]])
    candidates = np.concatenate([generic.moves(pilots, 3), generic.swaps(pilots)], axis=1)
    exact = generic.score(model, snaps, candidates)
    assert model.screening.exact == (config.link == "uplink")
    np.testing.assert_allclose(model.screening.candidate_values(snaps, pilots, True), exact, rtol=1e-12, atol=1e-9)
    again = model.screening.candidate_values(snaps, pilots, True)  # now from the cache of group terms
    np.testing.assert_array_equal(again, model.screening.candidate_values(snaps, pilots, True))


def test_downlink_surrogate_with_correlated_fading_ranks_the_moves_as_the_objective_does():
    from agents.search import generic

    config = SystemConfig(model="scalable", M=30, L=4, K=12, tau_p=4, asd_deg=15.0)
    model = model_of(config)
    snaps = model.draw(np.random.default_rng(5), (1,))
    pilots = np.random.default_rng(6).integers(0, 4, (1, 12))
    candidates = generic.moves(pilots, 4)
    exact = generic.score(model, snaps, candidates)[0]
    surrogate = model.screening.candidate_values(snaps, pilots, False)[0]
    assert not np.allclose(surrogate, exact, rtol=1e-9)  # a surrogate here, not the objective
    from scipy.stats import spearmanr

    assert spearmanr(surrogate, exact)[0] > 0.9
    assert np.argmax(exact) in np.argsort(-surrogate)[:DEFAULT_N_EXACT]  # the searches score these exactly


@pytest.mark.parametrize("link", ["uplink", "downlink"])
def test_local_search_ends_at_a_local_optimum_of_the_exact_objective(link):
    from agents.search import generic
    from agents.search.local import LocalSearchAgent

    config = SystemConfig(model="scalable", M=16, L=2, K=24, tau_p=3, link=link, asd_deg=15.0)
    model = model_of(config)
    snaps = model.draw(np.random.default_rng(7), (2,))
    agent = LocalSearchAgent(config, seed=0)
    pilots = agent.assign(snaps, config)
    assert agent.budget(config) == (0, False)  # a generic path with a large neighbourhood
    value = model.objective(snaps, pilots)
    moved = generic.score(model, snaps, generic.moves(pilots, 3))
    if link == "uplink":  # exact values: no move improves
        assert np.all(moved <= value[:, None] * (1 + 1e-9))
    assert np.all(value >= model.objective(snaps, agents_master_ap(snaps, config)) * (1 - 1e-12))
    np.testing.assert_array_equal(pilots, LocalSearchAgent(config, seed=0).assign(snaps, config))


def agents_master_ap(snaps, config):
    from agents.heuristics import master_ap_pilots

    return master_ap_pilots(snaps.beta, config.tau_p)


def test_master_ap_is_the_books_algorithm_4_1():
    """generateSetup.m: users in index order; the first tau_p get pilots 0..tau_p-1, each later one the
    pilot with the least received power (sum of co-pilot gains) at its master AP, ties to the lowest."""
    config = SystemConfig(model="scalable", M=20, L=2, K=15, tau_p=4)
    model = model_of(config)
    snaps = model.draw(np.random.default_rng(9), (3,))
    for s in range(3):
        gain = snaps.beta[s]
        book = np.zeros(config.K, dtype=np.int64)
        for k in range(config.K):
            master = int(np.argmax(gain[:, k]))
            if k < config.tau_p:
                book[k] = k
            else:
                power = [gain[master, :k][book[:k] == t].sum() for t in range(config.tau_p)]
                book[k] = int(np.argmin(power))
        ours = agents_master_ap(snaps[s:s + 1], config)[0]
        # the same partition (agents return canonical labels)
        assert all((ours[i] == ours[j]) == (book[i] == book[j]) for i in range(config.K) for j in range(config.K))


def test_every_agent_runs_on_the_scalable_model_or_gives_its_reason(tmp_path):
    import evaluate

    out = tmp_path / "out"
    code = evaluate.main(["--model", "scalable", "--link", "uplink", "--agents", "all", "--sizes", "6,1,4,2",
                          "--snapshots", "2", "--no-progress", "--no-train", "--checkpoints", str(tmp_path / "runs"),
                          "--out", str(out)])
    assert code == 0
    import json

    records = json.loads((out / "results.json").read_text())
    for record in records:
        assert record["status"] == "ok" or record["reason"], record["agent"]
        if record["status"] == "ok":
            assert record["mean_objective"] <= next(r for r in records if r["agent"] == "exhaustive")[
                "mean_objective"] * (1 + 1e-9), record["agent"]


# ------------------------------------------------------------------ Monte-Carlo combining schemes
@pytest.mark.parametrize("link", ["uplink", "downlink"])
def test_monte_carlo_mr_agrees_with_the_closed_form(link):
    from cfenv.models.scalable_mc import monte_carlo_se

    config, snapshot, pilots = _scene(15.0)
    config = config.replace(link=link)
    simulated = monte_carlo_se(Prepared.of(snapshot.extras["R"]), pilots, config, "mr", 20_000,
                               np.random.default_rng(3))
    np.testing.assert_allclose(simulated, model_of(config).spectral_efficiency(snapshot, pilots), rtol=0.02, atol=0.003)


@pytest.mark.parametrize("link", ["uplink", "downlink"])
def test_mmse_schemes_beat_mr_on_average_and_are_deterministic(link):
    from cfenv.models.scalable_mc import BATCH, monte_carlo_se

    config = SystemConfig(model="scalable", M=6, L=2, K=6, tau_p=3, link=link, area_side_m=300.0, asd_deg=15.0)
    snapshot = model_of(config).draw(np.random.default_rng(1))
    prep, pilots = Prepared.of(snapshot.extras["R"]), np.array([0, 1, 2, 0, 1, 2])
    n = 20 * BATCH + 7  # a last, partial batch
    se = monte_carlo_se(prep, pilots, config, ("mr", "lp-mmse", "p-mmse", "mmse"), n, np.random.default_rng(5))
    assert se["p-mmse"].mean() > se["mr"].mean() and se["lp-mmse"].mean() > se["mr"].mean()
    if link == "uplink":  # MMSE maximises every realization's SINR (5.5); P-MMSE drops some of its terms
        assert np.all(se["mmse"] >= se["p-mmse"] - 1e-12) and se["p-mmse"].mean() > se["lp-mmse"].mean()
    np.testing.assert_array_equal(se["p-mmse"], monte_carlo_se(prep, pilots, config, "p-mmse", n, np.random.default_rng(5)))
    with pytest.raises(ValueError, match="scheme"):
        monte_carlo_se(prep, pilots, config, "zf", 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="realizations"):
        monte_carlo_se(prep, pilots, config, "mr", 0, np.random.default_rng(0))


def test_centralized_power_allocation_by_hand():
    """(7.43) on 2 APs, 3 users: AP 0 serves users 0, 1; AP 1 serves users 1, 2."""
    from cfenv.models.scalable_mc import centralized_power

    serve = np.array([[1, 1, 0], [0, 1, 1]], dtype=bool)
    gain = np.array([[4.0, 1.0, 9.0], [9.0, 3.0, 16.0]])
    portion = np.array([[1.0, 0.25, 0.0], [0.0, 0.75, 1.0]])
    rho = centralized_power(gain, serve, 2.0, portion)
    omega = np.array([1.0, 0.75, 1.0])
    weight = np.array([4.0 ** -0.5, 4.0 ** -0.5 / 0.75 ** 0.5, 16.0 ** -0.5])
    load = np.array([omega[0] * weight[0] + omega[1] * weight[1], omega[1] * weight[1] + omega[2] * weight[2]]) / 2.0
    np.testing.assert_allclose(rho, weight / np.array([load[0], load.max(), load[1]]))
    assert np.all(serve @ (omega * rho) <= 2.0 * (1 + 1e-12)) and np.isclose(np.max(serve @ (omega * rho)), 2.0)


def test_a_loss_the_model_cannot_train_is_refused_before_any_work(tmp_path, capsys):
    import train

    code = train.main(["--agent", "mlp", "--model", "scalable", "--sizes", "8,2,5,2", "--epochs", "1",
                       "--out", str(tmp_path / "runs"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "differentiable" in err[0]
    assert not (tmp_path / "runs").exists()


def test_evaluate_score_rescores_every_agent_on_paired_draws(tmp_path, capsys):
    import csv
    import json

    import evaluate

    out = tmp_path / "out"
    argv = ["--model", "scalable", "--link", "uplink", "--agents", "master-ap,local-search,exhaustive,random",
            "--sizes", "8,2,5,2", "--snapshots", "3", "--no-progress", "--score", "mr", "lp-mmse", "p-mmse",
            "--realizations", "400", "--out", str(out)]
    assert evaluate.main(argv) == 0
    records = json.loads((out / "results.json").read_text())
    by_agent = {r["agent"]: r for r in records}
    for record in records:
        assert set(record["rescored"]) == {"mr", "lp-mmse", "p-mmse"} and record["realizations"] == 400
        # MR by simulation estimates the closed form the agents chose on
        assert record["rescored"]["mr"]["mean_se"] == pytest.approx(record["mean_se"], rel=0.05)
        assert record["rescored"]["p-mmse"]["mean_se"] > record["rescored"]["mr"]["mean_se"]
    # the same assignments meet the same channel draws: exhaustive and local search agree to the bit
    same = [i for i, (a, b) in enumerate(zip(by_agent["exhaustive"]["per_snapshot_assignments"],
                                             by_agent["local-search"]["per_snapshot_assignments"])) if a == b]
    if len(same) == 3:
        assert by_agent["exhaustive"]["rescored"] == by_agent["local-search"]["rescored"]
    assert by_agent["exhaustive"]["rescored"]["lp-mmse"]["ratio"] == 1.0
    header = next(csv.reader((out / "results.csv").open()))
    assert {"mean_se_lp_mmse", "se_5pct_p_mmse", "ratio_mr"} <= set(header)
    assert "Rescored by Monte-Carlo (400 channel realizations" in (out / "results.md").read_text()
    again = tmp_path / "again"  # deterministic given the seed
    assert evaluate.main(argv[:-1] + [str(again)]) == 0
    assert [r["rescored"] for r in json.loads((again / "results.json").read_text())] == [r["rescored"] for r in records]
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        evaluate.main(["--agents", "master-ap", "--score", "lp-mmse", "--out", str(tmp_path / "x")])
    assert refused.value.code == 2
    assert "--score needs the scalable model" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_snapshots_file_may_carry_r_with_or_without_positions(tmp_path, capsys):
    import json

    import evaluate

    config = SystemConfig(model="scalable", M=6, L=2, K=4, tau_p=2, asd_deg=15.0)
    snaps = model_of(config).draw(np.random.default_rng(0), 3)
    R = snaps.extras["R"].copy()
    R[..., 0, 1] *= 0.5  # another correlation than the positions give: the file's R must be the one used
    R[..., 1, 0] *= 0.5
    (tmp_path / "f.json").write_text(json.dumps({"model": "scalable", "L": 2, "tau_p": 2, "asd_deg": 15.0}))
    common = ["--agents", "master-ap,exhaustive", "--no-progress", "--snapshots-file"]
    for name, arrays in (("f", dict(beta=snaps.beta, ap_positions=snaps.ap_positions,
                                    ue_positions=snaps.ue_positions, R=R)),
                         ("g", dict(beta=snaps.beta, R=R))):  # R alone needs no positions
        np.savez(tmp_path / f"{name}.npz", **arrays)
        if name == "g":
            (tmp_path / "g.json").write_text((tmp_path / "f.json").read_text())
        out = tmp_path / f"out-{name}"
        assert evaluate.main(common + [str(tmp_path / f"{name}.npz"), "--out", str(out)]) == 0
        saved = np.load(out / "snapshots.npz")
        np.testing.assert_array_equal(saved["6-2-4-2/R"], R)  # kept with the results: re-verifiable
        records = json.loads((out / "results.json").read_text())
        best = next(r for r in records if r["agent"] == "exhaustive")
        first = model_of(config).spectral_efficiency(
            Snapshot(snaps.beta[0], snaps.ap_positions[0], snaps.ue_positions[0], {"R": R[0]}),
            np.array(best["per_snapshot_assignments"][0]))
        assert best["per_snapshot_sum_rate_mbps"][0] == pytest.approx(config.bandwidth_hz * first.sum() / 1e6, rel=1e-12)
    # refused, one line each: R of the wrong L, R without the sidecar's model, R without L
    np.savez(tmp_path / "bad.npz", beta=snaps.beta, R=R[..., :1, :1])
    (tmp_path / "bad.json").write_text(json.dumps({"model": "scalable", "L": 2, "tau_p": 2}))
    np.savez(tmp_path / "paper.npz", beta=snaps.beta, R=R)
    (tmp_path / "paper.json").write_text(json.dumps({"L": 2, "tau_p": 2}))
    np.savez(tmp_path / "nol.npz", beta=snaps.beta, R=R)
    (tmp_path / "nol.json").write_text(json.dumps({"model": "scalable", "tau_p": 2}))
    for name, message in (("bad", "R must have shape"), ("paper", "unknown array 'R'"), ("nol", "set L")):
        capsys.readouterr()
        with pytest.raises(SystemExit):
            evaluate.main(common + [str(tmp_path / f"{name}.npz"), "--out", str(tmp_path / f"o-{name}")])
        assert message in capsys.readouterr().err
        assert not (tmp_path / f"o-{name}").exists()
    # --model scalable on the command line is enough for the file's R (no model in the sidecar)
    assert evaluate.main(["--model", "scalable", "--asd-deg", "15"] + common + [str(tmp_path / "paper.npz"),
                                                                                "--out", str(tmp_path / "o-cli")]) == 0


def test_the_dataset_cache_keeps_systems_apart(tmp_path):
    """Uplink and downlink draw the same gains: their teacher labels must not share a cache file."""
    from agents.learning.datasets import make_dataset

    up = SystemConfig(model="scalable", M=4, L=1, K=3, tau_p=2, link="uplink")
    for config in (up, up.replace(link="downlink"), SystemConfig(M=4, L=1, K=3, tau_p=2)):
        make_dataset(config, 4, 0, 0, "local-search", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 3


def test_stable_baselines3_trains_and_runs_through_the_scalable_environments(tmp_path):
    import json

    import evaluate
    import train

    system = ["--model", "scalable", "--link", "uplink", "--sizes", "6,1,4,2"]
    assert train.main(["--agent", "ppo", *system, "--total-timesteps", "256", "--out", str(tmp_path / "runs"),
                       "--no-progress"]) == 0
    assert any((tmp_path / "runs" / "ppo" / "6-1-4-2").glob("rl-scalable-uplink-*"))  # filed under its system
    out = tmp_path / "out"
    assert evaluate.main(["--agents", "ppo", *system, "--snapshots", "2", "--checkpoints", str(tmp_path / "runs"),
                          "--no-train", "--no-progress", "--out", str(out)]) == 0
    (record,) = json.loads((out / "results.json").read_text())
    assert record["status"] == "ok" and record["system"]["model"] == "scalable" and record["mean_se"] > 0


# ------------------------------------------------------------------ the pilot length as a decision
def test_used_pilots_equal_a_shorter_budget_with_the_pilots_relabelled():
    """pilot_overhead="used": an assignment using pilots {0, 2} of 4 is, pre-log and estimation included,
    the same as the budget model with tau_p = 2 and those pilots renamed 0, 1; one using all 4, the budget
    model itself."""
    used = SystemConfig(model="scalable", M=6, L=2, K=5, tau_p=4, tau_c=20, area_side_m=300.0, asd_deg=15.0,
                        link="uplink", pilot_overhead="used")
    snapshot = model_of(used).draw(np.random.default_rng(4))
    two = np.array([0, 2, 2, 0, 0])
    short = used.replace(tau_p=2, pilot_overhead="budget")
    for link in ("uplink", "downlink"):
        got = model_of(used.replace(link=link)).spectral_efficiency(snapshot, two)
        want = model_of(short.replace(link=link)).spectral_efficiency(snapshot, two // 2)
        np.testing.assert_allclose(got, want, rtol=1e-12)
        every = np.array([0, 1, 2, 3, 0])
        np.testing.assert_allclose(model_of(used.replace(link=link)).spectral_efficiency(snapshot, every),
                                   model_of(used.replace(link=link, pilot_overhead="budget")).spectral_efficiency(
                                       snapshot, every), rtol=1e-12)
    assert model_of(used).screening is None  # the neighbourhood evaluator assumes length tau_p
    with pytest.raises(ValueError, match="pilot_overhead"):
        SystemConfig(pilot_overhead="used")  # the paper's model has no pilot overhead


def test_used_pilots_monte_carlo_agrees_with_the_closed_form():
    from cfenv.models.scalable_mc import monte_carlo_se

    config = SystemConfig(model="scalable", M=6, L=2, K=5, tau_p=4, tau_c=20, area_side_m=300.0, asd_deg=15.0,
                          link="uplink", pilot_overhead="used")
    snapshot = model_of(config).draw(np.random.default_rng(6))
    pilots = np.array([1, 3, 3, 1, 1])
    simulated = monte_carlo_se(Prepared.of(snapshot.extras["R"]), pilots, config, "mr", 20_000,
                               np.random.default_rng(2))
    np.testing.assert_allclose(simulated, model_of(config).spectral_efficiency(snapshot, pilots), rtol=0.02, atol=0.003)


def test_exhaustive_search_chooses_the_pilot_length_exactly():
    """With pilot_overhead="used", EPAS over every assignment of at most tau_p pilots is the exact joint optimum
    of net SE: the best over n of the budget model's optimum with tau_p = n, and brute force agrees."""
    from itertools import product

    from agents.search import ExhaustiveAgent

    used = SystemConfig(model="scalable", M=6, L=1, K=5, tau_p=4, tau_c=12, area_side_m=300.0, link="uplink",
                        pilot_overhead="used")
    snaps = model_of(used).draw(np.random.default_rng(8), 2)
    joint = model_of(used).objective(snaps, ExhaustiveAgent(config=used).assign(snaps))
    per_length = [model_of(c).objective(snaps, ExhaustiveAgent(config=c).assign(snaps))
                  for c in (used.replace(tau_p=n, pilot_overhead="budget") for n in range(1, 5))]
    np.testing.assert_allclose(joint, np.max(per_length, axis=0), rtol=1e-12)
    every = np.array(list(product(range(4), repeat=5)))
    brute = model_of(used).objective(snaps[:, None], every[None]).max(axis=1)
    np.testing.assert_allclose(joint, brute, rtol=1e-12)
