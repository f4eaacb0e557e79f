"""Quality and cost of the learned agents at scale (issue #18): ratio to the best search and
CPU time per snapshot, for every agent variant on the same test snapshots as ``evaluate.py``.

    python benchmarks/bench_learners.py --sizes large --snapshots 20 --runs runs --trained-at 40,2,20,10
    python -m agents.lab.pareto benchmarks/results/learners.json --out docs/pareto.png

Every variant runs single-threaded (torch and numba on one thread), and its cost is the
process CPU time per snapshot (``time.process_time``, the fastest of ``--repeats`` runs), so
that figures taken on a busy machine stay comparable; wall time is recorded beside it. Results merge into
``benchmarks/results/learners.json`` (keyed by size and variant), so slow references (local
search at K = 100) run once and learners can be re-run alone (``--variants``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUT = Path(__file__).resolve().parent / "results" / "learners.json"


def variants(runs: Path, trained_at: tuple[int, ...] | None, seed: int) -> dict[str, Callable[[Any], Any]]:
    """Name -> factory(config) of an agent with ``assign``; learned ones load from ``runs``."""
    import agents
    from agents.lab.evaluation import resolve
    from agents.polish import polish
    from cfenv.config import SystemConfig

    def learned(name: str, **options: Any) -> Callable[[Any], Any]:
        def make(config: SystemConfig) -> Any:
            spec = resolve(name)
            size = spec.train_size(config.size, trained_at)
            agent = spec.cls.load(spec.run_dir(runs, size, seed, "reinforce"))
            for key, value in options.items():
                setattr(agent, key, value)
            return agent
        return make

    def zoo(name: str, **options: Any) -> Callable[[Any], Any]:
        return lambda config: agents.make(name, config=config, seed=seed, **options)

    class Polished:
        """A start (master-AP, or a learned agent's decode) with a polish of given options: the
        control of the hybrids (same polish, classical start) and the polish variants."""

        def __init__(self, config: SystemConfig, per_user: float, start: Callable[[Any], Any] | None = None,
                     **options: Any) -> None:
            self.start = agents.make("master-ap", config=config) if start is None else start(config)
            self.per_user, self.options = per_user, options

        def assign(self, snaps: Any, config: SystemConfig, rng: Any = None) -> np.ndarray:
            start = self.start.assign(snaps, config, rng)
            return polish(snaps.beta, start, config, max_evals=max(1, round(self.per_user * config.K)),
                          **self.options)[0]

    return {
        "master-ap": zoo("master-ap"),
        "local-search": zoo("local-search"),
        "tabu": zoo("tabu"),
        "wgf": zoo("wgf"),
        "exhaustive": zoo("exhaustive"),
        "master-ap+polish": lambda config: Polished(config, 5.0),
        "master-ap+polish-swaps": lambda config: Polished(config, 5.0, swaps=True),
        "master-ap+ranked-polish": lambda config: Polished(config, 5.0, screen=False),
        "gnn": learned("gnn"),
        "gnn-torch-decode": learned("gnn", decode_engine="torch"),
        "gnn-polish-torch-decode": learned("gnn-polish", decode_engine="torch"),
        "gnn-best-of-16": learned("gnn", decode_samples=16, decode_temperature=0.1),
        "gnn-best-of-16-T1": learned("gnn", decode_samples=16),
        "gnn-best-of-64-T0.5": learned("gnn", decode_samples=64, decode_temperature=0.5),
        **{f"gnn-best-of-{n}-T1": learned("gnn", decode_samples=n) for n in (4, 64, 256)},
        "gnn-tta-8": learned("gnn", decode_orders=8),
        "gnn-tta-8+polish": learned("gnn-polish", decode_orders=8),
        "gnn-polish": learned("gnn-polish"),
        "gnn-polish-swaps": learned("gnn-polish", polish_swaps=True),
        "gnn+ranked-polish": lambda config: Polished(config, 5.0, learned("gnn"), screen=False),
        "gnn+polish-all-pilots": lambda config: Polished(config, 5.0, learned("gnn"), screen_pilots=0),
        "gnn-polish-1K": learned("gnn-polish", polish_per_user=1.0),
        "gnn-polish-3K": learned("gnn-polish", polish_per_user=3.0),
        "gnn+master-ap-polish": learned("gnn-polish", polish_master_start=True),
        "gnn+master-ap-polish-3K": learned("gnn-polish", polish_master_start=True, polish_per_user=3.0),
        "gnn-best-of-16+polish": learned("gnn-polish", decode_samples=16, decode_temperature=0.1),
        "hqcnn-ar": learned("hqcnn-ar"),
        "hqcnn-ar-polish": learned("hqcnn-ar-polish"),
    }


def run(sizes: list[tuple[int, ...]], names: list[str], snapshots: int, runs: Path, trained_at: Any,
        seed: int, out: Path, repeats: int = 3, suffix: str = "") -> dict[str, Any]:
    import numba
    import torch

    import cfenv
    from agents.base import AGENT_STREAM, stream_rng
    from agents.lab.evaluation import draw_test_snapshots
    from cfenv.config import SystemConfig
    from cfenv.rates import sum_rate
    from cfenv.units import MBPS

    torch.set_num_threads(1)
    numba.set_num_threads(1)
    table = variants(runs, trained_at, seed)
    data = json.loads(out.read_text()) if out.exists() else {"results": {}}
    for size in sizes:
        config = SystemConfig.from_size(size)
        snaps = draw_test_snapshots(config, snapshots, seed)
        key = ",".join(map(str, size))
        for name in names:
            agent = table[name](config)
            agent.assign(snaps[:1], config, np.random.default_rng(1))  # compile / warm up, untimed
            cpu, wall = np.inf, np.inf
            for _ in range(repeats):  # the fastest of `repeats` identical runs (same stream each time)
                rng = stream_rng(seed, AGENT_STREAM, name, *size)
                c0, w0 = time.process_time(), time.perf_counter()
                pilots = agent.assign(snaps, config, rng)
                cpu, wall = min(cpu, time.process_time() - c0), min(wall, time.perf_counter() - w0)
            rates = sum_rate(snaps.beta, np.asarray(pilots), config) / MBPS
            data["results"].setdefault(key, {})[name + suffix] = {
                "rates_mbps": rates.tolist(), "cpu_ms": 1e3 * cpu / snapshots, "wall_ms": 1e3 * wall / snapshots,
                "snapshots": snapshots, "seed": seed, "trained_at": list(trained_at) if trained_at else None,
                "repeats": repeats}
            print(f"{key:>14} {name + suffix:24} {rates.mean():9.2f} Mbit/s {1e3 * cpu / snapshots:9.2f} CPU ms "
                  f"{1e3 * wall / snapshots:9.2f} wall ms", flush=True)
            data["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                               "load_average": os.getloadavg()[0], "threads": 1}
            data["meta"] = {"date": time.strftime("%Y-%m-%d"), "version": cfenv.__version__}
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(data))
    return data


def main(argv: list[str] | None = None) -> int:
    from agents.lab.evaluation import parse_sizes

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["large"])
    parser.add_argument("--variants", default="all", help="comma-separated names, or all")
    parser.add_argument("--snapshots", type=int, default=20)
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--trained-at", default=None, help="M,L,K,tau_p of the learned models (default: each size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant (the fastest counts)")
    parser.add_argument("--suffix", default="", help="appended to the variant names in the JSON (other models)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    names = list(variants(args.runs, None, 0)) if args.variants == "all" else args.variants.split(",")
    trained_at = tuple(int(v) for v in args.trained_at.split(",")) if args.trained_at else None
    run(parse_sizes(args.sizes), names, args.snapshots, args.runs, trained_at, args.seed, args.out, args.repeats,
        args.suffix)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
