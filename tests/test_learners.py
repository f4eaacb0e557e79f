"""The learned agents at scale (issue #18) and on any device (issue #17): the sampler, the
polish kernel and the hybrid agents that run the gnn / hqcnn-ar checkpoints."""

import json

import numpy as np
import pytest
import torch

import agents
from agents.base import canonical_pilots
from agents.heuristics import master_ap_pilots
from agents.models.gnn import sample_categorical
from agents.neural import GNNAgent, GNNPolishAgent, HQCNNARPolishAgent, NeuralAgent
from agents.polish import polish
from cfenv import SystemConfig, draw_snapshots, sum_rate


def same_partition(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_array_equal(canonical_pilots(a), canonical_pilots(b))


# ------------------------------------------------------------------ sampler (issue #17)
def test_sampler_never_picks_an_unopened_pilot_and_follows_the_probabilities():
    probs = torch.tensor([[0.2, 0.8, 0.0], [0.5, 0.25, 0.25]]).repeat(4000, 1)
    last = torch.tensor([1, 2]).repeat(4000)
    draws = sample_categorical(probs, last, torch.Generator().manual_seed(0))
    assert draws.dtype == torch.long and draws.device == probs.device
    assert (draws <= last).all()
    first, second = draws[0::2], draws[1::2]
    np.testing.assert_allclose(np.bincount(first.numpy(), minlength=3) / 4000, [0.2, 0.8, 0.0], atol=0.03)
    np.testing.assert_allclose(np.bincount(second.numpy(), minlength=3) / 4000, [0.5, 0.25, 0.25], atol=0.03)


def test_sampler_draws_its_uniforms_on_the_generators_device(monkeypatch):
    """The #17 crash: torch.multinomial wants the generator on the tensor's device. The sampler
    asks the generator's own device for its uniforms, then moves them."""
    seen = []
    real_rand = torch.rand

    def spy(*args, **kwargs):
        seen.append((kwargs.get("device"), kwargs.get("generator")))
        return real_rand(*args, **kwargs)

    monkeypatch.setattr(torch, "rand", spy)
    generator = torch.Generator().manual_seed(3)
    a = sample_categorical(torch.full((5, 4), 0.25), torch.full((5,), 3), generator)
    assert seen == [(generator.device, generator)]
    b = sample_categorical(torch.full((5, 4), 0.25), torch.full((5,), 3), torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)  # deterministic given the seed


@pytest.mark.cuda
def test_gnn_and_hqcnn_ar_train_and_sample_on_cuda(tmp_path):
    cfg = SystemConfig.from_size((6, 2, 4, 2))
    for name in ("gnn", "hqcnn-ar"):
        agent = agents.make(name, config=cfg, device="cuda", decode_samples=2, width=8)
        agent.fit(cfg, train_snapshots=16, val_snapshots=8, epochs=2, batch_size=8, runs_dir=tmp_path,
                  cache_dir=tmp_path / "c", progress=False)
        pilots = agent.assign(draw_snapshots(cfg, np.random.default_rng(0), (3,)), cfg)
        assert pilots.shape == (3, 4)


# ------------------------------------------------------------------ polish
@pytest.fixture(scope="module")
def network():
    cfg = SystemConfig.from_size((20, 2, 12, 4))
    snaps = draw_snapshots(cfg, np.random.default_rng(11), (6,))
    return cfg, snaps, master_ap_pilots(snaps.beta, cfg.tau_p)


@pytest.mark.parametrize("candidates,swaps,screen", [(1, False, False), (2, False, False), (0, False, False),
                                                     (1, True, False), (2, False, True), (1, True, True)])
def test_polish_never_lowers_the_sum_rate_and_keeps_its_budget(network, candidates, swaps, screen):
    cfg, snaps, start = network
    out, stats = polish(snaps.beta, start, cfg, candidates=candidates, max_evals=30, swaps=swaps, screen=screen)
    assert np.all(sum_rate(snaps.beta, out, cfg) >= sum_rate(snaps.beta, start, cfg) * (1 - 1e-12))
    assert np.all(stats["evals"] <= 30)
    np.testing.assert_allclose(stats["val"][:, 0], sum_rate(snaps.beta, out, cfg), rtol=1e-9)
    bigger, _ = polish(snaps.beta, start, cfg, candidates=candidates, max_evals=10_000, swaps=swaps, screen=screen)
    assert sum_rate(snaps.beta, bigger, cfg).mean() >= sum_rate(snaps.beta, out, cfg).mean() * (1 - 1e-12)


@pytest.mark.parametrize("objective", ["min", "proportional"])
def test_polish_raises_the_chosen_objective(network, objective):
    from cfenv.rates import objective_value

    cfg, snaps, start = network
    cfg = cfg.replace(objective=objective)
    out, stats = polish(snaps.beta, start, cfg, candidates=0, max_evals=500)
    before, after = objective_value(snaps.beta, start, cfg), objective_value(snaps.beta, out, cfg)
    assert np.all(after >= before - 1e-9 * np.abs(before))
    assert np.any(after > before)
    np.testing.assert_allclose(stats["val"][:, 0], after, rtol=1e-9)


def test_polish_is_invariant_to_pilot_labels_of_the_start(network):
    cfg, snaps, start = network
    relabel = np.array([2, 0, 3, 1])
    a, _ = polish(snaps.beta, start, cfg, max_evals=40)
    b, _ = polish(snaps.beta, relabel[start], cfg, max_evals=40)
    same_partition(a, b)


def test_polish_is_equivariant_to_user_permutations(network):
    cfg, snaps, start = network
    perm = np.random.default_rng(5).permutation(cfg.K)
    a, _ = polish(snaps.beta, start, cfg, candidates=2, max_evals=40)
    b, _ = polish(snaps.beta[..., perm], start[:, perm], cfg, candidates=2, max_evals=40)
    same_partition(a[:, perm], b)


def test_polish_keeps_the_best_of_several_starts(network):
    cfg, snaps, start = network
    rand = np.random.default_rng(0).integers(0, cfg.tau_p, start.shape)
    both, stats = polish(snaps.beta, np.stack([rand, start], axis=1), cfg, max_evals=20)
    assert stats["val"].shape == (6, 2)
    np.testing.assert_allclose(sum_rate(snaps.beta, both, cfg), stats["val"].max(axis=1), rtol=1e-9)


# ------------------------------------------------------------------ hybrid agents
@pytest.fixture(scope="module")
def gnn_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("learners")
    cfg = SystemConfig.from_size((6, 2, 4, 2))
    agent = agents.make("gnn", config=cfg, width=16)
    agent.fit(cfg, train_snapshots=32, val_snapshots=16, epochs=1, batch_size=16, runs_dir=root / "runs",
              cache_dir=root / "cache", progress=False)
    return root, cfg, agent


def test_gnn_polish_runs_the_gnn_checkpoint_from_its_folder(gnn_run):
    root, cfg, gnn = gnn_run
    run_dir = GNNPolishAgent.run_dir(root / "runs", cfg, 0, "reinforce")
    assert run_dir == GNNAgent.run_dir(root / "runs", cfg, 0, "reinforce")
    hybrid = GNNPolishAgent.load(run_dir, config=cfg)
    assert type(hybrid) is GNNPolishAgent and hybrid.polish_per_user > 0
    assert type(NeuralAgent.load(run_dir)) is GNNAgent  # the folder still holds a plain gnn
    other = SystemConfig.from_size((20, 2, 12, 4))  # trained at (6,2,4,2), run at another size
    snaps = draw_snapshots(other, np.random.default_rng(1), (8,))
    plain, polished = gnn.assign(snaps, other), hybrid.assign(snaps, other)
    assert np.all(sum_rate(snaps.beta, polished, other) >= sum_rate(snaps.beta, plain, other) * (1 - 1e-12))
    with pytest.raises(ValueError, match="holds a 'gnn' model"):
        HQCNNARPolishAgent.load(run_dir)


def test_polished_gnn_keeps_both_symmetries(gnn_run):
    _, _, gnn = gnn_run
    cfg = SystemConfig.from_size((20, 2, 12, 4))
    hybrid = GNNPolishAgent(config=cfg)
    hybrid.model = gnn.model
    snaps = draw_snapshots(cfg, np.random.default_rng(2), (5,))
    perm = np.random.default_rng(3).permutation(cfg.K)
    a = hybrid.assign(snaps, cfg)
    permuted = type(snaps)(snaps.beta[..., perm], snaps.ap_positions, snaps.ue_positions[:, perm])
    b = hybrid.assign(permuted, cfg)
    same_partition(a[:, perm], b)


def test_harness_runs_the_hybrids_trained_at_one_size_at_others(gnn_run):
    import evaluate

    root, _, _ = gnn_run
    out = root / "res"
    assert evaluate.main(["--agents", "gnn,gnn-polish,master-ap", "--sizes", "6,2,4,2", "12,2,8,3",
                          "--snapshots", "3", "--checkpoints", str(root / "runs"), "--trained-at", "6,2,4,2",
                          "--no-train", "--out", str(out), "--no-progress"]) == 0
    records = json.loads((out / "results.json").read_text())
    hybrid = [r for r in records if r["agent"] == "gnn-polish"]
    assert [r["status"] for r in hybrid] == ["ok", "ok"] and all(r["trained_at"] == [6, 2, 4, 2] for r in hybrid)
    plain = {r["K"]: r for r in records if r["agent"] == "gnn"}
    for r in hybrid:
        assert r["mean_sum_rate_mbps"] >= plain[r["K"]]["mean_sum_rate_mbps"] * (1 - 1e-9)


# ------------------------------------------------------------------ incremental decoder
@pytest.mark.parametrize("size", [(10, 2, 9, 3), (30, 2, 20, 10), (4, 1, 1, 1)], ids=str)
def test_incremental_decode_is_the_reference_decode(size):
    """Inference (no gradients) runs the running-sum decoder; it must be the same function."""
    from agents.learning import beta_db_tensor
    from agents.models.gnn import GNNPolicy

    cfg = SystemConfig.from_size(size)
    torch.manual_seed(0)
    model = GNNPolicy(width=32).eval()
    x = beta_db_tensor(draw_snapshots(cfg, np.random.default_rng(0), (8,)).beta)
    for mode in ("greedy", "sample"):
        with torch.no_grad():
            fast = model.decode(x, cfg.tau_p, mode, generator=torch.Generator().manual_seed(1))
        with torch.enable_grad():
            ref = model.decode(x, cfg.tau_p, mode, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(fast[0], ref[0])
        torch.testing.assert_close(fast[1], ref[1].detach(), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(fast[2], ref[2].detach(), rtol=1e-4, atol=1e-4)


def test_decoding_in_other_user_orders_keeps_both_symmetries_and_never_loses(gnn_run):
    """Test-time augmentation by decode order: orders are keyed by user features (total and
    strongest gain), so permuting the users permutes every decode; the best is kept."""
    _, _, gnn = gnn_run
    cfg = SystemConfig.from_size((20, 2, 12, 4))
    tta = GNNAgent(config=cfg, decode_orders=8)
    tta.model = gnn.model
    snaps = draw_snapshots(cfg, np.random.default_rng(4), (6,))
    a, greedy = tta.assign(snaps, cfg), gnn.assign(snaps, cfg)
    assert np.all(sum_rate(snaps.beta, a, cfg) >= sum_rate(snaps.beta, greedy, cfg) * (1 - 1e-12))
    perm = np.random.default_rng(6).permutation(cfg.K)
    permuted = type(snaps)(snaps.beta[..., perm], snaps.ap_positions, snaps.ue_positions[:, perm])
    same_partition(a[:, perm], tta.assign(permuted, cfg))
    with pytest.raises(ValueError, match="decode_orders"):
        GNNAgent(decode_orders=0)


def test_named_long_budget_is_valid_and_unknown_ones_are_refused(tmp_path):
    import train
    from agents.learning import TrainSettings

    cfg = SystemConfig.from_size((40, 2, 20, 10))
    agent = agents.make("gnn", config=cfg)
    settings = agent.training_settings(cfg, **agent.budgets["long"])
    assert isinstance(settings, TrainSettings) and settings.train_snapshots == 8192 and settings.epochs == 16
    assert settings.labels == "local-search" and settings.imitation_epochs == 12
    for name in ("mlp", "hqcnn-ar", "ppo"):
        assert train.main(["--agent", name, "--budget", "long", "--out", str(tmp_path)]) == 2


def test_named_budget_trains_its_model_options_under_the_command_lines(tmp_path, capsys):
    import train

    accurate = GNNAgent.named_budget("accurate")
    assert accurate["model"] == {**GNNAgent.default_model, "rate_features": True}
    assert GNNAgent.named_budget(None) == {}
    with pytest.raises(ValueError, match="named budgets: long, accurate"):
        GNNAgent.named_budget("longer")
    tiny = ["--train-snapshots", "16", "--val-snapshots", "8", "--epochs", "1", "--no-progress"]
    assert train.main(["--agent", "gnn", "--budget", "accurate", "--sizes", "10,2,6,3", "--out", str(tmp_path), *tiny]) == 0
    run_dir = json.loads(capsys.readouterr().out.splitlines()[-1])["run_dir"]
    agent = GNNAgent.load(run_dir)
    assert agent.model.rate_features and agent.model.order == "confidence"
    # the budget's other fields apply where no flag overrides them; its imitation share follows --epochs
    settings = GNNAgent().training_settings(SystemConfig.from_size((10, 2, 6, 3)), budget="accurate", epochs=8)
    assert settings.imitation_epochs == 8 and settings.train_snapshots == 8192 and settings.model["rate_features"]


def test_encoder_without_gradients_is_the_batched_encoder():
    from agents.models.gnn import GNNPolicy

    torch.manual_seed(0)
    model = GNNPolicy(width=16, layers=2)
    cfg = SystemConfig.from_size((20, 2, 12, 4))
    x = torch.as_tensor(10 * np.log10(draw_snapshots(cfg, np.random.default_rng(2), (3,)).beta))
    with_grad = model.encode(x)
    with torch.no_grad():
        without = model.encode(x)  # the edge MLP one snapshot at a time
        one = model.encode(x[1:2])
    for a, b in zip(with_grad, without):
        assert torch.equal(a.detach(), b)
    assert torch.equal(one[0][0], without[0][1])
