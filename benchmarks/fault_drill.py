"""Fault drill: bad input, misbehaving plug-in agents, crashes, concurrent runs, full disks, users'
files and tampering, end to end through the command lines.

    python benchmarks/fault_drill.py                        # about 10 minutes on 2 cores
    python benchmarks/fault_drill.py --only agents,archives # some groups
    python benchmarks/fault_drill.py --table docs/results/fault_drill.json   # the README's table

Every case runs ``evaluate.py`` / ``train.py`` in a subprocess (in a temporary folder), and has a
**control** that shows the case can fail: a planted payload runs under a naive loader
(``torch.load(weights_only=False)``, SB3's ``PPO.load``, ``numpy.load(allow_pickle=True)``), a
misbehaving agent misbehaves under a naive harness, two concurrent runs differ only in what the lock
guards (the same command afterwards is accepted), a signal arrives mid-run, the full disk's limit is
below a file the run writes. Each case is one of:

* ``handled``: one line, exit status 2 (or the cell fails with its reason, the others unchanged), or
  the right result (a resumed run equal to an uninterrupted one, ...);
* ``traceback``: a Python traceback (or an unexpected exit status) reached the user;
* ``hang``: no exit within the time limit;
* ``silently wrong``: exit status 0 with results that are wrong (or bad input accepted);
* ``files lost``: a file the tool did not write was overwritten or removed;
* ``code executed``: a payload planted in a file the tool loads ran;
* ``inconclusive``: the control did not show the failure, so the case proves nothing.

Writes ``benchmarks/results/fault_drill.json`` (each case: class, command, the one line seen,
control, seconds) and prints the table; the exit status is 0 only when every case is handled.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from drill_core import CLASSES, ROOT, Sandbox, records, run_case  # noqa: E402

GROUPS = ("bad input", "agents", "archives", "files", "runs", "tampered chunks", "checkpoints", "training")
RESULT = ROOT / "benchmarks" / "results" / "fault_drill.json"


class Drill:
    """The cases of each group, sharing one sandbox and one reference run."""

    def __init__(self, tmp: Path) -> None:
        self.box = Sandbox(tmp)
        self.reference_out = tmp / "reference"
        self._reference: dict | None = None
        self._training = None

    def reference(self) -> dict:
        from drill_cases import GRID

        if self._reference is None:
            run = self.box.cli(["evaluate.py", *GRID, "--out", str(self.reference_out)])
            if run.code != 0:
                raise RuntimeError(f"the reference run failed: {run.message}")
            self._reference = records(self.reference_out)
        return self._reference

    def cases(self, group: str) -> list:
        import drill_cases as ev
        import drill_training as tr

        box, ref = self.box, self.reference
        if group == "bad input":
            return ev.bad_input_cases(box)
        if group == "agents":
            return ev.Plugins(box, ref).cases()
        if group == "archives":
            return ev.archive_cases(box)
        if group == "files":
            return [*ev.user_out_cases(box, self.reference_out),
                    ("a user's file inside --out/cells, --overwrite", lambda: ev.user_file_in_cells(box)),
                    ("full disk (ulimit -f 16) in evaluate.py, then --resume",
                     lambda: (ref(), ev.full_disk_evaluate(box, ref, self.reference_out))[1])]
        if group == "runs":
            return [("kill -9 (local) then --resume", lambda: ev.kill_and_resume(box, ref, "local")),
                    ("kill -9 (processes) then --resume", lambda: ev.kill_and_resume(box, ref, "processes")),
                    ("two identical evaluate.py on one --out", lambda: ev.concurrent_evaluate(box, ref))]
        if group == "tampered chunks":
            return ev.tampered_chunk_cases(box, ref)
        self._training = self._training or tr.Training(box)
        if group == "checkpoints":
            return self._training.cases()[:6]
        if group == "training":
            return self._training.cases()[6:]
        raise ValueError(f"unknown group {group!r}; groups: {', '.join(GROUPS)}")

    def run(self, groups: list[str]) -> list[dict[str, Any]]:
        from drill_cases import classifier_control

        group_ok, group_control = classifier_control(self.box)
        results = []
        for group in groups:
            for name, body in self.cases(group):
                result = run_case(group, name, body, group_ok)
                if result["control"] == "group control":
                    result["control"] = group_control
                results.append(result)
                print(f"  {result['class']:>14}  {group}: {name}  ({result['seconds']:.0f} s)", flush=True)
        return results


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() \
        else platform.processor()
    return f"{os.cpu_count()} cores ({model}), {platform.system()} {platform.release()}, Python {platform.python_version()}"


def counts(cases: list[dict]) -> dict[str, int]:
    return {"cases": len(cases), **{c: sum(r["class"] == c for r in cases) for c in CLASSES}}


def table(report: dict) -> str:
    """The README's table: one row per group and the total, then the cases not handled, then how
    it was made."""
    cases = report["cases"]
    head = ("group", "cases", *CLASSES)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    groups = list(dict.fromkeys(r["group"] for r in cases))
    for group in groups:
        lines.append("| " + " | ".join([group, *map(str, counts([r for r in cases if r["group"] == group]).values())])
                     + " |")
    lines.append("| " + " | ".join(["**all**", *(f"**{v}**" for v in counts(cases).values())]) + " |")
    bad = [r for r in cases if r["class"] != "handled"]
    if bad:
        lines.append("")
        lines += [f"* {r['class']}: {r['group']}: {r['case']} -- `{r['message']}`" for r in bad]
    lines += ["", f"`{report['command']}` (cfpilot {report['version']}, {report['date']}, {report['machine']}, "
              f"{report['wall_time_s']:.0f} s); table: `python benchmarks/fault_drill.py --table {report['table_source']}`"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help=f"comma-separated groups ({', '.join(GROUPS)}); default: all")
    parser.add_argument("--table", type=Path, metavar="JSON", help="print the README table of a drill's JSON and exit")
    parser.add_argument("--out", type=Path, default=RESULT, help="where the JSON goes (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads(args.table.read_text())))
        return 0
    groups = args.only.split(",") if args.only else list(GROUPS)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cfpilot-drill-") as name:
        cases = Drill(Path(name)).run(groups)
    from cfenv import __version__

    report = {"command": "python benchmarks/fault_drill.py" + (f" --only {args.only}" if args.only else ""),
              "version": __version__, "date": datetime.date.today().isoformat(), "machine": machine(),
              "wall_time_s": round(time.perf_counter() - started, 1), "table_source": "docs/results/fault_drill.json",
              "counts": counts(cases), "cases": cases}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(table(report))
    print(f"wrote {args.out}")
    return 0 if report["counts"]["handled"] == len(cases) else 1


if __name__ == "__main__":
    raise SystemExit(main())
