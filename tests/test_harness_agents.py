"""Other people's agents in the harness: an agent that mutates its input, returns fractional, bool
or string pilots, exits the process, interrupts the run or never returns changes nothing but its
own cell, which fails with a one-line reason."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

import evaluate
from agents import registry
from agents.base import Agent

ROOT = Path(__file__).resolve().parents[1]
HERE = "tests.test_harness_agents"
GRID = ["--sizes", "6,1,4,2", "--snapshots", "6", "--chunk-size", "3", "--no-progress"]


class Zeros(Agent):
    """Every user on pilot 0: the reference a mutating agent must be scored like."""

    name = "zeros"

    def _assign(self, snapshots, config, rng):
        return np.zeros((snapshots.beta.shape[0], config.K), dtype=np.int64)


class Mutator(Zeros):
    """Scales the fading it is given, in place, inside ``_assign``."""

    name = "mutator"

    def _assign(self, snapshots, config, rng):
        snapshots.beta[...] *= 10
        return super()._assign(snapshots, config, rng)


class ForcedMutator(Zeros):
    """Makes its input writable again and scales it, in an overridden ``assign``."""

    name = "forced-mutator"

    def assign(self, snapshots, config=None, rng=None):
        try:
            snapshots.beta.setflags(write=True)
        except ValueError:
            pass
        if snapshots.beta.flags.writeable:
            snapshots.beta[...] *= 10
        return super().assign(snapshots, config, rng)


class Fractional(Agent):
    name = "fractional"

    def _assign(self, snapshots, config, rng):
        pilots = np.full((snapshots.beta.shape[0], config.K), 0.9)
        pilots[:, ::2] = 1.9
        return pilots


class FractionalAssign(Zeros):
    """Bypasses :meth:`Agent.assign`'s checks: the harness checks what it is handed too."""

    name = "fractional-assign"

    def assign(self, snapshots, config=None, rng=None):
        return super().assign(snapshots, config, rng) + 0.5


class Bools(Agent):
    name = "bools"

    def _assign(self, snapshots, config, rng):
        return np.ones((snapshots.beta.shape[0], config.K), dtype=bool)


class Strings(Agent):
    name = "strings"

    def _assign(self, snapshots, config, rng):
        return np.full((snapshots.beta.shape[0], config.K), "1")


class NaNs(Agent):
    name = "nans"

    def _assign(self, snapshots, config, rng):
        return np.full((snapshots.beta.shape[0], config.K), np.nan)


class Exits(Zeros):
    name = "exits"

    def _assign(self, snapshots, config, rng):
        raise SystemExit(3)


class Interrupts(Zeros):
    name = "interrupts"

    def _assign(self, snapshots, config, rng):
        raise KeyboardInterrupt


class Sleeps(Zeros):
    name = "sleeps"

    def _assign(self, snapshots, config, rng):
        time.sleep(3600)


