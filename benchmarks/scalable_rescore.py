"""The scalable study's assignments rescored with other processing schemes (docs/model.md §8.6): does the
assignment still matter under LP-MMSE and P-MMSE? Reads both links' runs of ``benchmarks/scalable_study.py``
(their test snapshots and every agent's assignments), rebuilds each snapshot's correlation matrices from its
gains and positions, and rescores the assignments as ``evaluate.py --score`` does
(:func:`agents.lab.rescore.rescore_records`: one seeded stream of channel realizations per snapshot, the same
for every agent and scheme); MR is the closed form the agents chose on.

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

from scalable_study import LINKS, printed_table, write_json  # noqa: E402 -- the sibling script, on sys.path as ours

AGENTS = ("random", "greedy", "master-ap", "graph-colouring", "wgf", "max-k-cut", "tabu", "local-search")
SCHEMES = ("lp-mmse", "p-mmse")
"""the simulated schemes (beside the closed-form MR of the records)"""


def rescore(work: Path, link: str, size: str, realizations: int, snapshots: int | None, progress: bool) -> dict:
    """One link's run at ``size``: per agent and scheme, the mean and 95 %-likely SE of its first
    ``snapshots`` assignments."""
    from agents.lab.rescore import rescore_records
    from cfenv.config import SystemConfig
    from cfenv.models import model_of
    from cfenv.units import parse_size, size_slug

    run = work / link
    records = json.loads((run / "results.json").read_text())
    M, L, K, tau_p = dims = parse_size(size)
    here = [r for r in records if (r["M"], r["L"], r["K"], r["tau_p"]) == dims and r["status"] == "ok"
            and r["agent"] in AGENTS]
    if not here:
        raise SystemExit(f"no records at {size} in {run / 'results.json'}")
    config = SystemConfig.from_size(dims, **here[0]["system"])
    data = np.load(run / "snapshots.npz")
    slug = size_slug(dims)
    snaps = model_of(config).validate({name: data[f"{slug}/{name}"] for name in ("beta", "ap_positions", "ue_positions")},
                                      batch_shape=None)
    n = len(snaps.beta) if snapshots is None else min(snapshots, len(snaps.beta))
    for r in here:
        r["per_snapshot_assignments"] = r["per_snapshot_assignments"][:n]
    started = time.perf_counter()
    rescore_records(here, {dims: snaps[:n]}, {dims: config}, SCHEMES, realizations, here[0]["seed"], progress)
    out = {"link": link, "size": [M, L, K, tau_p], "system": here[0]["system"], "snapshots": n,
           "realizations": realizations, "seconds": time.perf_counter() - started, "agents": {}}
    for r in here:
        closed = model_of(config).spectral_efficiency(snaps[:n], np.array(r["per_snapshot_assignments"]))
        mr = {"mean_se": float(closed.mean()), "se_5pct": float(np.percentile(closed, 5))}
        out["agents"][r["agent"]] = {"mr": mr, **{s: {k: r["rescored"][s][k] for k in ("mean_se", "ci95_se", "se_5pct")}
                                                  for s in SCHEMES}}
    return out


def table(result: dict) -> str:
    first = result["links"][0]
    schemes = ("mr", *SCHEMES)
    lines = [f"{tuple(first['size'])}, {first['snapshots']} snapshots, the study's assignments (chosen on MR); SE per "
             f"user (mean / 95 %-likely) [bit/s/Hz] and the mean's ratio to local search's; MR: the closed form, "
             f"LP-MMSE and P-MMSE by Monte-Carlo ({first['realizations']} realizations per snapshot).", ""]
    for part in result["links"]:
        lines += [f"**{part['link']}**", "",
                  "| agent | " + " | ".join(f"{s.upper()}: SE / 5 % | ratio" for s in schemes) + " |",
                  "|---|" + "---|---|" * len(schemes)]
        best = part["agents"]["local-search"]
        for agent in AGENTS:
            if agent not in part["agents"]:
                continue
            row = part["agents"][agent]
            cells = [f"{row[s]['mean_se']:.3f} / {row[s]['se_5pct']:.3f} | {row[s]['mean_se'] / best[s]['mean_se']:.4f}"
                     for s in schemes]
            lines.append(f"| {agent} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="rescore and write the JSON here")
    parser.add_argument("--table", type=Path, help="print the Markdown table of a rescoring JSON")
    parser.add_argument("--work", type=Path, default=Path("results/scalable-study"),
                        help="the study's run folders (benchmarks/scalable_study.py --work)")
    parser.add_argument("--links", nargs="+", default=list(LINKS), choices=LINKS, help="links to rescore (default both)")
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
    result = {"links": [rescore(args.work, link, args.size, args.realizations, args.snapshots, not args.no_progress)
                        for link in args.links]}
    write_json(args.out, result)
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
