"""Pictures of a network snapshot: APs, users coloured by pilot, co-pilot users linked."""

from __future__ import annotations

import numpy as np

from cfenv.channel import Snapshot
from cfenv.config import SystemConfig
from cfenv.rates import sum_rate
from cfenv.units import MBPS

FIGURE_INCHES = (6.6, 5.0)
"""width, height: the square area on the left, the legend on the right"""
FIGURE_DPI = 80
MARGIN = 0.04
"""blank border around the area, as a fraction of its side, so that edge users are not clipped"""
NO_PILOT_STYLE = {"facecolor": "white", "edgecolor": "0.25", "linewidths": 1.2}
"""users before any assignment: neutral but visible (hollow, dark edge)"""


def torus_segments(a: np.ndarray, b: np.ndarray, side: float, wrap_around: bool = True
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
    """The shortest link from point ``a`` to point ``b`` as segments to draw.

    Without wrap-around it is the straight segment. On the torus (distances are measured
    the short way, docs/model.md §1) the link goes the short way round: when that crosses
    the border it is two segments, ``a`` to ``a + d`` and ``b - d`` to ``b``, where ``d`` is
    the shortest displacement; each leaves the area and is cut at the border when drawn
    (clipped to the area).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = b - a
    if not wrap_around:
        return [(a, b)]
    short = d - side * np.round(d / side)
    if np.allclose(short, d):
        return [(a, b)]
    return [(a, a + short), (b - short, b)]


def draw_network(snapshot: Snapshot, pilots: np.ndarray | None, config: SystemConfig) -> np.ndarray:
    """Render one snapshot as an ``(H, W, 3)`` uint8 RGB frame (matplotlib, Agg, off-screen).

    Users are coloured by pilot (hollow and labelled "no pilot yet" before any
    assignment); users sharing a pilot are joined by a thin line of their colour,
    drawn the short way round the torus when distances wrap around. The title gives
    the sum rate once an assignment is known; the legend shows the pilot colours and
    the AP marker. The frame size does not depend on the snapshot or the assignment.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    fig = Figure(figsize=FIGURE_INCHES, dpi=FIGURE_DPI)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0.12, 0.1, 0.6, 0.8))  # square area: 0.6 * 6.6 ~ 0.8 * 5.0 inches
    side = config.area_side_m
    pad = MARGIN * side
    ap, ue = snapshot.ap_positions, snapshot.ue_positions
    area = Rectangle((0, 0), side, side, fill=False, edgecolor="0.6", lw=0.8, ls="--", zorder=0)
    ax.add_patch(area)
    ax.scatter(ap[:, 0], ap[:, 1], marker="^", s=50, c="black", zorder=3)
    handles = [Line2D([], [], marker="^", color="black", ls="none", markersize=7, label="AP")]
    if pilots is None:
        ax.scatter(ue[:, 0], ue[:, 1], s=40, zorder=4, **NO_PILOT_STYLE)
        handles.append(Line2D([], [], marker="o", ls="none", markersize=7, markerfacecolor="white",
                              markeredgecolor="0.25", label="user, no pilot yet"))
        title = f"M={config.M}, K={config.K}, tau_p={config.tau_p}: no pilots yet"
    else:
        pilots = np.asarray(pilots, dtype=np.int64)
        cmap = matplotlib.colormaps["tab10" if config.tau_p <= 10 else "tab20"]
        colours = [cmap(int(t) % cmap.N) for t in pilots]
        for t in np.unique(pilots):
            idx = np.flatnonzero(pilots == t)
            for i, a in enumerate(idx):
                for b in idx[i + 1:]:
                    for p, q in torus_segments(ue[a], ue[b], side, config.wrap_around):
                        (line,) = ax.plot([p[0], q[0]], [p[1], q[1]], color=colours[a], lw=0.9, alpha=0.6,
                                          zorder=2)
                        line.set_clip_path(area)
        ax.scatter(ue[:, 0], ue[:, 1], s=45, c=colours, edgecolors="black", linewidths=0.6, zorder=4)
        for t in range(config.tau_p):
            users = int(np.sum(pilots == t))
            handles.append(Line2D([], [], marker="o", ls="-", lw=0.9, markersize=7, color=cmap(t % cmap.N),
                                  markeredgecolor="black", label=f"pilot {t} ({users} user{'s' * (users != 1)})"))
        rate = float(sum_rate(snapshot.beta, pilots, config)) / MBPS
        title = f"M={config.M}, K={config.K}, tau_p={config.tau_p}: sum rate {rate:.2f} Mbit/s"
    handles.append(Line2D([], [], color="0.6", lw=0.8, ls="--", label="area" + (" (wraps around)"
                                                                                 if config.wrap_around else "")))
    many = len(handles) > 14
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.03, 1.0), fontsize=6 if many else 8,
              ncol=2 if many else 1, frameon=False, columnspacing=0.8, handlelength=1.5,
              title="co-pilot users linked" if pilots is not None else None, title_fontsize=8)
    ax.set_xlim(-pad, side + pad)
    ax.set_ylim(-pad, side + pad)
    ax.set_aspect("equal")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.set_title(title, fontsize=9)
    canvas.draw()
    frame = np.asarray(canvas.buffer_rgba())[..., :3]
    return np.ascontiguousarray(frame, dtype=np.uint8)
