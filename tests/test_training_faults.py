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

