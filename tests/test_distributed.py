"""Scale-out: the evaluation grid on local / process-pool / Ray executors gives the same
numbers, survives failing tasks, resumes from partial results; Ray Tune sweeps export a
checkpoint that evaluate.py uses."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

import evaluate
import train
from agents.lab import executors
from agents.lab.evaluation import CELLS_DIR, EvaluationSettings, Task, plan_chunks
from agents.lab.results import TIMING_FIELDS
from agents.lab.sweep import SweepSpec, load_sweep

GRID = ["--agents", "random,master-ap,local-search,exhaustive", "--sizes", "10,2,6,3", "6,1,4,2",
        "--snapshots", "12", "--chunk-size", "5", "--no-progress"]
TIMING = TIMING_FIELDS
"""the only fields allowed to differ between executors (wall times)"""
HAS_RAY = executors.ray_available()
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="Ray is not installed (pip install 'cfpilot[distributed]'); "
                                                   "CI installs it")


def run_grid(out: Path, *extra: str, expect: int = 0) -> list[dict]:
    assert evaluate.main([*GRID, "--out", str(out), *extra]) == expect
    return json.loads((out / "results.json").read_text())


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def per_snapshot_rows(out: Path) -> list[list[str]]:
    return list(csv.reader((out / "per_snapshot.csv").open()))


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("local")
    return out, run_grid(out, "--executor", "local")


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance with 2 CPUs for the module (the executor and the sweep use an
    already initialised Ray as it is)."""
    if not HAS_RAY:
        pytest.skip("Ray is not installed (pip install 'cfpilot[distributed]'); CI installs it")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_chunks_cover_every_snapshot_once():
    settings = EvaluationSettings(agents=["random"], sizes=[(10, 2, 6, 3)], snapshots=12, chunk_size=5,
                                  progress=False)
    tasks = plan_chunks(settings)
    assert [(t.start, t.stop) for t in tasks] == [(0, 5), (5, 10), (10, 12)]
    assert tasks[1].key == "random@10,2,6,3#5-10"


def test_local_grid_is_complete(local_reference):
    out, records = local_reference
    assert len(records) == 2 * 4 and all(r["status"] == "ok" for r in records)
    assert all(len(r["per_snapshot_sum_rate_mbps"]) == 12 for r in records)
    stats = json.loads((out / "run.json").read_text())["tasks"]
    assert stats["chunks"] == 2 * 4 * 3 and stats["computed"] == 24 and stats["failed"] == 0


def test_processes_executor_gives_the_local_numbers(local_reference, tmp_path):
    out, records = local_reference
    assert without_timing(run_grid(tmp_path, "--executor", "processes", "--workers", "2")) == without_timing(records)
    assert per_snapshot_rows(tmp_path) == per_snapshot_rows(out)


def test_deterministic_agents_do_not_depend_on_the_chunk_size(local_reference, tmp_path):
    _, records = local_reference
    whole = run_grid(tmp_path, "--chunk-size", "50")
    for a, b in zip(records, whole):
        if a["agent"] != "random":  # the random agent draws one stream per chunk
            assert without_timing([a]) == without_timing([b])


def test_failing_task_is_reported_and_the_others_finish_then_resume(local_reference, tmp_path, failing_tasks):
    _, reference = local_reference
    with failing_tasks("master-ap@6,1,4,2#5"):
        records = run_grid(tmp_path, expect=1)
    failed = [r for r in records if r["status"] != "ok"]
    assert [(r["agent"], r["K"]) for r in failed] == [("master-ap", 4)]
    assert failed[0]["status"] == "failed" and "injected failure" in failed[0]["reason"]
    assert failed[0]["mean_sum_rate_mbps"] is None
    ok = [r for r, ref in zip(records, reference) if r["status"] == "ok"]
    assert len(ok) == 7
    assert without_timing(ok) == without_timing([ref for r, ref in zip(records, reference) if r["status"] == "ok"])
    row = next(line for line in (tmp_path / "results.md").read_text().splitlines() if line.startswith("| 6, 1 |"))
    assert "–" in row
    # the finished chunks were saved as they completed; --resume recomputes only the failed one
    saved = sorted((tmp_path / CELLS_DIR).rglob("*.json"))
    assert len(saved) == 23
    resumed = run_grid(tmp_path, "--resume")
    assert without_timing(resumed) == without_timing(reference)
    stats = json.loads((tmp_path / "run.json").read_text())["tasks"]
    assert (stats["reused"], stats["computed"]) == (23, 1)


