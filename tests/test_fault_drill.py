"""The fault drill can fail: its controls show the failure, and a case whose guard is removed is
not classified as handled (benchmarks/fault_drill.py; the cheapest cases, through its own functions)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import drill_cases  # noqa: E402
import fault_drill  # noqa: E402
from drill_core import Outcome, Sandbox, classify, run_case  # noqa: E402


@pytest.fixture
def box(tmp_path):
    return Sandbox(tmp_path)


def archive_case(box, name, loader=None):
    return dict(drill_cases.archive_cases(box, loader))[name]


PAYLOAD = "snapshots file: beta.npy an object array (payload)"


def test_the_payload_runs_under_a_naive_loader_and_not_under_evaluate(box):
    result = run_case("archives", PAYLOAD, archive_case(box, PAYLOAD))
    assert result["control_shows_failure"], result["control"]  # numpy.load(allow_pickle=True) ran it
    assert result["class"] == "handled", result
    assert result["command"].startswith("python evaluate.py") and "$TMP" in result["command"]
    assert "\n" not in result["message"] and result["message"]


def test_a_case_whose_guard_is_removed_is_not_handled(box):
    """Planted: the command under test is the naive loader itself -> the payload runs."""
    naive = lambda path: ["-c", f"import numpy; numpy.load({str(path)!r}, allow_pickle=True)['beta']"]  # noqa: E731
    result = run_case("archives", PAYLOAD, archive_case(box, PAYLOAD, naive))
    assert result["class"] == "code executed"


def test_a_case_whose_control_does_not_fail_is_inconclusive():
    assert classify(Outcome("handled", None, True, "")) == "handled"
    assert classify(Outcome("handled", None, False, "")) == "inconclusive"
    assert classify(Outcome("handled", None, None, ""), group_control_ok=False) == "inconclusive"
    assert classify(Outcome("traceback", None, True, "")) == "traceback"
    crashed = run_case("g", "drill error", lambda: 1 / 0)
    assert crashed["class"] == "inconclusive" and "ZeroDivisionError" in crashed["message"] + crashed["control"]


def test_a_bad_command_line_is_handled_and_the_classifier_control_fails_planted_cases(box):
    ok, control = drill_cases.classifier_control(box)
    assert ok, control
    body = dict(drill_cases.bad_input_cases(box))["evaluate.py --snapshots 0"]
    result = run_case("bad input", "evaluate.py --snapshots 0", body, ok)
    assert result["class"] == "handled" and "snapshots" in result["message"]


def test_the_table_is_generated_from_the_json():
    cases = [{"group": "a", "case": "x", "class": "handled", "message": "m"},
             {"group": "a", "case": "y", "class": "hang", "message": "no exit within 9 s"},
             {"group": "b", "case": "z", "class": "inconclusive", "message": "n"}]
    report = {"cases": cases, "command": "python benchmarks/fault_drill.py", "version": "0", "date": "d",
              "machine": "m", "wall_time_s": 1, "table_source": "docs/results/fault_drill.json"}
    text = fault_drill.table(report)
    assert "| a | 2 | 1 | 0 | 1 | 0 | 0 | 0 | 0 |" in text
    assert "| **all** | **3** | **1** | **0** | **1** | **0** | **0** | **0** | **1** |" in text
    assert "* hang: a: y -- `no exit within 9 s`" in text and "--table docs/results/fault_drill.json" in text
