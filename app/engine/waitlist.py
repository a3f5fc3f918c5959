"""Agent wait lists: a task whose agent has no free slot is parked in PostgreSQL, not in a worker.

A parked task stays `ready` with `waiting_agent_id` (the agent it waits for) and `waiting_since`
(its aging clock) and no message in flight. When a slot of the agent frees (an outcome, an
abandoned attempt, a cancel or stop noticed by the running attempt, capacity raised, the agent
back from maintenance, the reconciler seeing a free slot), `wake` picks the best waiters, one per
free slot, marks them `woken_at` and returns their dispatches for the caller to send after the
commit. A woken task claims as any other; if it finds no slot again it parks again and keeps its
place (its `waiting_since` stays).

Rank, best first (`RANK`): effective priority = the session's priority (0 critical … 4 deferred)
improved by one step per WAIT_AGING_SECONDS waited, never below 0, so nothing starves; then the
session's tasks already on the agent (fewest first: fair across sessions of one priority); then
waiting since (oldest first); then the task id. A claim that got a slot keeps it only while fewer
waiters rank above it than slots stay free (`better_waiters`), so a new task does not take the slot
a better waiter was woken for. Picking is `FOR UPDATE SKIP LOCKED`: two slots freeing at once wake
two distinct waiters. The Redis semaphore stays the guard: free slots are its capacity minus its
live holders, minus waiters woken but not yet claimed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app, has_app_context
from sqlalchemy import Engine, bindparam, text
from sqlalchemy.orm import Session as DbSession

from models import Agent
from models.base import utcnow
from models.enums import SESSION_ACTIVE, AgentStatus

from .dispatch import Dispatch
from .slots import free_slots

logger = logging.getLogger(__name__)

DEFAULT_AGING_SECONDS = 60.0
DEFAULT_WOKEN_GRACE_SECONDS = 30.0
ACTIVE = tuple(status.value for status in SESSION_ACTIVE)


@dataclass(frozen=True)
class Parked:
    """What a claim returns for a task it parked in `agent_id`'s wait list."""

    session_id: str
    task_id: str
    agent_id: str


# The rank of a task `t` of session `s` waiting for agent :p_agent (a row value, smaller first).
RANK = """(
    GREATEST(s.priority - FLOOR(EXTRACT(EPOCH FROM (CAST(:p_now AS timestamptz)
        - COALESCE(t.waiting_since, CAST(:p_now AS timestamptz)))) / :p_aging), 0),
    (SELECT count(*) FROM session_tasks r WHERE r.session_id = t.session_id
        AND r.assigned_agent_id = :p_agent AND r.status IN ('assigned', 'in_progress')),
    COALESCE(t.waiting_since, CAST(:p_now AS timestamptz)),
    t.id
)"""
# A task in the agent's wait list: ready in its session's current epoch, the session active.
WAITING = """t.waiting_agent_id = :p_agent AND t.status = 'ready' AND t.epoch = s.epoch
    AND s.status IN :p_active"""

_BETTER = text(f"""
WITH ranked AS (
    SELECT t.id, {RANK} AS rank FROM session_tasks t JOIN sessions s ON s.id = t.session_id
    WHERE ({WAITING}) OR t.id = :p_task_id
)
SELECT count(*) FROM ranked r, ranked me
WHERE me.id = :p_task_id AND r.id <> me.id AND r.rank < me.rank
""").bindparams(bindparam("p_active", expanding=True))

_WAKE = text(f"""
UPDATE session_tasks u SET woken_at = :p_now
FROM (
    SELECT t.id, s.priority FROM session_tasks t JOIN sessions s ON s.id = t.session_id
    WHERE {WAITING} AND (t.woken_at IS NULL OR t.woken_at < :p_stale)
    ORDER BY {RANK} LIMIT :p_limit FOR UPDATE OF t SKIP LOCKED
) p
WHERE u.id = p.id
RETURNING u.id, u.session_id, u.epoch, p.priority
""").bindparams(bindparam("p_active", expanding=True))

