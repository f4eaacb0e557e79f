"""Compare pilot-assignment agents on identical test snapshots (the paper's Table II).

    python evaluate.py --agents all                      # small sizes, a few minutes
    python evaluate.py --agents all --sizes paper        # the full Table II grid
    python evaluate.py --agents greedy,master-ap --sizes 10,2,6,3 45,2,20,10 --snapshots 100
    python evaluate.py --agents all --sizes paper --executor processes   # all local cores
    python evaluate.py --agents all --sizes paper --executor ray --ray-address auto   # a Ray cluster
    python evaluate.py --agents all --sizes paper --resume   # finish a stopped run
    python evaluate.py --list-agents
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from agents.lab.evaluation import (
    CELLS_DIR,
    SIZE_GROUPS,
    EvaluationSettings,
    evaluate,
    parse_agents,
    parse_sizes,
)
from agents.lab.results import markdown_tables, provenance, write_results
from agents.registry import available
from cfenv.units import parse_size, size_label

DEFAULTS = EvaluationSettings()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", default="all", help="'all' or comma-separated names (see --list-agents)")
    parser.add_argument("--sizes", nargs="+", default=None,
                        help=f"size groups ({', '.join(SIZE_GROUPS)}) or M,L,K,tau_p quadruples; "
                             f"default: {' '.join(size_label(s) for s in SIZE_GROUPS['default'])}")
    parser.add_argument("--snapshots", type=int, default=DEFAULTS.snapshots, help="test snapshots per size")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed, help="seed of test snapshots and agents")
    parser.add_argument("--out", type=Path, default=DEFAULTS.out, help="output folder")
    parser.add_argument("--max-assignments", type=int, default=None, help="cap on EPAS's search size")
    parser.add_argument("--checkpoints", type=Path, default=DEFAULTS.checkpoints,
                        help="runs folder holding trained learning agents (train.py --out)")
    parser.add_argument("--no-train", action="store_true",
                        help="skip learning agents without a checkpoint instead of training them")
    parser.add_argument("--loss", default=DEFAULTS.loss, help="which checkpoints: unsupervised or supervised")
    parser.add_argument("--device", default=DEFAULTS.device, help="torch device of the learning agents")
    parser.add_argument("--trained-at", default=None,
                        help="M,L,K,tau_p: size-generalisable agents (gnn, hqcnn-ar) use the model trained there")
    noise = parser.add_argument_group("quantum execution of the learning agents' circuits (trained noiselessly)")
    noise.add_argument("--noise-p", type=float, default=None, help="depolarising probability after every gate")
    noise.add_argument("--shots", type=int, default=None, help="measurement shots (default: exact expectations)")
    noise.add_argument("--mitigation", default=None, help="none or zne (global folding 1, 3, 5 + Richardson)")
    noise.add_argument("--grad", default=None, help="backprop or parameter-shift")
    scale = parser.add_argument_group("scale-out: the grid (size x agent x chunk of snapshots) as independent tasks")
    scale.add_argument("--executor", default=DEFAULTS.executor,
                       help="local (this process), processes (a local process pool) or ray "
                            "(needs pip install 'cfpilot[distributed]'); same numbers on each")
    scale.add_argument("--workers", type=int, default=None,
                       help="worker processes / CPUs of a local Ray instance (default: all cores)")
    scale.add_argument("--ray-address", default=None,
                       help="address of a running Ray cluster ('auto' or host:port from ray start --head)")
    scale.add_argument("--chunk-size", type=int, default=DEFAULTS.chunk_size, help="test snapshots per task")
    scale.add_argument("--retries", type=int, default=DEFAULTS.retries,
                       help="extra attempts of a failing task before its cell is reported as failed")
    scale.add_argument("--resume", action="store_true",
                       help="reuse the finished chunks a stopped run saved in OUT/cells")
    scale.add_argument("--fail-task", action="append", default=[], help=argparse.SUPPRESS)  # test hook
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--list-agents", action="store_true", help="list agent names and exit")
    return parser


def execution_options(args: argparse.Namespace) -> dict | None:
    """The ``--noise-p/--shots/--mitigation/--grad`` flags as Execution fields (validated there)."""
    options = {key: getattr(args, key) for key in ("noise_p", "shots", "mitigation", "grad")
               if getattr(args, key) is not None}
    if options:
        from agents.models.quantum import Execution

        Execution(**options)  # raises ValueError naming a bad field
    return options or None


def fail(message: str) -> "NoReturn":  # noqa: F821
    print(f"evaluate.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_agents:
        width = max(map(len, available()))
        for name, text in available().items():
            print(f"{name:<{width}}  {text}")
        return 0
    try:
        settings = EvaluationSettings(
            agents=parse_agents(args.agents),
            sizes=parse_sizes(args.sizes or ["default"]),
            snapshots=args.snapshots, seed=args.seed, out=args.out,
            max_assignments=args.max_assignments, progress=not args.no_progress,
            checkpoints=args.checkpoints, train=not args.no_train, loss=args.loss, device=args.device,
            trained_at=parse_size(args.trained_at) if args.trained_at else None,
            execution=execution_options(args), executor=args.executor, workers=args.workers,
            ray_address=args.ray_address, chunk_size=args.chunk_size, retries=args.retries, resume=args.resume,
            fail_tasks=tuple(args.fail_task),
        )
    except ValueError as err:
        fail(str(err))
    if args.sizes is None:
        skipped = [s for s in SIZE_GROUPS["paper"] if s not in SIZE_GROUPS["default"]]
        print(f"sizes: {list(SIZE_GROUPS['default'])} (default); skipped {skipped}: run with "
              "--sizes small for the four small Table II sizes, --sizes paper for all eight")
    start = time.perf_counter()
    stats: dict = {}
    records, snapshots = evaluate(settings, stats)
    meta = provenance(sys.argv if argv is None else ["evaluate.py", *argv])
    meta["wall_time_s"] = time.perf_counter() - start
    meta["tasks"] = stats
    paths = write_results(records, settings.out, settings.seed, settings.to_json(), meta, snapshots)
    print(markdown_tables(records))
    for r in records:
        if r["status"] != "ok":
            print(f"{r['status']} {r['agent']} at ({r['M']},{r['L']},{r['K']},{r['tau_p']}): {r['reason']}")
    print(f"tasks: {stats['computed']} computed, {stats['reused']} reused from {settings.out / CELLS_DIR}, "
          f"{stats['failed']} failed ({settings.executor} executor)")
    print(f"wrote {', '.join(str(p) for p in paths.values())} in {meta['wall_time_s']:.1f} s")
    return 1 if stats["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
