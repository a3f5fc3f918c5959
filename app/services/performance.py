"""Agent performance: success rate, durations, tier and load level, and the failure streak that
takes an agent out of routing.

Tiers, from the agent's finished tasks (completed + failed = total, rate = completed / total),
checked in this order:

- trainee: fewer than 5 finished tasks (too little history to judge);
- elite: rate >= 0.95 with at least 20 finished tasks;
- advanced: rate >= 0.85 (an agent at >= 0.95 with fewer than 20 tasks is advanced);
- competent: rate >= 0.70;
- degraded: rate < 0.70.

Load levels, from ratio = tasks assigned or in progress / capacity: idle (no task), optimal
(<= 0.6), high (<= 0.85), critical (< 1.0), overloaded (>= 1.0).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from flask import current_app, has_app_context
from sqlalchemy import func, select
from sqlalchemy.orm import Session as DbSession

from models import Agent, SessionTask
from models.enums import AgentStatus, TaskStatus

logger = logging.getLogger(__name__)

BUSY_STATUSES = (TaskStatus.ASSIGNED, TaskStatus.IN_PROGRESS)
# Beta(2, 2) prior on the success rate: an agent without history scores 0.5, and one outcome
# moves it by at most 0.1, so neither a newcomer nor one early failure dominates routing.
PRIOR_SUCCESSES = 2.0
PRIOR_FAILURES = 2.0
DEFAULT_FAILURE_THRESHOLD = 5
TRAINEE_BELOW_TASKS = 5
ELITE_MIN_TASKS = 20


class Tier(str, enum.Enum):
    ELITE = "elite"
    ADVANCED = "advanced"
    COMPETENT = "competent"
    TRAINEE = "trainee"
    DEGRADED = "degraded"


class LoadLevel(str, enum.Enum):
    IDLE = "idle"
    OPTIMAL = "optimal"
    HIGH = "high"
    CRITICAL = "critical"
    OVERLOADED = "overloaded"


def success_score(completed: int, failed: int) -> float:
    """The success rate under the Beta prior: 0.5 without history, never 0 or 1."""
    return (completed + PRIOR_SUCCESSES) / (completed + failed + PRIOR_SUCCESSES + PRIOR_FAILURES)


def tier_for(completed: int, failed: int) -> Tier:
    """The tier that the agent's record earns (rules in the module docstring)."""
    total = completed + failed
    if total < TRAINEE_BELOW_TASKS:
        return Tier.TRAINEE
    rate = completed / total
    if rate >= 0.95 and total >= ELITE_MIN_TASKS:
        return Tier.ELITE
    if rate >= 0.85:
        return Tier.ADVANCED
    if rate >= 0.70:
        return Tier.COMPETENT
    return Tier.DEGRADED


def load_level(load: int, capacity: int) -> LoadLevel:
    """How busy an agent is with `load` tasks on `capacity` slots."""
    if load <= 0:
        return LoadLevel.IDLE
    ratio = load / capacity if capacity > 0 else float("inf")
    if ratio <= 0.6:
        return LoadLevel.OPTIMAL
    if ratio <= 0.85:
        return LoadLevel.HIGH
    if ratio < 1.0:
        return LoadLevel.CRITICAL
    return LoadLevel.OVERLOADED


@dataclass(frozen=True)
class Performance:
    tasks_completed: int
    tasks_failed: int
    tasks_total: int
    success_rate: float | None
    success_score: float
    mean_duration_seconds: float | None
    total_duration_seconds: float
    total_tokens: int
    mean_tokens: float | None
    total_cost: float
    tier: Tier
    current_load: int
    capacity: int
    load_ratio: float
    load_level: LoadLevel
    consecutive_failures: int


def performance_of(agent: Agent, load: int) -> Performance:
    """The agent's performance figures, given the number of tasks it is working on now."""
    completed, failed = agent.tasks_completed or 0, agent.tasks_failed or 0
    total = completed + failed
    duration = float(agent.total_duration_seconds or 0.0)
    tokens = int(agent.total_tokens or 0)
    return Performance(
        tasks_completed=completed,
        tasks_failed=failed,
        tasks_total=total,
        success_rate=round(completed / total, 4) if total else None,
        success_score=round(success_score(completed, failed), 4),
        mean_duration_seconds=round(duration / total, 3) if total else None,
        total_duration_seconds=round(duration, 3),
        total_tokens=tokens,
        mean_tokens=round(tokens / total, 1) if total else None,
        total_cost=float(agent.total_cost or 0.0),
        tier=tier_for(completed, failed),
        current_load=load,
        capacity=agent.capacity,
        load_ratio=round(load / agent.capacity, 4) if agent.capacity else 0.0,
        load_level=load_level(load, agent.capacity),
        consecutive_failures=agent.consecutive_failures or 0,
    )


# Tasks each agent is working on now (assigned or in progress), as (agent_id, load) rows.
BUSY_COUNTS = (
    select(SessionTask.assigned_agent_id.label("agent_id"), func.count().label("load"))
    .where(SessionTask.status.in_(BUSY_STATUSES), SessionTask.assigned_agent_id.is_not(None))
    .group_by(SessionTask.assigned_agent_id)
)


def agent_loads(db: DbSession) -> dict[str, int]:
    """Number of tasks each agent is working on now (assigned or in progress)."""
    return {agent_id: load for agent_id, load in db.execute(BUSY_COUNTS)}


def failure_threshold() -> int:
    """Consecutive task failures that take an agent out of routing (AGENT_FAILURE_THRESHOLD)."""
    if has_app_context():
        return int(current_app.config.get("AGENT_FAILURE_THRESHOLD", DEFAULT_FAILURE_THRESHOLD))
    return DEFAULT_FAILURE_THRESHOLD


def note_outcome(
    db: DbSession, agent_id: str, succeeded: bool, *, threshold: int | None = None
) -> None:
    """Count a task outcome in the agent's failure streak; at the threshold, make it unhealthy.

    A success ends the streak but does not reactivate an unhealthy agent: a health check or an
    operator does (PATCH status=active, maintenance off).
    """
    agent = db.get(Agent, agent_id, with_for_update={"key_share": True}, populate_existing=True)
    if agent is None:
        return
    if succeeded:
        agent.consecutive_failures = 0
        db.flush()
        return
    agent.consecutive_failures = (agent.consecutive_failures or 0) + 1
    limit = threshold if threshold is not None else failure_threshold()
    if agent.status is AgentStatus.ACTIVE and agent.consecutive_failures >= limit:
        agent.status = AgentStatus.UNHEALTHY
        agent.health_reason = f"{agent.consecutive_failures} consecutive failures"
        logger.warning("agent_unhealthy agent_id=%s name=%s reason=%s", agent.id, agent.name,
                       agent.health_reason)  # fmt: skip
    db.flush()
