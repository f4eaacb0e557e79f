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