def test_resume_ignores_chunks_of_other_settings(tmp_path, capsys):
    run_grid(tmp_path)
    with pytest.raises(SystemExit) as refused:  # the folder holds results of other settings
        evaluate.main([*GRID, "--out", str(tmp_path), "--resume", "--max-assignments", "1000000"])
    assert refused.value.code == 2 and "max_assignments" in capsys.readouterr().err
    run_grid(tmp_path, "--resume", "--max-assignments", "1000000", "--overwrite")
    stats = json.loads((tmp_path / "run.json").read_text())["tasks"]
    assert stats["reused"] == 0 and stats["computed"] == 24


def test_a_task_failing_once_is_retried(local_reference, tmp_path, failing_tasks):
    _, reference = local_reference
    with failing_tasks("once:exhaustive@10,2,6,3"):
        records = run_grid(tmp_path, "--executor", "processes", "--workers", "2")
    assert without_timing(records) == without_timing(reference)
    stats = json.loads((tmp_path / "run.json").read_text())["tasks"]
    assert stats["retried"] == 3 and stats["failed"] == 0


def test_without_retries_a_failing_task_fails(tmp_path, failing_tasks):
    with failing_tasks("once:random@10,2,6,3#10"):
        records = run_grid(tmp_path, "--retries", "0", expect=1)
    assert [r["status"] for r in records].count("failed") == 1


@pytest.mark.parametrize("args, needle", [
    (["--executor", "threads"], "executor must be one of local, processes, ray"),
    (["--ray-address", "auto"], "needs executor 'ray'"),
    (["--chunk-size", "0"], "chunk_size must be >= 1"),
    (["--workers", "0"], "workers must be >= 1"),
    (["--retries", "-1"], "retries must be >= 0"),
])
def test_bad_scale_out_flags_are_clear_errors(args, needle, capsys):
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--agents", "random", "--sizes", "6,1,4,2", "--no-progress", *args])
    assert exit_info.value.code == 2
    assert needle in capsys.readouterr().err


def test_ray_executor_without_ray_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setattr(executors, "ray_available", lambda: False)
    with pytest.raises(SystemExit):
        evaluate.main(["--agents", "random", "--sizes", "6,1,4,2", "--executor", "ray"])
    assert "pip install 'cfpilot[distributed]'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="cfpilot\\[distributed\\]"):
        executors.make_executor("ray")


def test_nothing_but_the_scale_out_modules_imports_ray():
    import re

    root = Path(__file__).resolve().parents[1]
    imports_ray = re.compile(r"^\s*(import ray\b|from ray[. ])", re.M)
    files = [*root.glob("*.py"), *(root / "agents").rglob("*.py"), *(root / "cfenv").rglob("*.py")]
    importers = sorted(str(p.relative_to(root)) for p in files if imports_ray.search(p.read_text()))
    assert importers == ["agents/lab/executors.py", "agents/lab/sweep.py"]


def test_call_with_retries_reports_the_last_error():
    calls = []

    def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) < 3:
            raise OSError(f"attempt {len(calls)}\nsecond line")
        return x * 2

    assert executors.call_with_retries(flaky, 4, retries=2) == executors.Outcome(True, 8, attempts=3)
    calls.clear()
    outcome = executors.call_with_retries(flaky, 4, retries=1)
    assert not outcome.ok and outcome.error == "OSError: attempt 2" and outcome.attempts == 2


# ----------------------------------------------------------------------- Ray
@needs_ray
def test_ray_executor_gives_the_local_numbers(local_reference, ray_instance, tmp_path):
    out, records = local_reference
    assert without_timing(run_grid(tmp_path, "--executor", "ray")) == without_timing(records)
    assert per_snapshot_rows(tmp_path) == per_snapshot_rows(out)
    assert json.loads((tmp_path / "run.json").read_text())["tasks"]["executor"] == "ray"


