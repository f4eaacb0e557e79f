"""Pictures of a network snapshot: APs, users coloured by pilot, co-pilot users linked."""

from __future__ import annotations

import numpy as np

from cfenv.channel import Snapshot
from cfenv.config import SystemConfig

FIGURE_INCHES = 5.0
FIGURE_DPI = 80


def draw_network(snapshot: Snapshot, pilots: np.ndarray | None, config: SystemConfig) -> np.ndarray:
    """Render one snapshot as an ``(H, W, 3)`` uint8 RGB frame (matplotlib, Agg, off-screen).

    Users are coloured by pilot (grey before any assignment); users sharing a pilot
    are joined by a thin line of their colour.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(FIGURE_INCHES, FIGURE_INCHES), dpi=FIGURE_DPI)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    side = config.area_side_m
    ap, ue = snapshot.ap_positions, snapshot.ue_positions
    ax.scatter(ap[:, 0], ap[:, 1], marker="^", s=60, c="black", label="AP")
    if pilots is None:
        ax.scatter(ue[:, 0], ue[:, 1], s=30, c="grey", label="user")
    else:
        cmap = matplotlib.colormaps["tab10" if config.tau_p <= 10 else "tab20"]
        colours = [cmap(int(t) % cmap.N) for t in pilots]
        for t in np.unique(pilots):
            idx = np.flatnonzero(pilots == t)
            for i, a in enumerate(idx):
                for b in idx[i + 1:]:
                    ax.plot(ue[[a, b], 0], ue[[a, b], 1], color=colours[a], lw=0.8, alpha=0.6)
        ax.scatter(ue[:, 0], ue[:, 1], s=40, c=colours, edgecolors="black", label="user")
    ax.set_xlim(0, side)
    ax.set_ylim(0, side)
    ax.set_aspect("equal")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.set_title(f"M={config.M}, K={config.K}, tau_p={config.tau_p}")
    canvas.draw()
    frame = np.asarray(canvas.buffer_rgba())[..., :3]
    return np.ascontiguousarray(frame, dtype=np.uint8)
