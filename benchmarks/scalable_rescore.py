"""The scalable study's uplink assignments rescored with other combining schemes (docs/model.md §8.6):
does the assignment still matter under LP-MMSE and P-MMSE? Reads the uplink run of
``benchmarks/scalable_study.py`` (its test snapshots and every agent's assignments), recomputes each
snapshot's correlation matrices from its gains and positions, and scores every assignment with local MR
(closed form), LP-MMSE and P-MMSE (Monte-Carlo, ``--realizations`` channel draws per snapshot, one seeded
stream per snapshot, the same draws for every agent and scheme).

    python benchmarks/scalable_rescore.py --out docs/results/scalable_rescore.json
    python benchmarks/scalable_rescore.py --table docs/results/scalable_rescore.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scalable_study import printed_table, write_json  # noqa: E402 -- the sibling script, on sys.path as ours

AGENTS = ("random", "greedy", "master-ap", "graph-colouring", "wgf", "max-k-cut", "tabu", "local-search")
SCHEMES = ("mr", "lp-mmse", "p-mmse")


def rescore(run: Path, size: str, realizations: int, snapshots: int | None, progress: bool) -> dict:
    from tqdm import tqdm

    from cfenv.channel import Snapshot
    from cfenv.config import SystemConfig
    from cfenv.models import model_of
    from cfenv.models.scalable_mc import uplink_se
    from cfenv.models.scalable_se import Prepared
    from cfenv.units import parse_size

    records = json.loads((run / "results.json").read_text())
    M, L, K, tau_p = parse_size(size)
    here = {r["agent"]: r for r in records if (r["M"], r["L"], r["K"], r["tau_p"]) == (M, L, K, tau_p)
            and r["status"] == "ok" and r["agent"] in AGENTS}
    if not here:
        raise SystemExit(f"no records at {size} in {run / 'results.json'}")
    system = next(iter(here.values()))["system"]
    config = SystemConfig.from_size((M, L, K, tau_p), **system)
    model = model_of(config)
    data = np.load(run / "snapshots.npz")
    slug = f"{M}-{L}-{K}-{tau_p}"
    snaps = model.validate({name: data[f"{slug}/{name}"] for name in ("beta", "ap_positions", "ue_positions")},
                           batch_shape=None)
    n = len(snaps.beta) if snapshots is None else min(snapshots, len(snaps.beta))
    se = {agent: {s: np.zeros((n, K)) for s in SCHEMES} for agent in here}
    started = time.perf_counter()
    for i in tqdm(range(n), disable=not progress, desc=f"rescoring {size}"):
        prep = Prepared.of(snaps.extras["R"][i])
        for agent, record in here.items():
            pilots = np.asarray(record["per_snapshot_assignments"][i], dtype=np.int64)
            se[agent]["mr"][i] = model.spectral_efficiency(snaps[i], pilots)
            rng = np.random.default_rng([i, 2027])  # the same draws for every agent and scheme
            for scheme, values in uplink_se(prep, pilots, config, SCHEMES[1:], realizations, rng).items():
                se[agent][scheme][i] = values
    out = {"size": [M, L, K, tau_p], "system": system, "snapshots": n, "realizations": realizations,
           "seconds": time.perf_counter() - started, "agents": {}}
    for agent, per in se.items():
        out["agents"][agent] = {s: {"mean_se": float(v.mean()), "se_5pct": float(np.percentile(v, 5))}
                                for s, v in per.items()}
    return out


def table(result: dict) -> str:
    lines = [f"Uplink, {tuple(result['size'])}, {result['snapshots']} snapshots, the study's assignments; SE per user "
             f"(mean / 95 %-likely) [bit/s/Hz] and the mean's ratio to local search's; LP-MMSE and P-MMSE by "
             f"Monte-Carlo ({result['realizations']} realizations per snapshot).", "",
             "| agent | " + " | ".join(f"{s.upper()}: SE / 5 % | ratio" for s in SCHEMES) + " |",
             "|---|" + "---|---|" * len(SCHEMES)]
    best = result["agents"]["local-search"]
    for agent in AGENTS:
        if agent not in result["agents"]:
            continue
        row = result["agents"][agent]
        cells = [f"{row[s]['mean_se']:.3f} / {row[s]['se_5pct']:.3f} | {row[s]['mean_se'] / best[s]['mean_se']:.4f}"
                 for s in SCHEMES]
        lines.append(f"| {agent} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="rescore and write the JSON here")
    parser.add_argument("--table", type=Path, help="print the Markdown table of a rescoring JSON")
    parser.add_argument("--run", type=Path, default=Path("results/scalable-study/uplink"),
                        help="the study's uplink run folder (benchmarks/scalable_study.py --work)")
    parser.add_argument("--size", default="100,4,40,10", help="M,L,K,tau_p (default: the book's)")
    parser.add_argument("--realizations", type=int, default=200, help="channel draws per snapshot (default 200)")
    parser.add_argument("--snapshots", type=int, default=None, help="the first N of the run's snapshots (default all)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if printed_table(parser, args, table):
        return 0
    if args.realizations < 1:
        parser.error(f"--realizations must be >= 1, got {args.realizations}")
    from agents.runtime import set_thread_policy

    set_thread_policy()
    result = rescore(args.run, args.size, args.realizations, args.snapshots, not args.no_progress)
    write_json(args.out, result)
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