@needs_ray
def test_ray_failing_task_keeps_the_other_cells_and_retries_flaky_ones(local_reference, ray_instance, tmp_path,
                                                                      failing_tasks):
    _, reference = local_reference
    with failing_tasks("local-search@10,2,6,3#0", "once:random@6,1,4,2"):
        records = run_grid(tmp_path, "--executor", "ray", expect=1)
    by_agent = {(r["agent"], r["K"]): r for r in records}
    assert by_agent[("local-search", 6)]["status"] == "failed"
    assert "injected failure in task local-search@10,2,6,3#0-5" in by_agent[("local-search", 6)]["reason"]
    others = [(r, ref) for r, ref in zip(records, reference) if (r["agent"], r["K"]) != ("local-search", 6)]
    assert without_timing([r for r, _ in others]) == without_timing([ref for _, ref in others])


SWEEP = {"agent": "mlp", "sizes": ["6,1,4,2"], "name": "tiny", "num_samples": 1,
         "fixed": {"train_snapshots": 64, "val_snapshots": 32, "epochs": 2, "batch_size": 32},
         "search": {"lr": [0.02, 0.002]}, "scheduler": {"type": "asha", "grace_period": 1}}


@needs_ray
def test_sweep_exports_its_best_checkpoint_and_evaluate_uses_it(ray_instance, tmp_path):
    runs = tmp_path / "runs"
    assert train.main(["--sweep", json.dumps(SWEEP), "--out", str(runs)]) == 0
    summary = json.loads((runs / "sweeps" / "tiny" / "sweep.json").read_text())
    assert len(summary["trials"]) == 2 and all(t["error"] is None for t in summary["trials"])
    best = summary["best"]
    assert best["epochs_run"] == 2
    assert best["metric"] == max(t["metric"] for t in summary["trials"] if t["epochs_run"] == 2)
    export = Path(summary["export"])
    assert export == runs / "sweeps" / "tiny" / "best" / "mlp" / "6-1-4-2" / "unsupervised-seed0"
    assert (export / "weights.pt").exists() and (export / "config.json").exists()
    # each trial is an ordinary trainer run: TensorBoard events and checkpoints in the runs tree
    trial_dir = Path(best["run_dir"])
    assert trial_dir.is_relative_to(runs / "sweeps" / "tiny" / "trials")
    assert list(trial_dir.glob("events.out.tfevents.*")) and (trial_dir / "checkpoint.pt").exists()
    history = json.loads((export / "history.json").read_text())
    assert len(history) == 2 and history[-1]["val/sum_rate_mbps"] == pytest.approx(best["metric"])
    # a sweep folder is never overwritten; --resume restores the Tune experiment (all finished here)
    assert train.main(["--sweep", json.dumps(SWEEP), "--out", str(runs)]) == 2
    assert train.main(["--sweep", json.dumps(SWEEP), "--out", str(runs), "--resume"]) == 0
    again = json.loads((runs / "sweeps" / "tiny" / "sweep.json").read_text())
    assert sorted(t["run_dir"] for t in again["trials"]) == sorted(t["run_dir"] for t in summary["trials"])
    out = tmp_path / "eval"
    assert evaluate.main(["--agents", "mlp", "--sizes", "6,1,4,2", "--snapshots", "8", "--no-progress",
                          "--checkpoints", str(runs / "sweeps" / "tiny" / "best"), "--no-train",
                          "--out", str(out)]) == 0
    record = json.loads((out / "results.json").read_text())[0]
    assert record["status"] == "ok" and record["trained_at"] == [6, 1, 4, 2]


