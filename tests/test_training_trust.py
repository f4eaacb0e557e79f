"""train.py under bad input, faults and concurrency (issue #30): one line, exit 2, nothing lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import train
from agents.learning import TrainSettings
from tests.conftest import interrupted_while_starting

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--sizes", "6,2,4,2", "--train-snapshots", "32", "--val-snapshots", "16", "--no-progress"]


def run_train(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``train.main(argv)``: exit status, stdout, stderr."""
    status = train.main(argv)
    out, err = capsys.readouterr()
    return status, out, err


# ----------------------------------------------------------------- item 7: a loss the model cannot train with
@pytest.mark.parametrize("agent,loss", [("gnn", "unsupervised"), ("mlp", "reinforce")])
def test_a_loss_the_model_does_not_train_with_is_refused_before_any_work(agent, loss, tmp_path, capsys, monkeypatch):
    from agents.learning import trainer

    monkeypatch.setattr(trainer, "make_dataset", lambda *a, **k: pytest.fail("labels were built"))
    status, out, err = run_train(["--agent", agent, "--loss", loss, "--epochs", "2", "--out", str(tmp_path / "runs"),
                                  "--cache-dir", str(tmp_path / "cache"), *TINY], capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert f"not {loss!r}" in err and not (tmp_path / "runs").exists()
    with pytest.raises(ValueError, match="trains with"):
        TrainSettings(agent=agent, loss=loss)


# ----------------------------------------------------------------- item 5: two trainings on one run folder
def mlp_run(tmp_path: Path) -> Path:
    return tmp_path / "runs" / "mlp" / "6-2-4-2" / "unsupervised-seed0"


def test_a_run_folder_held_by_a_live_training_is_refused_with_one_line(tmp_path, capsys):
    run_dir = mlp_run(tmp_path)
    run_dir.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run_dir / ".cfpilot.lock").write_text(json.dumps({"host": os.uname().nodename, "pid": holder.pid,
                                                           "started": "now"}))
        status, out, err = run_train(["--agent", "mlp", "--epochs", "1", "--out", str(tmp_path / "runs"),
                                      "--cache-dir", str(tmp_path / "cache"), *TINY], capsys)
    finally:
        holder.kill()
        holder.wait()
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "in use by another train.py run" in err and f"pid {holder.pid}" in err
    assert sorted(p.name for p in run_dir.iterdir()) == [".cfpilot.lock"]  # nothing trained, the lock left alone


def test_training_holds_the_lock_and_a_crashed_runs_lock_is_taken_over(tmp_path, capsys, monkeypatch):
    from agents.learning import trainer

    run_dir = mlp_run(tmp_path)
    run_dir.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run_dir / ".cfpilot.lock").write_text(json.dumps({"host": os.uname().nodename, "pid": dead.pid}))
    held = []
    finish = trainer._finish
    monkeypatch.setattr(trainer, "_finish", lambda *a: held.append(json.loads((run_dir / ".cfpilot.lock")
                                                                              .read_text())["pid"]) or finish(*a))
    status, out, err = run_train(["--agent", "mlp", "--epochs", "1", "--out", str(tmp_path / "runs"),
                                  "--cache-dir", str(tmp_path / "cache"), *TINY], capsys)
    assert status == 0, err
    assert held == [os.getpid()] and not (run_dir / ".cfpilot.lock").exists()


