"""EPAS seconds per snapshot at large K (issue #26 item 7): one snapshot per K at (M, L, tau_p) = (10, 2, 3),
after the agent's own warm-up (a tiny problem of the same compiled code, timed apart).

    python benchmarks/bench_epas.py [--k 18 20] [--out benchmarks/results/bench_epas.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from agents.lab.machine import machine_info
from agents.search import ExhaustiveAgent, count_assignments
from cfenv import SystemConfig, __version__
from cfenv.models import model_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, nargs="+", default=[18, 20], help="numbers of users to time")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_epas.json"))
    args = parser.parse_args()
    rows = []
    for K in args.k:
        config = SystemConfig(M=10, L=2, K=K, tau_p=3)
        agent = ExhaustiveAgent(config=config, max_assignments=10**12)
        snapshot = model_of(config).draw(np.random.default_rng([0, K]), (1,))
        start = time.perf_counter()
        agent.warm_up(snapshot, config)
        warm_up = time.perf_counter() - start
        start = time.perf_counter()
        agent.assign(snapshot, config)
        seconds = time.perf_counter() - start
        rows.append({"K": K, "assignments": count_assignments(K, 3), "seconds_per_snapshot": seconds,
                     "warm_up_s": warm_up})
        print(f"EPAS (10,2,{K},3): {count_assignments(K, 3):,} assignments, {seconds:.1f} s per snapshot "
              f"(warm-up {warm_up:.2f} s)", flush=True)
    meta = {**machine_info("cpu"), "cfpilot": __version__, "date": time.strftime("%Y-%m-%d")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
