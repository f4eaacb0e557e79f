"""Paper scenarios (agents/lab/scenarios.py, evaluate.py --scenario) and the reproduction verdicts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import evaluate
from agents.lab.scenarios import SCENARIOS, scenario
from cfenv.config import SystemConfig
from agents.registry import available

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_scenario_is_a_valid_system_and_names_its_source(name):
    sc = scenario(name)
    assert sc.source and sc.sizes
    for size in sc.sizes:
        SystemConfig.from_size(size, **sc.system)  # one ValueError if a field were wrong
    assert set(sc.agents) <= set(available())


def test_the_scenario_sets_the_system_and_sizes_and_flags_override_it(tmp_path, capsys):
    out = tmp_path / "out"
    assert evaluate.main(["--scenario", "liu2020-graph", "--agents", "random,graph-colouring-liu2020",
                          "--snapshots", "2", "--no-progress", "--out", str(out)]) == 0
    records = json.loads((out / "results.json").read_text())
    assert {(r["M"], r["L"], r["K"], r["tau_p"]) for r in records} == {(100, 1, 40, 10)}
    assert json.loads((out / "run.json").read_text())["settings"]["scenario"] == "liu2020-graph"
    out2 = tmp_path / "out2"  # --sizes and a system flag beside it win
    assert evaluate.main(["--scenario", "book-default", "--sizes", "6,1,4,2", "--asd-deg", "5", "--agents", "random",
                          "--snapshots", "2", "--no-progress", "--out", str(out2)]) == 0
    (record,) = json.loads((out2 / "results.json").read_text())
    assert (record["M"], record["K"]) == (6, 4) and record["system"]["model"] == "scalable"
    assert record["system"]["asd_deg"] == 5.0
    capsys.readouterr()
    assert evaluate.main(["--list-scenarios"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in SCENARIOS)
    with pytest.raises(SystemExit):
        evaluate.main(["--scenario", "nope", "--out", str(tmp_path / "x")])
    assert "unknown scenario 'nope'" in capsys.readouterr().err


def test_the_verdict_needs_the_difference_to_exceed_both_intervals():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from reproduction import verdict

    assert verdict(10.0, 1.0, 8.0, 1.0) == "holds"  # 2 > sqrt(2)
    assert verdict(10.0, 1.0, 9.0, 1.0) == "not significant"
    assert verdict(8.0, 1.0, 10.0, 1.0).startswith("does not hold")
    assert verdict(10.0, None, 9.9, None) == "holds"  # no interval: any difference counts
