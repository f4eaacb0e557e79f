"""Scale-out benchmark (issue: Ray scale-out).

1. The evaluation grid (default: the paper's eight sizes x the heuristic and search agents,
   100 test snapshots per size, chunks of 25) run by each executor: ``local`` (the
   reference, measured in the same run), ``processes`` and ``ray`` (a local instance with
   ``--workers`` CPUs). Reported: wall time, speed-up over local, task count, and that the
   results equal the local ones.
2. Per-task overhead: near-empty tasks (the random agent, one snapshot per task, on a tiny
   size) through each executor once it is started and its workers warm -- wall time per
   task; the start-up (pool spawn, ``ray.init``, worker imports) is reported separately.
3. From the local run's per-chunk compute times: total work, the longest task, and the
   speed-up bound on N workers (``work / max(work / N, longest task)``), so a user can
   estimate what N machines would give.

    python benchmarks/bench_executors.py [--snapshots 100] [--workers 2] [--agents ...]

Learning agents are left out by default: without checkpoints the grid would time their
training, not the executors. Results: ``benchmarks/results/bench_executors.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from agents.lab.evaluation import CELLS_DIR, SIZE_GROUPS, EvaluationSettings, evaluate, plan_chunks, run_task
from agents.lab.executors import make_executor, ray_available
from agents.lab.results import TIMING_FIELDS

AGENTS = "random,greedy,master-ap,location,local-search,exhaustive"
TIMING = TIMING_FIELDS


def strip(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def run_grid(settings: EvaluationSettings) -> tuple[list[dict], dict, float]:
    stats: dict = {}
    start = time.perf_counter()
    records, _ = evaluate(settings, stats)
    return records, stats, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", default=AGENTS)
    parser.add_argument("--sizes", default="paper", help="a size group (paper, small, medium, default)")
    parser.add_argument("--snapshots", type=int, default=100)
    parser.add_argument("--chunk-size", type=int, default=25)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--overhead-tasks", type=int, default=200)
    parser.add_argument("--executors", default="local,processes,ray")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_executors.json"))
    args = parser.parse_args()
    executors = [e for e in args.executors.split(",") if e != "ray" or ray_available()]
    if "local" not in executors:
        executors.insert(0, "local")
    agents = args.agents.split(",")
    sizes = list(SIZE_GROUPS[args.sizes])
    result: dict = {"machine": platform.platform(), "cpus": os.cpu_count(), "workers": args.workers,
                    "agents": agents, "sizes": sizes, "snapshots": args.snapshots, "chunk_size": args.chunk_size,
                    "grid": {}, "overhead": {}}
    with tempfile.TemporaryDirectory() as tmp:
        # warm the numba cache (compiled kernels load from disk in every worker afterwards)
        evaluate(EvaluationSettings(agents=agents, sizes=sizes[:1], snapshots=2, out=Path(tmp) / "warm",
                                    progress=False, train=False))
        reference = None
        for executor in executors:
            settings = EvaluationSettings(agents=agents, sizes=sizes, snapshots=args.snapshots, out=Path(tmp) / executor,
                                          chunk_size=args.chunk_size, executor=executor, workers=args.workers,
                                          progress=False, train=False)
            records, stats, wall = run_grid(settings)
            entry = {"wall_s": wall, "tasks": stats["tasks"], "failed": stats["failed"]}
            if executor == "local":
                reference = records
                chunks = [json.loads(p.read_text())["result"] for p in (Path(tmp) / "local" / CELLS_DIR).rglob("*.json")]
                work = [c.get("elapsed_s", 0.0) for c in chunks]
                total, longest = sum(work), max(work)
                entry.update(task_compute_s=total, longest_task_s=longest,
                             speedup_bound={n: total / max(total / n, longest) for n in (2, 4, 8, 16, 32, 64)})
            else:
                entry["speedup_vs_local"] = result["grid"]["local"]["wall_s"] / wall
                entry["same_results_as_local"] = strip(records) == strip(reference)
            result["grid"][executor] = entry
            print(f"grid {executor:>9}: {wall:7.1f} s, {stats['tasks']} tasks"
                  + (f", x{entry['speedup_vs_local']:.2f} vs local, same results: {entry['same_results_as_local']}"
                     if executor != "local" else f", compute {entry['task_compute_s']:.1f} s, "
                                                  f"longest task {entry['longest_task_s']:.1f} s"))
        for executor in executors:
            settings = EvaluationSettings(agents=["random"], sizes=[(4, 1, 3, 2)], snapshots=args.overhead_tasks,
                                          chunk_size=1, out=Path(tmp) / f"overhead-{executor}", executor=executor,
                                          workers=args.workers, progress=False, train=False)
            payloads = [(task, settings, None) for task in plan_chunks(settings)]
            start = time.perf_counter()
            with make_executor(executor, args.workers) as ex:
                list(ex.map_unordered(run_task, payloads[:4 * args.workers]))  # start and warm the workers
                started = time.perf_counter()
                outcomes = list(ex.map_unordered(run_task, payloads))
                wall = time.perf_counter() - started
            assert all(o.ok for _, o in outcomes)
            result["overhead"][executor] = {"startup_and_warmup_s": started - start, "tasks": len(payloads),
                                            "wall_s": wall, "per_task_ms": 1e3 * wall / len(payloads)}
            print(f"overhead {executor:>9}: start-up + warm-up {started - start:5.2f} s, "
                  f"{1e3 * wall / len(payloads):6.2f} ms per near-empty task ({len(payloads)} tasks)")
    local = result["grid"]["local"]
    print("speed-up bound on N workers (work / max(work / N, longest task)): "
          + ", ".join(f"N={n}: x{v:.1f}" for n, v in local["speedup_bound"].items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
