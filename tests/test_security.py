"""Checkpoints are data: a tampered file never runs code, a config.json never asks for absurd
allocations, and an interrupted RL training run leaves a checkpoint."""

import base64
import contextlib
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common import save_util
from stable_baselines3.common.base_class import BaseAlgorithm

import agents
from agents import rl
from agents.base import VALIDATION_STREAM, stream_rng
from agents.lab.evaluation import model_files_of
from agents.learning.checkpoints import load_model
from agents.models import (
    MAX_CNN_CHANNELS,
    MAX_GNN_LAYERS,
    MAX_GNN_WIDTH,
    MAX_HIDDEN_LAYERS,
    MAX_HIDDEN_WIDTH,
    build_model,
)
from agents.registry import agent_class
from cfenv import SystemConfig, draw_snapshots, sum_rate

SIZE = (6, 2, 4, 2)
CFG = SystemConfig.from_size(SIZE)
RL_AGENTS = ["ppo", "a2c", "dqn", "ppo-hqcnn"]
BUDGET = 256


class _Marker:
    """Unpickling this creates ``path``: a stand-in for ``os.system``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return exec, (f"open({str(self.path)!r}, 'w').close()",)


def malicious_model_zip(path: Path, marker: Path) -> None:
    """An SB3 ``model.zip`` whose ``policy_class`` is a pickle that creates ``marker``."""
    payload = base64.b64encode(pickle.dumps(_Marker(marker))).decode()
    data = {"policy_class": {":type:": "<class 'abc.ABCMeta'>", ":serialized:": payload},
            "observation_space": {":type:": "<class 'gymnasium.spaces.box.Box'>", ":serialized:": payload}}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data", json.dumps(data))
        archive.writestr("_stable_baselines3_version", "2.9.2")


@pytest.fixture
def no_unpickling(monkeypatch):
    """Fail the test if anything reaches SB3's own (pickle-based) loading."""
    def refuse(*args, **kwargs):
        raise AssertionError("SB3's pickle-based load was called")

    monkeypatch.setattr(BaseAlgorithm, "load", classmethod(refuse))
    monkeypatch.setattr(save_util, "load_from_zip_file", refuse)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Every RL agent after BUDGET steps at SIZE, saved into its run folder."""
    runs = tmp_path_factory.mktemp("runs")
    out = {}
    for name in RL_AGENTS:
        agent = agents.make(name, config=CFG, seed=0)
        summary = agent.fit(CFG, total_timesteps=BUDGET, runs_dir=runs, progress=False, val_snapshots=16)
        out[name] = (agent, Path(summary["run_dir"]))
    return out


# ------------------------------------------------------------------ tampered checkpoints
def test_the_payload_is_live_and_sb3_load_would_run_it(tmp_path):
    """The control: the zip below really runs code under SB3's own load."""
    marker = tmp_path / "pwned-by-sb3"
    malicious_model_zip(tmp_path / "model.zip", marker)
    with contextlib.suppress(Exception):
        PPO.load(tmp_path / "model.zip")
    assert marker.exists()


@pytest.mark.parametrize("with_config", [False, True], ids=["zip-only", "old-config"])
def test_old_format_model_zip_is_refused_and_never_unpickled(tmp_path, with_config, no_unpickling):
    run = rl.PPOAgent.run_dir(tmp_path, CFG, 0)
    run.mkdir(parents=True)
    marker = tmp_path / "pwned"
    malicious_model_zip(run / rl.MODEL_ZIP, marker)
    if with_config:  # what an old cfpilot wrote next to model.zip
        (run / rl.CONFIG_JSON).write_text(json.dumps({"agent": "ppo", "system": {"M": 6, "L": 2, "K": 4, "tau_p": 2},
                                                      "options": {}, "seed": 0}))
    assert not rl.PPOAgent.has_checkpoint(run) and not rl.RLAgent.has_checkpoint(run)
    for cls in (rl.PPOAgent, rl.RLAgent):
        with pytest.raises(ValueError, match=r"old-format.*python train\.py --agent ppo --sizes") as err:
            cls.load(run, config=CFG)
        assert "\n" not in str(err.value)
    assert "--sizes 6,2,4,2" in str(err.value)
    assert not marker.exists()