def test_two_trainings_started_together_one_refuses(tmp_path):
    args = [sys.executable, "train.py", "--agent", "mlp", "--out", str(tmp_path / "runs"), "--cache-dir",
            str(tmp_path / "cache"), "--sizes", "6,2,4,2", "--train-snapshots", "1024", "--val-snapshots", "16",
            "--no-progress"]
    env = {**os.environ, "NUMBA_NUM_THREADS": "1"}
    runs = [subprocess.Popen([*args, "--epochs", str(e)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for e in (3, 6)]
    done = [(p.wait(timeout=300), *p.communicate()) for p in runs]
    assert sorted(status for status, _, _ in done) == [0, 2], done
    refused = next(err for status, _, err in done if status == 2)
    assert len(refused.strip().splitlines()) == 1, refused
    # the lock refuses a run that overlaps (the manifest check, a run that starts after the other finished)
    assert "in use by another train.py run" in refused or "trained with other settings" in refused
    epochs = next(e for e, (status, _, _) in zip((3, 6), done) if status == 0)
    assert len(json.loads((mlp_run(tmp_path) / "history.json").read_text())) == epochs  # one run's, whole
    assert len(list(mlp_run(tmp_path).glob("events.out.tfevents.*"))) == 2  # one run's: its scalars + hparams


# ----------------------------------------------------------------- item 6: an SB3 model is never silently replaced
def test_sb3_training_over_a_finished_model_of_other_settings_is_refused(tmp_path, capsys):
    common = ["--agent", "ppo", "--sizes", "6,1,4,2", "--n-envs", "16", "--out", str(tmp_path), "--no-progress"]
    assert run_train([*common, "--total-timesteps", "192"], capsys)[0] == 0
    run_dir = tmp_path / "ppo" / "6-1-4-2" / "rl-seed0"
    before = {p.name: p.read_bytes() for p in run_dir.glob("*.*")}
    status, out, err = run_train([*common, "--total-timesteps", "128"], capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "holds a model trained with other settings (total_timesteps 192 -> 128)" in err
    assert {p.name: p.read_bytes() for p in run_dir.glob("*.*")} == before
    status, out, err = run_train([*common, "--total-timesteps", "192"], capsys)  # the same settings: nothing to do
    assert status == 0 and "nothing to do" in out, err
    assert json.loads(out.strip().splitlines()[-1])["run_dir"] == str(run_dir)
    assert {p.name: p.read_bytes() for p in run_dir.glob("*.*")} == before


# ----------------------------------------------------------------- item 8: non-finite or unreadable weights
class Payload:
    """Runs code when unpickled (a naive ``pickle.load`` would print)."""

    def __reduce__(self):
        return (print, ("PAYLOAD RAN",))


def tiny_settings(tmp_path: Path, **overrides) -> TrainSettings:
    base = dict(agent="mlp", size=(6, 2, 4, 2), train_snapshots=32, val_snapshots=16, epochs=2, batch_size=16,
                runs_dir=tmp_path / "runs", cache_dir=tmp_path / "cache", progress=False)
    return TrainSettings(**{**base, **overrides})


@pytest.fixture
def finished(tmp_path):
    """A trained tiny mlp's run folder."""
    from agents.learning import train

    return Path(train(tiny_settings(tmp_path))["run_dir"])


def test_non_finite_weights_are_refused_on_load_naming_the_file(finished):
    import torch

    from agents.neural import NeuralAgent

    state = torch.load(finished / "weights.pt", weights_only=True)
    torch.save({k: torch.full_like(v, float("nan")) for k, v in state.items()}, finished / "weights.pt")
    with pytest.raises(ValueError, match=r"weights\.pt holds non-finite weights") as err:
        NeuralAgent.load(finished)
    assert str(finished / "weights.pt") in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("corrupt", ["payload", "truncated", "empty", "not a dict"])
def test_resume_from_an_unreadable_checkpoint_is_one_line(tmp_path, capsys, corrupt):
    import pickle

    import torch

    from agents.learning import train

    settings = tiny_settings(tmp_path, epochs=3)
    monkey = pytest.MonkeyPatch()
    monkey.setattr("agents.learning.trainer._finish", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        train(settings)  # three epochs, checkpointed, then cut before the model is saved
    monkey.undo()
    checkpoint = settings.run_dir / "checkpoint.pt"
    data = checkpoint.read_bytes()
    checkpoint.write_bytes({"payload": pickle.dumps(Payload()), "truncated": data[:len(data) // 2], "empty": b"",
                            "not a dict": b""}[corrupt])
    if corrupt == "not a dict":
        torch.save([1, 2], checkpoint)
    capsys.readouterr()
    status, out, err = run_train(["--agent", "mlp", "--epochs", "3", "--batch-size", "16", "--resume",
                                  "--out", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"), *TINY],
                                 capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert str(checkpoint) in err and "PAYLOAD RAN" not in out + err
    assert checkpoint.exists() and not (settings.run_dir / "weights.pt").exists()


@pytest.fixture
def ppo_run(tmp_path):
    """A tiny trained ppo's run folder."""
    import agents
    from cfenv import SystemConfig

    cfg = SystemConfig.from_size((6, 1, 4, 2))
    summary = agents.make("ppo", config=cfg, seed=0).fit(cfg, total_timesteps=256, n_envs=16, runs_dir=tmp_path,
                                                         progress=False, val_snapshots=8)
    return Path(summary["run_dir"])


def tamper(run_dir: Path, **hyperparameters) -> None:
    meta = json.loads((run_dir / "config.json").read_text())
    meta["hyperparameters"].update(hyperparameters)
    (run_dir / "config.json").write_text(json.dumps(meta))


def test_rl_config_asking_for_a_huge_policy_is_refused_before_building(ppo_run, monkeypatch):
    from agents import rl

    monkeypatch.setattr(rl.RLAgent, "_build", lambda *a, **k: pytest.fail("the model was built"))
    tamper(ppo_run, net_arch=[4096] * 8)
    with pytest.raises(ValueError, match=r"ppo at \(M, L, K, tau_p\) = \(6, 1, 4, 2\) would have [\d,]+ parameters, "
                                         r"above the cap"):
        rl.RLAgent.load(ppo_run)
    tamper(ppo_run, net_arch={"pi": [128], "vf": [64, 64]})  # within the cap, not what policy.pt holds
    with pytest.raises(ValueError, match=r"policy\.pt does not fit the model of .*config\.json: .*policy_net"):
        rl.RLAgent.load(ppo_run)


def test_rl_policy_of_non_finite_weights_is_refused(ppo_run):
    import torch

    from agents import rl

    state = torch.load(ppo_run / "policy.pt", weights_only=True)
    state["action_net.bias"][0] = float("inf")
    torch.save(state, ppo_run / "policy.pt")
    with pytest.raises(ValueError, match=r"policy\.pt holds non-finite weights \(NaN or infinity in 'action_net"):
        rl.RLAgent.load(ppo_run)


def test_sb3_training_cut_before_its_first_validation_says_so_and_leaves_no_folder(tmp_path, capsys, monkeypatch):
    from agents import rl

    monkeypatch.setattr(rl.zoo, "make_vec_env", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    status, out, err = run_train(["--agent", "ppo", "--sizes", "6,1,4,2", "--total-timesteps", "2000",
                                  "--out", str(tmp_path / "runs"), "--no-progress"], capsys)
    assert status == 130
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted" in lines[0] and "no checkpoint was written" in lines[0], out
    assert "python train.py --agent ppo --sizes 6,1,4,2" in lines[0]
    assert not (tmp_path / "runs").exists()  # no empty folder left behind


def test_train_ctrl_c_while_starting_is_one_line(tmp_path):
    """SIGINT while train.py loads its packages and checks its settings: one line, exit 130, nothing written."""
    returncode, err = interrupted_while_starting("train.py", "--agent", "mlp", "--sizes", "6,1,4,2", "--epochs", "1",
                                                 "--out", str(tmp_path / "runs"), "--no-progress")
    assert returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_a_run_folder_with_config_but_no_weights_is_named_as_damaged(tmp_path, capsys):
    """--resume over a folder whose weights.pt went missing: one line naming the damaged model (it read
    as a full disk: 'could not write ... free space')."""
    argv = ["--agent", "mlp", "--sizes", "6,1,4,2", "--epochs", "1", "--train-snapshots", "32",
            "--val-snapshots", "8", "--out", str(tmp_path), "--no-progress", "--cache-dir", str(tmp_path / "c")]
    assert train.main(argv) == 0
    (next(tmp_path.rglob("weights.pt"))).unlink()
    capsys.readouterr()
    assert train.main([*argv, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "no weights.pt" in err and "free space" not in err
