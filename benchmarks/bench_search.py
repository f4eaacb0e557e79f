"""Search benchmarks (issues: agents/harness, #15 §2, #16, #17).

1. EPAS seconds per snapshot for K = 6, 9, 12, 15 at (M, L, tau_p) = (10, 2, 3), against
   -- measured in the same run -- brute force over all tau_p^K assignments scored in
   batches by the same rate kernel (the ratio is the gain of enumerating partitions
   depth-first in parallel).
2. Local search at the four small sizes: fraction of the EPAS sum rate and ms/snapshot.
3. Local search at (45, 2, 20, 10) with 0, 4 and 16 random restarts: ms/snapshot and
   sum rate relative to master-AP and to the best of the three.
4. The ``large`` sizes (cfenv.config.LARGE_SIZES): ms/snapshot and quality (ratio of the
   mean sum rate to the best agent's on the same snapshots) of local search and tabu against
   0.3.0's implementations (benchmarks/legacy_search.py) measured in the same run, and of the
   cheaper literature agents for reference; then local search and tabu on the "min" and
   "proportional" objectives (ms/snapshot, objective relative to master-AP's).
5. With ``--device D`` (a torch device, e.g. cuda): EPAS on D against the numba search at
   K = 6, 9, 12 (seconds per snapshot, same assignments).

    python benchmarks/bench_search.py [--snapshots 5] [--large-snapshots 4] [--device cuda] [--probe-k 18]

The JSON (benchmarks/results/bench_search.json) records the machine, its load average
before and after, and the device.

``--probe-k K`` also times one EPAS snapshot at each K from 16 up to the given value.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

import agents
from agents.heuristics import master_ap_pilots
from agents.lab.machine import machine_info
from agents.search import ExhaustiveAgent, LocalSearchAgent, count_assignments
from benchmarks.legacy_search import LegacyLocalSearchAgent, LegacyTabuAgent
from cfenv import SystemConfig, draw_snapshots, sum_rate
from cfenv.config import LARGE_SIZES
from cfenv.rates import objective_value

REFERENCE_AGENTS = ("master-ap", "graph-colouring", "wgf", "hungarian", "kmeans")

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
    parser.add_argument("--large-snapshots", type=int, default=4, help="snapshots per large size")
    parser.add_argument("--objective-snapshots", type=int, default=2,
                        help="snapshots per large size for the min / proportional searches")
    parser.add_argument("--skip-small", action="store_true", help="only the large sizes (sections 4, 5)")
    parser.add_argument("--skip-large", action="store_true",
                        help="sections 1-3 (and 5) only; the large sections of an existing --out are kept")
    parser.add_argument("--device", default="cpu", help="torch device for EPAS (section 5); cpu: numba only")
    parser.add_argument("--device-k", type=int, nargs="+", default=[6, 9, 12],
                        help="K values of section 5 at (10, 2, K, 3), e.g. 12 18 20 on a GPU")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_search.json"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    result: dict = {"epas": [], "local_search_small": [], "local_search_medium": [], "epas_probe": [],
                    "large": [], "large_objectives": [], "epas_device": []}
    load_before = os.getloadavg()

    def save() -> None:
        import numba

        result["meta"] = {**machine_info(args.device), "numba_threads": numba.get_num_threads(),
                          "numba": numba.__version__, "load_average_before": load_before, "load_average_after": os.getloadavg(),
                          "snapshots": args.snapshots, "large_snapshots": args.large_snapshots,
                          "objective_snapshots": args.objective_snapshots,
                          "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))

    if args.skip_large and args.out.exists():
        previous = json.loads(args.out.read_text())
        for key in ("large", "large_objectives"):
            result[key] = previous.get(key, [])
        result["large_meta"] = previous.get("large_meta", previous.get("meta"))
    if not args.skip_small:
        small_sections(args, rng, result)
        save()
    if not args.skip_large:
        large_section(args, result, save)
    if args.device != "cpu":
        device_section(args, result)
    save()
    print(f"\nwrote {args.out}")


def small_sections(args, rng, result) -> None:

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
        _warm(ls, cfg)
        ls_pilots, t_ls = timed(lambda: ls.assign(snaps))
        ratio = sum_rate(snaps.beta, ls_pilots, cfg) / sum_rate(snaps.beta, pilots, cfg)
        old = LegacyLocalSearchAgent(config=cfg)
        _warm(old, cfg)
        old_pilots, t_old = timed(lambda: old.assign(snaps))
        old_ratio = sum_rate(snaps.beta, old_pilots, cfg) / sum_rate(snaps.beta, pilots, cfg)
        result["local_search_small"].append({"size": list(cfg.size), "mean_ratio_to_epas": float(ratio.mean()),
                                             "min_ratio_to_epas": float(ratio.min()),
                                             "ms_per_snapshot": 1e3 * t_ls / args.snapshots,
                                             "legacy_mean_ratio_to_epas": float(old_ratio.mean()),
                                             "legacy_min_ratio_to_epas": float(old_ratio.min()),
                                             "legacy_ms_per_snapshot": 1e3 * t_old / args.snapshots})

    print("\nlocal search vs EPAS")
    for r in result["local_search_small"]:
        print(f"  {tuple(r['size'])}: mean {r['mean_ratio_to_epas']:.5f}, min {r['min_ratio_to_epas']:.5f}, "
              f"{r['ms_per_snapshot']:.2f} ms/snapshot (0.3.0: mean {r['legacy_mean_ratio_to_epas']:.5f}, "
              f"min {r['legacy_min_ratio_to_epas']:.5f}, {r['legacy_ms_per_snapshot']:.2f} ms)")

    cfg = SystemConfig(M=45, L=2, K=20, tau_p=10)
    snaps = draw_snapshots(cfg, rng, (args.snapshots * 4,))
    master = sum_rate(snaps.beta, master_ap_pilots(snaps.beta, cfg.tau_p), cfg)
    found = {}
    for restarts in (0, 4, 16):
        ls = LocalSearchAgent(config=cfg, restarts=restarts)
        _warm(ls, cfg)
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




def _warm(agent, cfg) -> None:
    """One untimed call on another snapshot: compilation and first-call costs stay out."""
    agent.assign(draw_snapshots(cfg, np.random.default_rng(99), (1,)))


def large_section(args, result, save) -> None:
    print("\nlarge sizes: ms/snapshot and mean sum rate / best agent's (new vs 0.3.0, same snapshots)")
    for size in LARGE_SIZES:
        cfg = SystemConfig.from_size(size)
        snaps = draw_snapshots(cfg, np.random.default_rng([1, *size]), (args.large_snapshots,))
        runs = {"local-search": LocalSearchAgent(config=cfg), "local-search (0.3.0)": LegacyLocalSearchAgent(config=cfg),
                "tabu": agents.make("tabu", config=cfg), "tabu (0.3.0)": LegacyTabuAgent(config=cfg)}
        runs.update({name: agents.make(name, config=cfg) for name in REFERENCE_AGENTS})
        rates, ms = {}, {}
        for name, agent in runs.items():
            _warm(agent, cfg)
            pilots, t = timed(lambda: agent.assign(snaps))
            rates[name] = sum_rate(snaps.beta, pilots, cfg)
            ms[name] = 1e3 * t / len(snaps)
        best = np.max(list(rates.values()), axis=0)
        row = {"size": list(size), "agents": {}}
        for name in runs:
            row["agents"][name] = {"ms_per_snapshot": ms[name], "quality": float(rates[name].mean() / best.mean()),
                                   "min_ratio_to_best": float((rates[name] / best).min())}
        for name in ("local-search", "tabu"):
            row[f"{name}_speedup"] = ms[f"{name} (0.3.0)"] / ms[name]
            row[f"{name}_ratio_to_0.3.0"] = float((rates[name] / rates[f"{name} (0.3.0)"]).mean())
        result["large"].append(row)
        save()
        print(f"  {size}")
        for name, r in row["agents"].items():
            print(f"    {name:<22} {r['ms_per_snapshot']:9.1f} ms  quality {r['quality']:.5f} (min {r['min_ratio_to_best']:.5f})")
        print(f"    speed-up local search x{row['local-search_speedup']:.1f} (ratio {row['local-search_ratio_to_0.3.0']:.5f}),"
              f" tabu x{row['tabu_speedup']:.1f} (ratio {row['tabu_ratio_to_0.3.0']:.5f})")
    print("\nother objectives: ms/snapshot and objective vs master-AP's (min: ratio; proportional: gain in nats)")
    for size in LARGE_SIZES:
        for objective in ("min", "proportional"):
            cfg = SystemConfig.from_size(size, objective=objective)
            snaps = draw_snapshots(cfg, np.random.default_rng([1, *size]), (args.objective_snapshots,))
            master = objective_value(snaps.beta, master_ap_pilots(snaps.beta, cfg.tau_p), cfg)
            row = {"size": list(size), "objective": objective, "agents": {}}
            for name, agent in (("local-search", LocalSearchAgent(config=cfg)), ("tabu", agents.make("tabu", config=cfg))):
                _warm(agent, cfg)
                pilots, t = timed(lambda: agent.assign(snaps))
                got = objective_value(snaps.beta, pilots, cfg)
                sum_ratio = sum_rate(snaps.beta, pilots, cfg) / sum_rate(snaps.beta, master_ap_pilots(snaps.beta, cfg.tau_p), cfg)
                entry = {"ms_per_snapshot": 1e3 * t / len(snaps), "sum_rate_ratio_to_master_ap": float(sum_ratio.mean())}
                if objective == "min":
                    entry["objective_ratio_to_master_ap"] = float((got / master).mean())
                else:
                    entry["objective_gain_over_master_ap_nats"] = float((got - master).mean())
                row["agents"][name] = entry
                gain = entry.get("objective_ratio_to_master_ap", entry.get("objective_gain_over_master_ap_nats"))
                print(f"  {size} {objective:<12} {name:<13} {entry['ms_per_snapshot']:9.1f} ms  objective vs master-AP "
                      f"{gain:.4f}, sum rate x{entry['sum_rate_ratio_to_master_ap']:.4f}")
            result["large_objectives"].append(row)
            save()


def device_section(args, result) -> None:
    import torch

    device = torch.device(args.device)
    print(f"\nEPAS on {device} vs numba")
    for K in args.device_k:
        cfg = SystemConfig(M=10, L=2, K=K, tau_p=3)
        snaps = draw_snapshots(cfg, np.random.default_rng([2, K]), (2,))
        numba_agent = ExhaustiveAgent(config=cfg, progress=False, max_assignments=10**12)
        device_agent = ExhaustiveAgent(config=cfg, progress=False, device=device, max_assignments=10**12)
        _warm(numba_agent, cfg)
        _warm(device_agent, cfg)
        want, t_numba = timed(lambda: numba_agent.assign(snaps))
        got, t_device = timed(lambda: device_agent.assign(snaps))
        row = {"K": K, "numba_s_per_snapshot": t_numba / 2, "device_s_per_snapshot": t_device / 2,
               "same_assignments": bool((want == got).all())}
        result["epas_device"].append(row)
        print(f"  K={K}: numba {row['numba_s_per_snapshot']:.4f} s, {device} {row['device_s_per_snapshot']:.4f} s,"
              f" same: {row['same_assignments']}")


if __name__ == "__main__":
    main()
