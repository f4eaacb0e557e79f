"""evaluate.py --snapshots-file: the user's own fading (agents/lab/datafile.py, docs/data.md)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import evaluate
from agents.lab.datafile import load_snapshots_file
from agents.lab.evaluation import EvaluationSettings
from cfenv import SystemConfig, sum_rate
from examples import make_snapshots

ROOT = Path(__file__).resolve().parents[1]
CHEAP = "master-ap,local-search,location"


def make(tmp_path: Path, name: str = "my", *extra: str) -> Path:
    return make_snapshots.main(["--out", str(tmp_path / f"{name}.npz"), "--snapshots", "3", "--aps", "9",
                                "--users", "6", "--tau-p", "3", *extra])


def run(path: Path, out: Path, *extra: str, agents: str = CHEAP) -> list[dict]:
    assert evaluate.main(["--agents", agents, "--snapshots-file", str(path), "--out", str(out), "--no-progress",
                          *extra]) == 0
    return json.loads((out / "results.json").read_text())


def test_end_to_end_on_the_example_file(tmp_path):
    path = make(tmp_path)
    records = run(path, tmp_path / "out")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    beta = np.load(path)["beta"]
    config = SystemConfig(M=9, L=2, K=6, tau_p=3, area_side_m=500.0, wrap_around=False)
    assert [r["agent"] for r in records] == CHEAP.split(",")
    for r in records:
        assert r["status"] == "ok" and (r["M"], r["L"], r["K"], r["tau_p"]) == config.size and r["snapshots"] == 3
        assert r["snapshots_sha256"] == digest and r["snapshots_file"] == str(path.resolve())
        rates = sum_rate(beta, np.array(r["per_snapshot_assignments"]), config) / 1e6
        np.testing.assert_allclose(rates, r["per_snapshot_sum_rate_mbps"], rtol=1e-12)
    table = (tmp_path / "out" / "results.md").read_text()
    assert digest in table and "come from cfpilot's simulator" not in table  # the user's fading, not ours
    run_json = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run_json["test_snapshots_sha256"] == digest and "test_snapshot_seeds" not in run_json
    assert run_json["settings"]["snapshots_fields"]["area_side_m"] == 500.0
    saved = np.load(tmp_path / "out" / "snapshots.npz")
    np.testing.assert_array_equal(saved["9-2-6-3/beta"], beta)
    assert "file[2]" in (tmp_path / "out" / "per_snapshot.csv").read_text()


def test_without_positions_position_agents_are_skipped_with_the_reason(tmp_path):
    path = make(tmp_path, "bare", "--no-positions")
    records = {r["agent"]: r for r in run(path, tmp_path / "out", agents="master-ap,location,kmeans")}
    assert records["master-ap"]["status"] == "ok"
    for name in ("location", "kmeans"):
        assert records[name]["status"] == "skipped" and "needs AP and user positions" in records[name]["reason"]


def test_sizes_from_the_command_line_must_match_the_file(tmp_path):
    path = make(tmp_path)
    path.with_suffix(".json").write_text(json.dumps({"area_side_m": 500.0}))  # no L, tau_p
    with pytest.raises(ValueError, match="L and tau_p not given"):
        EvaluationSettings(agents=["master-ap"], sizes=[], snapshots_file=path).prepare()
    settings = EvaluationSettings(agents=["master-ap"], sizes=[(9, 1, 6, 2), (9, 1, 6, 4)], snapshots_file=path).prepare()
    assert settings.sizes == [(9, 1, 6, 2), (9, 1, 6, 4)] and settings.snapshots == 3
    assert settings.system_config((9, 1, 6, 2)).area_side_m == 500.0
    with pytest.raises(ValueError, match=r"does not match my.npz, whose beta has \(M, K\) = \(9, 6\)"):
        EvaluationSettings(agents=["master-ap"], sizes=[(10, 2, 6, 3)], snapshots_file=path).prepare()
    path.with_suffix(".json").write_text(json.dumps({"L": 2, "tau_p": 3}))
    with pytest.raises(ValueError, match="sets tau_p=4, the sidecar"):
        EvaluationSettings(agents=["master-ap"], sizes=[(9, 2, 6, 4)], snapshots_file=path).prepare()


def test_explicit_sidecar_and_the_digest_in_the_fingerprint(tmp_path):
    path = make(tmp_path)
    other = tmp_path / "elsewhere.json"
    other.write_text(json.dumps({"L": 1, "tau_p": 2}))
    settings = EvaluationSettings(agents=["master-ap"], sizes=[], snapshots_file=path,
                                  snapshots_config=other).prepare()
    assert settings.sizes == [(9, 1, 6, 2)]
    same = EvaluationSettings(agents=["master-ap"], sizes=[], snapshots_file=path).prepare()
    copy = tmp_path / "copy" / "my.npz"
    copy.parent.mkdir()
    copy.write_bytes(path.read_bytes())
    copy.with_suffix(".json").write_bytes(path.with_suffix(".json").read_bytes())
    moved = EvaluationSettings(agents=["master-ap"], sizes=[], snapshots_file=copy).prepare()
    assert moved.fingerprint() == same.fingerprint()  # the same bytes are the same test set
    make(tmp_path / "b", "my", "--seed", "1")
    changed = EvaluationSettings(agents=["master-ap"], sizes=[], snapshots_file=tmp_path / "b" / "my.npz").prepare()
    assert changed.fingerprint() != same.fingerprint()
    drawn = EvaluationSettings(agents=["master-ap"], sizes=[(9, 2, 6, 3)], snapshots=3)
    assert drawn.fingerprint() != same.fingerprint()


def test_resume_reuses_chunks_of_the_same_file_only(tmp_path, capsys):
    path = make(tmp_path)
    out = tmp_path / "out"
    first = run(path, out, agents="master-ap")
    capsys.readouterr()
    assert run(path, out, "--resume", agents="master-ap") == first
    assert "1 reused" in capsys.readouterr().out
    make(tmp_path, "my", "--seed", "1")  # other fading at the same path: another run
    assert evaluate.main(["--agents", "master-ap", "--snapshots-file", str(path), "--out", str(out),
                          "--no-progress", "--resume", "--overwrite"]) == 0
    assert "0 reused" in capsys.readouterr().out


def test_a_file_changed_during_the_run_is_refused(tmp_path):
    from agents.lab.datafile import snapshots_file

    path = make(tmp_path)
    loaded = load_snapshots_file(path)
    make(tmp_path, "my", "--seed", "1")
    with pytest.raises(ValueError, match="changed since the run started"):
        snapshots_file(path, None, loaded.sha256)


def write(tmp_path: Path, sidecar: object = None, name: str = "f.npz", **arrays: object) -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    if sidecar is not None:
        path.with_suffix(".json").write_text(sidecar if isinstance(sidecar, str) else json.dumps(sidecar))
    return path


GOOD = {"L": 2, "tau_p": 3}
BETA = np.full((2, 4, 3), 1e-9)
AP, UE = np.full((2, 4, 2), 10.0), np.full((2, 3, 2), 20.0)


@pytest.mark.parametrize("arrays,sidecar,needle", [
    ({"gain": BETA}, GOOD, "unknown array 'gain'"),
    ({"ap_positions": AP, "ue_positions": UE}, GOOD, "has no array 'beta'"),
    ({"beta": BETA[0]}, GOOD, "beta must be 3-D (S, M, K), got shape (4, 3)"),
    ({"beta": BETA[:0]}, GOOD, "needs at least one snapshot"),
    ({"beta": np.where(np.arange(3) == 1, np.nan, BETA)}, GOOD, "NaN or inf"),
    ({"beta": BETA * 2e9}, GOOD, "at most 1"),
    ({"beta": BETA * 0}, GOOD, "strictly positive"),
    ({"beta": BETA.astype(np.int64)}, GOOD, "float32/float64"),
    ({"beta": BETA, "ap_positions": AP}, GOOD, "has ap_positions but not ue_positions"),
    ({"beta": BETA, "ap_positions": AP, "ue_positions": UE[:, :2]}, GOOD, "ue_positions must have shape (2, 3, 2)"),
    ({"beta": BETA, "ap_positions": AP + 2000.0, "ue_positions": UE}, GOOD, "inside the area [0, D] = [0, 1000] m"),
    ({"beta": BETA, "ap_positions": AP, "ue_positions": UE}, {**GOOD, "area_side_m": 15.0}, "inside the area"),
    ({"beta": np.array([[[None]]], dtype=object)}, GOOD, "cannot be read as plain arrays"),
    ({"beta": BETA}, {**GOOD, "bandwith_hz": 1e6}, "unknown SystemConfig field 'bandwith_hz'"),
    ({"beta": BETA}, [2, 3], "must be a JSON object"),
    ({"beta": BETA}, "{L: 2}", "is not valid JSON"),
    ({"beta": BETA}, '{"L": 2, "tau_p": 3, "bandwidth_hz": NaN}', "NaN is not a JSON number"),
    ({"beta": BETA}, {"L": 2, "tau_p": 0}, "tau_p must be an integer >= 1"),
    ({"beta": BETA}, {**GOOD, "K": 4}, "sets K=4, but f.npz's beta has K=3"),
])
def test_bad_files_are_one_line_errors(tmp_path, arrays, sidecar, needle):
    path = write(tmp_path, sidecar, **arrays)
    with pytest.raises(ValueError) as err:
        load_snapshots_file(path)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_not_an_npz(tmp_path):
    (tmp_path / "x.npz").write_text("beta = 1")
    with pytest.raises(ValueError, match="is not a .npz archive"):
        load_snapshots_file(tmp_path / "x.npz")
    np.save(tmp_path / "y.npy", BETA)
    with pytest.raises(ValueError, match=r"must be a .npz"):
        load_snapshots_file(tmp_path / "y.npy")
    with pytest.raises(ValueError, match="does not exist"):
        load_snapshots_file(tmp_path / "missing.npz")


def test_float32_file_and_positions_are_read(tmp_path):
    path = write(tmp_path, GOOD, beta=BETA.astype(np.float32), ap_positions=AP, ue_positions=UE)
    data = load_snapshots_file(path)
    assert data.beta.dtype == np.float64 and data.shape == (2, 4, 3) and data.has_positions
    assert data.sizes() == [(4, 2, 3, 3)] and data.sidecar == path.with_suffix(".json").resolve()


@pytest.mark.parametrize("args,needle", [
    (["--snapshots", "2"], "--snapshots does not apply with --snapshots-file"),
    (["--sizes", "10,2,6,3"], "does not match f.npz"),
    (["--snapshots-config", "nope.json"], "does not exist"),
])
def test_cli_errors_are_one_line_before_any_work(tmp_path, args, needle):
    path = write(tmp_path, GOOD, beta=BETA)
    out = subprocess.run([sys.executable, "evaluate.py", "--agents", "master-ap", "--snapshots-file", str(path),
                          "--out", str(tmp_path / "out"), *args], cwd=ROOT, capture_output=True, text=True, check=False)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], out.stderr
    assert not (tmp_path / "out").exists()


def test_snapshots_config_needs_a_file():
    with pytest.raises(ValueError, match="needs snapshots_file"):
        EvaluationSettings(agents=["master-ap"], snapshots_config=Path("x.json"))


def test_processes_executor_reads_the_file_in_its_workers(tmp_path):
    path = make(tmp_path)
    local = run(path, tmp_path / "local", "--chunk-size", "2", agents="master-ap,local-search")
    pooled = run(path, tmp_path / "pool", "--chunk-size", "2", "--executor", "processes", "--workers", "2",
                 agents="master-ap,local-search")
    for a, b in zip(local, pooled):
        assert a["per_snapshot_assignments"] == b["per_snapshot_assignments"]
        assert a["per_snapshot_sum_rate_mbps"] == b["per_snapshot_sum_rate_mbps"]


def test_learning_agents_use_their_model_trained_on_the_synthetic_model_at_the_files_size(tmp_path):
    path = make(tmp_path)
    runs = tmp_path / "runs"
    records = {r["agent"]: r for r in run(path, tmp_path / "none", "--no-train", "--checkpoints", str(runs),
                                          agents="master-ap,mlp")}
    assert records["mlp"]["status"] == "skipped" and "no checkpoint" in records["mlp"]["reason"]
    trained = subprocess.run([sys.executable, "train.py", "--agent", "mlp", "--sizes", "9,2,6,3", "--train-snapshots",
                              "32", "--val-snapshots", "8", "--epochs", "1", "--out", str(runs), "--no-progress"],
                             cwd=ROOT, capture_output=True, text=True, check=False)
    assert trained.returncode == 0, trained.stderr
    records = {r["agent"]: r for r in run(path, tmp_path / "out", "--no-train", "--checkpoints", str(runs),
                                          agents="master-ap,mlp")}
    assert records["mlp"]["status"] == "ok" and records["mlp"]["trained_at"] == [9, 2, 6, 3]
