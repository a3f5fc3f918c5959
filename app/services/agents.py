"""Agent registry and routing of tasks to the best available agent."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession

from models import Agent, SessionTask
from models.enums import AgentStatus, TaskStatus

from .errors import Conflict, NotFound

BUSY_STATUSES = (TaskStatus.ASSIGNED, TaskStatus.IN_PROGRESS)


def register_agent(db: DbSession, **fields: Any) -> Agent:
    """Register a new agent; its name must be unique."""
    agent = Agent(**fields)
    db.add(agent)
    try:
        with db.begin_nested():
            db.flush()
    except IntegrityError as error:
        raise Conflict(f"An agent named '{fields['name']}' already exists.") from error
    return agent


def get_agent(db: DbSession, agent_id: str) -> Agent:
    """The agent with this id, or NotFound."""
    agent = db.get(Agent, agent_id)
    if agent is None:
        raise NotFound(f"Agent {agent_id} not found.")
    return agent


def list_agents(
    db: DbSession,
    *,
    type: str | None = None,
    capability: str | None = None,
    status: str | None = None,
) -> list[Agent]:
    """Agents, filtered by type, capability and status, by name."""
    query = select(Agent).order_by(Agent.name)
    if type:
        query = query.where(Agent.type == type)
    if status:
        query = query.where(Agent.status == status)
    if capability:
        query = query.where(Agent.capabilities.contains([capability]))
    return list(db.scalars(query))


def _routable(db: DbSession):
    return select(Agent).where(Agent.status == AgentStatus.ACTIVE, Agent.maintenance.is_(False))


def missing_capabilities(db: DbSession, required_sets: Iterable[Iterable[str]]) -> list[str]:
    """Capability sets (as text) that no routable agent covers on its own."""
    agents = [set(agent.capabilities) for agent in db.scalars(_routable(db))]
    missing = []
    for required in required_sets:
        needed = set(required)
        if not any(needed <= have for have in agents):
            missing.append(", ".join(sorted(needed)))
    return sorted(set(missing))


def agent_loads(db: DbSession) -> dict[str, int]:
    """Number of tasks each agent is working on now."""
    rows = db.execute(
        select(SessionTask.assigned_agent_id, func.count())
        .where(SessionTask.status.in_(BUSY_STATUSES), SessionTask.assigned_agent_id.is_not(None))
        .group_by(SessionTask.assigned_agent_id)
    )
    return {agent_id: count for agent_id, count in rows}


def choose_agent(db: DbSession, required: Iterable[str]) -> Agent | None:
    """The routable agent with the required capabilities and the most spare capacity."""
    needed = list(required)
    candidates = [
        agent for agent in db.scalars(_routable(db).where(Agent.capabilities.contains(needed)))
    ]
    if not candidates:
        return None
    loads = agent_loads(db)
    return min(
        candidates,
        key=lambda agent: (loads.get(agent.id, 0) / max(agent.capacity, 1), agent.name),
    )
