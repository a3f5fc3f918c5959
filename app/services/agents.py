"""Agent registry: register, update, deregister, maintenance, heartbeats, and choose an agent.

Deregistering refuses (Conflict) while the agent has tasks assigned or in progress; otherwise it
marks the agent `inactive` rather than deleting it, so its history and figures stay attached to
past tasks; PATCH status=active brings it back.

Health: an agent leaves routing as `unhealthy` after a failure streak (task failures, see
`performance.note_outcome`, or failed health checks). A heartbeat records that it is alive
but reactivates an unhealthy agent only when its streak was already reset (by a successful
health check, a successful task or an operator); otherwise the next health check, seeing the
fresh heartbeat, decides. Operators reactivate directly with PATCH status=active or by turning
maintenance off; both reset the streak.

Endpoints must be allowed by AGENT_ENDPOINT_ALLOW (`app/drivers/endpoints.py`), or be `local`:
a host-free profile served by the OpenCode server beside whichever worker runs its task (the
worker's WORKER_OPENCODE_URL; docs/deployment.md). A new endpoint
drops the stored credentials (config username and password) unless the same change sets a new
config, so a server an agent is pointed at never receives the password of the previous one.

A change that may let an agent take blocked tasks (it is routable afterwards and a fact routing
filters on changed) is remembered in the DB session (`note_if_available`); once the
transaction commits, the caller takes the ids (`take_available`) and wakes the sessions with
blocked tasks (`recovery.resume_blocked`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession

import app.drivers.endpoints as endpoints
from models import Agent, SessionTask
from models.base import utcnow
from models.enums import AgentDriver, AgentStatus

from .errors import Conflict, NotFound, ValidationFailed
from .performance import BUSY_STATUSES, agent_loads

__all__ = [
    "agent_loads", "busy_tasks", "deregister_agent", "get_agent", "list_agents",
    "missing_capabilities", "note_if_available", "record_heartbeat", "register_agent",
    "routing_facts", "set_maintenance", "take_available", "update_agent",
]  # fmt: skip

logger = logging.getLogger(__name__)

SETTABLE_STATUSES = (AgentStatus.ACTIVE, AgentStatus.INACTIVE)
CREDENTIAL_KEYS = ("username", "password")
_NOW_AVAILABLE = "agents.now_available"


def routing_facts(agent: Agent | None) -> tuple | None:
    """What routing's hard filters read of an agent (None for no agent yet)."""
    if agent is None:
        return None
    return (AgentStatus(agent.status), bool(agent.maintenance), agent.capacity,
            tuple(agent.capabilities or ()), AgentDriver(agent.driver),
            tuple(agent.avoided_technologies or ()))  # fmt: skip


def note_if_available(db: DbSession, agent: Agent, before: tuple | None) -> None:
    """Remember, for after the commit, an agent that is routable now and whose routing facts
    changed: it may take tasks that were blocked for want of an agent."""
    if agent.status is AgentStatus.ACTIVE and not agent.maintenance:
        if routing_facts(agent) != before:
            db.info.setdefault(_NOW_AVAILABLE, set()).add(agent.id)


def take_available(db: DbSession) -> set[str]:
    """The ids noted by `note_if_available` since the last call (call after the commit)."""
    return db.info.pop(_NOW_AVAILABLE, set())


def _check_endpoint(endpoint: str | None) -> None:
    problem = endpoints.refusal(endpoint)
    if problem:
        raise ValidationFailed(problem, {"endpoint": [problem]})


def _flush_unique(db: DbSession, name: str) -> None:
    try:
        with db.begin_nested():
            db.flush()
    except IntegrityError as error:
        raise Conflict(f"An agent named '{name}' already exists.") from error


def register_agent(db: DbSession, **fields: Any) -> Agent:
    """Register a new agent; its name must be unique, its endpoint allowed."""
    _check_endpoint(fields.get("endpoint"))
    agent = Agent(**fields)
    db.add(agent)
    _flush_unique(db, fields["name"])
    note_if_available(db, agent, None)
    return agent


def get_agent(db: DbSession, agent_id: str, *, lock: bool = False) -> Agent:
    """The agent with this id (row-locked with `lock`), or NotFound."""
    agent = db.get(
        Agent,
        agent_id,
        with_for_update={"key_share": True} if lock else False,
        populate_existing=lock,
    )
    if agent is None:
        raise NotFound(f"Agent {agent_id} not found.")
    return agent


