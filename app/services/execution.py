"""The execution engine: launch a session, start and fence attempts (claims are in `claims`,
outcomes in `outcomes`).

Every step is idempotent and fenced: a task message carries (session_id, task_id, epoch) and
only a task in `ready` under the session's current epoch can be claimed; an outcome is only
written while the same attempt still holds the task.
Joins are counted in PostgreSQL: completions of one session are serialised by a row lock on
the session, so the last predecessor to finish is the one that sees its successor ready.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.orm import Session as DbSession

from app.drivers.base import DriverJob
from models import Session, SessionTask
from models.base import utcnow
from models.enums import SESSION_ACTIVE, SessionStatus, TaskStatus

from . import scheduling
from .errors import NotFound
from .events import record_event
from .scheduling import Dispatch

logger = logging.getLogger(__name__)

LEASED_SESSION_STATUSES = (*SESSION_ACTIVE, SessionStatus.PAUSED)


def _lock_session(db: DbSession, session_id: str) -> Session:
    session = db.get(
        Session, session_id, with_for_update={"key_share": True}, populate_existing=True
    )
    if session is None:
        raise NotFound(f"Session {session_id} not found.")
    return session


def launch(db: DbSession, session_id: str, lease_seconds: float = 30.0) -> Dispatch | None:
    """Start (or restart) a session under a new epoch and dispatch every task that can run.

    Queued messages of older epochs become no-ops. Tasks in progress keep running while their
    lease is fresh; those whose lease expired (their worker is gone) run again.
    """
    session = _lock_session(db, session_id)
    if session.status not in SESSION_ACTIVE:
        logger.info("launch skipped session_id=%s status=%s", session_id, session.status.value)
        return None
    session.epoch += 1
    if session.status is SessionStatus.QUEUED:
        session.transition_to(SessionStatus.RUNNING)
    stale_before = utcnow() - timedelta(seconds=lease_seconds)
    lost = db.scalars(
        update(SessionTask)
        .where(
            SessionTask.session_id == session_id,
            or_(
                SessionTask.status.in_([TaskStatus.READY, TaskStatus.BLOCKED]),
                and_(
                    SessionTask.status.in_([TaskStatus.ASSIGNED, TaskStatus.IN_PROGRESS]),
                    or_(
                        SessionTask.heartbeat_at.is_(None),
                        SessionTask.heartbeat_at < stale_before,
                    ),
                ),
            ),
        )
        .values(status=TaskStatus.PENDING)
        .returning(SessionTask.id)
        .execution_options(synchronize_session=False)
    ).all()
    record_event(db, session_id, "session.launched", epoch=session.epoch, requeued=len(lost))
    return scheduling.dispatch_ready(db, session)


_tasks = SessionTask.__table__


def fenced_attempt(status: TaskStatus) -> tuple:
    """`_fenced` as bound conditions (p_task_id, p_attempt) for statements built once, plus the
    agent lease's fencing token (p_token): a holder whose token is older than the one the task
    has seen is refused."""
    return (
        _tasks.c.id == bindparam("p_task_id"),
        _tasks.c.status == status,
        _tasks.c.attempt == bindparam("p_attempt"),
        _tasks.c.fence_token <= bindparam("p_token"),
    )


_START = (
    update(_tasks)
    .where(*fenced_attempt(TaskStatus.ASSIGNED))
    .values(
        status=TaskStatus.IN_PROGRESS,
        fence_token=bindparam("p_token"),
        started_at=bindparam("p_now"),
        heartbeat_at=bindparam("p_now"),
        executions=_tasks.c.executions + 1,
        branch=bindparam("p_branch"),
    )
    .returning(_tasks.c.key)
)


def start_attempt(
    db: DbSession, job: DriverJob, fence_token: int, branch: str | None = None
) -> bool:
    """An assigned attempt that now holds its agent's lease starts, recording the lease's
    fencing token; False if the attempt lost its task meanwhile or a newer token was seen."""
    started = db.execute(
        _START,
        {"p_task_id": job.task_id, "p_attempt": job.attempt, "p_token": fence_token,
         "p_now": utcnow(), "p_branch": branch},
    ).first()  # fmt: skip
    if started is None:
        record_event(db, job.session_id, "task.start_rejected", task_id=job.task_id,
                     attempt=job.attempt, fence_token=fence_token)  # fmt: skip
        return False
    record_event(db, job.session_id, "task.started", task_id=job.task_id, agent_id=job.agent.id,
                 key=started.key, attempt=job.attempt, fence_token=fence_token)  # fmt: skip
    return True


def release_assignment(db: DbSession, job: DriverJob) -> bool:
    """Give an assigned task back to the queue (its agent stayed busy too long)."""
    released = db.execute(
        update(SessionTask)
        .where(
            SessionTask.id == job.task_id,
            SessionTask.status == TaskStatus.ASSIGNED,
            SessionTask.attempt == job.attempt,
        )
        .values(status=TaskStatus.READY, attempt=SessionTask.attempt - 1, queued_at=utcnow())
        .returning(SessionTask.id)
        .execution_options(synchronize_session=False)
    ).first()
    return released is not None


def _fenced(job: DriverJob, statuses=(TaskStatus.IN_PROGRESS,)):
    """The conditions under which this attempt still owns its task.

    The attempt number, not the epoch, fences outcomes: a relaunch leaves live attempts alone
    and re-runs a lost one under a new attempt number.
    """
    return (
        SessionTask.id == job.task_id,
        SessionTask.status.in_(statuses),
        SessionTask.attempt == job.attempt,
    )


def renew_lease(db: DbSession, job: DriverJob) -> bool:
    """Record that this attempt is alive; False when it no longer owns its task or the
    session stopped wanting it (cancelled, stopped, timed out), so the driver must stop."""
    renewed = db.execute(
        update(SessionTask)
        .where(
            *_fenced(job, (TaskStatus.ASSIGNED, TaskStatus.IN_PROGRESS)),
            select(Session.id)
            .where(Session.id == job.session_id, Session.status.in_(LEASED_SESSION_STATUSES))
            .exists(),
        )
        .values(heartbeat_at=utcnow())
        .returning(SessionTask.id)
        .execution_options(synchronize_session=False)
    ).first()
    return renewed is not None