def test_pickled_object_in_policy_pt_is_refused(trained, tmp_path, no_unpickling):
    run = tmp_path / "run"
    shutil.copytree(trained["ppo"][1], run)
    marker = tmp_path / "pwned"
    torch.save({"policy": _Marker(marker)}, run / rl.POLICY_PT)
    with pytest.raises(ValueError, match="not a plain state dict"):
        rl.RLAgent.load(run)
    assert not marker.exists()


def test_a_model_zip_next_to_a_checkpoint_is_ignored(trained, tmp_path, no_unpickling):
    run = tmp_path / "run"
    shutil.copytree(trained["ppo"][1], run)
    marker = tmp_path / "pwned"
    malicious_model_zip(run / rl.MODEL_ZIP, marker)
    snaps = draw_snapshots(CFG, np.random.default_rng(1), (8,))
    np.testing.assert_array_equal(rl.RLAgent.load(run).assign(snaps), trained["ppo"][0].assign(snaps))
    assert not marker.exists()
    trained["ppo"][0].save(run)
    assert not (run / rl.MODEL_ZIP).exists()  # save removes the stale zip


# ------------------------------------------------------------------ round trip
@pytest.mark.parametrize("name", RL_AGENTS)
def test_save_load_round_trip_is_bit_identical(trained, name, tmp_path, no_unpickling):
    agent, run = trained[name]
    assert sorted(p.name for p in run.iterdir() if p.is_file()) == [rl.CONFIG_JSON, rl.POLICY_PT]
    assert not (run / rl.CHECKPOINT_DIR).exists()  # the training checkpoint goes once the model is saved
    assert type(agent).has_checkpoint(run)
    meta = json.loads((run / rl.CONFIG_JSON).read_text())
    assert meta["format"] == "sb3-policy-state-dict-1" and meta["algorithm"] == agent.algorithm
    assert meta["hyperparameters"] == agent.algorithm_options() and meta["n_envs"] == agent.model.n_envs
    loaded = agent_class(name).load(run, config=CFG)
    before, after = agent.model.policy.state_dict(), loaded.model.policy.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key
    snaps = draw_snapshots(CFG, np.random.default_rng(1), (64,))
    np.testing.assert_array_equal(loaded.assign(snaps), agent.assign(snaps))
    assert loaded.parameter_count() == agent.parameter_count()
    # the files evaluate.py ships to Ray workers rebuild it on a node without the folder
    files = model_files_of(run)
    assert set(files) == {rl.CONFIG_JSON, rl.POLICY_PT}
    for file_name, data in files.items():
        (tmp_path / file_name).write_bytes(data)
    np.testing.assert_array_equal(rl.RLAgent.load(tmp_path, config=CFG).assign(snaps), agent.assign(snaps))
    # saved again from a loaded agent: the same files' content
    again = loaded.save(tmp_path / "again")
    assert json.loads((again / rl.CONFIG_JSON).read_text())["hyperparameters"] == meta["hyperparameters"]
    np.testing.assert_array_equal(rl.RLAgent.load(again).assign(snaps), agent.assign(snaps))


def test_loaded_model_cannot_train_on_its_placeholder_env(trained):
    loaded = rl.RLAgent.load(trained["a2c"][1])
    with pytest.raises(RuntimeError, match="no training environment"):
        loaded.model.learn(16)