def test_sweep_files_load_and_bad_sweeps_are_clear_errors(tmp_path):
    root = Path(__file__).resolve().parents[1]
    for path in sorted((root / "sweeps").glob("*.yaml")):
        if HAS_RAY:  # pyyaml comes with the distributed extra
            assert load_sweep(path).agent
    spec = load_sweep(json.dumps(SWEEP))
    quantum = load_sweep({**SWEEP, "agent": "hqcnn", "search": {"qubits": [4, 8], "share": ["all"]}})
    trial = quantum.trial_settings((6, 1, 4, 2), {"qubits": 4, "share": "all"}, tmp_path, tmp_path)
    assert trial.model == {"n_qubits": 4, "share": "all"} and trial.batch_size == 32
    assert trial.data_seed == 0 and quantum.trial_settings((6, 1, 4, 2), {"seed": 3}, tmp_path, tmp_path).seed == 3
    assert spec.sizes == [(6, 1, 4, 2)] and spec.search == {"lr": [0.02, 0.002]}
    bad = [({**SWEEP, "learning_rate": 1}, "unknown sweep key"),
           ({**SWEEP, "agent": "ppo"}, "sweep agent must be one of"),
           ({**SWEEP, "search": {"lr": {"normal": [0, 1]}}}, "search.lr"),
           ({**SWEEP, "search": {"qubits": [4]}}, "mlp has no option n_qubits"),
           ({**SWEEP, "fixed": {"lr": 0.1}}, "both fixed and searched"),
           ({**SWEEP, "metric": "loss"}, "val/ or train/"),
           ({k: v for k, v in SWEEP.items() if k != "sizes"}, "needs 'agent' and 'sizes'")]
    for spec_dict, needle in bad:
        with pytest.raises(ValueError, match=needle):
            SweepSpec.from_dict(spec_dict)
    with pytest.raises(ValueError, match="does not exist"):
        load_sweep(tmp_path / "missing.yaml")


def test_train_on_epoch_hook_sees_every_epoch(tmp_path):
    from agents.learning import TrainSettings
    from agents.learning import train as run_training

    seen = []
    run_training(TrainSettings(agent="mlp", size=(6, 1, 4, 2), train_snapshots=32, val_snapshots=16, epochs=3,
                               batch_size=16, runs_dir=tmp_path, cache_dir=tmp_path / "cache", progress=False),
                 on_epoch=lambda epoch, metrics: seen.append((epoch, "val/sum_rate_mbps" in metrics)))
    assert seen == [(1, True), (2, True), (3, True)]


def test_a_training_task_runs_before_the_chunks_that_need_it(tmp_path):
    """A missing learning agent is trained by its own task (in a worker), then evaluated."""
    out = tmp_path / "out"
    env_threads = os.environ.get("OMP_NUM_THREADS")
    assert evaluate.main(["--agents", "mlp,master-ap", "--sizes", "6,1,4,2", "--snapshots", "6", "--chunk-size", "3",
                          "--executor", "processes", "--workers", "2", "--checkpoints", str(tmp_path / "runs"),
                          "--out", str(out), "--no-progress"]) == 0
    records = json.loads((out / "results.json").read_text())
    assert [r["status"] for r in records] == ["ok", "ok"]
    stats = json.loads((out / "run.json").read_text())["tasks"]
    assert stats["training_tasks"] == 1 and stats["computed"] == 1 + 4
    assert (tmp_path / "runs" / "mlp" / "6-1-4-2" / "unsupervised-seed0" / "weights.pt").exists()
    assert os.environ.get("OMP_NUM_THREADS") == env_threads
    assert Task("train", (6, 1, 4, 2), "mlp").key == "train:mlp@6,1,4,2"


