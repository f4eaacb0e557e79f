"""``evaluate.py --score``: every agent's assignments rescored under other processing schemes.

The agents choose their assignments on the model's closed form (the scalable model: local MR / MR); the
rescoring asks what those assignments give under the schemes that have no closed form (LP-MMSE, P-MMSE,
MMSE), by the model's Monte-Carlo simulation (:meth:`cfenv.models.base.SystemModel.monte_carlo_se`).
Snapshot ``i`` of a size draws its channel realizations from ``stream_rng(seed, RESCORE_STREAM, M, L, K,
tau_p, i)``: the same for every agent and every scheme, so the comparison between agents is paired.
Each ok record gains ``rescored`` = ``{scheme: {mean_se, ci95_se, se_5pct, ratio, ratio_to}}`` (SE in
bit/s/Hz, pre-log included; ratio of mean SE to the reference's under the same scheme: EPAS where it ran,
else the best agent under that scheme) and ``realizations``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.base import RESCORE_STREAM, stream_rng
from agents.lab.stats import REFERENCE_AGENT, ci95, rate_percentile
from cfenv.channel import Snapshot
from cfenv.config import SystemConfig
from cfenv.models import model_of
from cfenv.units import Size


def _size_of(record: dict[str, Any]) -> Size:
    return (record["M"], record["L"], record["K"], record["tau_p"])


def check_score(schemes: tuple[str, ...], config: SystemConfig) -> None:
    """``ValueError`` unless the model of ``config`` simulates every scheme (before any work)."""
    model = model_of(config)
    if not model.processing:
        raise ValueError(f"score: the {config.model} model has no Monte-Carlo processing schemes (its SE is its "
                         "closed form): --score needs the scalable model (--model scalable)")
    for name in schemes:
        if name not in model.processing:
            raise ValueError(f"score: the {config.model} model simulates {', '.join(model.processing)}; got {name!r}")


def rescore_records(records: list[dict[str, Any]], snapshots: dict[Size, Snapshot], configs: dict[Size, SystemConfig],
                    schemes: tuple[str, ...], realizations: int, seed: int, progress: bool = True) -> None:
    """Add ``rescored`` (see the module doc) to every ok record, in place. ``configs`` is each size's
    system (the one its snapshots are scored with). An assignment two agents share is simulated once."""
    from tqdm.auto import tqdm

    sizes = list(dict.fromkeys(_size_of(r) for r in records))
    todo = sum(len(snapshots[s].beta) for s in sizes if any(r["status"] == "ok" for r in records if _size_of(r) == s))
    bar = tqdm(total=todo, desc=f"rescoring ({', '.join(schemes)}, {realizations} realizations)", unit="snapshot",
               disable=not progress)
    for size in sizes:
        ok = [r for r in records if _size_of(r) == size and r["status"] == "ok"]
        if not ok:
            continue
        model, snaps = model_of(configs[size]), snapshots[size]
        n = min(len(r["per_snapshot_assignments"]) for r in ok)
        se = {(r["agent"], s): np.zeros((n, size[2])) for r in ok for s in schemes}
        for i in range(n):
            done: dict[tuple[int, ...], dict[str, np.ndarray]] = {}
            for r in ok:
                key = tuple(r["per_snapshot_assignments"][i])
                if key not in done:
                    rng = stream_rng(seed, RESCORE_STREAM, *size, i)  # the same draws for every agent and scheme
                    done[key] = model.monte_carlo_se(snaps[i], np.array(key, dtype=np.int64), schemes, realizations, rng)
                for s in schemes:
                    se[(r["agent"], s)][i] = done[key][s]
            bar.update(1)
        for s in schemes:
            means = {r["agent"]: float(se[(r["agent"], s)].mean()) for r in ok}
            ref = REFERENCE_AGENT if REFERENCE_AGENT in means else max(means, key=means.get)
            label = REFERENCE_AGENT if ref == REFERENCE_AGENT else f"best ({ref})"
            for r in ok:
                values = se[(r["agent"], s)]
                r.setdefault("rescored", {})[s] = {
                    "mean_se": means[r["agent"]], "ci95_se": ci95(values.mean(axis=1)),
                    "se_5pct": rate_percentile(values), "ratio": means[r["agent"]] / means[ref] if means[ref] else None,
                    "ratio_to": label}
                r["realizations"] = realizations
    bar.close()


def rescored_fields(records: list[dict[str, Any]]) -> list[str]:
    """The flat CSV columns of the rescored figures present (``mean_se_lp_mmse``, ``se_5pct_lp_mmse`` ...)."""
    schemes = list(dict.fromkeys(s for r in records for s in r.get("rescored", {})))
    return [f"{field}_{s.replace('-', '_')}" for s in schemes for field in ("mean_se", "ci95_se", "se_5pct", "ratio")]


def flat_rescored(record: dict[str, Any]) -> dict[str, Any]:
    """A record's rescored figures as the flat columns of :func:`rescored_fields`."""
    return {f"{field}_{s.replace('-', '_')}": values[field]
            for s, values in record.get("rescored", {}).items() for field in ("mean_se", "ci95_se", "se_5pct", "ratio")}


def rescored_table(records: list[dict[str, Any]]) -> list[str]:
    """Markdown lines: per size and agent, each scheme's mean SE ± CI / 95 %-likely SE (ratio); empty
    when no record was rescored."""
    scored = [r for r in records if r.get("rescored")]
    if not scored:
        return []
    schemes = list(dict.fromkeys(s for r in scored for s in r["rescored"]))
    realizations = scored[0].get("realizations")
    link = SystemConfig.from_size(_size_of(scored[0]), **scored[0].get("system", {})).link
    lines = [f"Rescored by Monte-Carlo ({realizations} channel realizations per snapshot, the same for every agent"
             f", {link}): SE per user [bit/s/Hz], mean ± 95 % CI / 95 %-likely, and the mean's "
             "ratio to EPAS where it ran, else to the best agent under that scheme (*)", "",
             "| size | agent | " + " | ".join(s.upper() for s in schemes) + " |", "|---|---|" + "---|" * len(schemes)]
    for r in scored:
        cells = []
        for s in schemes:
            v = r["rescored"].get(s)
            if v is None:
                cells.append("–")
                continue
            star = "" if v["ratio_to"] == REFERENCE_AGENT else "*"
            ratio = "–" if v["ratio"] is None else f"{v['ratio']:.4f}{star}"
            cells.append(f"{v['mean_se']:.3f} ± {v['ci95_se']:.3f} / {v['se_5pct']:.3f} ({ratio})")
        lines.append(f"| ({r['M']},{r['L']},{r['K']},{r['tau_p']}) | {r['agent']} | " + " | ".join(cells) + " |")
    return lines
