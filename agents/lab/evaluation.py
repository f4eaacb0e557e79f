"""The comparison harness behind ``evaluate.py``: every agent on the same test snapshots.

For each system size the test snapshots are drawn once, snapshot ``i`` from
``stream_rng(seed, TEST_STREAM, M, L, K, tau_p, i)`` (a stream no training or
validation draw can reach), and every agent runs on all of them. Results are
records (one per size and agent) written as JSON, CSV and Markdown, and drawn
as a PNG; figures are made from the saved records, so they can be redrawn.

This module is the driver; the parts live beside it: :mod:`agents.lab.settings` (what a run
depends on), :mod:`agents.lab.planning` (the grid as tasks), :mod:`agents.lab.tasks` (what a
task does), :mod:`agents.lab.cells` (the resume cache). Their public names are importable
from here too, as before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.lab import executors
from agents.lab.cells import reuse_saved, save_cell
from agents.lab.outdir import CELLS_DIR
from agents.lab.planning import Task, checkpoint, plan_chunks, plan_training, training_config
from agents.lab.results import add_ratios, cell_record
from agents.lab.settings import (
    DEFAULT_RESULTS,
    MAX_TEST_SNAPSHOT_BYTES,
    SIZE_GROUPS,
    EvaluationSettings,
    draw_test_snapshots,
    parse_agents,
    parse_sizes,
)
from agents.lab.tasks import (
    WARM_UP_SEED,
    Payload,
    TaskInterrupted,
    model_digest,
    model_files_of,
    run_task,
    store_trained_model,
)
from agents.registry import display_names, resolve
from agents.runtime import set_thread_policy
from cfenv.channel import Snapshot
from cfenv.units import Size

MAX_FAILURE_LINES = 10
"""failed tasks reported one line each while the grid runs (the table has them all)"""


@dataclass
class Grid:
    """The tasks of one run and what became of them: the finished chunks' results, the cells that
    failed (with the error), and the counts ``stats`` reports."""

    settings: EvaluationSettings
    chunks: list[Task]
    waiting: dict[tuple[str, Size], Task]
    """training task each (agent, size) cell waits for"""
    results: dict[Task, dict[str, Any]]
    errors: dict[tuple[str, Size], str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    shipped: dict[Path, dict[str, bytes] | None] = field(default_factory=dict)
    """model files per run folder, read once (Ray ships them with the chunks)"""

    def phases(self) -> tuple[list[Task], list[Task]]:
        """Training tasks with the chunks that wait for none, then the chunks that wait."""
        todo = [t for t in self.chunks if t not in self.results]
        later = [t for t in todo if (t.agent, t.size) in self.waiting]
        trainings = list(dict.fromkeys(self.waiting[(t.agent, t.size)] for t in later))
        first = [t for t in todo if (t.agent, t.size) not in self.waiting]
        self.counts.update(tasks=len(self.chunks) + len(trainings), chunks=len(self.chunks),
                           training_tasks=len(trainings), reused=len(self.results), computed=0, failed=0, retried=0)
        return trainings + first, later

    def payload(self, task: Task) -> Payload:
        """What a task needs where it runs: on Ray, a learning agent's model files with its chunks."""
        spec = resolve(task.agent)
        if self.settings.executor != "ray" or task.kind != "chunk" or not spec.learnable:
            return task, self.settings, None
        _, run_dir = checkpoint(spec, task.size, self.settings)
        if run_dir not in self.shipped:
            self.shipped[run_dir] = model_files_of(run_dir) if spec.has_checkpoint(run_dir) else None
        return task, self.settings, self.shipped[run_dir]

    def run(self, executor: Any, tasks: list[Task], bar: Any, fingerprint: str) -> None:
        """Run ``tasks`` on ``executor``, keeping each outcome as it arrives (chunks saved at once)."""
        for i, outcome in executor.map_unordered(run_task, [self.payload(t) for t in tasks]):
            task = tasks[i]
            bar.update(1)
            bar.set_postfix_str(task.key)
            self.counts["retried"] += 1 if (outcome.attempts or 1) > 1 else 0
            if not outcome.ok:
                self.fail(task, outcome.error)
            elif task.kind == "train":
                self.counts["computed"] += 1
                store_trained_model(resolve(task.agent), outcome.value)
            else:
                self.counts["computed"] += 1
                self.results[task] = outcome.value
                save_cell(self.settings, task, outcome.value, fingerprint)

    def fail(self, task: Task, error: str) -> None:
        """Report a failed task (the first :data:`MAX_FAILURE_LINES` on a line each) and fail its cells."""
        from tqdm.auto import tqdm

        self.counts["failed"] += 1
        if self.counts["failed"] <= MAX_FAILURE_LINES:
            tqdm.write(f"task {task.key} failed: {error}")
        elif self.counts["failed"] == MAX_FAILURE_LINES + 1:
            tqdm.write("further task failures are not printed: the table lists every failed cell")
        if task.kind == "train":
            for cell in [c for c, t in self.waiting.items() if t == task]:
                self.errors.setdefault(cell, f"training failed: {error}")
        else:
            self.errors.setdefault((task.agent, task.size), f"task failed: {error}")

    def records(self, used: dict[Size, Snapshot]) -> list[dict[str, Any]]:
        """One record per (size, agent), in grid order, with ratios within each size."""
        settings, records = self.settings, []
        labels = display_names(settings.agents)
        for size in settings.sizes:
            size_records = []
            for name in settings.agents:
                parts = [self.results.get(t) for t in self.chunks if t.size == size and t.agent == name]
                size_records.append(cell_record(labels[name], size, parts, self.errors.get((name, size)), used[size],
                                                settings.snapshots, settings.seed, settings.system_config(size)))
                if labels[name] != name:
                    size_records[-1]["agent_target"] = name
                if settings.snapshots_file is not None:
                    size_records[-1].update(snapshots_file=str(settings.snapshots_file),
                                            snapshots_sha256=settings.snapshots_sha256)
            add_ratios(size_records)
            records.extend(size_records)
        return records


