"""Tables that stay trustworthy: the output folder is never emptied blindly, one run holds it at
a time, resumed chunks are checked before they are published, and the statistics are pinned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

import evaluate
from agents.lab.outdir import LOCK, MANIFEST
from agents.lab.results import add_ratios, cell_record
from agents.lab.stats import ci95
from cfenv.channel import Snapshot

GRID = ["--agents", "random,master-ap,local-search", "--sizes", "6,1,4,2", "--snapshots", "8", "--chunk-size", "4",
        "--no-progress"]


def run(out: Path, *extra: str) -> list[dict]:
    assert evaluate.main([*GRID, "--out", str(out), *extra]) == 0
    return json.loads((out / "results.json").read_text())


def rates_of(records: list[dict]) -> dict:
    return {r.get("agent_target", r["agent"]): (r["per_snapshot_sum_rate_mbps"], r["per_snapshot_assignments"]) for r in records}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    return rates_of(run(tmp_path_factory.mktemp("ref") / "out"))


def test_a_rerun_deletes_only_the_files_it_wrote(tmp_path, reference):
    out = tmp_path / "out"
    run(out)
    thesis = out / "cells" / "thesis" / "chapter1.tex"
    thesis.parent.mkdir(parents=True)
    thesis.write_text("my thesis")
    notes = out / "notes.txt"
    notes.write_text("keep me")
    assert rates_of(run(out)) == reference
    assert thesis.read_text() == "my thesis" and notes.read_text() == "keep me"


def test_a_folder_of_other_settings_is_refused_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    run(out)
    with pytest.raises(SystemExit) as refused:
        evaluate.main([*GRID, "--out", str(out), "--seed", "3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert refused.value.code == 2 and len(err) == 1 and "seed" in err[0] and "--overwrite" in err[0]
    run(out, "--seed", "3", "--overwrite")
    assert json.loads((out / MANIFEST).read_text())["settings"]["seed"] == 3


def test_results_without_a_manifest_are_not_overwritten(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("[]")
    with pytest.raises(SystemExit):
        evaluate.main([*GRID, "--out", str(out)])
    assert "no cfpilot manifest" in capsys.readouterr().err
    assert (out / "results.json").read_text() == "[]"


def test_a_second_run_refuses_a_folder_held_by_a_live_run(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK).write_text(json.dumps({"host": os.uname().nodename, "pid": holder.pid, "started": "now"}))
        with pytest.raises(SystemExit) as refused:
            evaluate.main([*GRID, "--out", str(out)])
        assert refused.value.code == 2 and f"pid {holder.pid}" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    run(out)  # the holder died: its lock is stale and taken over
    assert not (out / LOCK).exists()


def test_out_naming_a_file_is_a_one_line_error(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(SystemExit):
        evaluate.main([*GRID, "--out", str(target)])
    assert "is a file" in capsys.readouterr().err and target.read_text() == "x"


def test_the_default_out_is_named_by_the_settings_and_linked_as_latest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert evaluate.main(GRID) == 0
    assert evaluate.main([*GRID, "--seed", "1"]) == 0
    runs = sorted(p.name for p in (tmp_path / "results").iterdir() if p.name.startswith("run-"))
    assert len(runs) == 2  # the second run did not replace the first
    latest = tmp_path / "results" / "latest"
    assert latest.is_symlink() and json.loads((latest / MANIFEST).read_text())["settings"]["seed"] == 1


TAMPER = {
    "rates x10": lambda cell, other: cell["result"].update(rates=[10 * r for r in cell["result"]["rates"]]),
    "NaN rate": lambda cell, other: cell["result"]["rates"].__setitem__(0, float("nan")),
    "short list": lambda cell, other: cell["result"].update(rates=cell["result"]["rates"][:2]),
    "pilot 99": lambda cell, other: cell["result"]["pilots"][0].__setitem__(0, 99),
    "pilots not matching rates": lambda cell, other: cell["result"].update(pilots=other["result"]["pilots"]),
    "copied from another agent": lambda cell, other: cell.update(other),
    "fake skipped": lambda cell, other: cell["result"].update(status="skipped", reason="fake"),
    "negative elapsed": lambda cell, other: cell["result"].update(elapsed_s=-1.0),
}


@pytest.mark.parametrize("how", list(TAMPER))
def test_a_tampered_chunk_is_recomputed_not_published(tmp_path, reference, how, capsys):
    out = tmp_path / "out"
    run(out)
    path = out / "cells" / "6-1-4-2" / "local-search" / "0-4.json"
    other = json.loads((out / "cells" / "6-1-4-2" / "random" / "0-4.json").read_text())
    cell = json.loads(path.read_text())
    TAMPER[how](cell, other)
    path.write_text(json.dumps(cell))
    capsys.readouterr()
    assert rates_of(run(out, "--resume")) == reference
    assert "recomputing local-search@6,1,4,2#0-4" in capsys.readouterr().out
    stats = json.loads((out / "run.json").read_text())["tasks"]
    assert (stats["reused"], stats["computed"]) == (5, 1)


# ---------------------------------------------------------------- statistics pinned
def test_the_confidence_interval_is_the_normal_one_of_the_mean():
    x = np.random.default_rng(0).normal(100.0, 7.0, size=37)
    expected = scipy.stats.norm.ppf(0.975) * scipy.stats.sem(x)
    assert ci95(x) == pytest.approx(expected, rel=1e-12)
    assert np.isnan(ci95(x[:1]))


def test_cell_record_publishes_mean_and_ci_of_its_chunks():
    beta = np.random.default_rng(1).uniform(1e-12, 1e-9, size=(6, 4, 3))
    snaps = Snapshot(beta, np.zeros((6, 4, 2)), np.zeros((6, 3, 2)))
    rates = [10.0, 12.0, 11.0, 9.0, 13.0, 14.0]
    parts = [{"status": "ok", "train_time_s": None, "parameters": None, "elapsed_s": 0.1, "rates": rates[:3],
              "pilots": [[0, 1, 0]] * 3},
             {"status": "ok", "train_time_s": None, "parameters": None, "elapsed_s": 0.1, "rates": rates[3:],
              "pilots": [[0, 1, 1]] * 3}]
    record = cell_record("x", (4, 1, 3, 2), parts, None, snaps, 6, 0)
    assert record["mean_sum_rate_mbps"] == pytest.approx(np.mean(rates))
    assert record["ci95_mbps"] == pytest.approx(scipy.stats.norm.ppf(0.975) * scipy.stats.sem(rates))


def test_without_epas_the_ratio_reference_is_the_best_agent():
    records = [{"agent": a, "status": "ok", "mean_sum_rate_mbps": m} for a, m in
               (("random", 90.0), ("local-search", 120.0), ("master-ap", 110.0))]
    records.append({"agent": "exhaustive", "status": "skipped", "mean_sum_rate_mbps": None})
    add_ratios(records)
    assert [r["ratio"] for r in records[:3]] == [90 / 120, 1.0, 110 / 120]
    assert records[0]["ratio_to"] == "best (local-search)" and records[3]["ratio"] is None
    with_epas = [dict(r) for r in records[:3]] + [{"agent": "exhaustive", "status": "ok", "mean_sum_rate_mbps": 125.0}]
    add_ratios(with_epas)
    assert with_epas[1]["ratio"] == 120 / 125 and with_epas[1]["ratio_to"] == "exhaustive"


def test_a_retrained_model_is_not_served_stale_chunks(tmp_path, capsys):
    import torch

    out, runs = tmp_path / "out", tmp_path / "runs"
    grid = ["--agents", "mlp", "--sizes", "6,1,4,2", "--snapshots", "4", "--no-progress", "--out", str(out),
            "--checkpoints", str(runs)]
    assert evaluate.main(grid) == 0
    weights = next(runs.rglob("weights.pt"))
    state = torch.load(weights, weights_only=True)
    state = {k: v + 0.5 if v.is_floating_point() else v for k, v in state.items()}
    torch.save(state, weights)
    capsys.readouterr()
    assert evaluate.main([*grid, "--resume"]) == 0
    assert "computed with another model" in capsys.readouterr().out
    assert json.loads((out / "run.json").read_text())["tasks"]["reused"] == 0


# ---------------------------------------------------------------- training runs
def tiny_settings(tmp_path: Path, **changes):
    from agents.learning import TrainSettings

    base = dict(agent="mlp", size=(6, 2, 4, 2), train_snapshots=32, val_snapshots=16, epochs=2, batch_size=16,
                runs_dir=tmp_path / "runs", cache_dir=tmp_path / "cache", progress=False)
    return TrainSettings(**{**base, **changes})


def test_resume_with_other_settings_is_refused_naming_them(tmp_path):
    from agents.learning import train
    from agents.learning.checkpoints import CONFIG_JSON

    train(tiny_settings(tmp_path))
    (tiny_settings(tmp_path).run_dir / CONFIG_JSON).unlink()  # as if cut after its last epoch
    with pytest.raises(ValueError, match=r"lr 0\.005 -> 0\.01.*epochs|epochs.*lr"):
        train(tiny_settings(tmp_path, resume=True, lr=0.01, epochs=3))


def test_a_finished_run_is_not_retrained_nor_rewritten(tmp_path, capsys):
    from agents.learning import train
    from agents.learning.checkpoints import CONFIG_JSON, WEIGHTS

    first = train(tiny_settings(tmp_path))
    run_dir = tiny_settings(tmp_path).run_dir
    before = {p.name: p.read_bytes() for p in (run_dir / CONFIG_JSON, run_dir / WEIGHTS)}
    again = train(tiny_settings(tmp_path, resume=True))
    assert again["already_trained"] and "nothing to do" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in (run_dir / CONFIG_JSON, run_dir / WEIGHTS)} == before
    assert again["final"] == first["final"]
    with pytest.raises(ValueError, match="other settings.*epochs 2 -> 5"):
        train(tiny_settings(tmp_path, epochs=5))


def test_a_dataset_cache_that_does_not_match_its_key_is_rebuilt(tmp_path, capsys):
    from agents.base import TRAIN_STREAM
    from agents.learning import make_dataset
    from cfenv.config import SystemConfig

    config = SystemConfig.from_size((6, 2, 4, 2))
    good = make_dataset(config, 32, 0, TRAIN_STREAM, "master-ap", tmp_path)
    path = next(tmp_path.glob("*.npz"))
    short = make_dataset(config, 5, 0, TRAIN_STREAM, "master-ap")
    np.savez(path, beta=short.snapshots.beta, ap_positions=short.snapshots.ap_positions,
             ue_positions=short.snapshots.ue_positions, labels=short.labels)
    again = make_dataset(config, 32, 0, TRAIN_STREAM, "master-ap", tmp_path)
    assert "rebuilt" in capsys.readouterr().out
    np.testing.assert_array_equal(again.labels, good.labels)
    assert len(again) == 32


def test_exhaustive_labels_continue_after_an_interruption(tmp_path, monkeypatch):
    from agents.base import TRAIN_STREAM
    from agents.learning import datasets
    from agents.search import ExhaustiveAgent
    from cfenv.config import SystemConfig

    config = SystemConfig.from_size((6, 2, 5, 2))
    reference = datasets.make_dataset(config, 20, 0, TRAIN_STREAM, "exhaustive")
    calls = {"n": 0}
    real = ExhaustiveAgent.assign

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 18:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ExhaustiveAgent, "assign", interrupted)
    with pytest.raises(KeyboardInterrupt):
        datasets.make_dataset(config, 20, 0, TRAIN_STREAM, "exhaustive", tmp_path)
    assert len(list(tmp_path.glob("*.partial.npz"))) == 1
    calls["n"] = -100
    again = datasets.make_dataset(config, 20, 0, TRAIN_STREAM, "exhaustive", tmp_path)
    assert calls["n"] == -100 + 3  # only the 3 missing snapshots were labelled
    np.testing.assert_array_equal(again.labels, reference.labels)
    assert not list(tmp_path.glob("*.partial.npz"))
