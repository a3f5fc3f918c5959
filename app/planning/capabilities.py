"""The 24 capabilities an agent can offer and a planned task can require (one definition,
in `models.enums`, shared by the planner, the API and the database)."""

from __future__ import annotations

from models.enums import AgentCapability

KNOWN_CAPABILITIES: frozenset[str] = frozenset(capability.value for capability in AgentCapability)

__all__ = ["KNOWN_CAPABILITIES", "AgentCapability"]
