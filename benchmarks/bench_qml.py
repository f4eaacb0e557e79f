"""Training throughput of the QCNN layer (issue: HQCNN quantum layer).

Samples per second of one training step -- forward, then backward of the sum of the
outputs w.r.t. inputs and weights, float64, share="level", readout="all" -- at n = 8 and
n = 16 qubits, for:

  (a) loop     a per-sample QNode loop (default.qubit, backprop, one call per sample):
               the reference every ratio is taken against, timed on a few samples and
               scaled;
  (b) pl-bcast the "pennylane" backend: one broadcast default.qubit call through
               qml.qnn.TorchLayer;
  (c) torch    the "torch" backend: the batched statevector simulator of agents.models.quantum;
  (d) lightning lightning.qubit with diff_method="adjoint" through the same TorchLayer
               (PennyLane splits the broadcast batch into one tape per sample); skipped
               if pennylane_lightning is missing.

Batch 256 wherever it fits: (b) at n = 16 keeps every intermediate state of ~350 gates
for backprop (~256 MB per gate at batch 256), so it runs a small batch and is scaled.
With ``--device cuda`` the torch backend is also timed on that device ("torch-cuda", batch
``--device-batch``). Throughput is best of --repeats after a warm-up. Targets (issue): (b) >= 50x (a);
(c) >= 5000 samples/s at n = 8. Prints a table and writes JSON with machine and versions.

    python benchmarks/bench_qml.py [--repeats 3] [--device cpu|cuda|auto] [--out benchmarks/results/bench_qml.json]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from agents.lab.machine import DEVICE_FLAG_HELP, machine_info, synchronize
from agents.learning.settings import check_device
from agents.models.quantum import QCNNLayer, make_qnode
from scalable_study import print_saved_table  # the sibling script, on sys.path as ours

SHARE, READOUT, DTYPE = "level", "all", torch.float64


def step_time(fn: Callable[[], None], repeats: int, warmup: Callable[[], None] | None = None,
              device: str = "cpu") -> float:
    """Best wall time of ``fn`` over ``repeats`` runs after one warm-up call (CUDA work awaited)."""
    (warmup or fn)()
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def layer_step(layer: QCNNLayer, h: torch.Tensor) -> Callable[[], None]:
    """One training step: forward of the batch, backward of the summed outputs."""

    def run() -> None:
        layer.zero_grad(set_to_none=True)
        x = h.detach().requires_grad_(True)
        layer(x).sum().backward()

    return run


def loop_step(n: int, h: torch.Tensor, weights: dict[str, torch.Tensor]) -> Callable[[], None]:
    """The reference: one unbroadcast QNode call per sample, then one backward."""
    qnode = make_qnode(n, SHARE, READOUT)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in weights.items()}

    def run() -> None:
        x = h.detach().requires_grad_(True)
        outs = [torch.stack(qnode(x[i], params["conv"], params["pool"])) for i in range(x.shape[0])]
        torch.stack(outs).sum().backward()

    return run


def measure(rows: list[dict], n: int, method: str, batch: int, fn: Callable[[], None], repeats: int,
            warmup: Callable[[], None] | None = None, device: str = "cpu") -> None:
    """Time one method, append its row (with the ratio to this n's loop row) and print it."""
    seconds = step_time(fn, repeats, warmup, device)
    row = {"n_qubits": n, "method": method, "device": device, "batch": batch, "seconds_per_step": seconds,
           "samples_per_s": batch / seconds}
    ref = row if method == "loop" else next(r for r in rows if r["n_qubits"] == n and r["method"] == "loop")
    row["ratio_to_loop"] = row["samples_per_s"] / ref["samples_per_s"]
    rows.append(row)
    print(f"{n:>3} {method:<10} {batch:>6} {row['samples_per_s']:>11.1f} {row['ratio_to_loop']:>8.1f}",
          flush=True)


def _times(ratio: float) -> str:
    return f"{ratio:.1f}x" if ratio < 10 else f"{ratio:,.0f}x"


def table(saved: dict) -> str:
    """The docs' table of a saved run: samples/s (batch) per method and qubit count, with the machine."""
    rows, meta = saved["rows"], saved["meta"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["n_qubits"], r["method"]): r for r in rows}
    lines = ["| n | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for n in sorted({r["n_qubits"] for r in rows}):
        cells = [f"{by[n, m]['samples_per_s']:,.1f} (batch {by[n, m]['batch']}, {_times(by[n, m]['ratio_to_loop'])} loop)"
                 if (n, m) in by else "–" for m in methods]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    info = ", ".join(f"{k} {meta[k]}" for k in ("date", "platform", "cpus", "torch", "torch_threads", "pennylane")
                     if meta.get(k) is not None)
    return "\n".join(lines) + f"\n\nSamples per second of one training step; {info}."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=Path, default=None, help="print the docs' table of a saved --out JSON")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--qubits", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--loop-samples", type=int, nargs=2, default=[8, 4], metavar=("N8", "N16"),
                        help="samples timed for the per-sample loop (a) at n = 8 and at n >= 16")
    parser.add_argument("--pl-batch-16", type=int, default=4, help="batch of (b) at n >= 16 (memory)")
    parser.add_argument("--lightning-samples", type=int, nargs=2, default=[32, 4], metavar=("N8", "N16"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help=DEVICE_FLAG_HELP)
    parser.add_argument("--device-batch", type=int, nargs=2, default=[4096, 256], metavar=("N8", "N16"),
                        help="batch of the torch backend on a CUDA --device")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_qml.json"))
    args = parser.parse_args()
    if args.table is not None:
        print_saved_table(parser, args.table, table)
        return
    try:
        device = check_device(args.device)
    except ValueError as err:
        parser.error(str(err))
    if args.threads:
        torch.set_num_threads(args.threads)
    has_lightning = importlib.util.find_spec("pennylane_lightning") is not None

    rows: list[dict] = []
    header = f"{'n':>3} {'method':<10} {'batch':>6} {'samples/s':>11} {'x loop':>8}"
    print(header)
    print("-" * len(header))
    for n in args.qubits:
        big = n >= 16
        torch.manual_seed(args.seed)
        layer = QCNNLayer(n, SHARE, READOUT, backend="torch", dtype=DTYPE)
        weights = {k: v.detach() for k, v in layer.state_dict().items()}
        gen = torch.Generator().manual_seed(args.seed)
        h = torch.rand(args.batch, n, dtype=DTYPE, generator=gen) * np.pi

        n_loop = args.loop_samples[big]
        measure(rows, n, "loop", n_loop, loop_step(n, h[:n_loop], weights), 1 if big else args.repeats)

        pl = QCNNLayer(n, SHARE, READOUT, backend="pennylane", dtype=DTYPE)
        pl.load_state_dict(weights)
        b = args.pl_batch_16 if big else args.batch
        measure(rows, n, "pl-bcast", b, layer_step(pl, h[:b]), 1 if big else args.repeats)

        warm = layer_step(layer, h[:8]) if big else None
        measure(rows, n, "torch", args.batch, layer_step(layer, h), 2 if big else max(args.repeats, 5), warm)

        if device != "cpu":
            on_dev = QCNNLayer(n, SHARE, READOUT, backend="torch", dtype=DTYPE).to(device)
            on_dev.load_state_dict(weights)
            b = args.device_batch[big]
            h_dev = (torch.rand(b, n, dtype=DTYPE, generator=gen) * np.pi).to(device)
            measure(rows, n, f"torch-{torch.device(device).type}", b, layer_step(on_dev, h_dev),
                    max(args.repeats, 5), layer_step(on_dev, h_dev[:8]), device)

        if has_lightning:
            lit = QCNNLayer(n, SHARE, READOUT, backend="pennylane", dtype=DTYPE,
                            device_name="lightning.qubit", diff_method="adjoint")
            lit.load_state_dict(weights)
            b = args.lightning_samples[big]
            measure(rows, n, "lightning", b, layer_step(lit, h[:b]), 1 if big else args.repeats,
                    layer_step(lit, h[:2]))
        else:
            print(f"{n:>3} lightning  skipped: pennylane_lightning not installed")

    by = {(r["n_qubits"], r["method"]): r for r in rows}
    if (8, "torch") in by:
        print(f"\ntarget (c) torch >= 5000 samples/s at n = 8: {by[8, 'torch']['samples_per_s']:.0f}")
    for n in args.qubits:
        print(f"target (b) pl-bcast >= 50x loop at n = {n}: {by[n, 'pl-bcast']['ratio_to_loop']:.1f}x")

    import pennylane

    lightning = importlib.metadata.version("pennylane_lightning") if has_lightning else None
    meta = {**machine_info(device), "date": time.strftime("%Y-%m-%d"), "pennylane": pennylane.__version__, "pennylane_lightning": lightning,
            "dtype": str(DTYPE), "share": SHARE, "readout": READOUT, "seed": args.seed,
            "repeats": args.repeats, "step": "forward + backward of outputs.sum() w.r.t. inputs and weights"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "meta": meta}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
