"""Assignment evaluations per second of the rate engine (issue: foundation).

For one snapshot and a large batch of random assignments, at (10,2,15,3) and
(45,2,20,10), float64 and float32, it times: the numba kernel (numpy default),
the array formula on numpy and on torch, and -- in the same run, as the
reference every ratio is taken against -- the per-user loop transcription of
docs/model.md §2 (:mod:`cfenv.reference`). With ``--device cuda`` the torch formula is also
timed on that device (on ``--device-assignments`` assignments). Prints a table, writes JSON
with the machine and the device.

    python benchmarks/bench_rates.py [--assignments 200000] [--device cpu|cuda|auto]
                                     [--out benchmarks/results/bench_rates.json]
    python benchmarks/bench_rates.py --table docs/results/bench_rates.json   # the README's table
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from agents.lab.machine import DEVICE_FLAG_HELP, machine_info, synchronize
from agents.learning.settings import check_device
from cfenv import SystemConfig, __version__, draw_snapshots, sum_rate
from cfenv.reference import user_rates_loop

SIZES = [(10, 2, 15, 3), (45, 2, 20, 10)]


def best_rate(fn: Callable[[], object], n: int, repeats: int, device: str = "cpu") -> float:
    """Evaluations per second, best of ``repeats`` after one warm-up call (CUDA work awaited)."""
    fn()
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return n / best


def markdown_table(results: dict) -> str:
    """The README's table of a results JSON: float64 evaluations per second of the kernel and the
    formulas, with their ratio to the per-user loop of the same run, and the machine under it."""
    meta = results["meta"]
    lines = ["| size (M, L, K, tau_p) | implementation | evaluations/s | x the per-user loop |", "|---|---|---|---|"]
    for r in results["rows"]:
        if r["dtype"] == "float64":
            lines.append(f"| {tuple(r['size'])} | {r['implementation']} | {r['evals_per_s']:,.0f} | "
                         f"{r['ratio_to_loop']:,.0f} |")
    load = ", ".join(f"{x:.2f}" for x in meta.get("load_average", []))
    lines += ["", f"`python benchmarks/bench_rates.py` (cfpilot {meta.get('cfpilot', '?')}, {meta.get('date', '?')}; "
                  f"{meta.get('cpus', '?')} CPUs, load average {load} before the run; torch {meta.get('torch', '?')}, "
                  f"numpy {meta.get('numpy', '?')}); table: `python benchmarks/bench_rates.py --table FILE`"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assignments", type=int, default=200_000)
    parser.add_argument("--loop-assignments", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help=DEVICE_FLAG_HELP)
    parser.add_argument("--device-assignments", type=int, default=1_000_000,
                        help="assignments per timed call of the torch formula on a CUDA device")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_rates.json"))
    parser.add_argument("--table", type=Path, default=None, help="print the Markdown table of a results JSON and exit")
    args = parser.parse_args()
    if args.table is not None:
        print(markdown_table(json.loads(args.table.read_text())))
        return
    try:
        device = check_device(args.device)
    except ValueError as err:
        parser.error(str(err))

    rows = []
    for size in SIZES:
        cfg = SystemConfig.from_size(size)
        rng = np.random.default_rng(0)
        beta64 = draw_snapshots(cfg, rng).beta
        pilots = rng.integers(0, cfg.tau_p, (args.assignments, cfg.K))
        n_ref = min(args.assignments, 20_000)
        loop_n = args.loop_assignments
        loop = best_rate(lambda: [user_rates_loop(beta64, p, cfg).sum() for p in pilots[:loop_n]], loop_n, 1)
        for dtype in ("float64", "float32"):
            beta = beta64.astype(dtype)
            tbeta = torch.tensor(beta)
            tpilots = torch.tensor(pilots[:n_ref])
            cases = {
                "numba kernel": (lambda: sum_rate(beta, pilots, cfg), args.assignments),
                "numpy formula": (lambda: sum_rate(beta, pilots[:n_ref], cfg, backend="reference"), n_ref),
                "torch formula": (lambda: sum_rate(tbeta, tpilots, cfg), n_ref),
            }
            if device != "cpu":
                n_dev = args.device_assignments
                dev_pilots = torch.as_tensor(rng.integers(0, cfg.tau_p, (n_dev, cfg.K)), device=device)
                dev_beta = tbeta.to(device)
                cases[f"torch formula ({device})"] = (lambda: sum_rate(dev_beta, dev_pilots, cfg), n_dev)
            for name, (fn, n) in cases.items():
                if name == "numba kernel" and dtype == "float32":
                    note = "computes in float64"
                else:
                    note = ""
                on = device if name.endswith(f"({device})") else "cpu"
                rate = best_rate(fn, n, args.repeats, on)
                rows.append({"size": list(size), "dtype": dtype, "implementation": name, "device": on,
                             "evals_per_s": rate, "ratio_to_loop": rate / loop, "note": note})
            rows.append({"size": list(size), "dtype": dtype, "implementation": "per-user loop (reference)",
                         "evals_per_s": loop, "ratio_to_loop": 1.0, "note": "float64 Python loops"})

    header = f"{'size':<16}{'dtype':<9}{'implementation':<28}{'evals/s':>14}{'x loop':>10}  note"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{str(tuple(r['size'])):<16}{r['dtype']:<9}{r['implementation']:<28}"
              f"{r['evals_per_s']:>14,.0f}{r['ratio_to_loop']:>10,.0f}  {r['note']}")
    meta = {**machine_info(device), "cfpilot": __version__, "date": time.strftime("%Y-%m-%d")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