# ------------------------------------------------------------------ bounds
@pytest.mark.parametrize("name, options, option", [
    ("mlp", {"hidden": [2147483648]}, "hidden"),
    ("mlp", {"hidden": [0]}, "hidden"),
    ("mlp", {"hidden": [16] * (MAX_HIDDEN_LAYERS + 1)}, "hidden"),
    ("mlp", {"hidden": [True]}, "hidden"),
    ("mlp", {"hidden": "16"}, "hidden"),
    ("light-cnn", {"channels": [MAX_CNN_CHANNELS + 1, 8]}, "channels"),
    ("heavy-cnn", {"channels": [32]}, "channels"),
    ("hqcnn", {"n_qubits": 32}, "n_qubits"),
    ("gnn", {"width": MAX_GNN_WIDTH + 1}, "width"),
    ("gnn", {"layers": MAX_GNN_LAYERS + 1}, "layers"),
    ("gnn", {"layers": 0}, "layers"),
    ("hqcnn-ar", {"quantum": {"n_qubits": 1 << 20}}, "n_qubits"),
    ("hqcnn-ar", {"quantum": {"wires": 3}}, "quantum"),
], ids=str)
def test_build_model_refuses_absurd_options(name, options, option):
    with pytest.raises(ValueError, match=option) as err:
        build_model(name, CFG, **options)
    assert "\n" not in str(err.value)


def test_build_model_accepts_the_bounds():
    assert build_model("mlp", CFG, hidden=[MAX_HIDDEN_WIDTH, 1]).hidden == (MAX_HIDDEN_WIDTH, 1)
    assert build_model("gnn", CFG, width=4, layers=MAX_GNN_LAYERS).layers == MAX_GNN_LAYERS


def test_neural_config_json_asking_for_20_gb_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"agent": "mlp", "system": {"M": 6, "L": 2, "K": 4, "tau_p": 2},
                                                      "model": {"hidden": [2147483648]}}))
    with pytest.raises(ValueError, match="hidden"):
        load_model(tmp_path)


@pytest.mark.parametrize("edit, option", [
    (lambda m: m["hyperparameters"].update(net_arch=[2147483648]), "net_arch"),
    (lambda m: m["hyperparameters"].update(net_arch={"pi": [64] * 9, "vf": [64]}), "net_arch"),
    (lambda m: m["hyperparameters"].update(net_arch={"pi": [64], "zz": [64]}), "net_arch"),
    (lambda m: m["hyperparameters"].update(policy_kwargs={"activation_fn": "os.system"}), "policy_kwargs"),
    (lambda m: m["hyperparameters"].update(replay_buffer_class="x"), "replay_buffer_class"),
    (lambda m: m["hyperparameters"].update(n_steps=1 << 40), "n_steps"),
    (lambda m: m["hyperparameters"].update(batch_size=-1), "batch_size"),
    (lambda m: m.update(n_envs=10**9), "n_envs"),
], ids=["net_arch", "net_arch-depth", "net_arch-key", "policy_kwargs", "class-option", "n_steps", "batch_size",
        "n_envs"])
def test_rl_config_json_out_of_bounds_is_refused_on_load(trained, tmp_path, edit, option):
    run = tmp_path / "run"
    shutil.copytree(trained["ppo"][1], run)
    meta = json.loads((run / rl.CONFIG_JSON).read_text())
    edit(meta)
    (run / rl.CONFIG_JSON).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=option) as err:
        rl.RLAgent.load(run)
    assert "\n" not in str(err.value)


def test_rl_bounds_apply_to_dqn_buffer_and_hqcnn_qubits(trained, tmp_path):
    for name, edit, option in (("dqn", lambda m: m["hyperparameters"].update(buffer_size=10**12), "buffer_size"),
                               ("ppo-hqcnn", lambda m: m["options"].update(n_qubits=64), "n_qubits")):
        run = tmp_path / name
        shutil.copytree(trained[name][1], run)
        meta = json.loads((run / rl.CONFIG_JSON).read_text())
        edit(meta)
        (run / rl.CONFIG_JSON).write_text(json.dumps(meta))
        with pytest.raises(ValueError, match=option):
            rl.RLAgent.load(run)
    with pytest.raises(ValueError, match="net_arch"):
        agents.make("ppo", config=CFG, net_arch=[1 << 31]).initialise(n_envs=2)


