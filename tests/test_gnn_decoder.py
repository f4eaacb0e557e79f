"""The gnn decoder's user orders (docs/model.md §6.4): confidence-ordered decoding keeps both
symmetries, its incremental (no-gradient) form is the reference decode, teacher forcing follows
the same order, and models saved before the option existed load and decode as before."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.learning import beta_db_tensor, load_model
from agents.models import build_model, model_options
from agents.models.gnn import DECODE_ORDERS, GNNPolicy, pick_confident_user, user_confidence
from agents.models.gnn_features import option_features, option_features_one
from agents.models.rate_features import (RATE_SCALE, rate_constants, rate_inputs, rate_option_features,
                                         unsupported_reason)
from agents.neural import GNNAgent, NeuralAgent
from cfenv import SystemConfig, draw_snapshots, sum_rate
from cfenv.rates import user_rates

OLD = Path(__file__).parent / "data" / "gnn-gain-0.4"
"""a width-16 gnn saved by cfpilot 0.4 (before the ``order`` option) with its greedy decodes"""
CONFIDENT = [o for o in DECODE_ORDERS if o != "gain"]


def policy(order, width=32, seed=0, rate_features=False):
    torch.manual_seed(seed)
    return GNNPolicy(width=width, order=order, rate_features=rate_features).eval()


def db(cfg, n=6, seed=0):
    return beta_db_tensor(draw_snapshots(cfg, np.random.default_rng(seed), (n,)).beta)


@pytest.mark.parametrize("rates", [False, True], ids=["plain", "rate-features"])
@pytest.mark.parametrize("order", DECODE_ORDERS)
@pytest.mark.parametrize("size", [(10, 2, 9, 3), (30, 2, 20, 10), (5, 1, 3, 1), (4, 1, 1, 1)], ids=str)
def test_incremental_decode_is_the_reference_decode(size, order, rates):
    """Without gradients: the torch incremental decoder and, where it applies, the compiled one
    (engine "auto"), greedy and sampled, against the reference decode with gradients."""
    cfg = SystemConfig.from_size(size)
    model = policy(order, rate_features=rates)
    x = db(cfg, n=8)
    for mode, engine in (("greedy", "torch"), ("greedy", "auto"), ("sample", "torch"), ("sample", "auto")):
        with torch.no_grad():
            fast = model.decode(x, cfg.tau_p, mode, generator=torch.Generator().manual_seed(1), system=cfg,
                                engine=engine)
        ref = model.decode(x, cfg.tau_p, mode, generator=torch.Generator().manual_seed(1), system=cfg)  # gradients
        torch.testing.assert_close(fast[0], ref[0])
        torch.testing.assert_close(fast[1], ref[1].detach(), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(fast[2], ref[2].detach(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rates", [False, True], ids=["plain", "rate-features"])
@pytest.mark.parametrize("order", DECODE_ORDERS)
@pytest.mark.parametrize("size", [(100, 4, 40, 10), (12, 2, 30, 4)], ids=str)
def test_compiled_decode_is_the_torch_decode(size, order, rates):
    """The numba decoder against the torch incremental one on larger, random-weight models:
    greedy in orders of two mixes (greedy_orders takes the compiled path) and sampled at two
    temperatures from the same generator seed (the same draws)."""
    cfg = SystemConfig.from_size(size)
    model = policy(order, width=48, seed=3, rate_features=rates)
    # (seed 4 puts one sampled draw of a rate-feature model within float rounding of a CDF
    # boundary at (12,2,30,4): 1 of 360 draws; 0 of 6,000 differed on seed 5)
    x = db(cfg, n=12, seed=5)
    with torch.no_grad():
        for mix, mode, temperature in ((1.0, "greedy", 1.0), (0.25, "greedy", 1.0), (1.0, "sample", 1.0),
                                       (1.0, "sample", 0.3)):
            compiled, reference = (model.decode(x, cfg.tau_p, mode, order_mix=mix, engine=engine, system=cfg,
                                                generator=torch.Generator().manual_seed(7), temperature=temperature)
                                   for engine in ("numba", "torch"))
            torch.testing.assert_close(compiled[0], reference[0])
            torch.testing.assert_close(compiled[1], reference[1], rtol=1e-5, atol=1e-4)
            torch.testing.assert_close(compiled[2], reference[2], rtol=1e-5, atol=1e-5)
        orders = model.greedy_orders(x, cfg.tau_p, (1.0, 0.25), order=order, system=cfg)
        torch.testing.assert_close(orders[1], model.decode(x, cfg.tau_p, "greedy", order_mix=0.25, order=order,
                                                           engine="torch", system=cfg)[0])
    if rates:  # the rate features matter (else the comparison would not test them)
        plain = policy(order, width=48, seed=3)
        with torch.no_grad():
            plain.scorer[0].weight.copy_(model.scorer[0].weight[:, :-2])
            plain.load_state_dict({k: v for k, v in model.state_dict().items() if k != "scorer.0.weight"},
                                  strict=False)
            assert not torch.equal(plain.decode(x, cfg.tau_p, "greedy")[0],
                                   model.decode(x, cfg.tau_p, "greedy", system=cfg)[0])


@pytest.mark.parametrize("rates", [False, True], ids=["plain", "rate-features"])
def test_sample_encodes_once_and_draws_what_decode_draws(rates):
    cfg = SystemConfig.from_size((20, 2, 12, 4))
    model = policy("confidence", rate_features=rates)
    x = db(cfg, n=5, seed=6)
    samples = model.sample(x, cfg.tau_p, 7, torch.Generator().manual_seed(2), temperature=0.5, system=cfg)
    with torch.no_grad():
        want = model.decode(x.repeat_interleave(7, 0), cfg.tau_p, "sample", generator=torch.Generator().manual_seed(2),
                            temperature=0.5, system=cfg, engine="torch")[0]
    torch.testing.assert_close(samples, want)
    assert len({tuple(row) for row in samples.tolist()}) > 5  # the draws differ


def test_compiled_engine_applies_only_where_it_is_the_same_function():
    cfg = SystemConfig.from_size((10, 2, 9, 3))
    x = db(cfg)
    with torch.no_grad():
        with pytest.raises(ValueError, match="numba engine"):
            policy("confidence").decode(x, 3, "teacher", actions=torch.zeros(6, 9, dtype=torch.long),
                                        engine="numba")
        with pytest.raises(ValueError, match="needs the system"):
            policy("confidence", rate_features=True).decode(x, 3, "greedy", engine="numba")
        with pytest.raises(ValueError, match="engine must be"):
            policy("gain").decode(x, 3, "greedy", engine="jit")
    with pytest.raises(ValueError, match="numba engine"):  # gradients: the decode must be differentiable
        policy("gain").decode(x, 3, "greedy", engine="numba")


@pytest.mark.parametrize("order", CONFIDENT)
def test_confidence_order_is_not_the_gain_order(order):
    """The option changes the decode (else the tests above would pass vacuously)."""
    cfg = SystemConfig.from_size((30, 2, 20, 10))
    x = db(cfg, n=8)
    with torch.no_grad():
        gain = policy("gain").decode(x, cfg.tau_p, "greedy")[0]
        confident = policy(order).decode(x, cfg.tau_p, "greedy")[0]
        overridden = policy("gain").decode(x, cfg.tau_p, "greedy", order=order)[0]
    assert not torch.equal(gain, confident)
    torch.testing.assert_close(overridden, confident)  # same weights: the order is a decode option


@pytest.mark.parametrize("rates", [False, True], ids=["plain", "rate-features"])
@pytest.mark.parametrize("order", DECODE_ORDERS)
@pytest.mark.parametrize("grad", [False, True], ids=["incremental", "reference"])
def test_permuting_users_permutes_the_partition(order, grad, rates):
    cfg = SystemConfig.from_size((20, 2, 12, 4))
    x = db(cfg, n=6, seed=2)
    perm = torch.randperm(cfg.K, generator=torch.Generator().manual_seed(1))
    model = policy(order, rate_features=rates)
    with torch.set_grad_enabled(grad):
        a, la, _ = model.decode(x, cfg.tau_p, "greedy", system=cfg)
        b, lb, _ = model.decode(x[..., perm], cfg.tau_p, "greedy", system=cfg)
    # the same partition: pilots follow opening order, which does not depend on user indices
    torch.testing.assert_close(b, a[:, perm])
    torch.testing.assert_close(lb, la, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rates", [False, True], ids=["plain", "rate-features"])
@pytest.mark.parametrize("order", DECODE_ORDERS)
def test_teacher_forcing_ignores_pilot_labels_and_follows_the_teacher(order, rates):
    cfg = SystemConfig.from_size((10, 2, 9, 3))
    x = db(cfg, seed=3)
    actions = torch.randint(0, 3, (6, 9), generator=torch.Generator().manual_seed(2))
    relabel = torch.tensor([2, 0, 1])
    model = policy(order, rate_features=rates)
    p1, lp1, _ = model.decode(x, 3, "teacher", actions=actions, system=cfg)
    p2, lp2, _ = model.decode(x, 3, "teacher", actions=relabel[actions], system=cfg)
    torch.testing.assert_close(lp1, lp2)
    torch.testing.assert_close(p1, p2)
    for p, a in zip(p1.numpy(), actions.numpy()):  # the teacher's partition
        np.testing.assert_array_equal(p[:, None] == p[None, :], a[:, None] == a[None, :])
    # teacher forcing along the model's own greedy decode scores it with the greedy log-probability
    with torch.no_grad():
        greedy, lg, _ = model.decode(x, 3, "greedy", system=cfg)
    _, lt, _ = model.decode(x, 3, "teacher", actions=greedy, system=cfg)
    torch.testing.assert_close(lt.detach(), lg, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("order", CONFIDENT)
def test_teacher_order_differs_from_the_gain_order(order):
    """Teacher forcing in a confidence order scores the labels along another user order than
    the gain order does: the log-likelihoods differ (same weights, same labels)."""
    cfg = SystemConfig.from_size((10, 2, 9, 3))
    x = db(cfg, seed=4)
    actions = torch.randint(0, 3, (6, 9), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        lg = policy("gain").decode(x, 3, "teacher", actions=actions)[1]
        lc = policy(order).decode(x, 3, "teacher", actions=actions)[1]
    assert (lg - lc).abs().max() > 1e-3


def test_pick_confident_user_breaks_ties_by_the_key_not_the_index():
    confidence = torch.tensor([[0.9, 0.9, 0.5, 0.9]])
    decided = torch.tensor([[False, False, False, True]])
    key = torch.tensor([[1.0, 2.0, 9.0, 5.0]])
    assert pick_confident_user(confidence, decided, key).item() == 1  # 3 is decided, 2 less sure
    assert pick_confident_user(confidence[:, [1, 0, 2, 3]], decided, key[:, [1, 0, 2, 3]]).item() == 0


def test_user_confidence():
    logp = torch.log(torch.tensor([[[0.5, 0.3, 0.2], [1.0, 0.0, 0.0]]]))
    torch.testing.assert_close(user_confidence(logp, "confidence"), torch.tensor([[0.5, 1.0]]))
    torch.testing.assert_close(user_confidence(logp, "margin"), torch.tensor([[0.2, 1.0]]))


def test_own_rate_feature_is_the_closed_form_rate():
    """With the power control of the full assignment, a user's own-rate feature for its group is
    its rate (docs/model.md eqs. (2.1)-(2.7), cfenv.rates) in bit/s/Hz."""
    cfg = SystemConfig.from_size((20, 2, 12, 4))
    snaps = draw_snapshots(cfg, np.random.default_rng(3), (5,))
    pilots = np.random.default_rng(4).integers(0, 4, (5, 12))
    consts = rate_constants(cfg, cfg.tau_p)
    beta, _, noise = rate_inputs(beta_db_tensor(snaps.beta), consts)
    b = torch.as_tensor(snaps.beta)
    one_hot = torch.nn.functional.one_hot(torch.as_tensor(pilots), 4).double()
    coupling = one_hot @ one_hot.transpose(1, 2)
    gamma = consts.tau_rho * b ** 2 / (consts.tau_rho * (b @ coupling) + 1.0)
    sqrt_eta = (1.0 / (cfg.L * gamma.sum(-1))).sqrt()
    for u in (0, 7, 11):
        member = one_hot.transpose(1, 2).clone()
        member[:, :, u] = 0  # every other user placed; u joins its own pilot's group
        f = rate_option_features(beta, sqrt_eta, noise, member, consts)
        own = f[torch.arange(5), u, torch.as_tensor(pilots[:, u]), 0].double() * RATE_SCALE[0]
        np.testing.assert_allclose(own.numpy(), user_rates(snaps.beta, pilots, cfg)[:, u] / cfg.bandwidth_hz,
                                   rtol=1e-5)
        # joining another group changes the members' rates by at most 0 (contamination only adds)
        assert (f[..., 1] <= 1e-7).all()


def test_rate_features_need_the_system():
    cfg = SystemConfig.from_size((10, 2, 6, 3))
    with pytest.raises(ValueError, match="system"), torch.no_grad():
        policy("gain", rate_features=True).decode(db(cfg), 3)


def test_rate_features_come_from_the_system_model_and_refuse_a_model_without_them():
    """The constants are the model's (``model_of(config).rate_features``, at the decode's tau_p);
    on ``paper-reference`` (no rate-features fast path) a rate-features gnn refuses with one
    clear ValueError, and a plain gnn decodes as on the paper model."""
    from cfenv.models import model_of
    from cfenv.models.paper import PaperRateConstants

    cfg = SystemConfig.from_size((10, 2, 6, 3))
    assert rate_constants(cfg, 3) == model_of(cfg).rate_features
    assert rate_constants(cfg, 5) == PaperRateConstants.of(cfg, 5)
    assert unsupported_reason(cfg) is None
    reference = cfg.replace(model="paper-reference")
    assert "rate_features fast path" in unsupported_reason(reference)
    assert policy("gain", rate_features=True).unsupported_reason(reference) == unsupported_reason(reference)
    assert policy("gain", rate_features=True).unsupported_reason(cfg) is None
    assert policy("gain").unsupported_reason(reference) is None
    x = db(cfg)
    with torch.no_grad():
        for engine in ("numba", "torch"):
            with pytest.raises(ValueError, match="rate_features fast path.*'paper-reference'"):
                policy("gain", rate_features=True).decode(x, 3, "greedy", system=reference, engine=engine)
            np.testing.assert_array_equal(policy("confidence").decode(x, 3, system=reference, engine=engine)[0],
                                          policy("confidence").decode(x, 3, system=cfg, engine=engine)[0])
    with pytest.raises(ValueError, match="rate_features fast path"):  # the differentiable decode too
        policy("gain", rate_features=True).decode(x, 3, "greedy", system=reference)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_option_features_torch_and_numba_agree(dtype):
    """The numba twin (the compiled decoder's) computes the torch option features."""
    g = torch.Generator().manual_seed(0)
    n = 64
    sum_cos, max_cos = torch.rand(n, generator=g, dtype=dtype) * 3, torch.rand(n, generator=g, dtype=dtype)
    into, out = (torch.rand(n, generator=g, dtype=dtype) * 10.0 ** torch.randint(-8, 2, (n,), generator=g)
                 for _ in range(2))
    into[:4] = 0.0  # an empty group
    size = torch.randint(0, 9, (n,), generator=g).to(dtype)
    new = torch.rand(n, generator=g) < 0.3
    want = option_features(sum_cos, max_cos, into, out, size, new, 9)
    assert want.shape == (n, 6)
    got = torch.tensor([option_features_one(*(float(a[i]) for a in (sum_cos, max_cos, into, out, size)),
                                            bool(new[i]), 9) for i in range(n)], dtype=torch.float64)
    torch.testing.assert_close(got, want.double(), rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=1e-7)


def test_order_option_is_stored_and_validated(tmp_path):
    cfg = SystemConfig.from_size((10, 2, 9, 3))
    assert "order" not in model_options(build_model("gnn", cfg))  # a gain model's config is as before
    model = build_model("gnn", cfg, width=16, order="confidence")
    assert model_options(model)["order"] == "confidence"
    with pytest.raises(ValueError, match="order"):
        build_model("gnn", cfg, order="random")
    with pytest.raises(ValueError, match="decode_order"):
        GNNAgent(config=cfg, decode_order="random")


def test_old_checkpoint_loads_and_decodes_as_before(tmp_path):
    meta = json.loads((OLD / "config.json").read_text())
    assert "order" not in meta["model"]
    model, _ = load_model(OLD)
    assert model.order == "gain"
    expected = np.load(OLD / "expected.npz")
    for size in [(10, 2, 9, 3), (20, 2, 12, 5)]:
        tag = "-".join(map(str, size))
        x = beta_db_tensor(expected[f"beta_{tag}"])
        with torch.no_grad():
            pilots, logp, _ = model.decode(x, size[3], "greedy")
        np.testing.assert_array_equal(pilots.numpy(), expected[f"pilots_{tag}"])
        np.testing.assert_allclose(logp.numpy(), expected[f"logp_{tag}"], rtol=1e-5, atol=1e-5)
    # the agent loads it from its folder and assigns as the model decodes; decode_order overrides
    shutil.copytree(OLD, tmp_path / "run")
    agent = NeuralAgent.load(tmp_path / "run")
    assert type(agent) is GNNAgent and agent.model.order == "gain"
    cfg = SystemConfig.from_size((10, 2, 9, 3))
    snaps = draw_snapshots(cfg, np.random.default_rng(5), (6,))
    np.testing.assert_array_equal(agent.assign(snaps, cfg), expected["pilots_10-2-9-3"])
    other = GNNAgent.load(tmp_path / "run", config=cfg)
    other.decode_order = "confidence"
    with torch.no_grad():
        want = other.model.decode(beta_db_tensor(snaps.beta), 3, "greedy", order="confidence")[0].numpy()
    np.testing.assert_array_equal(other.assign(snaps, cfg), want)


@pytest.mark.parametrize("order, rates", [("confidence", False), ("margin", False), ("gain", True),
                                          ("confidence", True)])
def test_new_options_train_and_load_from_their_run_folder(tmp_path, order, rates):
    cfg = SystemConfig.from_size((6, 2, 5, 2))
    agent = GNNAgent(config=cfg, width=16, order=order, rate_features=rates)
    summary = agent.fit(cfg, train_snapshots=32, val_snapshots=16, epochs=2, imitation_epochs=1, batch_size=16,
                        runs_dir=tmp_path / "runs", cache_dir=tmp_path / "cache", progress=False)
    run_dir = Path(summary["run_dir"])
    saved = json.loads((run_dir / "config.json").read_text())["model"]
    assert saved.get("order", "gain") == order and saved.get("rate_features", False) == rates
    loaded = NeuralAgent.load(run_dir, config=cfg)
    assert loaded.model.order == order and loaded.model.rate_features == rates
    snaps = draw_snapshots(cfg, np.random.default_rng(7), (8,))
    np.testing.assert_array_equal(loaded.assign(snaps, cfg), agent.assign(snaps, cfg))
    assert np.all(sum_rate(snaps.beta, loaded.assign(snaps, cfg), cfg) > 0)


def test_cosine_learning_rate_schedule(tmp_path):
    from agents.learning import TrainSettings, train

    settings = TrainSettings(agent="gnn", size=(6, 2, 4, 2), loss="supervised", labels="master-ap", epochs=4,
                             train_snapshots=16, val_snapshots=8, batch_size=8, lr=0.01, lr_schedule="cosine",
                             model={"width": 8}, runs_dir=tmp_path / "runs", cache_dir=tmp_path / "cache",
                             progress=False)
    history = train(settings)["final"]
    lrs = [e["train/lr"] for e in json.loads((Path(settings.run_dir) / "history.json").read_text())]
    np.testing.assert_allclose(lrs, [0.01, 0.01 * (1 + np.cos(np.pi / 4)) / 2, 0.005,
                                     0.01 * (1 + np.cos(3 * np.pi / 4)) / 2])
    assert history["train/lr"] == lrs[-1]
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainSettings(agent="gnn", lr_schedule="linear")


def test_agent_decode_engines_assign_alike():
    """GNNAgent's decode_engine: the compiled and the torch decoder give the same greedy and
    best-of-samples assignments; a bad name is refused."""
    cfg = SystemConfig.from_size((20, 2, 12, 4))
    snaps = draw_snapshots(cfg, np.random.default_rng(8), (6,))
    out = {}
    threads = torch.get_num_threads()
    for engine in ("torch", "numba"):
        agent = GNNAgent(config=cfg, decode_engine=engine, width=32).initialise()
        greedy = agent.assign(snaps, cfg, np.random.default_rng(0))
        agent.decode_samples, agent.decode_temperature = 8, 0.5
        out[engine] = (greedy, agent.assign(snaps, cfg, np.random.default_rng(0)))
    assert torch.get_num_threads() == threads  # the decode's single torch thread is given back
    np.testing.assert_array_equal(out["numba"][0], out["torch"][0])
    np.testing.assert_array_equal(out["numba"][1], out["torch"][1])
    assert sum_rate(snaps.beta, out["numba"][1], cfg).mean() >= sum_rate(snaps.beta, out["numba"][0], cfg).mean()
    with pytest.raises(ValueError, match="decode_engine"):
        GNNAgent(config=cfg, decode_engine="cuda")
