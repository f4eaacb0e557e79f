"""Compare pilot-assignment agents on identical test snapshots (the paper's Table II).

    python evaluate.py --agents all                      # the default sizes (10,2,6,3) and (10,2,9,3)
    python evaluate.py --agents all --sizes paper        # the full Table II grid
    python evaluate.py --agents greedy,master-ap --sizes 10,2,6,3 45,2,20,10 --snapshots 100
    python evaluate.py --agents exhaustive,master-ap,greedy --sizes small --objective min   # max-min fairness
    python evaluate.py --agents all --sizes paper --executor processes   # all local cores
    python evaluate.py --agents all --sizes paper --executor ray --ray-address auto   # a Ray cluster
    python evaluate.py --agents all --sizes paper --resume   # finish a stopped run
    python evaluate.py --agents master-ap,local-search --snapshots-file my.npz   # your own fading (docs/data.md)
    python evaluate.py --model scalable --link uplink --agents master-ap,local-search --sizes 100,4,40,10 \
        --snapshots 5 --score lp-mmse p-mmse --realizations 200   # the choices rescored with (LP-/P-)MMSE
    python evaluate.py --agents tabu-liu2020,tabu,greedy,random --scenario liu2020-tabu   # a paper's set-up
    python evaluate.py --list-agents
"""

from __future__ import annotations

import argparse
import signal
import sys
import time


def _interrupted_while_starting(signum: int, frame: object) -> None:
    """Ctrl-C before the run has begun (the packages load in the first seconds): one line, exit 130."""
    print("evaluate.py: interrupted while starting: nothing was run or written", file=sys.stderr)
    raise SystemExit(130)


if __name__ == "__main__":  # installed before the imports below; main() restores Python's handler when the run begins
    signal.signal(signal.SIGINT, _interrupted_while_starting)

from agents.lab.cli import EXECUTION_FLAGS, SYSTEM_FLAGS, add_fields, add_system_flags, fail, field_docs, given, plain
from agents.registry import available
from agents.runtime import set_thread_policy
from cfenv import __version__
from cfenv.units import parse_size, size_label

DATA_FLAGS = ("snapshots_file", "snapshots_config")
RUN_FLAGS = ("snapshots", "seed", "out", "overwrite", "max_assignments", "checkpoints", "train", "loss", "objective",
             "device", "plot_agents")
SCORE_FLAGS = ("score", "realizations")
SCALE_FLAGS = ("executor", "workers", "ray_address", "chunk_size", "retries", "task_timeout", "resume")


def build_parser() -> argparse.ArgumentParser:
    from agents.lab.settings import SIZE_GROUPS, EvaluationSettings  # torch loads here: after set_thread_policy
    from agents.specs.execution import Execution  # torch-free: --help does not load the simulators

    parser = argparse.ArgumentParser(description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"cfpilot {__version__}")
    parser.add_argument("--agents", default="all", help="'all' or comma-separated names (see --list-agents)")
    parser.add_argument("--sizes", nargs="+", default=None,
                        help=f"size groups ({', '.join(SIZE_GROUPS)}) or M,L,K,tau_p quadruples; "
                             f"default: {' '.join(size_label(s) for s in SIZE_GROUPS['default'])}")
    add_fields(parser, EvaluationSettings, RUN_FLAGS)
    add_system_flags(parser)
    parser.set_defaults(snapshots=None)  # None: not given (50 drawn, or all of a --snapshots-file)
    rescoring = parser.add_argument_group("rescoring the chosen assignments by simulation (docs/model.md §8.6)")
    add_fields(rescoring, EvaluationSettings, SCORE_FLAGS)
    data = parser.add_argument_group("your own test snapshots (docs/data.md)")
    add_fields(data, EvaluationSettings, DATA_FLAGS)
    parser.add_argument("--trained-at", default=None,
                        help="M,L,K,tau_p: " + field_docs(EvaluationSettings)["trained_at"])
    noise = parser.add_argument_group("quantum execution of the learning agents' circuits (trained noiselessly)")
    add_fields(noise, Execution, EXECUTION_FLAGS, unset=True)
    scale = parser.add_argument_group("scale-out: the grid (size x agent x chunk of snapshots) as independent tasks")
    add_fields(scale, EvaluationSettings, SCALE_FLAGS)
    add_fields(parser, EvaluationSettings, ("progress",))
    parser.add_argument("--scenario", default=None,
                        help="a paper's set-up: its system model and sizes (see --list-scenarios; --sizes and the "
                             "system flags given beside it override its values)")
    parser.add_argument("--list-agents", action="store_true", help="list agent names and exit")
    parser.add_argument("--list-scenarios", action="store_true", help="list the paper scenarios and exit")
    return parser


