"""Paper scenarios: the system model, sizes and options a paper evaluates on, as one name
(``evaluate.py --scenario NAME``; ``--list-scenarios``; docs/reproduction.md).

Each :class:`Scenario` states where its numbers come from (the paper's text or the authors' code, file
named) and what cfpilot cannot reproduce of it (another channel model, another power control): a
scenario sets what cfpilot has, and says what it does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cfenv.config import TABLE2_SIZES
from cfenv.units import Size


@dataclass(frozen=True)
class Scenario:
    """One paper's evaluation set-up in cfpilot's terms."""

    source: str
    """the paper, and where its parameters were read"""
    system: dict[str, Any]
    """:class:`cfenv.config.SystemConfig` fields besides the size (``{}``: the seed paper's model)"""
    sizes: tuple[Size, ...]
    """(M, L, K, tau_p) sizes"""
    differs: str = ""
    """what of the paper's set-up cfpilot does not reproduce"""
    agents: tuple[str, ...] = field(default=())
    """the agents its claims are about (beside the references)"""


SCENARIOS: dict[str, Scenario] = {
    "paper-table2": Scenario(
        "Nguyen et al., Hybrid quantum CNN-aided pilot assignment in cell-free massive MIMO (the seed paper), Table II",
        {}, TABLE2_SIZES, "the paper's own simulator (cfpilot's rate equals Ngo et al.'s code; the paper's numbers "
        "are not reproducible to the digit)", ("hqcnn", "mlp", "master-ap", "greedy", "location", "random")),
    "book-default": Scenario(
        "Demir, Bjornson & Sanguinetti, Foundations of User-Centric Cell-Free Massive MIMO (2021), Section 5.3 "
        "and its code (generateSetup.m; L = 100 APs, N = 4, K = 40, tau_p = 10, tau_c = 200)",
        {"model": "scalable", "asd_deg": 15.0}, ((100, 4, 40, 10),), "", ("master-ap",)),
    "bjornson2020": Scenario(
        "Bjornson & Sanguinetti, Scalable cell-free massive MIMO systems, IEEE TCOM 68(7), 2020 (100 APs x 4 "
        "antennas, 100 users, 10 pilots, as the literature map reads it)",
        {"model": "scalable", "asd_deg": 15.0}, ((100, 4, 100, 10),), "", ("master-ap",)),
    "liu2020-tabu": Scenario(
        "Liu et al., Tabu-search-based pilot assignment for cell-free massive MIMO, IEEE TVT 69(2), 2020 "
        "(BJTU-MIMO/CF-Tabu-Search-Pilot-Assignment, simulation_main.m: M = 100 single-antenna APs, K = 40, "
        "tau_p = 30, Ngo et al.'s model)",
        {}, ((100, 1, 40, 30),), "the code scores the uplink of Ngo et al.'s model with max-min power control; "
        "cfpilot's paper model has the downlink with equal power", ("tabu-liu2020", "tabu", "greedy", "random")),
    "liu2020-graph": Scenario(
        "Liu et al., Graph coloring based pilot assignment for cell-free massive MIMO systems, IEEE TVT 69(8), "
        "2020 (BJTU-MIMO/CF-Graph-Coloring-Pilot-Assignment: 100 APs, 40 users, 10 pilots, Ngo et al.'s model)",
        {}, ((100, 1, 40, 10),), "the code scores the uplink with max-min or fractional power control; cfpilot's "
        "paper model has the downlink with equal power", ("graph-colouring-liu2020", "graph-colouring", "random")),
    "chen2021": Scenario(
        "Chen et al., Structured massive access for scalable cell-free massive MIMO systems, IEEE JSAC 39(4), 2021 "
        "(simulationSE.m: L = 100 APs, N = 4, K = 100, tau_p = 5, tau_c = 200)",
        {"model": "scalable", "asd_deg": 15.0, "link": "uplink", "lsfd": True}, ((100, 4, 100, 5),),
        "the code evaluates MMSE combining with partial LSFD on its own clusters and power control; cfpilot scores "
        "local MR with n-opt LSFD on the book's clusters", ("structured-chen2021", "master-ap", "random")),
    "gao2024": Scenario(
        "Gao et al., A matching-based pilot assignment algorithm for cell-free massive MIMO networks, IEEE TVT 2024 "
        "(as the Marine-MJH/cellfree-pilot-hybrids port sets it up, src/config.py: 500 single-antenna APs, 200 "
        "users, tau_p = 20 (its Fig. 2) and 10 (the +23 % claim), Ngo et al.'s model)",
        {}, ((500, 1, 200, 10), (500, 1, 200, 20)), "the paper scores the uplink of Ngo et al.'s model with max-min, "
        "full or fractional power control; cfpilot's paper model has the downlink with equal power",
        ("matching-gao2024", "graph-colouring-liu2020", "random")),
    "mussbah2024": Scenario(
        "Mussbah, Schwarz & Rupp, Beam-domain-based pilot assignment for energy efficient cell-free massive MIMO, "
        "IEEE CL 28(9), 2024 (as the Marine-MJH/cellfree-pilot-hybrids port sets it up, MJH/mussbah_beam_domain.py: "
        "L = 100 APs, N = 8 antennas, K = 30, baselines at tau_p = 10, tau_c = 100; the pilots counted are those used)",
        {"model": "scalable", "asd_deg": 15.0, "link": "uplink", "tau_c": 100, "pilot_overhead": "used"},
        ((100, 8, 30, 10),), "its channel is one-ring + Rician (10 dB K-factor) on 3GPP path loss at 5 GHz with max-min "
        "uplink power; cfpilot's is the book's local scattering with the book's power",
        ("beam-mussbah2024", "random", "greedy", "wgf", "graph-colouring-liu2020")),
    "marine-e4": Scenario(
        "Marine-MJH/cellfree-pilot-hybrids, the 'E4' common-ground benchmark (200 APs x 8, 50 users, 15 pilots, "
        "tau_c = 150)", {"model": "scalable", "asd_deg": 15.0, "tau_c": 150}, ((200, 8, 50, 15),),
        "its channel is one-ring + Rician (10 dB) at 3 GHz; cfpilot's is the book's local scattering", ("master-ap",)),
    "alifa2026": Scenario(
        "Alifa et al., GIN for joint pilot and power allocation, IEEE OJCOMS 2026 (128 APs x 4, 64 users, 16 pilots)",
        {"model": "scalable", "asd_deg": 15.0}, ((128, 4, 64, 16),), "the paper optimises power jointly (max-min "
        "SE); cfpilot keeps the book's power", ("master-ap",)),
}
"""scenario name -> :class:`Scenario` (``evaluate.py --scenario``)"""


def scenario(name: str) -> Scenario:
    """The scenario ``name``; one-line ``ValueError`` naming the valid ones otherwise."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; valid: {', '.join(SCENARIOS)}")
    return SCENARIOS[name]
