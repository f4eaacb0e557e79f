"""The system-model interface (docs/model.md §0): the registry, the paper model and its reference
twin, snapshot extras, and a model defined here reaching the environments and agents through the seam."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import agents
import cfenv
from cfenv.channel import Snapshot, as_snapshot, stack_snapshots
from cfenv.config import SystemConfig
from cfenv.models import MODELS, model_names, model_of, register_model
from cfenv.models.base import FAST_PATHS, SystemModel
from cfenv.models.paper import PaperModel, PaperReferenceModel
from cfenv.rates import sum_rate, user_rates

CFG = SystemConfig(M=8, L=2, K=6, tau_p=3)


class DoubledModel(PaperReferenceModel):
    """A model defined by a test: the paper's physics with every rate doubled and no fast path, so
    that anything reaching the physics elsewhere than through the seam shows."""

    name = "doubled"
    description = "the paper's rates doubled (a test model)"
    snapshot_extras = {"tag": "(...,) float64"}

    def draw(self, rng: np.random.Generator, batch_shape: tuple[int, ...] | int = ()) -> Snapshot:
        s = super().draw(rng, batch_shape)
        return Snapshot(s.beta, s.ap_positions, s.ue_positions, {"tag": np.ones(s.beta.shape[:-2])})

    def user_rates(self, snapshots: Snapshot, pilots: Any) -> np.ndarray:
        return 2.0 * user_rates(snapshots.beta, pilots, self.config, backend="reference")

    def sum_rate(self, snapshots: Snapshot, pilots: Any) -> np.ndarray:
        return self.user_rates(snapshots, pilots).sum(-1)

    def objective(self, snapshots: Snapshot, pilots: Any) -> np.ndarray:
        return SystemModel.objective(self, snapshots, pilots)


@pytest.fixture(scope="module")
def doubled() -> SystemConfig:
    register_model("doubled", f"{__name__}:DoubledModel")
    yield CFG.replace(model="doubled")
    MODELS.pop("doubled")


def test_registry_names_and_errors():
    assert model_names()[:2] == ("paper", "paper-reference")
    assert isinstance(model_of(CFG), PaperModel) and model_of(CFG) is model_of(CFG.replace())
    assert type(model_of(CFG.replace(model="paper-reference"))) is PaperReferenceModel
    with pytest.raises(ValueError, match="model must be one of paper, paper-reference"):
        SystemConfig(model="nope")
    with pytest.raises(ValueError, match="already registered"):
        register_model("paper", "somewhere:Else")
    with pytest.raises(ValueError, match="module:Class"):
        register_model("x", "no-colon")


def test_fast_paths_declared():
    assert model_of(CFG).fast_paths == tuple(name for name in FAST_PATHS if name != "screening")
    assert model_of(CFG.replace(model="paper-reference")).fast_paths == ()
    assert model_of(CFG.replace(model="scalable")).fast_paths == ("screening",)
    assert model_of(CFG.replace(model="scalable", link="uplink", lsfd=True)).fast_paths == ()


def test_paper_and_reference_models_agree():
    fast, ref = model_of(CFG), model_of(CFG.replace(model="paper-reference"))
    snaps = fast.draw(np.random.default_rng(1), (5,))
    pilots = np.random.default_rng(2).integers(0, CFG.tau_p, (7, 5, CFG.K))
    np.testing.assert_allclose(fast.user_rates(snaps, pilots), ref.user_rates(snaps, pilots), rtol=1e-12)
    np.testing.assert_allclose(fast.objective(snaps, pilots), ref.objective(snaps, pilots), rtol=1e-12)
    # the paper model's sum and objective are the rate engine's own, bit for bit
    np.testing.assert_array_equal(fast.sum_rate(snaps, pilots), sum_rate(snaps.beta, pilots, CFG))
    np.testing.assert_array_equal(fast.objective(snaps, pilots), sum_rate(snaps.beta, pilots, CFG))
    for objective in ("min", "proportional"):
        cfg = CFG.replace(objective=objective)
        np.testing.assert_allclose(model_of(cfg).objective(snaps, pilots),
                                   model_of(cfg.replace(model="paper-reference")).objective(snaps, pilots),
                                   rtol=1e-12)


def test_draw_is_the_channel_draw_and_validate_refuses_bad_input():
    snaps = model_of(CFG).draw(np.random.default_rng(3), (2,))
    again = cfenv.draw_snapshots(CFG, np.random.default_rng(3), (2,))
    np.testing.assert_array_equal(snaps.beta, again.beta)
    with pytest.raises(ValueError, match=r"snapshot\.beta must have shape"):
        model_of(CFG).validate({"beta": np.ones((3, 3)), "ap_positions": np.zeros((8, 2)),
                                "ue_positions": np.zeros((6, 2))})


def test_snapshot_extras_index_stack_and_restrict(doubled):
    model = model_of(doubled)
    snaps = model.draw(np.random.default_rng(4), (3,))
    assert snaps[1].extras["tag"].shape == ()
    stacked = stack_snapshots([snaps[0], snaps[2]])
    assert stacked.extras["tag"].shape == (2,)
    np.testing.assert_array_equal(stacked.beta, snaps.beta[[0, 2]])
    with pytest.raises(ValueError, match="extras"):
        Snapshot(snaps.beta, snaps.ap_positions, snaps.ue_positions, {"bad": np.ones(7)})
    sub, sub_cfg = model.restrict_users(snaps, 4)
    assert sub.beta.shape == (3, 8, 4) and sub.ue_positions.shape == (3, 4, 2) and sub_cfg.K == 4
    assert sub.extras["tag"].shape == (3,)


def test_as_snapshot_forms():
    beta = model_of(CFG).draw(np.random.default_rng(5), (2,)).beta
    assert as_snapshot(beta).ue_positions.shape == (2, CFG.K, 2)
    info = {"beta": beta[0], "ap_positions": np.ones((8, 2)), "ue_positions": np.ones((6, 2)), "R": np.ones(3)}
    s = as_snapshot(info, ("R",))
    assert s.extras["R"].shape == (3,) and s.ap_positions[0, 0] == 1.0


def test_environments_reach_the_physics_through_the_model(doubled):
    """The one-step, vector and sequential environments score with the configured model's rates."""
    env = gym.make("CellFreePilot-v0", config=doubled)
    _, info = env.reset(seed=0)
    assert "tag" in info
    pilots = np.arange(CFG.K) % CFG.tau_p
    _, reward, *_, info = env.step(pilots)
    truth = 2.0 * sum_rate(info["beta"], pilots, CFG) / cfenv.MBPS
    assert reward == pytest.approx(truth, rel=1e-12)
    venv = cfenv.CellFreePilotVectorEnv(num_envs=2, config=doubled)
    _, infos = venv.reset(seed=0)
    _, rewards, *_ = venv.step(np.tile(pilots, (2, 1)))
    np.testing.assert_allclose(rewards, 2.0 * sum_rate(infos["beta"], pilots, CFG) / cfenv.MBPS, rtol=1e-12)
    seq = gym.make("CellFreePilotSequential-v0", config=doubled, reward_mode="increments")
    _, info = seq.reset(seed=0)
    total = sum(seq.step(int(p))[1] for p in pilots)
    assert total == pytest.approx(2.0 * float(sum_rate(info["beta"], pilots, CFG)) / cfenv.MBPS, rel=1e-9)


