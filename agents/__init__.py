"""The agent zoo: one interface (:class:`agents.base.Agent`), a registry, and the agents."""

from agents.base import Agent, LearnableAgent, canonical_pilots
from agents.registry import available, make

__all__ = ["Agent", "LearnableAgent", "available", "canonical_pilots", "make"]
