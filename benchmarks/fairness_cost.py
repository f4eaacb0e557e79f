"""The sum-rate cost of fairness, by brute force (issue #16).

For each size and each of ``evaluate.py``'s test snapshots (same seeds), every assignment up to
pilot relabelling (restricted-growth strings) is scored with the per-user rate kernel; the
sum-rate optimum and the max-min optimum are read off the same enumeration. Reported per size:
the mean sum rate and mean minimum user rate of each optimum, the sum rate the max-min optimum
gives up and the minimum rate the sum-rate optimum gives up (relative), and the 95 %-likely rate
and Jain's index of both. Independent of the search agents, so it is the reference the
``--objective min`` table's exhaustive row must reach.

    python benchmarks/fairness_cost.py --sizes small --snapshots 50 --out docs/results/fairness_cost.json
    python benchmarks/fairness_cost.py --table docs/results/fairness_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from agents.lab.evaluation import draw_test_snapshots, parse_sizes
from agents.lab.stats import ci95, fairness_summary
from cfenv.config import SystemConfig
from cfenv.rates import user_rates
from cfenv.units import MBPS, size_label
from scalable_study import print_saved_table  # the sibling script, on sys.path as ours

CHUNK = 1 << 18
"""assignments scored per kernel call (bounds the (chunk, K) rate buffer)"""


def restricted_growth_strings(K: int, tau_p: int) -> np.ndarray:
    """Every assignment of K users to at most tau_p pilots up to relabelling, ``(N, K)`` int64:
    user 0 on pilot 0, each user on a used pilot or the next new one."""
    rows = np.zeros((1, 1), dtype=np.int8)
    largest = np.zeros(1, dtype=np.int8)
    for _ in range(1, K):
        grown, tops = [], []
        for t in range(tau_p):
            keep = t <= largest + 1
            grown.append(np.concatenate([rows[keep], np.full((int(keep.sum()), 1), t, np.int8)], axis=1))
            tops.append(np.maximum(largest[keep], t))
        rows, largest = np.concatenate(grown), np.concatenate(tops)
    return rows.astype(np.int64)


def optima(beta: np.ndarray, rgs: np.ndarray, config: SystemConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-user rates [Mbit/s] ``(K,)`` of the sum-rate optimum and of the max-min optimum of one snapshot."""
    best_sum, best_min = (-np.inf, None), (-np.inf, None)
    for lo in range(0, len(rgs), CHUNK):
        rates = user_rates(beta, rgs[lo:lo + CHUNK], config) / MBPS
        total, low = rates.sum(-1), rates.min(-1)
        i, j = int(total.argmax()), int(low.argmax())
        if total[i] > best_sum[0]:
            best_sum = (total[i], rates[i].copy())
        if low[j] > best_min[0]:
            best_min = (low[j], rates[j].copy())
    return best_sum[1], best_min[1]


def measure(size: tuple[int, int, int, int], snapshots: int, seed: int) -> dict:
    config = SystemConfig.from_size(size)
    rgs = restricted_growth_strings(config.K, config.tau_p)
    snaps = draw_test_snapshots(config, snapshots, seed)
    start = time.perf_counter()
    pairs = [optima(snaps.beta[i], rgs, config) for i in range(snapshots)]
    sum_opt = np.stack([p[0] for p in pairs])
    min_opt = np.stack([p[1] for p in pairs])
    sums = (sum_opt.sum(-1), min_opt.sum(-1))
    mins = (sum_opt.min(-1), min_opt.min(-1))
    return {
        "size": list(size), "snapshots": snapshots, "seed": seed, "assignments_per_snapshot": len(rgs),
        "seconds": time.perf_counter() - start,
        "sum_optimum": {"mean_sum_rate_mbps": float(sums[0].mean()), "ci95_sum_mbps": ci95(sums[0]),
                        **fairness_summary(sum_opt)},
        "min_optimum": {"mean_sum_rate_mbps": float(sums[1].mean()), "ci95_sum_mbps": ci95(sums[1]),
                        **fairness_summary(min_opt)},
        "sum_rate_given_up_by_min_optimum": float(1 - sums[1].mean() / sums[0].mean()),
        "min_rate_given_up_by_sum_optimum": float(1 - mins[0].mean() / mins[1].mean()),
    }


def table(results: list[dict]) -> str:
    """The docs' table of a saved run: each optimum's mean sum and minimum rate, what each gives up, and the
    95 %-likely rate and Jain's index of both."""
    lines = ["| K | sum-rate optimum: sum / min [Mbit/s] | max-min optimum: sum / min [Mbit/s] | sum rate the max-min "
             "optimum gives up | min rate the sum-rate optimum gives up | 95 %-likely rate: sum / max-min optimum "
             "| Jain's index: sum / max-min optimum |", "|---|---|---|---|---|---|---|"]
    for r in results:
        s, m = r["sum_optimum"], r["min_optimum"]
        lines.append(f"| {r['size'][2]} | {s['mean_sum_rate_mbps']:.1f} / {s['mean_min_rate_mbps']:.3f} | "
                     f"{m['mean_sum_rate_mbps']:.1f} / {m['mean_min_rate_mbps']:.3f} | "
                     f"{100 * r['sum_rate_given_up_by_min_optimum']:.1f} % | "
                     f"{100 * r['min_rate_given_up_by_sum_optimum']:.1f} % | "
                     f"{s['rate_5pct_mbps']:.3f} / {m['rate_5pct_mbps']:.3f} | "
                     f"{s['jain_index']:.3f} / {m['jain_index']:.3f} |")
    first = results[0]
    meta = first.get("meta", {})
    lines += ["", f"{first['snapshots']} test networks per size (seed {first['seed']}), (M, L, tau_p) = "
                  f"({first['size'][0]}, {first['size'][1]}, {first['size'][3]}); measured {meta.get('date', '?')} "
                  f"on {meta.get('machine', '?')}, {meta.get('cpus', '?')} CPUs."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=Path, default=None, help="print the docs' table of a saved --out JSON")
    parser.add_argument("--sizes", nargs="+", default=["10,2,6,3", "10,2,9,3", "10,2,12,3"],
                        help="size groups (small: adds K = 15, 2.4 M assignments per snapshot, ~8 min) or "
                             "M,L,K,tau_p quadruples")
    parser.add_argument("--snapshots", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.table is not None:
        print_saved_table(parser, args.table, table)
        return 0
    results = []
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": platform.platform(), "cpus": os.cpu_count()}
    for size in parse_sizes(args.sizes):
        token = size_label(size)
        r = measure(size, args.snapshots, args.seed)
        results.append({**r, "meta": meta})
        s, m = r["sum_optimum"], r["min_optimum"]
        print(f"{token}: sum-opt {s['mean_sum_rate_mbps']:.2f} / min {s['mean_min_rate_mbps']:.2f} | "
              f"min-opt {m['mean_sum_rate_mbps']:.2f} / min {m['mean_min_rate_mbps']:.2f} | sum given up "
              f"{100 * r['sum_rate_given_up_by_min_optimum']:.1f} %, min given up "
              f"{100 * r['min_rate_given_up_by_sum_optimum']:.1f} % ({r['seconds']:.0f} s)", flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
