"""train.py's faults (issue #30): a corrupt dataset cache, a full disk, Ctrl-C at the end; one line, nothing lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from agents.learning import TrainSettings, train

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "NUMBA_NUM_THREADS": "1"}


def tiny_settings(tmp_path: Path, **overrides) -> TrainSettings:
    base = dict(agent="mlp", size=(6, 2, 4, 2), loss="supervised", train_snapshots=32, val_snapshots=16, epochs=2,
                batch_size=16, runs_dir=tmp_path / "runs", cache_dir=tmp_path / "cache", progress=False)
    return TrainSettings(**{**base, **overrides})


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(Path(run_dir) / "weights.pt", weights_only=True)


@pytest.mark.parametrize("cut", [0, 30, 0.5])
def test_a_truncated_dataset_cache_is_rebuilt(tmp_path, capsys, cut):
    first = train(tiny_settings(tmp_path / "a", cache_dir=tmp_path / "cache"))["run_dir"]
    caches = sorted((tmp_path / "cache").glob("*.npz"))
    assert len(caches) == 2  # the training set (with labels) and the validation set
    for path in caches:
        data = path.read_bytes()
        path.write_bytes(data[:int(len(data) * cut) if isinstance(cut, float) else cut])
    capsys.readouterr()
    second = train(tiny_settings(tmp_path / "b", cache_dir=tmp_path / "cache"))["run_dir"]
    assert capsys.readouterr().out.count("does not match its snapshots or labels: rebuilt") == 2
    for k, v in weights(first).items():
        assert torch.equal(v, weights(second)[k]), k


def train_cli(args: list[str], file_limit: int | None = None, **kwargs) -> subprocess.CompletedProcess:
    """``python train.py ARGS`` (with at most ``file_limit`` bytes per written file: a full disk)."""
    import resource

    def limit() -> None:
        if file_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          preexec_fn=limit, **kwargs)


def test_a_full_disk_is_one_line_and_resume_finishes_the_run(tmp_path):
    args = ["--agent", "mlp", "--sizes", "6,2,4,2", "--train-snapshots", "32", "--val-snapshots", "16", "--epochs",
            "2", "--out", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    train(tiny_settings(tmp_path / "warm", loss="unsupervised", cache_dir=tmp_path / "cache"))  # the cache fits
    full = train_cli(args, file_limit=8 * 1024)  # the first checkpoint does not
    assert full.returncode == 2 and len(full.stderr.strip().splitlines()) == 1, full.stderr
    assert "File too large" in full.stderr and "--resume" in full.stderr
    run_dir = tmp_path / "runs" / "mlp" / "6-2-4-2" / "unsupervised-seed0"
    assert not (run_dir / ".cfpilot.lock").exists()
    again = train_cli([*args, "--resume"])
    assert again.returncode == 0, again.stderr
    assert len(json.loads((run_dir / "history.json").read_text())) == 2 and (run_dir / "weights.pt").exists()


def test_a_full_disk_while_caching_the_dataset_is_one_line(tmp_path):
    out = train_cli(["--agent", "mlp", "--sizes", "6,2,4,2", "--train-snapshots", "512", "--epochs", "1", "--out",
                     str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"), "--no-progress"],
                    file_limit=16 * 1024)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "File too large" in out.stderr and "Traceback" not in out.stderr
    assert not any(p.is_file() for p in (tmp_path / "runs").rglob("*"))  # nothing half-written, no lock


LATE_CTRL_C = """
import os, runpy, signal, sys, threading, time

def late():  # Ctrl-C once the run is over and the interpreter shuts down
    while not threading._SHUTTING_DOWN:
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.5)

threading.Thread(target=late).start()
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path("train.py", run_name="__main__")
"""


def test_ctrl_c_after_the_run_finished_is_no_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-c", LATE_CTRL_C, "--agent", "mlp", "--sizes", "6,2,4,2", "--epochs", "1",
                          "--train-snapshots", "32", "--val-snapshots", "16", "--out", str(tmp_path / "runs"),
                          "--cache-dir", str(tmp_path / "cache"), "--no-progress"], cwd=ROOT, env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["run_dir"].endswith("unsupervised-seed0")


def test_ctrl_c_while_the_model_is_saved_says_how_to_continue(tmp_path, capsys, monkeypatch):
    import train as cli
    from agents.learning import trainer

    args = ["--agent", "mlp", "--sizes", "6,2,4,2", "--epochs", "2", "--train-snapshots", "32", "--val-snapshots",
            "16", "--batch-size", "16", "--loss", "supervised", "--out", str(tmp_path / "runs"), "--cache-dir",
            str(tmp_path / "cache"), "--no-progress"]
    save = trainer.save_model
    monkeypatch.setattr(trainer, "save_model", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    assert cli.main(args) == 130
    assert "continue with --resume" in capsys.readouterr().out
    monkeypatch.setattr(trainer, "save_model", save)
    assert cli.main([*args, "--resume"]) == 0
    run_dir = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_dir"]
    whole = train(tiny_settings(tmp_path / "whole", cache_dir=tmp_path / "cache"))["run_dir"]
    for k, v in weights(whole).items():
        assert torch.equal(v, weights(run_dir)[k]), k
