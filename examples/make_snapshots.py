"""Write an example snapshots file for ``evaluate.py --snapshots-file`` (format: docs/data.md).

A layout cfpilot's model does not draw: APs on a regular grid, most users in a few hotspots,
distances in the plane (no wrap-around), the three-slope path loss of docs/model.md §1 plus
8 dB log-normal shadowing. Replace ``fading`` with your own measurements or ray tracer.

    python examples/make_snapshots.py --out my.npz --snapshots 20 --aps 16 --users 12 --tau-p 4
    python evaluate.py --agents master-ap,local-search,max-k-cut --snapshots-file my.npz
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from cfenv.channel import pairwise_distance_m, path_loss_db
from cfenv.config import SystemConfig


def layout(rng: np.random.Generator, M: int, K: int, side: float, hotspots: int = 3,
           spread_m: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
    """AP positions ``(M, 2)`` on a near-square grid (cell centres) and user positions
    ``(K, 2)``, 70 % around ``hotspots`` random centres (Gaussian, ``spread_m``), the rest
    uniform; all inside ``[0, side]`` [m]."""
    cols = int(np.ceil(np.sqrt(M)))
    rows = int(np.ceil(M / cols))
    cells = [((c + 0.5) * side / cols, (r + 0.5) * side / rows) for r in range(rows) for c in range(cols)]
    aps = np.array(cells[:M], dtype=np.float64)
    centres = rng.uniform(0.2 * side, 0.8 * side, (hotspots, 2))
    in_spot = rng.random(K) < 0.7
    users = rng.uniform(0.0, side, (K, 2))
    near = centres[rng.integers(0, hotspots, K)] + rng.normal(0.0, spread_m, (K, 2))
    users[in_spot] = near[in_spot]
    return aps, np.clip(users, 0.0, side)


def fading(aps: np.ndarray, users: np.ndarray, config: SystemConfig, rng: np.random.Generator) -> np.ndarray:
    """``(M, K)`` linear gains in (0, 1]: plane distances, three-slope path loss, shadowing beyond d1."""
    d = pairwise_distance_m(aps, users, config.area_side_m, wrap_around=False)
    shadow = np.where(d > config.d1_m, config.shadowing_std_db * rng.standard_normal(d.shape), 0.0)
    return np.minimum(10.0 ** ((path_loss_db(d, config) + shadow) / 10.0), 1.0)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "cfpilot-example-snapshots.npz",
                        help="the .npz to write; its sidecar goes beside it as .json (default: in the temp folder)")
    parser.add_argument("--snapshots", type=int, default=8)
    parser.add_argument("--aps", type=int, default=16)
    parser.add_argument("--antennas", type=int, default=2, help="L, written to the sidecar")
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--tau-p", type=int, default=4, help="written to the sidecar")
    parser.add_argument("--side", type=float, default=500.0, help="area side D [m]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-positions", action="store_true", help="write beta only")
    args = parser.parse_args(argv)
    config = SystemConfig(M=args.aps, L=args.antennas, K=args.users, tau_p=args.tau_p, area_side_m=args.side,
                          wrap_around=False)
    rng = np.random.default_rng(args.seed)
    drops = [layout(rng, config.M, config.K, config.area_side_m) for _ in range(args.snapshots)]
    aps = np.stack([a for a, _ in drops])
    users = np.stack([u for _, u in drops])
    beta = np.stack([fading(a, u, config, rng) for a, u in drops])
    arrays = {"beta": beta} if args.no_positions else {"beta": beta, "ap_positions": aps, "ue_positions": users}
    out = args.out.with_suffix(".npz")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    sidecar = {"L": config.L, "tau_p": config.tau_p, "area_side_m": config.area_side_m, "wrap_around": False}
    out.with_suffix(".json").write_text(json.dumps(sidecar, indent=1) + "\n")
    print(f"wrote {out} (beta {beta.shape}{'' if args.no_positions else ' and positions'}) and "
          f"{out.with_suffix('.json')}\nnext: python evaluate.py --agents master-ap,local-search "
          f"--snapshots-file {out}")
    return out


if __name__ == "__main__":
    main()
