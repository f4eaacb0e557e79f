"""Faults at the edges of a run: a malformed sweep file is one error line from ``train.py``
before any work (and YAML never constructs objects); the workers of a ``processes`` pool end
when their driver is killed with ``kill -9``."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import train
from agents.lab import sweep
from agents.lab.outdir import pid_alive as alive
from agents.lab.sweep import load_sweep
from agents.learning.trainer import EPOCH_METRICS as METRICS

ROOT = Path(__file__).resolve().parents[1]

HEAD = ('agent: mlp\nsizes: ["6,1,4,2"]\nname: tiny\n'
        'fixed: {train_snapshots: 64, val_snapshots: 32, epochs: 2}\n')
"""a valid sweep file's head; each malformed case changes one thing"""
S = HEAD + "search:\n  "
"""a valid head, then one search key"""
GRID = "search:\n  lr: [0.02, 0.002]\n"
JSON_SWEEP = {"agent": "mlp", "sizes": ["6,1,4,2"], "name": "tiny",
              "fixed": {"train_snapshots": 64, "val_snapshots": 32, "epochs": 2},
              "search": {"lr": [0.02, 0.002]}}

MALFORMED = [  # (file name, content, words the one error line must hold)
    ("syntax.yaml", S + "lr: [0.02, 0.002\n", ["syntax.yaml", "not valid YAML", "line"]),
    ("empty-grid.yaml", S + "lr: []\n", ["search.lr", "empty list"]),
    ("loguniform-scalar.yaml", S + "lr: {loguniform: 0.1}\n", ["search.lr", "loguniform", "[lo, hi]"]),
    ("loguniform-three.yaml", S + "lr: {loguniform: [0.001, 0.01, 0.1]}\n", ["search.lr", "[lo, hi]"]),
    ("loguniform-reversed.yaml", S + "lr: {loguniform: [0.1, 0.001]}\n", ["search.lr", "lo < hi"]),
    ("loguniform-zero.yaml", S + "lr: {loguniform: [0, 0.1]}\n", ["search.lr", "positive"]),
    ("randint-floats.yaml", S + "seed: {randint: [0.5, 3]}\n", ["search.seed", "randint", "integers"]),
    ("empty-choice.yaml", S + "batch_size: {choice: []}\n", ["search.batch_size", "choice", "non-empty"]),
    ("unknown-sampler.yaml", S + "lr: {normal: [0, 1]}\n", ["search.lr", "loguniform"]),
    ("scalar-search.yaml", S + "lr: 0.01\n", ["search.lr", "fixed"]),
    ("search-list.yaml", HEAD + "search: [lr]\n", ["search", "mapping"]),
    ("num-samples-string.yaml", HEAD + GRID + 'num_samples: "3"\n', ["num_samples", "integer", "'3'"]),
    ("num-samples-zero.yaml", HEAD + GRID + "num_samples: 0\n", ["num_samples", ">= 1", "0"]),
    ("metric-number.yaml", HEAD + GRID + "metric: 5\n", ["metric", "val/sum_rate_mbps", "got 5"]),
    ("metric-unknown.yaml", HEAD + GRID + "metric: val/accuracy\n", ["metric", "val/accuracy"]),
    ("mode-up.yaml", HEAD + GRID + "mode: up\n", ["mode", "'max' or 'min'", "'up'"]),
    ("unknown-key.yaml", HEAD + GRID + "learning_rate: 0.1\n", ["unknown sweep key", "learning_rate"]),
    ("numeric-key.yaml", HEAD + GRID + "1: x\n", ["unknown sweep key", "'1'"]),
    ("yaml-exponent.yaml", HEAD.replace("epochs: 2}", "epochs: 2, lr: 1e-3}") + "search:\n  seed: [0, 1]\n",
     ["fixed.lr", "number", "1.0e-3"]),
    ("int-string.yaml", S + "batch_size: ['16', '32']\n", ["search.batch_size", "integer", "'16'"]),
    ("bad-grid-value.yaml", S + "batch_size: [16, 0]\n", ["search.batch_size = 0", "batch_size"]),
    ("sizes-short.yaml", HEAD.replace('["6,1,4,2"]', "[[6, 1, 4]]") + GRID, ["sizes", "[6, 1, 4]"]),
    ("sizes-number.yaml", HEAD.replace('["6,1,4,2"]', "5") + GRID, ["sizes", "got 5"]),
    ("scheduler-option.yaml", HEAD + GRID + "scheduler: {type: asha, grace: 1}\n", ["scheduler", "grace"]),
    ("scheduler-type.yaml", HEAD + GRID + "scheduler: {type: hyperband}\n", ["scheduler type", "hyperband"]),
    ("name-path.yaml", HEAD.replace("name: tiny", "name: ../elsewhere") + GRID, ["name", "../elsewhere"]),
    ("cpus.yaml", HEAD + GRID + "cpus_per_trial: 0\n", ["cpus_per_trial"]),
    ("list.yaml", "- agent: mlp\n", ["list.yaml", "mapping"]),
    ("empty.yaml", "", ["empty.yaml", "mapping"]),
    ("python-tag.yaml", HEAD + GRID + "extra: !!python/object/apply:os.getcwd []\n",
     ["python-tag.yaml", "not valid YAML", "constructor"]),
    ("syntax.json", json.dumps(JSON_SWEEP)[:-1], ["syntax.json", "not valid JSON", "line 1"]),
    ("latin1.yaml", (HEAD + GRID).replace("tiny", "caf\xe9").encode("latin-1"), ["latin1.yaml", "not UTF-8"]),
    ("latin1.json", json.dumps({**JSON_SWEEP, "name": "caf\xe9"}, ensure_ascii=False).encode("latin-1"),
     ["latin1.json", "not UTF-8"]),
]


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def one_error_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert train.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("train.py: error: ") and captured.out == ""
    return lines[0]


