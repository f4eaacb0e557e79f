"""The pilot length as a decision (docs/model.md §8.7): at the book's default (M = 100 APs of L = 4 antennas,
ASD 15 degrees, DCC, tau_c = 200), how the net SE per user and the best number of pilots move with the
number of users K. For each K the same networks are scored with every tau_p of a grid, each with the
book's own assignment (master-AP, Algorithm 4.1) and with tabu search, uplink (local MR) and downlink (MR);
the pre-log (tau_c - tau_p) / tau_c charges the pilots.

    python benchmarks/pilot_length.py --out docs/results/pilot_length.json
    python benchmarks/pilot_length.py --table docs/results/pilot_length.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scalable_study import printed_table, write_json  # noqa: E402 -- the sibling script, on sys.path as ours

USERS = (20, 40, 60, 80, 100)
PILOTS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40)
AGENTS = ("master-ap", "tabu")
LINKS = ("uplink", "downlink")
M, L, ASD_DEG = 100, 4, 15.0
BOOK_PILOTS = 10
"""the book's tau_p, the comparison column"""


def run(networks: int, seed: int, users: tuple[int, ...], progress: bool) -> dict:
    """Every (K, tau_p, link, agent): the mean SE per user, its 95 % CI over networks and the 95 %-likely SE."""
    from tqdm import tqdm

    from agents.base import TEST_STREAM, stream_rng
    from agents.lab.stats import ci95, rate_percentile
    from agents.registry import resolve
    from cfenv.channel import stack_snapshots
    from cfenv.config import SystemConfig
    from cfenv.models import model_of

    cells = [(K, tau) for K in users for tau in PILOTS if tau <= K]
    out = {"M": M, "L": L, "asd_deg": ASD_DEG, "tau_c": 200, "networks": networks, "seed": seed, "rows": []}
    started = time.perf_counter()
    bar = tqdm(total=len(cells) * len(LINKS), disable=not progress, desc="pilot length")
    for K in users:
        base = SystemConfig.from_size((M, L, K, 1), model="scalable", asd_deg=ASD_DEG)
        model = model_of(base)  # the networks do not depend on tau_p or the link: the same for every cell of K
        snaps = stack_snapshots([model.draw(stream_rng(seed, TEST_STREAM, M, L, K, 0, i)) for i in range(networks)])
        for tau in (t for t in PILOTS if t <= K):
            for link in LINKS:
                config = base.replace(tau_p=tau, link=link)
                for agent in AGENTS:
                    pilots = resolve(agent).cls(config=config, seed=seed).assign(snaps)
                    se = model_of(config).spectral_efficiency(snaps, pilots)  # (networks, K)
                    out["rows"].append({"K": K, "tau_p": tau, "link": link, "agent": agent,
                                        "mean_se": float(se.mean()), "ci95_se": ci95(se.mean(axis=1)),
                                        "se_5pct": rate_percentile(se)})
                bar.update(1)
    bar.close()
    out["seconds"] = time.perf_counter() - started
    return out


def pilot_choice(rows: list[dict]) -> tuple[dict, dict, dict | None]:
    """Of one (K, link, agent)'s rows over tau_p: the best by mean SE, the best by 95 %-likely SE, and the
    book's tau_p = 10 (``None`` where K < 10)."""
    return (max(rows, key=lambda r: r["mean_se"]), max(rows, key=lambda r: r["se_5pct"]),
            next((r for r in rows if r["tau_p"] == BOOK_PILOTS), None))


def table(result: dict) -> str:
    rows = result["rows"]
    lines = [f"Net SE per user [bit/s/Hz] at M = {result['M']}, L = {result['L']}, ASD {result['asd_deg']:g} deg, DCC, "
             f"tau_c = {result['tau_c']}, {result['networks']} networks per K (the same for every tau_p): the best "
             "tau_p by mean SE, the mean (95 % CI) and 95 %-likely SE there, and the book's tau_p = 10 for comparison.",
             "", "| K | link | agent | best tau_p | mean SE at best | 5 % SE at best | mean SE at tau_p = 10 | "
                 "best tau_p for the 5 % SE |", "|---|---|---|---|---|---|---|---|"]
    for K in sorted({r["K"] for r in rows}):
        for link in LINKS:
            for agent in AGENTS:
                best, fair, ten = pilot_choice([r for r in rows if (r["K"], r["link"], r["agent"]) == (K, link, agent)])
                at_ten = f"{ten['mean_se']:.3f}" if ten else "–"
                lines.append(f"| {K} | {link} | {agent} | {best['tau_p']} | {best['mean_se']:.3f} ± {best['ci95_se']:.3f} | "
                             f"{best['se_5pct']:.3f} | {at_ten} | {fair['tau_p']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="run the sweep and write the JSON here")
    parser.add_argument("--table", type=Path, help="print the Markdown table of a sweep JSON")
    parser.add_argument("--networks", type=int, default=10, help="networks per K (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--users", type=int, nargs="+", default=list(USERS), help="the K values (default 20 ... 100)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if printed_table(parser, args, table):
        return 0
    if args.networks < 1 or any(k < 1 for k in args.users):
        parser.error("--networks and --users must be >= 1")
    from agents.runtime import set_thread_policy

    set_thread_policy()
    result = run(args.networks, args.seed, tuple(args.users), not args.no_progress)
    write_json(args.out, result)
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