@pytest.fixture(autouse=True)
def importable(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    registry.resolve.cache_clear()
    yield
    registry.resolve.cache_clear()


def run(out: Path, agents: str, *extra: str, code: int | None = None) -> dict[str, dict]:
    rc = evaluate.main(["--agents", agents, *GRID, "--out", str(out), *extra])
    if code is not None:
        assert rc == code
    return {r.get("agent_target", r["agent"]): r for r in json.loads((out / "results.json").read_text())}


@pytest.fixture(scope="module")
def example_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "f.npz"
    rng = np.random.default_rng(5)
    np.savez(path, beta=rng.uniform(1e-9, 1e-5, (6, 6, 4)))
    path.with_suffix(".json").write_text(json.dumps({"L": 1, "tau_p": 2}))
    return path


@pytest.mark.parametrize("mutator", ["Mutator", "ForcedMutator"])
def test_an_agent_that_scales_its_input_changes_nothing_for_the_others(tmp_path, example_file, mutator):
    file_grid = ["--snapshots-file", str(example_file), "--no-progress", "--chunk-size", "3"]
    alone = tmp_path / "alone"
    evaluate.main(["--agents", f"{HERE}:Zeros,master-ap,greedy", *file_grid, "--out", str(alone)])
    after = tmp_path / "after"
    evaluate.main(["--agents", f"{HERE}:{mutator},master-ap,greedy", *file_grid, "--out", str(after)])
    before = {r.get("agent_target", r["agent"]): r for r in json.loads((alone / "results.json").read_text())}
    records = {r.get("agent_target", r["agent"]): r for r in json.loads((after / "results.json").read_text())}
    for name in ("master-ap", "greedy"):
        assert records[name]["per_snapshot_sum_rate_mbps"] == before[name]["per_snapshot_sum_rate_mbps"]
    mine = records[f"{HERE}:{mutator}"]
    if mine["status"] == "ok":  # it wrote into a copy of its own: scored on the harness's fading
        assert mine["per_snapshot_sum_rate_mbps"] == before[f"{HERE}:Zeros"]["per_snapshot_sum_rate_mbps"]
    else:
        assert "read-only" in mine["reason"]
    published = np.load(after / "snapshots.npz")
    assert np.array_equal(published["6-1-4-2/beta"], np.load(example_file)["beta"])


def test_drawn_snapshots_are_read_only_for_the_agent_and_scored_on_the_harness_copy(tmp_path):
    records = run(tmp_path / "out", f"{HERE}:ForcedMutator,{HERE}:Zeros", code=0)
    assert (records[f"{HERE}:ForcedMutator"]["per_snapshot_sum_rate_mbps"]
            == records[f"{HERE}:Zeros"]["per_snapshot_sum_rate_mbps"])


@pytest.mark.parametrize("agent, needle", [("Fractional", "float64"), ("FractionalAssign", "float64"),
                                           ("Bools", "bool"), ("Strings", "<U1"), ("NaNs", "NaN")])
def test_pilots_that_are_not_integers_fail_the_cell_naming_what_came_back(tmp_path, agent, needle, capsys):
    records = run(tmp_path / "out", f"{HERE}:{agent},master-ap", code=1)
    mine = records[f"{HERE}:{agent}"]
    assert mine["status"] == "failed" and needle in mine["reason"] and "integer" in mine["reason"]
    assert "-9223372036854775808" not in mine["reason"] and "\n" not in mine["reason"]
    assert records["master-ap"]["status"] == "ok"


def test_an_agent_that_exits_fails_its_cell_only(tmp_path):
    records = run(tmp_path / "out", f"{HERE}:Exits,master-ap", code=1)
    mine = records[f"{HERE}:Exits"]
    assert mine["status"] == "failed" and "SystemExit" in mine["reason"] and "3" in mine["reason"]
    assert records["master-ap"]["status"] == "ok"


def test_an_agent_that_interrupts_stops_the_run_like_ctrl_c(tmp_path, capsys):
    out = tmp_path / "out"
    assert evaluate.main(["--agents", f"master-ap,{HERE}:Interrupts", *GRID, "--out", str(out)]) == 130
    printed = capsys.readouterr()
    lines = [line for line in (printed.out + printed.err).splitlines() if line.strip()]
    assert len(lines) == 1 and "--resume" in lines[0] and "KeyboardInterrupt" in lines[0]
    saved = sorted(p.name for p in (out / "cells").rglob("*.json"))
    assert saved == ["0-3.json", "3-6.json"]  # master-ap's two chunks, kept for --resume
    assert not (out / ".cfpilot.lock").exists()


@pytest.mark.parametrize("executor", ["local", "processes"])
def test_an_agent_that_never_returns_fails_its_cell_at_the_task_timeout(tmp_path, executor):
    start = time.perf_counter()
    records = run(tmp_path / "out", f"{HERE}:Sleeps,master-ap", "--task-timeout", "2", "--executor", executor,
                  "--workers", "1", code=1)
    assert time.perf_counter() - start < 60
    mine = records[f"{HERE}:Sleeps"]
    assert mine["status"] == "failed" and "--task-timeout" in mine["reason"] and "2" in mine["reason"]
    assert records["master-ap"]["status"] == "ok"


def test_the_task_timeout_is_a_documented_flag_with_a_generous_default(capsys):
    from agents.lab.settings import EvaluationSettings

    assert EvaluationSettings().task_timeout >= 600
    with pytest.raises(SystemExit):
        evaluate.main(["--help"])
    assert "--task-timeout" in capsys.readouterr().out
    with pytest.raises(ValueError, match="task_timeout"):
        EvaluationSettings(task_timeout=0)
