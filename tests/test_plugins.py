"""An agent of the user's own, or of an installed package, in the same table as the zoo."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import agents
import evaluate
from agents import registry
from cfenv import SystemConfig, draw_snapshots

ROOT = Path(__file__).resolve().parents[1]
MY_AGENT = "examples.my_agent:StrongestAPAgent"


@pytest.fixture(autouse=True)
def importable_examples(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    registry.resolve.cache_clear()
    yield
    registry.resolve.cache_clear()


def test_the_example_agent_keeps_users_of_one_strongest_ap_apart():
    config = SystemConfig(M=10, L=2, K=9, tau_p=3)
    snaps = draw_snapshots(config, np.random.default_rng(0), (20,))
    pilots = agents.make(MY_AGENT, config=config).assign(snaps)
    strongest = snaps.beta.argmax(axis=1)
    for p, s in zip(pilots, strongest):
        for ap in np.unique(s):
            users = np.flatnonzero(s == ap)
            assert len(set(p[users])) == min(len(users), config.tau_p)


def test_evaluate_runs_an_agent_of_ones_own_on_the_same_snapshots(tmp_path):
    out = tmp_path / "out"
    assert evaluate.main(["--agents", f"{MY_AGENT},random", "--sizes", "6,1,4,2", "--snapshots", "4", "--out",
                          str(out), "--no-progress"]) == 0
    records = {r["agent"]: r for r in json.loads((out / "results.json").read_text())}
    mine = records["strongest-ap"]  # the class's own name labels its column
    assert mine["status"] == "ok" and len(mine["per_snapshot_sum_rate_mbps"]) == 4 and mine["agent_target"] == MY_AGENT


@pytest.mark.parametrize("spec, message", [("nope.module:X", "cannot import 'nope.module'"),
                                           ("examples.my_agent:Missing", "is not an agents.base.Agent subclass"),
                                           ("numpy:ndarray", "is not an agents.base.Agent subclass"),
                                           ("examples.my_agent:", "package.module:Class"),
                                           ("unknown-name", "package.module:Class for an agent of your own")])
def test_a_bad_agent_spec_is_one_line(spec, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--agents", spec, "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and message in err[0]


def test_installed_plugins_are_listed_and_resolved(monkeypatch, capsys):
    monkeypatch.setattr(registry, "plugin_agents", lambda: {"strongest-ap": MY_AGENT})
    assert "strongest-ap" in registry.available()
    spec = registry.resolve("strongest-ap")
    assert spec.cls.__name__ == "StrongestAPAgent" and not spec.learnable
    assert evaluate.main(["--list-agents"]) == 0
    assert f"plugin {MY_AGENT}" in capsys.readouterr().out
    assert "examples" in sys.modules


def test_your_own_agent_from_your_own_folder_keeps_its_name(tmp_path):
    """`cd mywork && python ../cfpilot/evaluate.py --agents myagents:MyAgent,...`: the working directory is
    searched (the script's folder comes first on sys.path, not the user's), and the column is the class's
    own ``name``."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "myagents.py").write_text(
        "from agents.heuristics import MasterAPAgent\n\n"
        "class MyAgent(MasterAPAgent):\n    name = 'mine'\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(root)  # cfpilot itself importable (as when installed), the user's folder not
    done = subprocess.run([sys.executable, str(root / "evaluate.py"), "--agents", "myagents:MyAgent,master-ap",
                           "--sizes", "6,1,4,2", "--snapshots", "2", "--no-progress", "--out", "out"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    records = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["agent"] for r in records] == ["mine", "master-ap"]
    assert records[0]["agent_target"] == "myagents:MyAgent"
    assert "| mine |" in (tmp_path / "out" / "results.md").read_text()
