"""Row locks and fences of the engine, so that no two transactions ever wait for each other.

Every transaction takes its row locks in one order: task, then session, then agent.
- A transaction about one task (a claim, a start, an outcome, a retry) locks that task first
  (its fenced UPDATE), then the session row (`lock_session`), then the agent row, last.
- A transaction that changes several tasks of a session (launch, lifecycle actions, timeout,
  restore) first locks all of the session's tasks in the DAG's topological order
  (`lock_session(..., all_tasks=True)`), then the session.
- Under the session lock an outcome may still mark its own successors ready or skip its
  descendants; those come after its task in the topological order, so a transaction locking
  every task in that order never holds one of them while it waits for the task.
Session and agent rows are locked FOR NO KEY UPDATE: the inserts that reference them (events,
checkpoints) take KEY SHARE and are not blocked.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session as DbSession

from app.services.errors import NotFound
from models import Session, SessionTask
from models.enums import SessionStatus, TaskStatus

from .graph_cache import session_graph

_tasks, _sessions = SessionTask.__table__, Session.__table__
# A claimed attempt: assigned to an agent, or running.
CLAIMED = (TaskStatus.ASSIGNED, TaskStatus.IN_PROGRESS)

_LOCK_SESSION = (
    select(_sessions.c.id, _sessions.c.epoch, _sessions.c.priority, _sessions.c.status)
    .where(_sessions.c.id == bindparam("p_id"))
    .with_for_update(key_share=True)
)
# LockRows runs above the join's order, so the rows are locked in the given order.
_LOCK_TASKS_IN_ORDER = text(
    "SELECT t.id FROM session_tasks t"
    " JOIN unnest(CAST(:p_order AS varchar[])) WITH ORDINALITY AS o(id, n) ON t.id = o.id"
    " WHERE t.session_id = :p_id ORDER BY o.n FOR NO KEY UPDATE OF t"
)


@dataclass(frozen=True)
class LockedSession:
    """What dispatching needs of a session whose row this transaction has locked."""

    id: str
    epoch: int
    priority: int
    status: SessionStatus


def lock_session(
    db: DbSession, session_id: str, *, all_tasks: bool = False, load: bool = False
) -> LockedSession | Session:
    """Lock the session row and return it; NotFound if there is none.

    `all_tasks` first locks every task of the session in topological order (for changes to
    several tasks). `load` returns the refreshed ORM `Session`, else the few columns dispatch
    needs (`LockedSession`, one prepared statement on the hot path)."""
    if all_tasks:
        order = session_graph(db, session_id).graph["order"]
        db.execute(_LOCK_TASKS_IN_ORDER, {"p_order": order, "p_id": session_id})
    if load:
        session = db.get(
            Session, session_id, with_for_update={"key_share": True}, populate_existing=True
        )
    else:
        row = db.execute(_LOCK_SESSION, {"p_id": session_id}).first()
        session = LockedSession(*row) if row is not None else None
    if session is None:
        raise NotFound(f"Session {session_id} not found.")
    return session


def fenced(statuses: TaskStatus | tuple[TaskStatus, ...], *, token: bool = True) -> tuple:
    """The conditions under which an attempt still owns its task, as bound parameters for
    statements built once: the task (p_task_id) is in `statuses` under the same attempt
    (p_attempt), and, with `token`, has seen no newer fencing token than the holder's
    (p_token): a stale lease holder is refused.

    The attempt number, not the epoch, fences attempts: a relaunch leaves live attempts alone
    and re-runs a lost one under a new attempt number."""
    if isinstance(statuses, TaskStatus):
        status_clause = _tasks.c.status == statuses
    else:
        status_clause = _tasks.c.status.in_(statuses)
    clauses = (
        _tasks.c.id == bindparam("p_task_id"),
        status_clause,
        _tasks.c.attempt == bindparam("p_attempt"),
    )
    return (*clauses, _tasks.c.fence_token <= bindparam("p_token")) if token else clauses