def evaluate(settings: EvaluationSettings,
             stats: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], dict[Size, Snapshot]]:
    """Run every agent on every size; returns one record per (size, agent) and the test
    snapshots of each size.

    The grid runs as independent tasks on ``settings.executor``: first the training of
    learning agents without a checkpoint (alongside the chunks that need none), then the
    chunks waiting for them. Each finished chunk is saved under ``<out>/cells/``; with
    ``settings.resume`` those are reused instead of recomputed. A task that still fails after
    its retries makes its cell "failed" (reported with the error); the other cells finish.
    ``stats`` (if given) receives task counts and timings."""
    from tqdm.auto import tqdm

    set_thread_policy()
    settings.prepare()
    used = {size: settings.test_snapshots(size) for size in settings.sizes}
    chunks, fingerprint = plan_chunks(settings), settings.cell_fingerprint()
    saved = reuse_saved(settings, chunks, used, fingerprint) if settings.resume else {}
    grid = Grid(settings, chunks, plan_training(settings), saved)
    first, later = grid.phases()
    # tasks differ in cost by orders of magnitude (EPAS at K = 15 vs. a heuristic): no ETA, elapsed time only
    bar = tqdm(total=len(first) + len(later), desc=f"evaluate ({settings.executor})", unit="task",
               disable=not settings.progress, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} tasks [{elapsed}{postfix}]")
    started = time.perf_counter()
    try:
        with executors.make_executor(settings.executor, settings.workers, settings.retries,
                                     settings.ray_address) as executor:
            grid.run(executor, first, bar, fingerprint)
            grid.run(executor, [t for t in later if (t.agent, t.size) not in grid.errors], bar, fingerprint)
    except KeyboardInterrupt as err:
        bar.close()
        where = f" raised in task {err.args[0]}" if isinstance(err, TaskInterrupted) and err.args else ""
        print(f"\ninterrupted (KeyboardInterrupt{where}): {len(grid.results)} of {len(chunks)} chunks are saved in "
              f"{Path(settings.out) / CELLS_DIR}; run the same command with --resume to finish without recomputing them")
        raise
    bar.close()
    records = grid.records(used)
    if settings.score:
        from agents.lab.rescore import rescore_records

        scoring = time.perf_counter()
        rescore_records(records, used, {size: settings.system_config(size) for size in settings.sizes}, settings.score,
                        settings.realizations, settings.seed, settings.progress)
        if stats is not None:
            stats["rescore_s"] = time.perf_counter() - scoring
    if stats is not None:
        stats.update(grid.counts, executor=settings.executor, wall_time_s=time.perf_counter() - started)
    return records, used


__all__ = ["CELLS_DIR", "DEFAULT_RESULTS", "MAX_FAILURE_LINES", "MAX_TEST_SNAPSHOT_BYTES", "SIZE_GROUPS", "WARM_UP_SEED",
           "EvaluationSettings", "Grid", "Payload", "Task", "draw_test_snapshots", "evaluate", "model_digest",
           "model_files_of", "parse_agents", "parse_sizes", "plan_chunks", "plan_training", "resolve", "run_task",
           "store_trained_model", "training_config"]
