"""The literature's claims next to our measurements (docs/reproduction.md): each paper's scenario
(``evaluate.py --scenario``), the agents its claim is about, and a verdict from the numbers with their CIs.

    python benchmarks/reproduction.py --out docs/results/reproduction.json   # runs evaluate.py per scenario
    python benchmarks/reproduction.py --table docs/results/reproduction.json

A claim "A improves metric X over B" holds when A's X exceeds B's by more than the two 95 % CIs combined
(sqrt(ci_A^2 + ci_B^2)), does not hold when it falls short by as much, and is "not significant" in
between. Claims of algorithms cfpilot does not have are listed with that reason, never with a number.
The pilot-length claim reads ``docs/results/pilot_length.json`` (``benchmarks/pilot_length.py``).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pilot_length import pilot_choice  # noqa: E402 -- the sibling script, on sys.path as ours
from scalable_study import evaluate_run, study_main, write_json  # noqa: E402 -- the sibling script, on sys.path as ours

RUNS = {  # scenario -> (agents, networks)
    "liu2020-tabu": ("tabu-liu2020,tabu,greedy,random,master-ap", 50),
    "liu2020-graph": ("graph-colouring-liu2020,graph-colouring,random,master-ap", 50),
    "chen2021": ("structured-chen2021,master-ap,random", 10),
    "gao2024": ("matching-gao2024,graph-colouring-liu2020,random,master-ap", 20),
    "mussbah2024": ("beam-mussbah2024,random,greedy,wgf,graph-colouring-liu2020,master-ap", 100),
}
METRICS = {"rate_5pct_mbps": ("ci95_rate_5pct_mbps", "95 %-likely user rate [Mbit/s]"),
           "mean_sum_rate_mbps": ("ci95_mbps", "mean sum rate [Mbit/s]"),
           "mean_se": (None, "mean SE per user [bit/s/Hz]")}
CLAIMS = (
    {"paper": "Liu et al., IEEE TVT 2020 (tabu)", "claim": "tabu search significantly improves the 95 %-likely "
     "per-user throughput over random assignment (abstract)", "claimed": "significant gain", "scenario":
     "liu2020-tabu", "agent": "tabu-liu2020", "versus": "random", "metric": "rate_5pct_mbps"},
    {"paper": "Liu et al., IEEE TVT 2020 (tabu)", "claim": "... and over greedy assignment (abstract)",
     "claimed": "significant gain", "scenario": "liu2020-tabu", "agent": "tabu-liu2020", "versus": "greedy",
     "metric": "rate_5pct_mbps"},
    {"paper": "Liu et al., IEEE TVT 2020 (graph colouring)", "claim": "graph colouring beats random assignment "
     "(compared with random only)", "claimed": "gain", "scenario": "liu2020-graph", "agent":
     "graph-colouring-liu2020", "versus": "random", "metric": "rate_5pct_mbps"},
    {"paper": "Chen et al., IEEE JSAC 2021 (structured access)", "claim": "structured access beats random pilot "
     "assignment (our reading of the paper's comparison; no number at hand; its own clusters, MMSE and power "
     "control, which cfpilot does not reproduce)", "claimed": "gain", "scenario": "chen2021", "agent": "structured-chen2021",
     "versus": "random", "metric": "mean_sum_rate_mbps"},
    {"paper": "Gao et al., IEEE TVT 2024 (matching)", "claim": "+23 % in the 95 %-likely user rate over random "
     "assignment at tau_p = 10, max-min power (as the Marine-MJH reproduction quotes it; it measured +21.7 %)",
     "claimed": "+23 %", "scenario": "gao2024", "agent": "matching-gao2024", "versus": "random",
     "metric": "rate_5pct_mbps", "size": (500, 1, 200, 10)},
    *({"paper": "Mussbah et al., IEEE CL 2024 (beam domain)", "claim": claim, "claimed": claimed,
       "scenario": "mussbah2024", "agent": "beam-mussbah2024", "versus": versus, "metric": "rate_5pct_mbps"}
      for claim, claimed, versus in (
          ("+8 % in the 95 %-likely per-user SE over random assignment (its Fig. 1, p. 2179, as quoted)", "+8 %",
           "random"),
          ("... +4 % over greedy", "+4 %", "greedy"),
          ("... +2 % over WGF", "+2 %", "wgf"),
          ("... +3 % over graph colouring (Liu et al.)", "+3 %", "graph-colouring-liu2020"))),
)
PILOT_CLAIM = {"paper": "Marine-MJH/cellfree-pilot-hybrids (reproduction study)", "claim": "much of a hybrid's "
               "+5.31 % came from using fewer pilots (7.9 instead of 15), not from the assignment",
               "claimed": "pilot count matters"}


def run(out: Path, work: Path, progress: bool) -> dict:
    result: dict = {"runs": {}, "commands": []}
    for name, (agents, networks) in RUNS.items():
        argv = ["--scenario", name, "--agents", agents, "--snapshots", str(networks)]
        records = evaluate_run(argv, work / name, progress, result["commands"])
        result["runs"][name] = [{k: r.get(k) for k in ("M", "L", "K", "tau_p", "agent", "status", "snapshots",
                                                        "system", *METRICS, "ci95_mbps", "ci95_rate_5pct_mbps")}
                                for r in records]
    pilot = ROOT / "docs" / "results" / "pilot_length.json"
    result["pilot_length"] = json.loads(pilot.read_text()) if pilot.exists() else None
    write_json(out, result)
    return result


def verdict(a: float, ci_a: float | None, b: float, ci_b: float | None) -> str:
    """"holds", "does not hold" or "not significant" for the claim a > b (see the module doc)."""
    spread = math.hypot(ci_a or 0.0, ci_b or 0.0)
    if a - b > spread:
        return "holds"
    if b - a > spread:
        return "does not hold (the other way round)"
    return "not significant"


def table(result: dict) -> str:
    lines = ["| paper | claim | claimed | our measurement (same networks) | verdict |", "|---|---|---|---|---|"]
    for c in CLAIMS:
        if "missing" in c:
            lines.append(f"| {c['paper']} | {c['claim']} | {c['claimed']} | not measured: {c['missing']} | – |")
            continue
        records = {r["agent"]: r for r in result["runs"][c["scenario"]] if r["status"] == "ok"
                   and ("size" not in c or (r["M"], r["L"], r["K"], r["tau_p"]) == tuple(c["size"]))}
        a, b = records[c["agent"]], records[c["versus"]]
        ci_name, label = METRICS[c["metric"]]
        ca, cb = (a.get(ci_name), b.get(ci_name)) if ci_name else (None, None)
        size = (a["M"], a["L"], a["K"], a["tau_p"])
        gain = (a[c["metric"]] / b[c["metric"]] - 1) * 100 if b[c["metric"]] else float("nan")
        pm = (lambda v, ci: f"{v:.3f}" + (f" ± {ci:.3f}" if ci is not None else ""))
        lines.append(f"| {c['paper']} | {c['claim']} | {c['claimed']} | `--scenario {c['scenario']}` {size}, "
                     f"{a['snapshots']} networks: {label} {c['agent']} {pm(a[c['metric']], ca)} vs {c['versus']} "
                     f"{pm(b[c['metric']], cb)} ({gain:+.1f} %) | {verdict(a[c['metric']], ca, b[c['metric']], cb)} |")
    pilot = result.get("pilot_length")
    if pilot:
        best, _, ten = pilot_choice([r for r in pilot["rows"] if (r["K"], r["link"], r["agent"]) == (40, "uplink", "master-ap")])
        gain = (best["mean_se"] / ten["mean_se"] - 1) * 100
        held = verdict(best["mean_se"], best["ci95_se"], ten["mean_se"], ten["ci95_se"])
        lines.append(f"| {PILOT_CLAIM['paper']} | {PILOT_CLAIM['claim']} | {PILOT_CLAIM['claimed']} | book default, "
                     f"K = 40, uplink, master-AP, {pilot['networks']} networks: the best tau_p ({best['tau_p']}) gives "
                     f"{best['mean_se']:.3f} ± {best['ci95_se']:.3f} bit/s/Hz against {ten['mean_se']:.3f} ± "
                     f"{ten['ci95_se']:.3f} at the book's tau_p = 10 ({gain:+.1f} %) | {held} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return study_main(argv, __doc__, table, run, Path("results/reproduction"))


if __name__ == "__main__":
    raise SystemExit(main())