def test_a_node_without_the_checkpoints_folder_loads_the_shipped_model(tmp_path):
    """On Ray the driver ships a learning agent's model files with its chunks: a node that
    cannot see the checkpoints folder gives the same assignments as one that can."""
    import agents
    from agents.lab.evaluation import model_files_of, run_task
    from cfenv import SystemConfig

    cfg = SystemConfig.from_size((6, 1, 4, 2))
    runs = tmp_path / "runs"
    agent = agents.make("mlp", config=cfg, seed=0)
    agent.fit(cfg, train_snapshots=32, val_snapshots=16, epochs=1, batch_size=16, runs_dir=runs,
              cache_dir=tmp_path / "cache", progress=False)
    files = model_files_of(agent.run_dir(runs, cfg, 0))
    assert "config.json" in files and "weights.pt" in files and not any(n.startswith("events") for n in files)
    task = Task("chunk", cfg.size, "mlp", 0, 4)
    here = EvaluationSettings(agents=["mlp"], sizes=[cfg.size], snapshots=4, checkpoints=runs, progress=False)
    elsewhere = EvaluationSettings(agents=["mlp"], sizes=[cfg.size], snapshots=4, checkpoints=tmp_path / "absent",
                                   progress=False)
    local = run_task((task, here, None))
    shipped = run_task((task, elsewhere, files))
    assert local["status"] == shipped["status"] == "ok"
    assert local["pilots"] == shipped["pilots"] and local["rates"] == shipped["rates"]
    assert run_task((task, elsewhere, None))["status"] == "skipped"
    assert not (tmp_path / "absent").exists()
    # a model trained on a worker node comes back into the driver's checkpoints folder
    from agents.lab.evaluation import store_trained_model
    from agents.registry import resolve

    driver_dir = agent.run_dir(tmp_path / "absent", cfg, 0)
    assert store_trained_model(resolve("mlp"), {"run_dir": str(driver_dir), "files": files})
    assert not store_trained_model(resolve("mlp"), {"run_dir": str(driver_dir), "files": files})  # already there
    assert run_task((task, elsewhere, None))["pilots"] == local["pilots"]


def test_a_dead_worker_process_loses_no_finished_chunk_and_resume_completes(local_reference, tmp_path,
                                                                           failing_tasks):
    _, reference = local_reference
    with failing_tasks("crash:exhaustive@6,1,4,2#0"):
        records = run_grid(tmp_path, "--executor", "processes", "--workers", "2", expect=1)
    failed = [r for r in records if r["status"] == "failed"]
    assert failed and all("worker process died" in r["reason"] for r in failed)
    unrelated = {"ratio", "ratio_to"}  # without EPAS at a size, ratios refer to the best agent there
    assert [{k: v for k, v in r.items() if k not in unrelated} for r in without_timing(records) if r["status"] == "ok"] \
        == [{k: v for k, v in ref.items() if k not in unrelated}
            for r, ref in zip(records, without_timing(reference)) if r["status"] == "ok"]
    saved = len(list((tmp_path / CELLS_DIR).rglob("*.json")))
    assert without_timing(run_grid(tmp_path, "--executor", "processes", "--workers", "2", "--resume")) == \
        without_timing(reference)
    stats = json.loads((tmp_path / "run.json").read_text())["tasks"]
    assert stats["reused"] == saved and stats["computed"] == 24 - saved


@needs_ray
def test_ray_retries_a_task_whose_worker_died_and_keeps_the_others(local_reference, ray_instance, tmp_path,
                                                                   failing_tasks):
    _, reference = local_reference
    with failing_tasks("crash:master-ap@10,2,6,3#5"):
        records = run_grid(tmp_path, "--executor", "ray", expect=1)
    failed = [r for r in records if r["status"] != "ok"]
    assert [(r["agent"], r["K"]) for r in failed] == [("master-ap", 6)]
    assert "Ray" in failed[0]["reason"] or "died" in failed[0]["reason"].lower()
    others = [(r, ref) for r, ref in zip(records, reference) if r["status"] == "ok"]
    assert len(others) == 7 and without_timing([r for r, _ in others]) == without_timing([x for _, x in others])


@needs_ray
def test_a_sampled_fifo_sweep_repeats_exactly(ray_instance, tmp_path):
    sampled = {**SWEEP, "fixed": {"train_snapshots": 32, "val_snapshots": 16, "epochs": 1, "batch_size": 16},
               "search": {"lr": {"loguniform": [0.001, 0.1]}}, "num_samples": 2, "scheduler": {"type": "fifo"}}
    results = []
    for name in ("first", "second"):
        assert train.main(["--sweep", json.dumps({**sampled, "name": name}), "--out", str(tmp_path)]) == 0
        trials = json.loads((tmp_path / "sweeps" / name / "sweep.json").read_text())["trials"]
        results.append(sorted((t["config"]["lr"], t["metric"]) for t in trials))
    assert results[0] == results[1] and len({lr for lr, _ in results[0]}) == 2
