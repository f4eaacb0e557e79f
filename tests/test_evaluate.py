import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import evaluate
from agents.lab.evaluation import draw_test_snapshots, parse_sizes
from agents.lab.results import RECORD_FIELDS, TIMING_FIELDS
from cfenv import SystemConfig, sum_rate

ROOT = Path(__file__).resolve().parents[1]
HEURISTICS_AND_SEARCH = "random,greedy,master-ap,location,local-search,exhaustive"
TINY = ["--sizes", "4,1,3,2", "5,2,4,2", "--snapshots", "4", "--no-progress"]
JSON_KEYS = {"M", "L", "K", "tau_p", "agent", "mean_sum_rate_mbps", "ci95_mbps", "ratio", "ratio_to",
             "ms_per_snapshot", "snapshots", "per_snapshot_sum_rate_mbps"}


def run(tmp_path: Path, *extra: str) -> list[dict]:
    assert evaluate.main(["--agents", HEURISTICS_AND_SEARCH, *TINY, "--out", str(tmp_path), *extra]) == 0
    return json.loads((tmp_path / "results.json").read_text())


def test_end_to_end_writes_all_outputs(tmp_path):
    records = run(tmp_path)
    for name in ("results.json", "results.csv", "per_snapshot.csv", "results.md", "results.png", "run.json",
                 "snapshots.npz"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert len(records) == 2 * 6
    for r in records:
        assert JSON_KEYS <= set(r)
        assert len(r["per_snapshot_sum_rate_mbps"]) == 4
        assert r["ratio_to"] == "exhaustive"
        assert r["ratio"] <= 1 + 1e-12
    header = next(csv.reader((tmp_path / "results.csv").open()))
    assert header == RECORD_FIELDS
    md = (tmp_path / "results.md").read_text()
    assert "| M, L | K | tau_p |" in md and "exhaustive" in md
    run_json = json.loads((tmp_path / "run.json").read_text())
    assert "evaluate.py" in run_json["command"] and run_json["versions"]["numpy"]


def test_saved_snapshots_and_assignments_reproduce_recorded_rates(tmp_path):
    records = run(tmp_path)
    saved = np.load(tmp_path / "snapshots.npz")
    for r in records:
        cfg = SystemConfig.from_size((r["M"], r["L"], r["K"], r["tau_p"]))
        key = f"{r['M']}-{r['L']}-{r['K']}-{r['tau_p']}"
        beta = saved[f"{key}/beta"]
        np.testing.assert_array_equal(beta, draw_test_snapshots(cfg, r["snapshots"], r["seed"]).beta)
        rates = sum_rate(beta, np.array(r["per_snapshot_assignments"]), cfg) / 1e6
        np.testing.assert_allclose(rates, r["per_snapshot_sum_rate_mbps"], rtol=1e-12)


def test_same_seed_same_numbers(tmp_path):
    a = run(tmp_path / "a")
    b = run(tmp_path / "b")
    strip = lambda rs: [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in rs]  # noqa: E731
    assert strip(a) == strip(b)


def test_other_seed_other_snapshots(tmp_path):
    a = run(tmp_path / "a")
    b = run(tmp_path / "b", "--seed", "1")
    assert a[0]["per_snapshot_sum_rate_mbps"] != b[0]["per_snapshot_sum_rate_mbps"]


def test_skipped_exhaustive_shows_dash_and_ratio_to_best(tmp_path):
    records = run(tmp_path, "--max-assignments", "3")
    epas = [r for r in records if r["agent"] == "exhaustive"]
    assert all(r["status"] == "skipped" and "max_assignments=3" in r["reason"] for r in epas)
    assert all(r["ratio_to"].startswith("best (") for r in records if r["status"] == "ok")
    assert "–" in (tmp_path / "results.md").read_text()


@pytest.mark.parametrize("args,needle", [
    (["--agents", "random,nope"], "unknown agent 'nope'; valid: random"),
    (["--sizes", "10,2,6"], "valid: paper, small, medium"),
    (["--sizes", "huge"], "valid: paper, small, medium"),
])
def test_bad_arguments_exit_with_one_line_error(args, needle):
    out = subprocess.run([sys.executable, "evaluate.py", *args], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]


def test_list_agents(capsys):
    assert evaluate.main(["--list-agents"]) == 0
    text = capsys.readouterr().out
    for name in ("random", "greedy", "master-ap", "location", "local-search", "exhaustive"):
        assert name in text


def test_size_groups():
    assert len(parse_sizes(["paper"])) == 8
    assert parse_sizes(["small", "10,2,6,3"]) == parse_sizes(["small"])
