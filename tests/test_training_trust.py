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
