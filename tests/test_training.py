import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import agents
import evaluate
from agents.learning import TrainSettings, make_dataset, train
from agents.learning import trainer as training
from agents.models import ModelEntry, PilotModel
from agents.neural import NeuralAgent
from cfenv import SystemConfig, draw_snapshots, sum_rate

ROOT = Path(__file__).resolve().parents[1]


def tiny(tmp_path: Path, **overrides) -> TrainSettings:
    base = dict(agent="mlp", size=(6, 2, 4, 2), train_snapshots=64, val_snapshots=32, epochs=2, batch_size=32,
                runs_dir=tmp_path / "runs", cache_dir=tmp_path / "cache", progress=False)
    base.update(overrides)
    return TrainSettings(**base)


def weights(summary):
    return {k: v.clone() for k, v in summary["model"].state_dict().items()}


def test_same_seed_same_losses_and_weights(tmp_path):
    a = train(tiny(tmp_path / "a"))
    b = train(tiny(tmp_path / "b"))
    assert [h["train/loss"] for h in json.loads((Path(a["run_dir"]) / "history.json").read_text())] == \
           [h["train/loss"] for h in json.loads((Path(b["run_dir"]) / "history.json").read_text())]
    for k, v in weights(a).items():
        assert torch.equal(v, weights(b)[k]), k


def test_same_model_whatever_the_thread_count(tmp_path):
    """Torch splits float reductions by its thread count; training runs on one thread so that a
    seed gives the same gnn on 1 or 2 threads (this run differed on the machine default)."""
    settings = dict(agent="gnn", size=(20, 2, 12, 4), train_snapshots=256, val_snapshots=16, epochs=2,
                    imitation_epochs=2, labels="local-search", loss="reinforce", batch_size=64)
    before = torch.get_num_threads()
    models = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        try:
            models.append(weights(train(tiny(tmp_path / str(threads), **settings))))
        finally:
            torch.set_num_threads(before)
        assert torch.get_num_threads() == before  # given back
    for k, v in models[0].items():
        assert torch.equal(v, models[1][k]), k


