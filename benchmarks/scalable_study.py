"""The scalable model's study (docs/model.md §8): every non-learning agent on the same snapshots of the
scalable user-centric model, uplink and downlink (local MR / MR, the book's DCC, ASD 15 degrees), at the
``scalable`` sizes: mean SE per user, the 95 %-likely SE, the ratio to local search and the time per snapshot.

    python benchmarks/scalable_study.py --out docs/results/scalable.json          # runs evaluate.py twice
    python benchmarks/scalable_study.py --table docs/results/scalable.json        # the README's table

Each link is one ``evaluate.py`` run (its folder under ``--work``, resumable); the JSON keeps, per link, size
and agent, what the table prints, with the settings and the commands that produced it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LINKS = ("uplink", "downlink")
AGENTS = ("random", "greedy", "master-ap", "location", "graph-colouring", "wgf", "hungarian", "kmeans",
          "max-k-cut", "tabu", "local-search", "exhaustive")
"""the agents that need no training (exhaustive runs where it is exact, and is skipped with its reason elsewhere)"""
ASD_DEG = 15.0
LEARNERS = ("gnn", "master-ap", "graph-colouring", "tabu", "local-search")
"""the learner run: gnn trained once at the smallest size (--trained-at) beside the references"""


def run(out: Path, work: Path, snapshots: int, sizes: list[str], progress: bool) -> dict:
    """Both links through ``evaluate.main``; the condensed records."""
    study: dict = {"asd_deg": ASD_DEG, "snapshots": snapshots, "links": {}, "commands": []}
    for link in LINKS:
        argv = ["--model", "scalable", "--link", link, "--asd-deg", str(ASD_DEG), "--agents", ",".join(AGENTS),
                "--sizes", *sizes, "--snapshots", str(snapshots)]
        study["links"][link] = [condensed(r) for r in evaluate_run(argv, work / link, progress, study["commands"])]
    trained_at = sorted(sizes_of(sizes))[0]
    argv = ["--model", "scalable", "--link", "uplink", "--asd-deg", str(ASD_DEG), "--agents", ",".join(LEARNERS),
            "--sizes", *sizes, "--snapshots", str(snapshots), "--trained-at", ",".join(map(str, trained_at))]
    records = evaluate_run(argv, work / "learners", progress, study["commands"])
    study["learners"] = {"link": "uplink", "trained_at": list(trained_at),
                         "records": [condensed(r) | {"train_time_s": r.get("train_time_s")} for r in records]}
    write_json(out, study)
    return study


def evaluate_run(argv: list[str], folder: Path, progress: bool, commands: list[str]) -> list[dict]:
    """One resumable ``evaluate.py`` run of these scripts into ``folder``: its command line appended to
    ``commands`` (what the study JSON records), its records returned; ``SystemExit`` if it fails."""
    import evaluate

    argv = [*argv, "--out", str(folder), "--resume"] + ([] if progress else ["--no-progress"])
    commands.append("python evaluate.py " + " ".join(argv))
    if evaluate.main(argv) != 0:
        raise SystemExit(f"evaluate.py failed: {commands[-1]}")
    return json.loads((folder / "results.json").read_text())


def study_main(argv: list[str] | None, doc: str, table_of: Callable[[dict], str], run_study: Callable[..., dict],
               work: Path) -> int:
    """The command line of a study script: ``--out`` runs ``run_study(out, work, progress)`` and prints its
    table, ``--table`` prints the table of a JSON."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="run the study and write its JSON here")
    parser.add_argument("--table", type=Path, help="print the Markdown table of a study JSON")
    parser.add_argument("--work", type=Path, default=work, help="evaluate.py's run folders")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if printed_table(parser, args, table_of):
        return 0
    from agents.runtime import set_thread_policy

    set_thread_policy()
    print(table_of(run_study(args.out, args.work, not args.no_progress)))
    return 0


def sizes_of(tokens: list[str]) -> list[tuple[int, ...]]:
    """The sizes ``--sizes`` names (groups expanded)."""
    from agents.lab.settings import parse_sizes

    return [tuple(s) for s in parse_sizes(tokens)]


def write_json(path: Path, data: dict) -> None:
    """``data`` as indented JSON at ``path``, atomically (its folder made)."""
    from agents.storage import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def printed_table(parser: argparse.ArgumentParser, args: argparse.Namespace, table_of: Callable[[dict], str]) -> bool:
    """The ``--out`` / ``--table`` choice of these scripts: with ``--table`` print ``table_of`` the JSON
    and return True (exactly one of the two must be given; a missing file is a parser error)."""
    if (args.out is None) == (args.table is None):
        parser.error("give one of --out or --table")
    if args.table is None:
        return False
    print_saved_table(parser, args.table, table_of)
    return True


def print_saved_table(parser: argparse.ArgumentParser, path: Path, table_of: Callable[[dict], str]) -> None:
    """Print ``table_of`` the JSON at ``path`` (a benchmark's ``--table``); a missing file is a parser error."""
    if not path.is_file():
        parser.error(f"{path} does not exist (run with --out first)")
    print(table_of(json.loads(path.read_text())))


def condensed(record: dict) -> dict:
    """What the table needs from one results.json record (its SE fields, per-user rate / bandwidth)."""
    return {k: record.get(k) for k in ("M", "L", "K", "tau_p", "agent", "status", "reason", "snapshots",
                                       "ms_per_snapshot", "mean_se", "se_5pct", "jain_index")}


