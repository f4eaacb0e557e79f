"""How fast the command lines answer ``--help`` (issue #29: under a second), against a bare interpreter
start measured in the same run (a ratio, since machines are noisy): the median of ``--repeats`` runs each.

    python benchmarks/bench_help.py --out docs/results/bench_help.json
    python benchmarks/bench_help.py --table docs/results/bench_help.json
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scalable_study import printed_table, write_json  # noqa: E402 -- the sibling script, on sys.path as ours

COMMANDS = {"python -c pass (reference)": ["-c", "pass"], "evaluate.py --help": ["evaluate.py", "--help"],
            "train.py --help": ["train.py", "--help"],
            "python -m agents.lab.noise_study --help": ["-m", "agents.lab.noise_study", "--help"]}


def measure(repeats: int) -> dict:
    from agents.lab.machine import machine_info
    from cfenv import __version__

    rows = {}
    for name, argv in COMMANDS.items():
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, check=True)
            times.append(time.perf_counter() - start)
        rows[name] = statistics.median(times)
    return {"repeats": repeats, "seconds": rows, "machine": machine_info(), "cfpilot": __version__,
            "date": time.strftime("%Y-%m-%d")}


def table(result: dict) -> str:
    ref = result["seconds"]["python -c pass (reference)"]
    lines = ["| command | median wall time [s] | x a bare interpreter start |", "|---|---|---|"]
    lines += [f"| `{name}` | {t:.2f} | {t / ref:.1f} |" for name, t in result["seconds"].items()]
    m = result["machine"]
    return "\n".join(lines) + (f"\n\n`python benchmarks/bench_help.py` (cfpilot {result['cfpilot']}, {result['date']}; "
                               f"{m['cpus']} CPUs, load average {', '.join(f'{x:.2f}' for x in m['load_average'])} "
                               f"at the end; {result['repeats']} runs each)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="measure and write the JSON here")
    parser.add_argument("--table", type=Path, help="print the Markdown table of a JSON")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if printed_table(parser, args, table):
        return 0
    result = measure(args.repeats)
    write_json(args.out, result)
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
