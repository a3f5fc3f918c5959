"""An attempt's own steps on its task row: start it once its agent slot is held, renew its
lease while the driver works, or give the task back when the agent stayed busy.

Each is one fenced statement built once per process: it only changes the task while the same
attempt holds it (and, for the start, while no newer fencing token was seen).
"""

from __future__ import annotations

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session as DbSession

from app.drivers.base import DriverJob
from app.services.events import record_event
from models import Session, SessionTask
from models.base import utcnow
from models.enums import SESSION_ACTIVE, SessionStatus, TaskStatus

from .locking import fenced

LEASED_SESSION_STATUSES = (*SESSION_ACTIVE, SessionStatus.PAUSED)

_tasks, _sessions = SessionTask.__table__, Session.__table__
_START = (
    update(_tasks)
    .where(*fenced(TaskStatus.ASSIGNED))
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
_RENEW = (
    update(_tasks)
    .where(
        *fenced((TaskStatus.ASSIGNED, TaskStatus.IN_PROGRESS), token=False),
        select(_sessions.c.id)
        .where(
            _sessions.c.id == bindparam("p_session_id"),
            _sessions.c.status.in_(LEASED_SESSION_STATUSES),
        )
        .exists(),
    )
    .values(heartbeat_at=bindparam("p_now"))
    .returning(_tasks.c.id)
)
_RELEASE = (
    update(_tasks)
    .where(*fenced(TaskStatus.ASSIGNED, token=False))
    .values(status=TaskStatus.READY, queued_at=bindparam("p_now"))
    .returning(_tasks.c.id)
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
    """Give an assigned task back to the queue (its agent stayed busy too long). Its attempt
    number stays: attempt numbers only grow, so an older attempt can never match a newer one;
    `executions`, not `attempt`, counts towards max_attempts."""
    params = {"p_task_id": job.task_id, "p_attempt": job.attempt, "p_now": utcnow()}
    return db.execute(_RELEASE, params).first() is not None


def renew_lease(db: DbSession, job: DriverJob) -> bool:
    """Record that this attempt is alive; False when it no longer owns its task or the
    session stopped wanting it (cancelled, stopped, timed out), so the driver must stop."""
    params = {"p_task_id": job.task_id, "p_attempt": job.attempt,
              "p_session_id": job.session_id, "p_now": utcnow()}  # fmt: skip
    return db.execute(_RENEW, params).first() is not None
