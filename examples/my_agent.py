"""An agent of your own in cfpilot's table: subclass ``Agent``, implement ``_assign``.

    python evaluate.py --agents examples.my_agent:StrongestAPAgent,master-ap,random --sizes small

(run from the repository root, or put the module anywhere on ``PYTHONPATH``; an installed
package can register it under the entry-point group ``cfpilot.agents`` instead).
"""

import numpy as np

from agents.base import Agent


class StrongestAPAgent(Agent):
    """Users whose strongest AP is the same get different pilots (round-robin per AP)."""

    name = "strongest-ap"

    def _assign(self, snapshots, config, rng):
        strongest = snapshots.beta.argmax(axis=1)  # (B, K): each user's strongest AP
        rank = (strongest[:, :, None] == strongest[:, None, :]).cumsum(axis=2)  # users sharing that AP so far
        order = np.take_along_axis(rank, np.arange(config.K)[None, :, None], axis=2)[..., 0] - 1
        return (order + strongest) % config.tau_p