@pytest.mark.parametrize("loss", ["supervised", "unsupervised"])
def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, loss, monkeypatch):
    full = train(tiny(tmp_path / "full", epochs=3, loss=loss))
    real = training.validation_metrics
    calls = {"n": 0}

    def interrupt_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "validation_metrics", interrupt_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(tmp_path / "cut", epochs=3, loss=loss))
    monkeypatch.setattr(training, "validation_metrics", real)
    state = torch.load(tiny(tmp_path / "cut", loss=loss).run_dir / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1  # the last completed epoch survived the interruption
    resumed = train(tiny(tmp_path / "cut", epochs=3, loss=loss, resume=True))
    for k, v in weights(full).items():
        assert torch.equal(v, weights(resumed)[k]), k


def test_run_folder_has_tensorboard_history_and_model(tmp_path):
    summary = train(tiny(tmp_path))
    run = Path(summary["run_dir"])
    assert run == tmp_path / "runs" / "mlp" / "6-2-4-2" / "unsupervised-seed0"
    assert list(run.glob("events.out.tfevents.*"))
    history = json.loads((run / "history.json").read_text())
    for key in ("train/loss", "train/loss_relative_to_initial", "val/sum_rate_mbps", "val/ratio_to_master_ap",
                "perf/samples_per_s", "val/distinct_assignments", "val/entropy", "val/ratio_to_best_constant"):
        assert key in history[-1]
    meta = json.loads((run / "config.json").read_text())
    assert meta["agent"] == "mlp" and meta["system"]["K"] == 4


def test_save_load_round_trip_gives_same_actions(tmp_path):
    cfg = SystemConfig.from_size((6, 2, 4, 2))
    agent = agents.make("light-cnn", config=cfg)
    agent.fit(cfg, **{k: v for k, v in tiny(tmp_path).to_json().items()
                      if k in ("train_snapshots", "val_snapshots", "epochs", "batch_size", "progress")},
              runs_dir=tmp_path / "runs", cache_dir=tmp_path / "cache")
    snaps = draw_snapshots(cfg, np.random.default_rng(9), (20,))
    agent.save(tmp_path / "saved")
    loaded = NeuralAgent.load(tmp_path / "saved")
    assert type(loaded).__name__ == "LightCNNAgent"
    np.testing.assert_array_equal(agent.assign(snaps), loaded.assign(snaps))


def test_checkpoint_refuses_another_size(tmp_path):
    summary = train(tiny(tmp_path))
    with pytest.raises(ValueError, match=r"trained for \(M, L, K, tau_p\) = \(6, 2, 4, 2\)"):
        NeuralAgent.load(summary["run_dir"], config=SystemConfig.from_size((6, 2, 5, 2)))
    agent = NeuralAgent.load(summary["run_dir"])
    other = SystemConfig.from_size((6, 2, 5, 2))
    with pytest.raises(ValueError, match="trained for"):
        agent.assign(draw_snapshots(other, np.random.default_rng(0)), other)


def test_untrained_agent_refuses_to_assign():
    cfg = SystemConfig()
    with pytest.raises(ValueError, match="not trained"):
        agents.make("mlp", config=cfg).assign(draw_snapshots(cfg, np.random.default_rng(0)))


def test_dataset_cache_and_canonical_labels(tmp_path):
    cfg = SystemConfig.from_size((6, 2, 5, 2))
    a = make_dataset(cfg, 10, 3, 0, "local-search", tmp_path)
    b = make_dataset(cfg, 10, 3, 0, "local-search", tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    np.testing.assert_array_equal(a.labels, b.labels)
    assert np.all(a.labels[:, 0] == 0)  # restricted-growth order
    val = make_dataset(cfg, 10, 3, 1, None, tmp_path)
    assert not np.array_equal(val.snapshots.beta, a.snapshots.beta)


def test_unsupervised_hqcnn_beats_random_on_held_out_snapshots(tmp_path):
    cfg = SystemConfig.from_size((10, 2, 6, 3))
    agent = agents.make("hqcnn", config=cfg, seed=0)
    agent.fit(cfg, train_snapshots=512, val_snapshots=64, epochs=6, batch_size=64, lr=2e-2,
              runs_dir=tmp_path / "runs", cache_dir=tmp_path / "cache", progress=False)
    held_out = draw_snapshots(cfg, np.random.default_rng(12345), (300,))
    learned = sum_rate(held_out.beta, agent.assign(held_out), cfg).mean()
    rand = sum_rate(held_out.beta, agents.make("random", config=cfg).assign(held_out), cfg).mean()
    assert learned > 1.02 * rand


def test_train_cli_smoke_and_evaluate_uses_its_checkpoint(tmp_path):
    runs = tmp_path / "runs"
    out = subprocess.run([sys.executable, "train.py", "--agent", "mlp", "--sizes", "6,2,4,2", "--epochs", "1",
                          "--train-snapshots", "32", "--val-snapshots", "16", "--out", str(runs),
                          "--no-progress"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["run_dir"].endswith("unsupervised-seed0")
    assert evaluate.main(["--agents", "mlp,hqcnn,master-ap", "--sizes", "6,2,4,2", "--snapshots", "3",
                          "--checkpoints", str(runs), "--no-train", "--out", str(tmp_path / "res"),
                          "--no-progress"]) == 0
    records = {r["agent"]: r for r in json.loads((tmp_path / "res" / "results.json").read_text())}
    assert records["mlp"]["status"] == "ok" and records["mlp"]["train_time_s"] > 0
    assert records["hqcnn"]["status"] == "skipped" and "no checkpoint" in records["hqcnn"]["reason"]


@pytest.mark.parametrize("args,needle", [(["--agent", "gpt"], "unknown agent"), (["--loss", "rl"], "loss"),
                                         (["--epochs", "0"], "epochs")])
def test_train_cli_bad_arguments(args, needle):
    out = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and needle in out.stderr


def test_figures_from_logged_runs(tmp_path):
    from agents.lab import figures

    for loss in ("supervised", "unsupervised"):
        for agent in ("mlp", "light-cnn"):
            train(tiny(tmp_path, agent=agent, loss=loss, epochs=2))
    assert figures.main(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "fig")]) == 0
    for name in ("convergence.png", "parameter_efficiency.png"):
        assert (tmp_path / "fig" / name).stat().st_size > 1000
    assert figures.main(["--runs", str(tmp_path / "empty"), "--out", str(tmp_path / "fig2")]) == 1


def test_train_cli_trains_an_sb3_agent(tmp_path):
    out = subprocess.run([sys.executable, "train.py", "--agent", "a2c", "--sizes", "6,2,4,2", "--total-timesteps",
                          "512", "--out", str(tmp_path), "--no-progress"], cwd=ROOT, capture_output=True, text=True,
                         env={**__import__("os").environ, "NUMBA_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    run_dir = Path(json.loads(out.stdout.strip().splitlines()[-1])["run_dir"])
    assert (run_dir / "config.json").exists() and run_dir.name == "rl-seed0"


# ----------------------------------------------------------------- run keys
FOLDERS_OF_0_7 = [  # (agent, size, --trained-at, requested loss, objective, seed, the folder 0.7 used)
    ("mlp", (10, 2, 6, 3), None, "unsupervised", "sum", 0, "mlp/10-2-6-3/unsupervised-seed0"),
    ("mlp", (100, 4, 40, 10), (40, 2, 20, 10), "unsupervised", "sum", 7, "mlp/100-4-40-10/unsupervised-seed7"),
    ("mlp", (10, 2, 6, 3), None, "supervised", "min", 7, "mlp/10-2-6-3/supervised-min-seed7"),
    ("hqcnn", (10, 2, 6, 3), None, "unsupervised", "proportional", 0, "hqcnn/10-2-6-3/unsupervised-proportional-seed0"),
    ("gnn", (10, 2, 6, 3), None, "unsupervised", "sum", 0, "gnn/10-2-6-3/reinforce-seed0"),
    ("gnn", (10, 2, 6, 3), None, "supervised", "min", 7, "gnn/10-2-6-3/supervised-min-seed7"),
    ("gnn-polish", (100, 4, 40, 10), (40, 2, 20, 10), "unsupervised", "sum", 7, "gnn/40-2-20-10/reinforce-seed7"),
    ("hqcnn-ar-polish", (10, 2, 6, 3), None, "supervised", "proportional", 0,
     "hqcnn-ar/10-2-6-3/supervised-proportional-seed0"),
    ("ppo", (10, 2, 6, 3), None, "supervised", "sum", 0, "ppo/10-2-6-3/rl-seed0"),
    ("dqn", (10, 2, 6, 3), None, "unsupervised", "min", 7, "dqn/10-2-6-3/rl-min-seed7"),
]


@pytest.mark.parametrize("name, size, trained_at, loss, objective, seed, folder", FOLDERS_OF_0_7)
def test_run_keys_name_the_folders_of_0_7(name, size, trained_at, loss, objective, seed, folder):
    from agents.registry import resolve

    spec = resolve(name)
    key = spec.run_key(spec.train_size(size, trained_at), seed, loss, objective)
    assert key.folder("runs") == Path("runs") / folder
    assert spec.run_dir("runs", key.size, seed, loss, objective) == Path("runs") / folder
    config = SystemConfig.from_size(key.size).replace(objective=objective)
    assert spec.cls.run_dir("runs", config, seed, spec.checkpoint_loss(loss)) == Path("runs") / folder
    if spec.resumable:  # the trainer's settings file the same run in the same folder
        settings = TrainSettings(agent=key.agent, size=key.size, loss=key.loss, objective=objective, seed=seed)
        assert settings.run_key == key and settings.run_dir == Path("runs") / folder


def test_the_old_name_rule_and_the_names_of_0_7():
    from agents.base import run_folder, run_name
    from agents.learning import run_dir_for
    from agents.runs import RunKey

    size = (6, 2, 4, 2)
    assert RunKey("mlp", size, "unsupervised").name == "unsupervised-seed0"  # sum-rate runs: no objective
    assert RunKey("mlp", size, "unsupervised", "min", 3).name == "unsupervised-min-seed3"
    assert RunKey("mlp", [6, 2, 4, 2], "unsupervised") == RunKey("mlp", size, "unsupervised")  # frozen, hashable
    assert len({RunKey("mlp", size, "unsupervised"), RunKey("mlp", size, "unsupervised", "sum", 0)}) == 1
    for objective, seed in (("sum", 0), ("proportional", 5)):
        key = RunKey("mlp", size, "supervised", objective, seed)
        assert run_name("supervised", seed, objective) == key.name
        assert run_folder("runs", "mlp", size, key.name) == key.folder("runs")
        assert run_dir_for(Path("runs"), "mlp", size, "supervised", seed, objective) == key.folder("runs")


# ------------------------------------------------- a new model in one entry
class TinyNet(PilotModel):
    """A test model: a one-hidden-layer network from the standardised fading to the pilot logits."""

    def __init__(self, config: SystemConfig, width: int = 4) -> None:
        super().__init__(config)
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(config.M * config.K, width),
                                       torch.nn.Tanh(), torch.nn.Linear(width, config.K * config.tau_p))

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


TINY_MODEL = ModelEntry(TinyNet, ("width",))
"""the ModelEntry the registry entry of the test below names (``tests.test_training:TINY_MODEL``)"""


@pytest.fixture
def tiny_registered(monkeypatch):
    """``tiny`` registered by one :class:`agents.registry.AgentEntry`, removed again afterwards."""
    from agents import models
    from agents.registry import REGISTRY, AgentEntry, resolve

    monkeypatch.setattr(models, "MODELS", dict(models.MODELS))
    monkeypatch.setitem(REGISTRY, "tiny", AgentEntry("agents.neural:NeuralAgent", "a tiny test model", True,
                                                     model="tests.test_training:TINY_MODEL"))
    resolve.cache_clear()
    yield
    resolve.cache_clear()


def test_a_new_neural_model_is_one_registry_entry(tiny_registered, tmp_path):
    import train as train_cli
    from agents.lab.evaluation import EvaluationSettings, evaluate
    from agents.registry import resolve

    cfg = SystemConfig.from_size((6, 1, 4, 2))
    agent = agents.make("tiny", config=cfg, seed=0, width=3)
    assert isinstance(agent, NeuralAgent) and agent.name == "tiny" and resolve("tiny").learnable
    agent.fit(cfg, train_snapshots=32, val_snapshots=16, epochs=1, batch_size=16, runs_dir=tmp_path / "runs",
              cache_dir=tmp_path / "cache", progress=False)
    run_dir = tmp_path / "runs" / "tiny" / "6-1-4-2" / "unsupervised-seed0"
    assert agent.run_dir(tmp_path / "runs", cfg, 0) == run_dir and agent.has_checkpoint(run_dir)
    loaded = NeuralAgent.load(run_dir)
    assert type(loaded) is type(agent) and loaded.meta["model"] == {"width": 3}
    snaps = draw_snapshots(cfg, np.random.default_rng(1), (5,))
    assert np.array_equal(loaded.assign(snaps), agent.assign(snaps))
    # train.py trains it like any neural agent
    assert train_cli.main(["--agent", "tiny", "--sizes", "6,1,4,2", "--seed", "1", "--epochs", "1",
                           "--train-snapshots", "32", "--val-snapshots", "16", "--batch-size", "16",
                           "--out", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"),
                           "--no-progress"]) == 0
    assert (tmp_path / "runs" / "tiny" / "6-1-4-2" / "unsupervised-seed1" / "weights.pt").exists()
    # the harness trains a missing model with the default budget, then evaluates it
    settings = EvaluationSettings(agents=["tiny", "master-ap"], sizes=[cfg.size], snapshots=4, seed=2,
                                  checkpoints=tmp_path / "runs", out=tmp_path / "out", progress=False)
    stats: dict = {}
    records, _ = evaluate(settings, stats)
    assert [r["status"] for r in records] == ["ok", "ok"] and stats["training_tasks"] == 1
    assert records[0]["trained_at"] == [6, 1, 4, 2] and records[0]["parameters"] > 0
    assert (tmp_path / "runs" / "tiny" / "6-1-4-2" / "unsupervised-seed2" / "config.json").exists()
