"""agents.lab.pareto: the quality-vs-cost table and figure of docs/learners.md from benchmark and
harness JSON (hand-computed ratios, merge order, exclusions)."""

import json

import pytest

from agents.lab import pareto


def bench(path, rows):
    path.write_text(json.dumps({"results": {"10,2,6,3": rows}}))
    return path


def record(rates, cpu_ms=1.0):
    return {"rates_mbps": rates, "cpu_ms": cpu_ms, "wall_ms": cpu_ms}


def test_ratios_paired_gains_and_reference_by_hand(tmp_path):
    rows = {"master-ap": record([1.0, 2.0]), "tabu": record([2.0, 2.0], 0.5), "gnn": record([1.5, 3.0], 0.1)}
    ref, summary = pareto.summarise(rows)
    assert ref == "tabu"  # the better of the searches measured
    by_name = {r["variant"]: r for r in summary}
    assert by_name["gnn"]["ratio"] == pytest.approx(2.25 / 2.0)
    assert by_name["gnn"]["x_master"] == pytest.approx(1.5)  # 1.5 / 1 and 3 / 2
    assert by_name["master-ap"]["beats_master"] == 0 and by_name["tabu"]["beats_master"] == 1
    assert [r["variant"] for r in summary] == ["gnn", "tabu", "master-ap"]  # by cost
    rows["exhaustive"] = record([2.5, 2.5])
    assert pareto.summarise(rows)[0] == "exhaustive"
    with pytest.raises(ValueError, match="no search"):
        pareto.summarise({"gnn": record([1.0])})
    with pytest.raises(ValueError, match="different snapshot counts"):
        pareto.summarise({"tabu": record([1.0]), "gnn": record([1.0, 2.0])})


def test_files_merge_in_order_and_harness_results_enter_with_wall_time(tmp_path):
    first = bench(tmp_path / "a.json", {"tabu": record([2.0, 2.0]), "gnn": record([1.0, 1.0])})
    second = bench(tmp_path / "b.json", {"gnn": record([1.8, 1.8], 0.2)})
    harness = tmp_path / "results.json"
    harness.write_text(json.dumps([
        {"status": "ok", "M": 10, "L": 2, "K": 6, "tau_p": 3, "agent": "wgf", "per_snapshot_sum_rate_mbps": [1.9, 1.9],
         "ms_per_snapshot": 0.3, "snapshots": 2},
        {"status": "failed", "M": 10, "L": 2, "K": 6, "tau_p": 3, "agent": "broken"}]))
    data = pareto.load([first, second, harness])
    assert data["10,2,6,3"]["gnn"]["rates_mbps"] == [1.8, 1.8]  # the later file wins
    assert "broken" not in data["10,2,6,3"] and data["10,2,6,3"]["wgf"]["cpu_ms"] is None
    table = pareto.markdown(data, ["10,2,6,3"])
    assert "| wgf | 0.9500 |" in table and "0.30 (wall, 2 threads)" in table


def test_cli_excludes_variants_and_draws_the_figure(tmp_path, capsys):
    path = bench(tmp_path / "a.json", {"tabu": record([2.0]), "gnn": record([1.0]), "gnn-torch-decode": record([1.0])})
    out = tmp_path / "fig" / "pareto.png"
    assert pareto.main([str(path), "--exclude", "gnn-torch-decode", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| gnn |" in table and "gnn-torch-decode" not in table
    assert out.read_bytes()[:4] == b"\x89PNG"
