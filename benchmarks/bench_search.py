"""Search benchmarks (issue: agents/harness).

1. EPAS seconds per snapshot for K = 6, 9, 12, 15 at (M, L, tau_p) = (10, 2, 3), against
   -- measured in the same run -- brute force over all tau_p^K assignments scored in
   batches by the same rate kernel (the ratio is the gain of enumerating partitions
   depth-first in parallel).
2. Local search at the four small sizes: fraction of the EPAS sum rate and ms/snapshot.
3. Local search at (45, 2, 20, 10) with 0, 4 and 16 random restarts: ms/snapshot and
   sum rate relative to master-AP and to the best of the three.

    python benchmarks/bench_search.py [--snapshots 5] [--probe-k 18]

``--probe-k K`` also times one EPAS snapshot at each K from 16 up to the given value.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from agents.heuristics import master_ap_pilots
from agents.search import ExhaustiveAgent, LocalSearchAgent, count_assignments
from cfenv import SystemConfig, draw_snapshots, sum_rate

BRUTE_CHUNK = 1 << 18


def brute_force(beta: np.ndarray, cfg: SystemConfig) -> float:
    """Best sum rate over every tau_p^K assignment (chunks through the batched kernel)."""
    total = cfg.tau_p ** cfg.K
    best = -np.inf
    powers = cfg.tau_p ** np.arange(cfg.K)
    for lo in range(0, total, BRUTE_CHUNK):
        idx = np.arange(lo, min(total, lo + BRUTE_CHUNK))
        pilots = (idx[:, None] // powers) % cfg.tau_p
        best = max(best, float(sum_rate(beta, pilots, cfg).max()))
    return best


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--snapshots", type=int, default=5)
    parser.add_argument("--brute-max-k", type=int, default=12, help="largest K for the brute-force reference")
    parser.add_argument("--probe-k", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_search.json"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    result: dict = {"epas": [], "local_search_small": [], "local_search_medium": [], "epas_probe": []}

    print("EPAS at M=10, L=2, tau_p=3")
    print(f"{'K':>3} {'assignments':>12} {'EPAS s/snap':>12} {'brute s/snap':>13} {'speed-up':>9}")
    warm = SystemConfig(M=10, K=6, tau_p=3)
    ExhaustiveAgent(config=warm, progress=False).assign(draw_snapshots(warm, rng))  # compile / load cache
    for K in (6, 9, 12, 15):
        cfg = SystemConfig(M=10, L=2, K=K, tau_p=3)
        snaps = draw_snapshots(cfg, rng, (args.snapshots,))
        epas = ExhaustiveAgent(config=cfg, progress=False)
        pilots, t_epas = timed(lambda: epas.assign(snaps))
        t_epas /= args.snapshots
        row = {"K": K, "assignments": count_assignments(K, 3), "epas_s_per_snapshot": t_epas}
        if K <= args.brute_max_k:
            best, t_brute = timed(lambda: brute_force(snaps.beta[0], cfg))
            assert abs(best - float(sum_rate(snaps.beta[0], pilots[0], cfg))) <= 1e-9 * best
            row.update(brute_s_per_snapshot=t_brute, speedup=t_brute / t_epas)
        result["epas"].append(row)
        print(f"{K:>3} {row['assignments']:>12,} {t_epas:>12.4f} {row.get('brute_s_per_snapshot', float('nan')):>13.4f}"
              f" {row.get('speedup', float('nan')):>9.1f}")

        ls = LocalSearchAgent(config=cfg)
        ls_pilots, t_ls = timed(lambda: ls.assign(snaps))
        ratio = sum_rate(snaps.beta, ls_pilots, cfg) / sum_rate(snaps.beta, pilots, cfg)
        result["local_search_small"].append({"size": list(cfg.size), "mean_ratio_to_epas": float(ratio.mean()),
                                             "min_ratio_to_epas": float(ratio.min()),
                                             "ms_per_snapshot": 1e3 * t_ls / args.snapshots})

    print("\nlocal search vs EPAS")
    for r in result["local_search_small"]:
        print(f"  {tuple(r['size'])}: mean {r['mean_ratio_to_epas']:.5f}, min {r['min_ratio_to_epas']:.5f}, "
              f"{r['ms_per_snapshot']:.2f} ms/snapshot")

    cfg = SystemConfig(M=45, L=2, K=20, tau_p=10)
    snaps = draw_snapshots(cfg, rng, (args.snapshots * 4,))
    master = sum_rate(snaps.beta, master_ap_pilots(snaps.beta, cfg.tau_p), cfg)
    found = {}
    for restarts in (0, 4, 16):
        ls = LocalSearchAgent(config=cfg, restarts=restarts)
        p, t = timed(lambda: ls.assign(snaps))
        found[restarts] = (sum_rate(snaps.beta, p, cfg), 1e3 * t / len(snaps.beta))
    best = np.max([v[0] for v in found.values()], axis=0)
    print("\nlocal search at (45, 2, 20, 10)")
    for restarts, (rates, ms) in found.items():
        row = {"restarts": restarts, "ms_per_snapshot": ms, "ratio_to_master_ap": float((rates / master).mean()),
               "ratio_to_best_found": float((rates / best).mean())}
        result["local_search_medium"].append(row)
        print(f"  restarts {restarts:>2}: {ms:8.2f} ms/snapshot, x{row['ratio_to_master_ap']:.4f} master-AP, "
              f"{row['ratio_to_best_found']:.5f} of best found")

    for K in range(16, args.probe_k + 1):
        cfg = SystemConfig(M=10, L=2, K=K, tau_p=3)
        snap = draw_snapshots(cfg, rng)
        _, t = timed(lambda: ExhaustiveAgent(config=cfg, max_assignments=10**12).assign(snap))
        result["epas_probe"].append({"K": K, "assignments": count_assignments(K, 3), "seconds": t})
        print(f"EPAS K={K}: {count_assignments(K, 3):,} assignments in {t:.1f} s")

    result["meta"] = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
                      "numpy": np.__version__, "snapshots": args.snapshots}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
