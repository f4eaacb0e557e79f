"""Cost of realism: the QCNN layer under gate noise, shots, ZNE and parameter shift (issue 6).

Seconds per snapshot (forward pass, no gradient) and per training sample (forward + backward
of the summed outputs w.r.t. inputs and weights) at n = 4, 8 and 16 qubits, float64,
share="level", readout="all", one torch thread, for every execution backend:

  exact          the noiseless torch statevector simulator (the reference of every ratio)
  shots          the same with 1000 shots (binomial sampling of the exact probabilities)
  mixed          PennyLane default.mixed, DepolarizingChannel(p) after every gate (n <= 8)
  mixed+shots    the same with 1000 shots (qml.set_shots)
  mixed+zne      the same mitigated: mitigate_with_zne, fold_global at 1, 3, 5, Richardson
  traj           torch Monte-Carlo trajectories of the same channel, 64 per sample
  traj+zne       the same, folded at 1, 3, 5 (3 x 64 trajectories) and extrapolated
  pshift         parameter-shift gradients on default.qubit (noiseless; training only)
  pshift+mixed   parameter-shift gradients on default.mixed with noise (training only)

(The layer supports n = 4, 8, 16 only -- a power of two for the pooling tree -- so n = 12 is
not measured.) Each time is the best of --repeats runs after a warm-up; runs whose warm-up
takes more than --slow seconds are timed once, by that run ("runs": 1 in the JSON). Prints a
table and the largest n each backend handles within 1 s per snapshot; writes JSON with
machine and versions. Never asserts on time.

    python benchmarks/bench_noise.py [--p 0.01] [--repeats 3] [--out benchmarks/results/bench_noise.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from bench_qml import layer_step  # one training step, shared with the QML benchmark (same folder)

from agents.models.quantum import Execution, QCNNLayer

SHARE, READOUT = "level", "all"


def timed(fn: Callable[[], None], repeats: int, slow: float) -> tuple[float, int]:
    """(best wall time, number of timed runs): a warm-up, then ``repeats`` runs unless slow."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    if first > slow:
        return first, 1
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best, repeats


def forward(layer: QCNNLayer, h: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        with torch.no_grad():
            layer(h)

    return run


def modes(p: float, trajectories: int) -> list[tuple[str, Execution, set[int], bool]]:
    """(name, execution, qubit counts, with a training step)."""
    noisy = Execution(noise_p=p, trajectories=trajectories, seed=0)
    traj = noisy.replace(noise_backend="trajectories")
    return [
        ("exact", Execution(), {4, 8, 16}, True),
        ("shots", Execution(shots=1000, seed=0), {4, 8, 16}, True),
        ("mixed", noisy.replace(noise_backend="default.mixed"), {4, 8}, True),
        ("mixed+shots", noisy.replace(noise_backend="default.mixed", shots=1000), {4, 8}, False),
        ("mixed+zne", noisy.replace(noise_backend="default.mixed", mitigation="zne"), {4, 8}, False),
        ("traj", traj, {4, 8, 16}, True),
        ("traj+zne", traj.replace(mitigation="zne"), {4, 8, 16}, False),
        ("pshift", Execution(grad="parameter-shift"), {4, 8}, True),
        ("pshift+mixed", noisy.replace(grad="parameter-shift"), {4}, True),
    ]


def batch_for(name: str, n: int) -> int:
    """Snapshots per timed call: enough to amortise overheads, few where one costs seconds."""
    if name in ("exact", "shots"):
        return 64
    if n == 16 or name.startswith("pshift") or (n == 8 and name.startswith("mixed")):
        return 1
    return 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qubits", nargs="+", type=int, default=[4, 8, 16])
    parser.add_argument("--p", type=float, default=0.01, help="depolarising probability per gate")
    parser.add_argument("--trajectories", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slow", type=float, default=2.0, help="time once whatever takes longer (s)")
    parser.add_argument("--modes", nargs="+", default=None, help="a subset of the mode names")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_noise.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)

    rows: list[dict] = []
    print(f"{'n':>3} {'mode':<13} {'backend':<14} {'s/snapshot':>11} {'x exact':>9} "
          f"{'s/train sample':>15} {'x exact':>9}")
    for n in args.qubits:
        torch.manual_seed(args.seed)
        layer = QCNNLayer(n, SHARE, READOUT)
        h_all = torch.rand(64, n, dtype=torch.float64, generator=torch.Generator().manual_seed(args.seed))
        reference: dict[str, float] = {}
        for name, execution, qubits, trains in modes(args.p, args.trajectories):
            if n not in qubits or (args.modes and name not in args.modes and name != "exact"):
                continue
            layer.set_execution(execution)
            b = batch_for(name, n)
            h = h_all[:b]
            row = {"n_qubits": n, "mode": name, "backend": layer.execution_backend,
                   "description": layer.describe_execution(), "batch": b}
            if name.startswith("pshift"):
                row.update(s_per_snapshot=None, forward_runs=0)
            else:
                t, runs = timed(forward(layer, h), args.repeats, args.slow)
                row.update(s_per_snapshot=t / b, forward_runs=runs)
            if trains:
                t, runs = timed(layer_step(layer, h), args.repeats, args.slow)
                row.update(s_per_train_sample=t / b, train_runs=runs)
            else:
                row.update(s_per_train_sample=None, train_runs=0)
            if name == "exact":
                reference = {"fwd": row["s_per_snapshot"], "train": row["s_per_train_sample"]}
            row["fwd_ratio_to_exact"] = (row["s_per_snapshot"] / reference["fwd"]
                                         if row["s_per_snapshot"] is not None else None)
            row["train_ratio_to_exact"] = (row["s_per_train_sample"] / reference["train"]
                                           if row["s_per_train_sample"] is not None else None)
            rows.append(row)

            def fmt(v: float | None, spec: str) -> str:
                return "-" if v is None else format(v, spec)

            print(f"{n:>3} {name:<13} {row['backend']:<14} {fmt(row['s_per_snapshot'], '11.4g')} "
                  f"{fmt(row['fwd_ratio_to_exact'], '9.0f')} {fmt(row['s_per_train_sample'], '15.4g')} "
                  f"{fmt(row['train_ratio_to_exact'], '9.0f')}", flush=True)
        layer.set_execution(None)

    print("\nlargest n within 1 s per snapshot:")
    for name in dict.fromkeys(r["mode"] for r in rows):
        ok = [r["n_qubits"] for r in rows if r["mode"] == name and r["s_per_snapshot"] is not None
              and r["s_per_snapshot"] <= 1.0]
        print(f"  {name:<13} {max(ok) if ok else '-'}")

    import pennylane

    meta = {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
            "load_average": os.getloadavg(), "python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "pennylane": pennylane.__version__, "share": SHARE, "readout": READOUT, "dtype": "float64",
            "p": args.p, "trajectories": args.trajectories, "shots": 1000, "seed": args.seed,
            "repeats": args.repeats, "slow_s": args.slow,
            "snapshot": "forward pass without gradient, per sample",
            "train_sample": "forward + backward of outputs.sum() w.r.t. inputs and weights, per sample"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "meta": meta}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
