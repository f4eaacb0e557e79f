"""max-k-cut (agents/sdp.py) against EPAS at small sizes and local search at large ones.

Per size: mean sum rate of each agent relative to the reference (EPAS where it runs, else
local search), the minimum per-snapshot ratio, and ms/snapshot after one warm-up call, on the
evaluation's test snapshots (seed 0). ``max-k-cut/cut`` keeps the rounding with the largest cut
instead of the best sum rate. Numbers in docs/literature.md §6.

    python benchmarks/bench_sdp.py [--out benchmarks/results/bench_sdp.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import agents
from agents.lab.evaluation import draw_test_snapshots
from cfenv.config import SystemConfig
from cfenv.rates import sum_rate

PLAN = [((10, 2, 6, 3), 20, "exhaustive"), ((10, 2, 9, 3), 20, "exhaustive"), ((10, 2, 12, 3), 10, "exhaustive"),
        ((45, 2, 20, 10), 10, "local-search"), ((100, 4, 40, 10), 5, "local-search"),
        ((200, 8, 50, 15), 5, "local-search"), ((100, 4, 100, 20), 3, "local-search")]
"""(size, snapshots, reference); local search takes about 2 min per snapshot at (100, 4, 100, 20)"""
AGENTS = [("max-k-cut", {}), ("max-k-cut/cut", {"select": "cut"}), ("master-ap", {})]


def timed(name: str, config: SystemConfig, snaps, **kwargs) -> tuple[np.ndarray, float]:
    """Per-snapshot sum rates [Mbit/s] and ms/snapshot (after an untimed first call)."""
    agent = agents.make(name, config=config, **kwargs)
    agent.assign(snaps[0])
    start = time.perf_counter()
    pilots = agent.assign(snaps)
    ms = 1e3 * (time.perf_counter() - start) / len(snaps.beta)
    return np.asarray(sum_rate(snaps.beta, pilots, config)) / 1e6, ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_sdp.json"))
    parser.add_argument("--quick", action="store_true", help="the first four sizes only")
    args = parser.parse_args()
    rows = []
    for size, n, reference in PLAN[:4] if args.quick else PLAN:
        config = SystemConfig.from_size(size)
        snaps = draw_test_snapshots(config, n, 0)
        ref_rates, ref_ms = timed(reference, config, snaps)
        row = {"size": size, "snapshots": n, "reference": reference, "reference_ms": ref_ms}
        for label, kwargs in AGENTS:
            rates, ms = timed(label.split("/")[0], config, snaps, **kwargs)
            row[label] = {"ratio": float(rates.mean() / ref_rates.mean()), "min_ratio": float((rates / ref_rates).min()),
                          "ms": ms}
        print(json.dumps(row), flush=True)
        rows.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
