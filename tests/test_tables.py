"""Generated tables (agents/lab/tables.py): the committed ones match their JSON, a stale one is caught,
and only our table commands run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agents.lab import tables

ROOT = Path(__file__).resolve().parents[1]


def test_every_committed_table_matches_its_json():
    files = tables.documents()
    assert sum(len(tables.blocks(p)) for p in files) >= 5
    for path in files:
        assert tables.refresh(path, check=True) == [], path


def _tiny_study(tmp_path: Path) -> Path:
    """A copy of the repository's table script and a small JSON of our own, in a scratch root."""
    (tmp_path / "benchmarks").mkdir()
    for script in ("faithful_study.py", "scalable_study.py"):
        shutil.copy(ROOT / "benchmarks" / script, tmp_path / "benchmarks" / script)
    record = {"M": 4, "L": 1, "K": 3, "tau_p": 2, "status": "ok", "snapshots": 2, "se_5pct": 0.5,
              "ms_per_snapshot": 1.0}
    study = {"systems": {"paper": [dict(record, agent=a, mean_objective=v) for a, v in (
        ("master-ap", 9.0), ("tabu", 9.5), ("tabu-liu2020", 9.4), ("graph-colouring", 9.2),
        ("graph-colouring-liu2020", 9.1), ("structured-chen2021", 8.0), ("local-search", 10.0))]}}
    (tmp_path / "study.json").write_text(json.dumps(study))
    return tmp_path


def test_a_table_is_regenerated_and_a_stale_one_is_caught(tmp_path):
    root = _tiny_study(tmp_path)
    command = "python benchmarks/faithful_study.py --table study.json"
    doc = root / "doc.md"
    doc.write_text(f"before\n<!-- table: {command} -->\nold numbers\n<!-- /table -->\nafter\n")
    assert tables.refresh(doc, root, check=True) == [command]
    assert "old numbers" in doc.read_text()  # --check writes nothing
    assert tables.refresh(doc, root) == [command]
    text = doc.read_text()
    assert "| paper | (4, 1, 3, 2) | 2 | 0.9000 | 0.9500 | 0.9400 |" in text
    assert text.startswith("before\n") and text.endswith("<!-- /table -->\nafter\n")
    assert tables.refresh(doc, root, check=True) == []  # now in step with its JSON


@pytest.mark.parametrize("command", ["rm -rf /", "python -c 'import os' --table x",
                                     "python benchmarks/x.py --table a; rm b", "python benchmarks/x.py --out y"])
def test_only_our_table_commands_run(command, tmp_path):
    with pytest.raises(ValueError, match="not a table command"):
        tables.render(command, tmp_path)


def test_a_runs_table_ii_comes_with_its_provenance(tmp_path, capsys):
    import evaluate
    from agents.lab import results

    out = tmp_path / "out"
    assert evaluate.main(["--agents", "master-ap,random", "--sizes", "6,1,4,2", "--snapshots", "2", "--no-progress",
                          "--out", str(out)]) == 0
    capsys.readouterr()
    assert results.main(["--table", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| M, L | K | tau_p | master-ap | random |" in text and "Fairness" not in text
    assert "evaluate.py --agents master-ap,random" in text and "cfpilot " in text and "CPUs" in text
    bundle = tmp_path / "bundle.json"  # the docs keep {"records": ..., "run": ...} in one file
    bundle.write_text(json.dumps({"records": json.loads((out / "results.json").read_text()),
                                  "run": json.loads((out / "run.json").read_text())}))
    assert results.main(["--table", str(bundle)]) == 0
    assert capsys.readouterr().out == text


def test_empty_blocks_side_by_side_are_filled_each_with_its_own(tmp_path):
    """Two markers with nothing between them yet: each is filled by its command, the text between kept."""
    root = _tiny_study(tmp_path)
    one = "python benchmarks/faithful_study.py --table study.json"
    two = "python benchmarks/faithful_study.py --table study.json --no-progress"
    doc = root / "doc.md"
    doc.write_text(f"<!-- table: {one} -->\n<!-- /table -->\n\nkept text\n\n<!-- table: {two} -->\n<!-- /table -->\n")
    tables.refresh(doc, root)
    text = doc.read_text()
    assert text.count("| paper | (4, 1, 3, 2) |") == 2 and "\n\nkept text\n\n" in text
    assert len(tables.blocks(doc)) == 2 and tables.refresh(doc, root, check=True) == []