@pytest.fixture
def no_work(monkeypatch):
    """Validation comes first: a malformed sweep never reaches run_sweep, Ray or a folder."""
    def refuse(*_, **__):
        pytest.fail("a malformed sweep reached run_sweep")

    monkeypatch.setattr(sweep, "run_sweep", refuse)


def test_the_valid_head_loads(tmp_path):
    """The malformed cases differ from a valid file by one thing."""
    pytest.importorskip("yaml")
    spec = load_sweep(write(tmp_path / "ok.yaml", HEAD + GRID))
    assert spec.agent == "mlp" and spec.sizes == [(6, 1, 4, 2)] and spec.search == {"lr": [0.02, 0.002]}
    assert load_sweep(write(tmp_path / "ok.json", json.dumps(JSON_SWEEP))).search == spec.search
    sampled = HEAD + GRID + "  seed: {randint: [0, 3]}\n  batch_size: {choice: [16, 32]}\nnum_samples: 2\n"
    assert load_sweep(write(tmp_path / "sampled.yaml", sampled)).num_samples == 2
    one = write(tmp_path / "one.yaml", HEAD.replace('["6,1,4,2"]', "[6, 1, 4, 2]") + GRID)
    assert load_sweep(one).sizes == [(6, 1, 4, 2)]


@pytest.mark.parametrize("name, content, needles", MALFORMED, ids=[case[0] for case in MALFORMED])
def test_a_malformed_sweep_file_is_one_error_line_before_any_work(name, content, needles, tmp_path, capsys,
                                                                  no_work):
    if name.endswith(".yaml"):
        pytest.importorskip("yaml")
    ray_loaded = "ray" in sys.modules
    path = write(tmp_path / name, content)
    out = tmp_path / "runs"
    line = one_error_line(["--sweep", str(path), "--out", str(out)], capsys)
    for needle in needles:
        assert needle in line
    assert not out.exists()
    assert ray_loaded or "ray" not in sys.modules  # parsing and checking need no Ray


def test_yaml_never_constructs_python_objects(tmp_path, capsys, no_work):
    pytest.importorskip("yaml")
    marker = tmp_path / "marker"
    payload = f"extra: !!python/object/apply:os.mkdir ['{marker}']\n"  # yaml.unsafe_load would run it
    path = write(tmp_path / "evil.yaml", HEAD + GRID + payload)
    one_error_line(["--sweep", str(path), "--out", str(tmp_path / "runs")], capsys)
    assert not marker.exists()
    # and the loader stays yaml.safe_load: no other yaml loading call in the module
    tree = ast.parse(Path(sweep.__file__).read_text())
    calls = {node.func.attr for node in ast.walk(tree) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
             and node.func.value.id == "yaml"}
    assert calls == {"safe_load"}


def test_the_sweep_metrics_are_what_the_trainer_logs(tmp_path):
    from agents.learning import TrainSettings
    from agents.learning import train as run_training

    seen: list[set[str]] = []
    run_training(TrainSettings(agent="mlp", size=(6, 1, 4, 2), train_snapshots=16, val_snapshots=8, epochs=1,
                               batch_size=8, runs_dir=tmp_path, cache_dir=tmp_path / "cache", progress=False),
                 on_epoch=lambda epoch, metrics: seen.append(set(metrics)))
    assert set(METRICS) <= seen[0]


DRIVER = '''
import json, os, sys, time
from multiprocessing import resource_tracker
from pathlib import Path

from agents.lab.executors import ProcessExecutor


def hold(folder):
    Path(folder, f"{os.getpid()}.worker").write_text("")
    time.sleep(120)
    return os.getpid()


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    resource_tracker.ensure_running()
    tracker = getattr(resource_tracker._resource_tracker, "_pid", None)
    (folder / "tracker.json").write_text(json.dumps(tracker))
    with ProcessExecutor(workers=2, retries=0) as executor:
        for _ in executor.map_unordered(hold, [str(folder), str(folder)]):
            pass
'''


def wait_until(condition, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


@pytest.mark.skipif(sys.platform == "win32", reason="kill -9 is POSIX")
def test_pool_workers_exit_when_their_driver_is_killed(tmp_path):
    """``kill -9`` of a driver blocked on a ProcessExecutor: its two busy workers and the
    resource tracker are gone within seconds (they lived on for minutes before)."""
    script = write(tmp_path / "driver.py", DRIVER)
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    log = (tmp_path / "driver.log").open("w")
    driver = subprocess.Popen([sys.executable, str(script), str(tmp_path)], cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": path}, stdout=log, stderr=subprocess.STDOUT)
    workers: list[int] = []
    try:
        def started() -> bool:
            return len(list(tmp_path.glob("*.worker"))) == 2 or driver.poll() is not None

        assert wait_until(started, 60) and driver.poll() is None, (tmp_path / "driver.log").read_text()
        workers = [int(p.stem) for p in tmp_path.glob("*.worker")]
        tracker = json.loads((tmp_path / "tracker.json").read_text())
        assert all(alive(pid) for pid in workers)
        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
        assert wait_until(lambda: not any(alive(pid) for pid in workers), 60), \
            f"workers {[pid for pid in workers if alive(pid)]} outlived their killed driver"
        if tracker is not None:  # the resource tracker ends once nobody holds its pipe
            assert wait_until(lambda: not alive(tracker), 60), f"resource tracker {tracker} outlived the pool"
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        log.close()
        for pid in workers:  # only ours, by pid, should the test have failed
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