def table(study: dict) -> str:
    """Markdown: per size, per agent, uplink and downlink mean SE / 95 %-likely SE / ratio to local search / ms."""
    lines = [f"Scalable model, ASD {study['asd_deg']:g} deg, DCC, {study['snapshots']} snapshots per size; SE in "
             "bit/s/Hz per user (mean / 95 %-likely), ratio of the mean to local search's, ms per snapshot.", ""]
    sizes = sorted({(r["M"], r["L"], r["K"], r["tau_p"]) for rs in study["links"].values() for r in rs})
    for size in sizes:
        lines += [f"**(M, L, K, tau_p) = {size}**", "",
                  "| agent | uplink MR: SE / 5 % | ratio | ms | downlink MR: SE / 5 % | ratio | ms |",
                  "|---|---|---|---|---|---|---|"]
        rows: dict[str, list[str]] = {}
        for link in LINKS:
            here = [r for r in study["links"][link] if (r["M"], r["L"], r["K"], r["tau_p"]) == size]
            best = next((r["mean_se"] for r in here if r["agent"] == "local-search" and r["status"] == "ok"), None)
            for r in here:
                cells = rows.setdefault(r["agent"], [])
                if r["status"] != "ok":
                    cells += ["–", "–", "–"]
                    continue
                ratio = f"{r['mean_se'] / best:.4f}" if best else "–"
                cells += [f"{r['mean_se']:.3f} / {r['se_5pct']:.3f}", ratio, f"{r['ms_per_snapshot']:.1f}"]
        for agent in AGENTS:
            if agent in rows:
                lines.append(f"| {agent} | " + " | ".join(rows[agent]) + " |")
        lines.append("")
    if "learners" in study:
        lines += learner_table(study["learners"])
    return "\n".join(lines)


def learner_table(learners: dict) -> list[str]:
    """Markdown lines: gnn trained once at ``trained_at`` beside the references, uplink, per size."""
    records = learners["records"]
    sizes = list(dict.fromkeys((r["M"], r["L"], r["K"], r["tau_p"]) for r in records))
    agents = list(dict.fromkeys(r["agent"] for r in records))
    lines = [f"**Learned: gnn trained once at {tuple(learners['trained_at'])} ({learners['link']}, its default budget), "
             "evaluated at every size** -- mean SE / 95 %-likely SE [bit/s/Hz] (ratio of the mean to local search's)", "",
             "| (M, L, K, tau_p) | " + " | ".join(agents) + " |", "|---|" + "---|" * len(agents)]
    for size in sizes:
        here = {r["agent"]: r for r in records if (r["M"], r["L"], r["K"], r["tau_p"]) == size}
        best = here.get("local-search", {}).get("mean_se")
        cells = []
        for agent in agents:
            r = here.get(agent)
            if r is None or r["status"] != "ok":
                cells.append("–")
                continue
            ratio = f" ({r['mean_se'] / best:.3f})" if best else ""
            cells.append(f"{r['mean_se']:.3f} / {r['se_5pct']:.3f}{ratio}")
        lines.append(f"| {size} | " + " | ".join(cells) + " |")
    trained = next((r.get("train_time_s") for r in records if r["agent"] == "gnn" and r.get("train_time_s")), None)
    if trained is not None:
        lines += ["", f"gnn's training took {trained:.0f} s, not counting its teacher labels (local search on the "
                      "training snapshots, computed once and cached)."]
    return lines + [""]


def headline(study: dict) -> str:
    """Markdown: the largest size only, one row per agent: both links' mean SE / 95 %-likely SE (ratio to local
    search) and the time per snapshot -- the README's headline table."""
    records = [r for rs in study["links"].values() for r in rs]
    size = max({(r["M"], r["L"], r["K"], r["tau_p"]) for r in records}, key=lambda s: s[0] * s[2])
    lines = [f"Scalable model at the book's default size {size}, ASD {study['asd_deg']:g} deg, DCC, "
             f"{study['snapshots']} networks: SE per user [bit/s/Hz], mean / 95 %-likely (mean's ratio to local "
             "search), and ms per network on 2 cores.", "",
             "| agent | uplink, local MR | downlink, MR | ms (uplink) |", "|---|---|---|---|"]
    cells: dict[str, list[str]] = {}
    for link in LINKS:
        here = [r for r in study["links"][link] if (r["M"], r["L"], r["K"], r["tau_p"]) == size and r["status"] == "ok"]
        best = next(r["mean_se"] for r in here if r["agent"] == "local-search")
        for r in here:
            cells.setdefault(r["agent"], []).append(f"{r['mean_se']:.3f} / {r['se_5pct']:.3f} ({r['mean_se'] / best:.3f})")
            if link == LINKS[0]:
                cells[r["agent"]].append(f"{r['ms_per_snapshot']:,.1f}")
    for agent in AGENTS:
        if agent in cells and len(cells[agent]) == 3:
            up, ms, down = cells[agent]
            lines.append(f"| {agent} | {up} | {down} | {ms} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="run both links and write the study JSON here")
    parser.add_argument("--table", type=Path, help="print the Markdown table of a study JSON")
    parser.add_argument("--headline", action="store_true", help="with --table: the README's compact table only")
    parser.add_argument("--work", type=Path, default=Path("results/scalable-study"), help="evaluate.py's run folders")
    parser.add_argument("--snapshots", type=int, default=10, help="test snapshots per size (default 10)")
    parser.add_argument("--sizes", nargs="+", default=["scalable"], help="sizes (default: the scalable group)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if printed_table(parser, args, headline if args.headline else table):
        return 0
    from agents.runtime import set_thread_policy

    set_thread_policy()
    print(table(run(args.out, args.work, args.snapshots, args.sizes, not args.no_progress)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
