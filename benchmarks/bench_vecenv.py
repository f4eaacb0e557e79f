"""Environment steps per second of the RL agents' training environments (docs/rl.md): cfpilot's batched
VecEnv against SB3's DummyVecEnv and SubprocVecEnv of single environments, random actions, one numba thread
(as ``RLAgent.fit`` runs).

    python benchmarks/bench_vecenv.py --out docs/results/bench_vecenv.json
    python benchmarks/bench_vecenv.py --table docs/results/bench_vecenv.json

Each (size, kind) steps for at least ``--seconds`` after a warm-up step; the rate is environment steps
(episodes: the one-step env) per wall second. Throughput, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scalable_study import print_saved_table  # noqa: E402 -- the sibling script, on sys.path as ours

KINDS = {"batched": 64, "dummy": 64, "subproc": 16}
"""VecEnv kind -> number of environments N"""
SIZES = ((10, 2, 6, 3), (45, 2, 20, 10))


def steps_per_second(size: tuple[int, int, int, int], kind: str, n_envs: int, seconds: float) -> float:
    import numpy as np

    from agents.rl.envs import make_vec_env
    from cfenv.config import SystemConfig

    env = make_vec_env(SystemConfig.from_size(size), n_envs, kind=kind)
    try:
        env.reset()
        rng = np.random.default_rng(0)
        sample = lambda: np.stack([env.action_space.sample() for _ in range(n_envs)]) if kind != "batched" else \
            rng.integers(0, size[3], size=(n_envs, size[2]))  # noqa: E731
        env.step(sample())  # warm-up (compilation, process start)
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            env.step(sample())
            steps += n_envs
        return steps / (time.perf_counter() - start)
    finally:
        env.close()


def table(saved: dict) -> str:
    rows = saved["rows"]
    kinds = list(dict.fromkeys((r["kind"], r["n_envs"]) for r in rows))
    by = {(tuple(r["size"]), r["kind"]): r for r in rows}
    lines = ["| size | " + " | ".join(f"{k}, N = {n}" for k, n in kinds) + " |", "|---|" + "---|" * len(kinds)]
    for size in dict.fromkeys(tuple(r["size"]) for r in rows):
        lines.append(f"| {size} | " + " | ".join(f"{by[size, k]['steps_per_s']:,.0f}" if (size, k) in by else "–"
                                                   for k, _ in kinds) + " |")
    meta = saved["meta"]
    return "\n".join(lines) + (f"\n\nEnvironment steps per second, random actions; {meta['date']}, {meta['platform']}, "
                               f"{meta['cpus']} CPUs (load average {meta['load_average']:.1f} at the start).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="stepping time per (size, kind)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_vecenv.json"))
    parser.add_argument("--table", type=Path, default=None, help="print the docs' table of a saved --out JSON")
    args = parser.parse_args(argv)
    if args.table is not None:
        print_saved_table(parser, args.table, table)
        return 0
    import numba

    numba.set_num_threads(1)
    meta = {"date": time.strftime("%Y-%m-%d"), "platform": platform.platform(), "cpus": os.cpu_count(),
            "load_average": os.getloadavg()[0], "seconds": args.seconds}
    rows = []
    for size in SIZES:
        for kind, n_envs in KINDS.items():
            rate = steps_per_second(size, kind, n_envs, args.seconds)
            rows.append({"size": list(size), "kind": kind, "n_envs": n_envs, "steps_per_s": rate})
            print(f"{size} {kind:8} N={n_envs:3}: {rate:,.0f} steps/s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "meta": meta}, indent=1) + "\n")
    print(table({"rows": rows, "meta": meta}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