# ------------------------------------------------------------------ Ctrl-C
def test_ctrl_c_during_rl_training_leaves_the_last_validation_checkpoint(tmp_path, monkeypatch, capsys):
    from agents.rl.callbacks import _Validation

    every, stop = 128, 700
    original = _Validation._on_step

    def interrupt(self):
        original(self)
        if self.num_timesteps >= stop:
            raise KeyboardInterrupt
        return True

    monkeypatch.setattr(_Validation, "_on_step", interrupt)
    agent = agents.make("ppo", config=CFG, seed=0)
    with pytest.raises(KeyboardInterrupt):
        agent.fit(CFG, total_timesteps=4096, runs_dir=tmp_path, progress=False, val_snapshots=16, val_every=every)
    run = rl.PPOAgent.run_dir(tmp_path, CFG, 0)
    checkpoint = run / rl.CHECKPOINT_DIR
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and str(checkpoint) in out[0] and "python train.py --agent ppo --sizes 6,2,4,2" in out[0]
    assert not rl.PPOAgent.has_checkpoint(run)  # unfinished: evaluate.py does not take it for a trained model
    assert rl.PPOAgent.has_checkpoint(checkpoint)
    meta = json.loads((checkpoint / rl.CONFIG_JSON).read_text())
    interrupted = agent.model.num_timesteps
    assert interrupted - every < meta["timesteps_done"] <= interrupted
    # the checkpoint is the policy validated at that step
    loaded = rl.PPOAgent.load(checkpoint, config=CFG)
    val = draw_snapshots(CFG, stream_rng(0, VALIDATION_STREAM, *SIZE), (16,))
    rate = float((sum_rate(val.beta, loaded.assign(val), CFG) / 1e6).mean())
    assert rate == pytest.approx(meta["val_history"][-1]["val/sum_rate_mbps"], rel=1e-12)
    assert meta["val_history"][-1]["timesteps"] == meta["timesteps_done"]


def test_models_too_large_for_memory_are_refused_before_allocation():
    """heavy-cnn's flattening head at (100,4,100,20) would be 1.3 billion parameters (about 20 GB
    while training): refused with the count, by the agent (a reason the harness shows) and by
    build_model, without allocating it; the paper's sizes stay buildable."""
    from agents.models import MAX_PARAMETERS, build_model
    from agents.registry import resolve

    big = SystemConfig.from_size((100, 4, 100, 20))
    agent = resolve("heavy-cnn").cls(config=big)
    reason = agent.unsupported_reason(big)
    assert reason is not None and "1,280,020,816 parameters" in reason and f"{MAX_PARAMETERS:,}" in reason
    with pytest.raises(ValueError, match="above the cap"):
        build_model("heavy-cnn", big)
    with pytest.raises(ValueError, match="cannot run at"):
        agent.assign(draw_snapshots(big, np.random.default_rng(0)))
    for size in ((45, 2, 20, 10), (100, 4, 40, 10)):
        cfg = SystemConfig.from_size(size)
        assert resolve("light-cnn").cls(config=cfg).unsupported_reason(cfg) is None
    assert resolve("mlp").cls(config=big).unsupported_reason(big) is None


def test_harness_skips_a_model_too_large_with_its_reason_and_trains_nothing(tmp_path):
    import evaluate

    out = tmp_path / "out"
    assert evaluate.main(["--agents", "heavy-cnn,master-ap", "--sizes", "100,4,100,20", "--snapshots", "1",
                          "--checkpoints", str(tmp_path / "runs"), "--out", str(out), "--no-progress"]) == 0
    records = {r["agent"]: r for r in json.loads((out / "results.json").read_text())}
    assert records["heavy-cnn"]["status"] == "skipped" and "above the cap" in records["heavy-cnn"]["reason"]
    assert records["master-ap"]["status"] == "ok"
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.pt"))
