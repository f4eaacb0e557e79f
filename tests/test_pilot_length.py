"""The pilot length as a decision (agents/pilot_length.py): an agent run at every pilot count up to the
budget, the best by the objective with the pilots used counted."""

from __future__ import annotations

import numpy as np
import pytest

import agents
from cfenv.config import SystemConfig
from cfenv.models import model_of

USED = dict(model="scalable", link="uplink", asd_deg=15.0, pilot_overhead="used")


def test_the_choice_is_the_best_of_the_inner_agent_over_every_pilot_count():
    """Per network, master-ap-tau's value equals the best of master-AP run at tau_p = 1, 2, 3 and scored with
    the pilots it uses counted; so it is never below master-AP at the budget."""
    config = SystemConfig.from_size((12, 2, 6, 3), **USED)
    model = model_of(config)
    snaps = model.draw(np.random.default_rng(0), 4)
    chosen = agents.make("master-ap-tau", config=config).assign(snaps)
    values = np.stack([model.objective(snaps, agents.make("master-ap", config=config.replace(
        tau_p=t, pilot_overhead="budget")).assign(snaps)) for t in (1, 2, 3)])
    np.testing.assert_allclose(model.objective(snaps, chosen), values.max(axis=0))
    assert np.all(model.objective(snaps, chosen) >= model.objective(snaps, agents.make("master-ap", config=config)
                                                                    .assign(snaps)) - 1e-9)


@pytest.mark.parametrize("name", ["tabu-tau", "local-search-tau"])
def test_never_above_the_exact_joint_optimum_and_deterministic(name):
    """EPAS with pilot_overhead="used" enumerates every assignment of up to tau_p pilots: the joint optimum."""
    config = SystemConfig.from_size((10, 2, 5, 3), **USED)
    model = model_of(config)
    snaps = model.draw(np.random.default_rng(2), 3)
    pilots = agents.make(name, config=config, seed=1).assign(snaps)
    np.testing.assert_array_equal(pilots, agents.make(name, config=config, seed=1).assign(snaps))
    best = model.objective(snaps, agents.make("exhaustive", config=config).assign(snaps))
    assert np.all(model.objective(snaps, pilots) <= best * (1 + 1e-12))


def test_refused_where_fewer_pilots_cannot_pay():
    config = SystemConfig.from_size((10, 2, 6, 3))
    snaps = model_of(config).draw(np.random.default_rng(0), 1)
    with pytest.raises(ValueError, match="pilots used"):
        agents.make("tabu-tau", config=config).assign(snaps)


def test_all_leaves_them_out_and_says_why():
    from agents.lab.settings import parse_agents

    assert "tabu-tau" not in parse_agents("all") and "tabu" in parse_agents("all")
    assert "not in 'all'" in agents.available()["tabu-tau"]
