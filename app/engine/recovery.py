"""Self-healing: find sessions past their deadline, and sessions whose work was lost (a worker
died, Redis forgot a message, a dispatch never reached the broker), and put them back on track.

PostgreSQL is the truth. A task in progress is alive while its lease is fresh; a queued task
is alive while its message is in the broker (or it was queued moments ago); a task in an
agent's wait list has no message, and the reconciler wakes the waiters of every agent with
free slots (`waitlist.wake`: Redis may have forgotten a lease, a wake-up may be lost).
A `blocked` task (no agent could take it) waits until routing finds an agent for it: an agent
change wakes its session at once (`sessions_to_unblock`, `resume_blocked`), and the reconciler
catches what that missed (the agent became available while the task was being blocked, a lost
message).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import aliased

from app.services import routing
from app.services.errors import NotFound
from app.services.events import record_event
from models import Session, SessionTask
from models.base import utcnow
from models.enums import SESSION_ACTIVE, TASK_FINISHED, SessionStatus, TaskStatus

from .dispatch import Dispatch, ready_tasks
from .graph_cache import session_graph
from .launch import launch
from .locking import lock_session

logger = logging.getLogger(__name__)

S, T = SessionStatus, TaskStatus
TIMEOUT_CANDIDATES = (*SESSION_ACTIVE, S.PAUSED)
HALTED_PARENT = (S.CANCELLED, S.FAILED, S.TIMEOUT, S.STOPPED)
RUNNING = (S.RUNNING, S.DEGRADED)
UNBLOCKABLE = "a blocked task can now be routed"


class Router:
    """Routing's verdict for tasks, from one read of the agents and their loads: the name of
    the agent a claim would give the task (or make it wait for), else None."""

    def __init__(self, db: DbSession) -> None:
        self.db = db
        self._agents: tuple[list, dict[str, int]] | None = None
        self._verdicts: dict[routing.TaskFacts, str | None] = {}

    def agent_for(self, facts: routing.TaskFacts) -> str | None:
        """The agent a claim of a task with these routing facts would choose now, by name, or
        None."""
        if facts not in self._verdicts:
            if self._agents is None:
                self._agents = routing.agents_with_load(self.db)
            rows, loads = self._agents
            agent = routing.rank_task(rows, loads, facts).waitable
            self._verdicts[facts] = agent.name if agent is not None else None
        return self._verdicts[facts]


def is_unblock(reason: str) -> bool:
    """Whether a reason of `find_lost_work` is a blocked task that can now run."""
    return reason.startswith(UNBLOCKABLE)


def _unblockable(db: DbSession, session_id: str, blocked: list[str], router: Router) -> str | None:
    """Why one of the session's `blocked` tasks can run now, or None."""
    graph = session_graph(db, session_id)
    for task_id in blocked:
        if task_id not in graph:
            continue
        facts = graph.nodes[task_id]
        agent = router.agent_for(facts["routing"])
        if agent is not None:
            return f"{UNBLOCKABLE}: task {facts['key']} fits agent {agent}"
    return None


def sessions_to_unblock(db: DbSession) -> dict[str, str]:
    """Running or degraded sessions with a blocked task that an agent can take now, with why."""
    rows = db.execute(
        select(SessionTask.session_id, SessionTask.id)
        .join(Session, Session.id == SessionTask.session_id)
        .where(Session.status.in_(RUNNING), SessionTask.status == T.BLOCKED)
        .order_by(SessionTask.session_id, SessionTask.id)
    ).all()
    blocked: dict[str, list[str]] = {}
    for session_id, task_id in rows:
        blocked.setdefault(session_id, []).append(task_id)
    router = Router(db)
    due = {}
    for session_id, task_ids in blocked.items():
        reason = _unblockable(db, session_id, task_ids, router)
        if reason:
            due[session_id] = reason
    return due


def resume_blocked(db: DbSession, session_id: str, lease_seconds: float) -> Dispatch | None:
    """Relaunch a running session whose blocked tasks an agent can now take (its blocked tasks
    go back to `pending` and are dispatched under a new epoch); None when none can (again)."""
    try:
        session = lock_session(db, session_id, all_tasks=True)
    except NotFound:
        return None
    if session.status not in RUNNING:
        return None
    blocked = list(db.scalars(
        select(SessionTask.id)
        .where(SessionTask.session_id == session_id, SessionTask.status == T.BLOCKED)
        .order_by(SessionTask.id)
    ))  # fmt: skip
    reason = _unblockable(db, session_id, blocked, Router(db)) if blocked else None
    if reason is None:
        return None
    record_event(db, session_id, "session.unblocked", reason=reason)
    logger.info("unblocking session_id=%s reason=%s", session_id, reason)
    return launch(db, session_id, lease_seconds)


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
    """Map of session id -> why its work is lost, for sessions that need a relaunch; a reason
    for which `is_unblock` holds is a blocked task an agent can now take (`resume_blocked`)."""
    now = utcnow()
    lease_cutoff = now - timedelta(seconds=lease_seconds)
    grace_cutoff = now - timedelta(seconds=grace_seconds)
    lost: dict[str, str] = {}
    router = Router(db)
    queued = db.scalars(
        select(Session.id).where(Session.status == S.QUEUED, Session.updated_at < grace_cutoff)
    )
    for session_id in queued:
        if not in_broker(session_id):
            lost[session_id] = "its launch message is no longer in the broker"
    running = db.scalars(select(Session).where(Session.status.in_(RUNNING)))
    for session in running:
        reason = _lost_in_session(db, session, lease_cutoff, grace_cutoff, in_broker, router)
        if reason:
            lost[session.id] = reason
    return lost


def _lost_in_session(db, session, lease_cutoff, grace_cutoff, in_broker, router) -> str | None:
    tasks = db.execute(
        select(SessionTask.id, SessionTask.status, SessionTask.heartbeat_at, SessionTask.queued_at,
               SessionTask.waiting_agent_id)
        .where(SessionTask.session_id == session.id)
    ).all()  # fmt: skip
    statuses = {t.id: t.status for t in tasks}
    busy = [t for t in tasks if t.status in (T.ASSIGNED, T.IN_PROGRESS)]
    if any(t.heartbeat_at is None or t.heartbeat_at < lease_cutoff for t in busy):
        return "a worker stopped renewing the lease of a running task"
    graph = session_graph(db, session.id)
    # A task in an agent's wait list has no message by design: `waitlist.wake` sends it.
    heads = [
        t for t in tasks
        if t.status is T.READY and t.waiting_agent_id is None
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
    blocked = [t.id for t in tasks if t.status is T.BLOCKED]
    return _unblockable(db, session.id, blocked, router) if blocked else None


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