def list_agents(
    db: DbSession,
    *,
    type: str | None = None,
    capability: str | None = None,
    status: str | None = None,
    maintenance: bool | None = None,
) -> list[Agent]:
    """Agents, filtered by type, capability, status and maintenance, by name."""
    query = select(Agent).order_by(Agent.name)
    if type:
        query = query.where(Agent.type == type)
    if status:
        query = query.where(Agent.status == status)
    if capability:
        query = query.where(Agent.capabilities.contains([capability]))
    if maintenance is not None:
        query = query.where(Agent.maintenance.is_(maintenance))
    return list(db.scalars(query))


def _reactivate(agent: Agent) -> None:
    agent.status, agent.health_reason, agent.consecutive_failures = AgentStatus.ACTIVE, None, 0


def update_agent(db: DbSession, agent_id: str, **changes: Any) -> Agent:
    """Change an agent's settings; status may be set to active (resets health) or inactive.
    A new endpoint must be allowed, and drops the stored credentials unless `config` is set
    too."""
    agent = get_agent(db, agent_id, lock=True)
    before = routing_facts(agent)
    status = changes.pop("status", None)
    if status is not None and AgentStatus(status) not in SETTABLE_STATUSES:
        message = "Only 'active' or 'inactive' can be set; 'unhealthy' is decided by health."
        raise ValidationFailed(message, {"status": [message]})
    driver = AgentDriver(changes.get("driver", agent.driver))
    endpoint = changes.get("endpoint", agent.endpoint)
    if driver is AgentDriver.OPENCODE and not endpoint:
        message = "An opencode agent needs the URL of its server."
        raise ValidationFailed(message, {"endpoint": [message]})
    if "endpoint" in changes:
        _check_endpoint(changes["endpoint"])
        if not endpoints.same_endpoint(changes["endpoint"], agent.endpoint):
            _drop_credentials(agent, changes)
    for name, value in changes.items():
        setattr(agent, name, value)
    if status is not None:
        if AgentStatus(status) is AgentStatus.ACTIVE:
            _reactivate(agent)
        else:
            agent.status = AgentStatus.INACTIVE
    _flush_unique(db, agent.name)
    note_if_available(db, agent, before)
    return agent


def _drop_credentials(agent: Agent, changes: dict[str, Any]) -> None:
    """The endpoint changes: keep the config but its credentials, unless a new one is set."""
    if "config" in changes:
        return
    config = dict(agent.config or {})
    dropped = [key for key in CREDENTIAL_KEYS if config.pop(key, None) is not None]
    if dropped:
        changes["config"] = config
        logger.info("agent endpoint changed, credentials dropped agent_id=%s keys=%s",
                    agent.id, ",".join(dropped))  # fmt: skip


def busy_tasks(db: DbSession, agent_id: str) -> int:
    """Number of tasks assigned to the agent or in progress on it."""
    return db.scalar(
        select(func.count()).where(
            SessionTask.assigned_agent_id == agent_id, SessionTask.status.in_(BUSY_STATUSES)
        )
    )


def deregister_agent(db: DbSession, agent_id: str) -> Agent:
    """Take an idle agent out of service for good (inactive); Conflict while it has work."""
    agent = get_agent(db, agent_id, lock=True)
    busy = busy_tasks(db, agent_id)
    if busy:
        raise Conflict(
            f"Agent {agent.name} has {busy} task(s) assigned or in progress; put it in "
            "maintenance, wait for them to finish, then deregister it."
        )
    agent.status = AgentStatus.INACTIVE
    db.flush()
    return agent


def set_maintenance(db: DbSession, agent_id: str, on: bool, reason: str | None = None) -> Agent:
    """Put an agent in maintenance (out of routing) or take it out, which resets its health."""
    agent = get_agent(db, agent_id, lock=True)
    before = routing_facts(agent)
    agent.maintenance = on
    agent.maintenance_reason = reason if on else None
    if not on and agent.status is AgentStatus.UNHEALTHY:
        _reactivate(agent)
    elif not on:
        agent.consecutive_failures = 0
    db.flush()
    note_if_available(db, agent, before)
    return agent


def record_heartbeat(db: DbSession, agent_id: str) -> Agent:
    """Record that the agent is alive; an unhealthy one returns to active only if its failure
    streak was already reset. A deregistered (inactive) agent is refused."""
    agent = get_agent(db, agent_id, lock=True)
    if agent.status is AgentStatus.INACTIVE:
        raise Conflict(f"Agent {agent.name} is deregistered; PATCH status=active to bring it back.")
    before = routing_facts(agent)
    agent.last_heartbeat_at = utcnow()
    if agent.status is AgentStatus.UNHEALTHY and not agent.consecutive_failures:
        agent.status, agent.health_reason = AgentStatus.ACTIVE, None
    db.flush()
    note_if_available(db, agent, before)
    return agent


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