def list_scenarios() -> None:
    """One paragraph per scenario: name, sizes, system, source and what cfpilot does not reproduce."""
    from agents.lab.scenarios import SCENARIOS

    for name, sc in SCENARIOS.items():
        system = ", ".join(f"{k}={v}" for k, v in sc.system.items()) or "the seed paper's model"
        print(f"{name}: sizes {' '.join(size_label(s) for s in sc.sizes)}; {system}\n    {sc.source}"
              + (f"\n    differs: {sc.differs}" if sc.differs else ""))


def execution_options(args: argparse.Namespace) -> dict | None:
    """The execution flags as :class:`Execution` fields, validated there (``ValueError`` naming a bad one)."""
    from agents.specs.execution import Execution  # torch-free: --help does not load the simulators

    options = given(args, EXECUTION_FLAGS)
    if options:
        Execution(**options)
    return options or None


def main(argv: list[str] | None = None) -> int:
    set_thread_policy()  # before torch and numba load (this module imports neither)
    args = build_parser().parse_args(argv)
    if args.list_agents:
        width = max(map(len, available()))
        for name, text in available().items():
            print(f"{name:<{width}}  {text}")
        return 0
    if args.list_scenarios:
        list_scenarios()
        return 0
    if args.snapshots_file is not None and args.snapshots is not None:
        fail("evaluate.py", "--snapshots does not apply with --snapshots-file (every snapshot of the file is "
                            "evaluated): write a smaller file to evaluate fewer")
    from agents.lab.evaluation import evaluate
    from agents.lab.outdir import CELLS_DIR, claimed, point_latest
    from agents.lab.results import markdown_tables, provenance, write_results
    from agents.lab.settings import SIZE_GROUPS, EvaluationSettings, parse_agents, parse_sizes

    try:
        default = [] if args.snapshots_file is not None else ["default"]
        system = given(args, SYSTEM_FLAGS)
        if args.scenario is not None:
            from agents.lab.scenarios import scenario

            chosen = scenario(args.scenario)
            system = {**chosen.system, **system}
            default = [size_label(s).replace(" ", "") for s in chosen.sizes]
        settings = EvaluationSettings(
            agents=parse_agents(args.agents), sizes=parse_sizes(args.sizes or default),
            trained_at=parse_size(args.trained_at) if args.trained_at else None,
            execution=execution_options(args), system=system, scenario=args.scenario,
            **given(args, RUN_FLAGS + SCORE_FLAGS + SCALE_FLAGS + DATA_FLAGS + ("progress",)),
        ).prepare()
    except ValueError as err:
        fail("evaluate.py", str(err))
    if settings.snapshots_file is not None:
        print(f"test snapshots: {settings.snapshots} from {settings.snapshots_file} (SHA-256 "
              f"{settings.snapshots_sha256[:16]}...) at {', '.join(size_label(s) for s in settings.sizes)}")
    elif args.sizes is None and args.scenario is None:
        skipped = [s for s in SIZE_GROUPS["paper"] if s not in SIZE_GROUPS["default"]]
        print(f"sizes: {list(SIZE_GROUPS['default'])} (default); skipped {skipped}: run with "
              "--sizes small for the four small Table II sizes, --sizes paper for all eight")
    start = time.perf_counter()
    stats: dict = {}
    if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # from here Ctrl-C keeps the finished chunks
    try:
        with claimed(settings.out, settings.to_json(), settings.fingerprint(), settings.resume, settings.overwrite,
                     settings.fingerprint_keys()):
            records, snapshots = evaluate(settings, stats)
            meta = provenance(sys.argv if argv is None else ["evaluate.py", *argv])
            meta["wall_time_s"] = time.perf_counter() - start
            meta["tasks"] = stats
            paths = write_results(records, settings.out, settings.seed, settings.to_json(), meta, snapshots)
    except ValueError as err:  # the output folder refused before any work
        fail("evaluate.py", str(err))
    except KeyboardInterrupt:
        return 130  # evaluate() printed where the finished chunks are and how to resume
    except OSError as err:  # a full disk, a file size limit: the lock is released, the saved chunks are kept
        fail("evaluate.py", f"cannot write {err.filename or settings.out}: {err.strerror or err}; the finished chunks "
                            f"are kept in {settings.out / CELLS_DIR}: make room and run the same command with --resume")
    if args.out is None and point_latest(settings.out) is None:
        print(f"note: {settings.out.parent / 'latest'} is not a link the harness made: left as it is "
              f"(this run is in {settings.out})")
    print(markdown_tables(records, settings.execution))
    for r in records:
        if r["status"] != "ok":
            print(f"{r['status']} {r['agent']} at ({r['M']},{r['L']},{r['K']},{r['tau_p']}): {r['reason']}")
    print(f"tasks: {stats['computed']} computed, {stats['reused']} reused from {settings.out / CELLS_DIR}, "
          f"{stats['failed']} failed ({settings.executor} executor)")
    print(f"wrote {', '.join(str(p) for p in paths.values())} in {meta['wall_time_s']:.1f} s")
    return 1 if stats["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
