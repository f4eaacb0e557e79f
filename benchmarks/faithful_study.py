"""The faithful variants beside cfpilot's readings (docs/literature.md §7): ``tabu`` vs ``tabu-liu2020``,
``graph-colouring`` vs ``graph-colouring-liu2020``, and ``structured-chen2021``, ``matching-gao2024``,
``beam-mussbah2024``, on the same snapshots, as
ratios of the mean objective to local search's, with master-AP as the common reference and the time per snapshot.

Three systems: the seed paper's model (downlink sum rate; the BJTU tabu scores an uplink one), and the
scalable model's uplink (the objective the BJTU tabu was written for) and downlink, ASD 15 degrees, DCC.

    python benchmarks/faithful_study.py --out docs/results/faithful.json     # runs evaluate.py three times
    python benchmarks/faithful_study.py --table docs/results/faithful.json   # the docs' table
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scalable_study import evaluate_run, study_main, write_json  # noqa: E402 -- the sibling script, on sys.path as ours

AGENTS = ("master-ap", "tabu", "tabu-liu2020", "graph-colouring", "graph-colouring-liu2020", "structured-chen2021",
          "matching-gao2024", "beam-mussbah2024", "local-search")
PAIRS = (("tabu", "tabu-liu2020"), ("graph-colouring", "graph-colouring-liu2020"))
SYSTEMS = {
    "paper": ([], ["10,2,9,3", "100,4,40,10"], 50),
    "scalable-uplink": (["--model", "scalable", "--link", "uplink", "--asd-deg", "15"], ["scalable"], 10),
    "scalable-downlink": (["--model", "scalable", "--link", "downlink", "--asd-deg", "15"], ["scalable"], 10),
}
"""name -> (system flags, sizes, test snapshots)"""


def run(out: Path, work: Path, progress: bool) -> dict:
    study: dict = {"systems": {}, "commands": []}
    for name, (flags, sizes, snapshots) in SYSTEMS.items():
        argv = [*flags, "--agents", ",".join(AGENTS), "--sizes", *sizes, "--snapshots", str(snapshots)]
        records = evaluate_run(argv, work / name, progress, study["commands"])
        study["systems"][name] = [{k: r.get(k) for k in ("M", "L", "K", "tau_p", "agent", "status", "snapshots",
                                                          "mean_objective", "ci95_objective", "mean_se", "se_5pct",
                                                          "ms_per_snapshot")} for r in records]
    write_json(out, study)
    return study


def table(study: dict) -> str:
    lines = ["Faithful variants beside cfpilot's readings: mean objective (sum rate / sum SE) as a ratio to local "
             "search's on the same snapshots; 95 %-likely SE [bit/s/Hz]; ms per snapshot.", "",
             "| system | (M, L, K, tau_p) | snapshots | master-ap | tabu | tabu-liu2020 | graph-colouring | "
             "graph-colouring-liu2020 | structured-chen2021 | matching-gao2024 | beam-mussbah2024 | 5 %: tabu / -liu2020 | "
             "ms: tabu / -liu2020 |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, records in study["systems"].items():
        sizes = list(dict.fromkeys((r["M"], r["L"], r["K"], r["tau_p"]) for r in records))
        for size in sizes:
            here = {r["agent"]: r for r in records if (r["M"], r["L"], r["K"], r["tau_p"]) == size and r["status"] == "ok"}
            best = here["local-search"]["mean_objective"]
            ratio = [f"{here[a]['mean_objective'] / best:.4f}" if a in here else "–"
                     for a in AGENTS[:-1]]
            outage = " / ".join(f"{here[a]['se_5pct']:.3f}" for a in PAIRS[0])
            ms = " / ".join(f"{here[a]['ms_per_snapshot']:.1f}" for a in PAIRS[0])
            lines.append(f"| {name} | {size} | {here['local-search']['snapshots']} | " + " | ".join(ratio)
                         + f" | {outage} | {ms} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return study_main(argv, __doc__, table, run, Path("results/faithful-study"))


if __name__ == "__main__":
    raise SystemExit(main())