@pytest.mark.parametrize("name", ["random", "greedy", "master-ap", "location", "wgf", "kmeans"])
def test_heuristics_run_on_a_model_without_fast_paths(doubled, name):
    agent = agents.make(name, config=doubled, seed=0)
    snaps = model_of(doubled).draw(np.random.default_rng(6), (3,))
    pilots = agent.assign(snaps, doubled)
    assert pilots.shape == (3, CFG.K) and pilots.min() >= 0 and pilots.max() < CFG.tau_p


def test_greedy_uses_the_models_rates(doubled):
    """Greedy re-pilots the weakest user by the model's rates: a model whose weakest user differs
    from the paper's changes greedy's choice (here the doubled rates keep the order: same result)."""
    snaps = model_of(CFG).draw(np.random.default_rng(7), (4,))
    a = agents.make("greedy", config=CFG, seed=0).assign(snaps, CFG)
    b = agents.make("greedy", config=doubled, seed=0).assign(snaps, doubled)
    np.testing.assert_array_equal(a, b)


def test_unsupervised_loss_refused_without_a_differentiable_path(doubled):
    torch = pytest.importorskip("torch")
    from agents.learning.losses import unsupervised_loss

    beta = torch.as_tensor(model_of(CFG).draw(np.random.default_rng(8), (2,)).beta)
    with pytest.raises(ValueError, match="relaxed"):
        unsupervised_loss(torch.zeros(2, CFG.K, CFG.tau_p), beta, doubled)


def test_a_rate_feature_gnn_gives_its_reason_on_a_model_without_rate_features():
    pytest.importorskip("torch")
    reference = CFG.replace(model="paper-reference")
    plain = agents.make("gnn", config=reference, seed=0)
    assert plain.unsupported_reason(reference) is None
    featured = agents.make("gnn", config=reference, seed=0, rate_features=True)
    assert "rate features" in featured.unsupported_reason(reference)
    assert featured.unsupported_reason(CFG) is None
