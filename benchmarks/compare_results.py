"""Compare two ``results.json`` files of ``evaluate.py``: per-snapshot sum rates and assignments.

    python benchmarks/compare_results.py BEFORE/results.json AFTER/results.json

Used to check that a refactoring changes no number: every (size, agent) cell must have the
same status, the same per-snapshot assignments and sum rates equal to ``--rtol`` (default 0:
bit for bit). Timings are ignored. Exit status 1 on any difference.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def cells(path: Path) -> dict[tuple, dict]:
    """``(M, L, K, tau_p, agent) -> record`` of one results.json."""
    return {(r["M"], r["L"], r["K"], r["tau_p"], r["agent"]): r for r in json.loads(Path(path).read_text())}


def differences(before: dict[tuple, dict], after: dict[tuple, dict], rtol: float = 0.0) -> list[str]:
    """One line per cell that differs (missing, status, assignments or rates)."""
    lines = []
    for key in sorted(set(before) | set(after), key=str):
        a, b = before.get(key), after.get(key)
        if a is None or b is None:
            lines.append(f"{key}: only in {'after' if a is None else 'before'}")
            continue
        if a["status"] != b["status"]:
            lines.append(f"{key}: status {a['status']} -> {b['status']}")
            continue
        if a["per_snapshot_assignments"] != b["per_snapshot_assignments"]:
            lines.append(f"{key}: assignments differ")
        ra, rb = np.asarray(a["per_snapshot_sum_rate_mbps"]), np.asarray(b["per_snapshot_sum_rate_mbps"])
        if ra.shape != rb.shape or not np.allclose(ra, rb, rtol=rtol, atol=0.0):
            lines.append(f"{key}: sum rates differ (max |diff| "
                         f"{np.max(np.abs(ra - rb)) if ra.shape == rb.shape else 'shape'})")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance on sum rates (0: exact)")
    args = parser.parse_args(argv)
    before, after = cells(args.before), cells(args.after)
    lines = differences(before, after, args.rtol)
    for line in lines:
        print(line)
    print(f"{len(before)} cells before, {len(after)} after: "
          f"{'identical' if not lines else f'{len(lines)} differences'}")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
