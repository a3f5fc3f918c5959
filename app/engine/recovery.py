"""Self-healing: find sessions past their deadline, and sessions whose work was lost (a worker
died, Redis forgot a message, a dispatch never reached the broker), and put them back on track.

PostgreSQL is the truth. A task in progress is alive while its lease is fresh; a queued task
is alive while its message is in the broker (or it was queued moments ago).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import aliased

from app.services.errors import NotFound
from app.services.events import record_event
from models import Session, SessionTask
from models.base import utcnow
from models.enums import SESSION_ACTIVE, TASK_FINISHED, SessionStatus, TaskStatus

from .dispatch import ready_tasks
from .graph_cache import session_graph
from .locking import lock_session

logger = logging.getLogger(__name__)

S, T = SessionStatus, TaskStatus
TIMEOUT_CANDIDATES = (*SESSION_ACTIVE, S.PAUSED)
HALTED_PARENT = (S.CANCELLED, S.FAILED, S.TIMEOUT, S.STOPPED)


def sessions_past_deadline(db: DbSession) -> list[str]:
    """Ids of running or paused sessions that have run longer than their max duration."""
    now = utcnow()
    rows = db.execute(
        select(Session.id, Session.started_at, Session.max_duration_seconds).where(
            Session.status.in_(TIMEOUT_CANDIDATES), Session.started_at.is_not(None)
        )
    )
    return [
        session_id
        for session_id, started_at, limit in rows
        if (now - started_at).total_seconds() >= limit
    ]


def find_lost_work(
    db: DbSession,
    lease_seconds: float,
    grace_seconds: float,
    in_broker: Callable[[str], bool],
) -> dict[str, str]:
    """Map of session id -> why its work is lost, for sessions that need a relaunch."""
    now = utcnow()
    lease_cutoff = now - timedelta(seconds=lease_seconds)
    grace_cutoff = now - timedelta(seconds=grace_seconds)
    lost: dict[str, str] = {}
    queued = db.scalars(
        select(Session.id).where(Session.status == S.QUEUED, Session.updated_at < grace_cutoff)
    )
    for session_id in queued:
        if not in_broker(session_id):
            lost[session_id] = "its launch message is no longer in the broker"
    running = db.scalars(select(Session).where(Session.status.in_([S.RUNNING, S.DEGRADED])))
    for session in running:
        reason = _lost_in_session(db, session, lease_cutoff, grace_cutoff, in_broker)
        if reason:
            lost[session.id] = reason
    return lost


def _lost_in_session(db, session, lease_cutoff, grace_cutoff, in_broker) -> str | None:
    tasks = db.execute(
        select(SessionTask.id, SessionTask.status, SessionTask.heartbeat_at, SessionTask.queued_at)
        .where(SessionTask.session_id == session.id)
    ).all()  # fmt: skip
    statuses = {task_id: status for task_id, status, _, _ in tasks}
    busy = [t for t in tasks if t.status in (T.ASSIGNED, T.IN_PROGRESS)]
    if any(t.heartbeat_at is None or t.heartbeat_at < lease_cutoff for t in busy):
        return "a worker stopped renewing the lease of a running task"
    graph = session_graph(db, session.id)
    heads = [
        t for t in tasks
        if t.status is T.READY
        and all(statuses[pred] in TASK_FINISHED for pred in graph.pred[t.id])
    ]  # fmt: skip
    for head in heads:
        if head.queued_at and head.queued_at < grace_cutoff and not in_broker(head.id):
            return "a queued task's message is no longer in the broker"
    if not busy and not any(t.status is T.READY for t in tasks):
        pending = [tid for tid, s in statuses.items() if s is T.PENDING]
        if ready_tasks(graph, statuses, pending) and session.updated_at < (
            grace_cutoff
        ):
            return "runnable tasks were never dispatched"
    return None


def requeue_lost(db: DbSession, session_id: str, reason: str) -> bool:
    """Mark a session whose work was lost `orphaned`, then `queued`; True if a launch is due."""
    try:
        session = lock_session(db, session_id, load=True)
    except NotFound:
        return False
    if session.status in (S.RUNNING, S.DEGRADED):
        session.transition_to(S.ORPHANED)
        record_event(db, session_id, "session.orphaned", reason=reason)
        session.transition_to(S.QUEUED)
    elif session.status is not S.QUEUED:
        return False
    record_event(db, session_id, "session.relaunching", reason=reason)
    logger.warning("relaunching session_id=%s reason=%s", session_id, reason)
    return True


def orphan_children_of_halted_parents(db: DbSession) -> list[str]:
    """Active children whose parent session was halted become `orphaned` (and stop running)."""
    parent = aliased(Session)
    children = db.scalars(
        select(Session)
        .join(parent, parent.id == Session.parent_id)
        .where(Session.status.in_(TIMEOUT_CANDIDATES), parent.status.in_(HALTED_PARENT))
        .with_for_update(of=Session, key_share=True)
    ).all()
    for child in children:
        child.epoch += 1
        child.transition_to(S.ORPHANED)
        record_event(db, child.id, "session.orphaned", reason="its parent session was halted")
    return [child.id for child in children]