# Waiters to wake, and woken waiters whose claim has not come yet (each holds a slot's promise).
_COUNTS = text(f"""
SELECT count(*) FILTER (WHERE t.woken_at IS NULL OR t.woken_at < :p_stale) AS parked,
       count(*) FILTER (WHERE t.woken_at >= :p_stale) AS in_flight
FROM session_tasks t JOIN sessions s ON s.id = t.session_id WHERE {WAITING}
""").bindparams(bindparam("p_active", expanding=True))

_ORDERED = text(f"""
SELECT t.id FROM session_tasks t JOIN sessions s ON s.id = t.session_id
WHERE {WAITING} ORDER BY {RANK}
""").bindparams(bindparam("p_active", expanding=True))

# Whether anyone is in the agent's wait list at all: the one read a freed slot costs when nobody
# waits (one autocommit statement, no transaction).
_ANY_WAITING = text(
    "SELECT EXISTS (SELECT 1 FROM session_tasks t WHERE t.waiting_agent_id = :p_agent"
    " AND t.status = 'ready')"
)

_AGENTS_WITH_WAITERS = text("""
SELECT DISTINCT t.waiting_agent_id FROM session_tasks t JOIN sessions s ON s.id = t.session_id
WHERE t.waiting_agent_id IS NOT NULL AND t.status = 'ready' AND t.epoch = s.epoch
    AND s.status IN :p_active
""").bindparams(bindparam("p_active", expanding=True))


def _setting(name: str, default: float) -> float:
    if has_app_context():
        return float(current_app.config.get(name, default))
    return default


def _params(agent_id: str, now=None) -> dict:
    now = now or utcnow()
    grace = _setting("WAIT_WOKEN_GRACE_SECONDS", DEFAULT_WOKEN_GRACE_SECONDS)
    return {"p_agent": agent_id, "p_now": now, "p_active": list(ACTIVE),
            "p_aging": max(_setting("WAIT_AGING_SECONDS", DEFAULT_AGING_SECONDS), 0.001),
            "p_stale": now - timedelta(seconds=grace)}  # fmt: skip


def better_waiters(db: DbSession, agent_id: str, task_id: str) -> int:
    """How many waiters of the agent (parked, or woken and not yet claimed) rank above task
    `task_id`, which would take one of its slots now."""
    return db.execute(_BETTER, {**_params(agent_id), "p_task_id": task_id}).scalar_one()


def ordered(db: DbSession, agent_id: str, now=None) -> list[str]:
    """The agent's wait list, best first, as task ids (what `wake` would pick, in order)."""
    return list(db.scalars(_ORDERED, _params(agent_id, now)))


def wake(db: DbSession, agent_id: str) -> list[Dispatch]:
    """Wake the best waiters of an agent, one per slot that is free and not promised to a woken
    waiter already (every waiter when the agent cannot take tasks any more: they are routed
    again); return their dispatches, to send after the commit."""
    params = _params(agent_id)
    counts = db.execute(_COUNTS, params).one()
    agent = db.get(Agent, agent_id) if counts.parked else None  # one query when nobody waits
    if agent is None:
        return []
    if agent.status is AgentStatus.ACTIVE and not agent.maintenance:
        limit = free_slots(agent) - counts.in_flight
    else:
        limit = counts.parked
    if limit <= 0:
        return []
    rows = db.execute(_WAKE, {**params, "p_limit": limit}).all()
    if rows:
        logger.info("woke waiters agent_id=%s tasks=%s", agent_id, [row.id for row in rows])
    return [Dispatch(row.session_id, row.epoch, row.priority, [[row.id]]) for row in rows]


def anyone_waiting(reader: Engine, agent_id: str) -> bool:
    """Whether a task is in the agent's wait list (read outside a transaction, on `reader`)."""
    with reader.connect() as connection:
        return bool(connection.execute(_ANY_WAITING, {"p_agent": agent_id}).scalar_one())


def agents_with_waiters(db: DbSession) -> list[str]:
    """Ids of agents whose wait list is not empty (for the reconciler)."""
    return sorted(db.scalars(_AGENTS_WITH_WAITERS, {"p_active": list(ACTIVE)}))
