"""The execution engine: launch a session, claim a task, record its outcome, dispatch what follows.

Every step is idempotent and fenced: a task message carries (session_id, task_id, epoch) and
only a task in `ready` under the session's current epoch can be claimed; an outcome is only
written while the same attempt still holds the task.
Joins are counted in PostgreSQL: completions of one session are serialised by a row lock on
the session, so the last predecessor to finish is the one that sees its successor ready.
"""

from __future__ import annotations

import logging
import random
from dataclasses import replace
from datetime import timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import aliased

from app.drivers.base import AgentSpec, DriverJob, DriverResult
from models import Agent, Checkpoint, Session, SessionTask, TaskDependency
from models.base import utcnow
from models.enums import SESSION_ACTIVE, TASK_FINISHED, SessionStatus, TaskStatus

from . import scheduling
from .agents import choose_agent
from .errors import NotFound
from .events import record_event
from .scheduling import Dispatch

logger = logging.getLogger(__name__)

RETRY_BASE_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0
LEASED_SESSION_STATUSES = (*SESSION_ACTIVE, SessionStatus.PAUSED)


def _lock_session(db: DbSession, session_id: str) -> Session:
    session = db.get(Session, session_id, with_for_update=True, populate_existing=True)
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


def _unsatisfied_dependency(task_id: str):
    predecessor = aliased(SessionTask)
    return (
        select(TaskDependency.id)
        .join(predecessor, predecessor.id == TaskDependency.depends_on_id)
        .where(
            TaskDependency.task_id == task_id,
            predecessor.status != TaskStatus.COMPLETED,
            or_(TaskDependency.required, predecessor.status.not_in(TASK_FINISHED)),
        )
        .exists()
    )


def _return_to_pending_if_waiting(db: DbSession, session_id: str, task_id: str, epoch: int):
    """A ready task that arrived before its predecessors finished waits in `pending` again,
    so that the completion of its last predecessor dispatches it (under the session lock)."""
    session = db.get(Session, session_id, with_for_update=True)
    if session is None or session.epoch != epoch:
        return
    waiting = db.execute(
        update(SessionTask)
        .where(
            SessionTask.id == task_id,
            SessionTask.status == TaskStatus.READY,
            SessionTask.epoch == epoch,
            _unsatisfied_dependency(task_id),
        )
        .values(status=TaskStatus.PENDING)
        .returning(SessionTask.id)
    ).first()
    if waiting is not None:
        record_event(db, session_id, "task.waiting", task_id=task_id)


def claim(
    db: DbSession, session_id: str, task_id: str, epoch: int, worker: str = ""
) -> DriverJob | None:
    """Claim a ready task for this epoch, route it to an agent and return the driver job.

    Returns None when the message is stale or duplicated, or when no agent can take the task
    (the task is then `blocked` with the reason).
    """
    claimed = db.execute(
        update(SessionTask)
        .where(
            SessionTask.id == task_id,
            SessionTask.session_id == session_id,
            SessionTask.status == TaskStatus.READY,
            SessionTask.epoch == epoch,
            select(Session.id)
            .where(
                Session.id == session_id,
                Session.epoch == epoch,
                Session.status.in_(SESSION_ACTIVE),
            )
            .exists(),
            ~_unsatisfied_dependency(task_id),
        )
        .values(status=TaskStatus.ASSIGNED)
        .returning(SessionTask.id)
    ).first()
    if claimed is None:
        logger.info("claim skipped session_id=%s task_id=%s epoch=%s", session_id, task_id, epoch)
        _return_to_pending_if_waiting(db, session_id, task_id, epoch)
        return None
    task = db.get(SessionTask, task_id, populate_existing=True)
    session = db.get(Session, session_id)
    agent = choose_agent(db, task.required_capabilities)
    if agent is None:
        task.status = TaskStatus.BLOCKED
        task.error = "No active agent has the capabilities: " + ", ".join(
            sorted(task.required_capabilities)
        )
        record_event(db, session_id, "task.blocked", task_id=task_id, reason=task.error)
        return None
    task.status = TaskStatus.IN_PROGRESS
    task.assigned_agent_id = agent.id
    task.attempt += 1
    task.executions += 1
    task.started_at = utcnow()
    task.heartbeat_at = task.started_at
    task.worker = worker
    task.error = None
    record_event(db, session_id, "task.started", task_id=task_id, agent_id=agent.id,
                 key=task.key, attempt=task.attempt)  # fmt: skip
    return DriverJob(
        session_id=session_id,
        task_id=task_id,
        task_key=task.key,
        attempt=task.attempt,
        title=task.title,
        description=task.description,
        agent=AgentSpec(
            id=agent.id,
            name=agent.name,
            driver=agent.driver.value,
            endpoint=agent.endpoint,
            model=agent.model,
            config=dict(agent.config or {}),
        ),
        workdir=session.workdir or "",
        timeout_seconds=float(task.timeout_seconds),
        command=task.command,
        prompt=task.description or task.title,
    )


def _fenced(job: DriverJob):
    """The conditions under which this attempt still owns its task.

    The attempt number, not the epoch, fences outcomes: a relaunch leaves live attempts alone
    and re-runs a lost one under a new attempt number.
    """
    return (
        SessionTask.id == job.task_id,
        SessionTask.status == TaskStatus.IN_PROGRESS,
        SessionTask.attempt == job.attempt,
    )


def renew_lease(db: DbSession, job: DriverJob) -> bool:
    """Record that this attempt is alive; False when it no longer owns its task or the
    session stopped wanting it (cancelled, stopped, timed out), so the driver must stop."""
    renewed = db.execute(
        update(SessionTask)
        .where(
            *_fenced(job),
            select(Session.id)
            .where(Session.id == job.session_id, Session.status.in_(LEASED_SESSION_STATUSES))
            .exists(),
        )
        .values(heartbeat_at=utcnow())
        .returning(SessionTask.id)
        .execution_options(synchronize_session=False)
    ).first()
    return renewed is not None


def record_outcome(
    db: DbSession, job: DriverJob, epoch: int, outcome: DriverResult, duration: float
) -> Dispatch | None:
    """Persist a task's outcome if this attempt still owns the task, then dispatch what follows.

    The session row lock is taken last, so that concurrent completions of one session queue
    only for the checkpoint sequence and the dispatch of successors.
    """
    retry = not outcome.succeeded and outcome.retryable
    if retry:
        return _schedule_retry(db, job, epoch, outcome)
    status = TaskStatus.COMPLETED if outcome.succeeded else TaskStatus.FAILED
    owned = db.execute(
        update(SessionTask)
        .where(*_fenced(job))
        .values(
            status=status,
            finished_at=utcnow(),
            result=outcome.as_dict(),
            error=outcome.error,
            tokens=dict(outcome.tokens),
            cost=outcome.cost,
        )
        .returning(SessionTask.key)
        .execution_options(synchronize_session=False)
    ).first()
    if owned is None:
        _reject_outcome(db, job, epoch)
        return None
    _update_agent_figures(db, job.agent.id, outcome, duration)
    record_event(db, job.session_id, f"task.{status.value}", task_id=job.task_id,
                 agent_id=job.agent.id, key=owned.key, duration_s=round(duration, 3),
                 error=outcome.error)  # fmt: skip
    session = _lock_session(db, job.session_id)
    _checkpoint(db, session.id, job, owned.key, status, outcome, duration)
    if session.status not in SESSION_ACTIVE:
        return None
    return scheduling.dispatch_ready(db, session)


def _reject_outcome(db: DbSession, job: DriverJob, epoch: int) -> None:
    record_event(db, job.session_id, "task.outcome_rejected", task_id=job.task_id,
                 attempt=job.attempt, epoch=epoch)  # fmt: skip


def _schedule_retry(
    db: DbSession, job: DriverJob, epoch: int, outcome: DriverResult
) -> Dispatch | None:
    """Put a retryable failure back to `ready` with a backoff, or fail it when out of attempts."""
    task = db.scalar(select(SessionTask).where(*_fenced(job)).with_for_update())
    if task is None:
        _reject_outcome(db, job, epoch)
        return None
    if task.attempt >= task.max_attempts:
        return record_outcome(db, job, epoch, replace(outcome, retryable=False), 0.0)
    _update_agent_figures(db, job.agent.id, outcome, 0.0)
    delay = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** (task.attempt - 1))
    delay = delay * (0.5 + random.random() / 2)
    task.transition_to(TaskStatus.READY)
    task.error = outcome.error
    task.queued_at = utcnow() + timedelta(seconds=delay)
    record_event(db, job.session_id, "task.retry_scheduled", task_id=task.id, key=task.key,
                 attempt=task.attempt, delay_s=round(delay, 2), error=outcome.error)  # fmt: skip
    session = _lock_session(db, job.session_id)
    if session.status is SessionStatus.RUNNING:
        session.transition_to(SessionStatus.DEGRADED)
        record_event(db, session.id, "session.degraded", reason="a task is being retried")
    return Dispatch(session.id, epoch, session.priority, retry_in=delay)


def _checkpoint(
    db: DbSession,
    session_id: str,
    job: DriverJob,
    key: str,
    status: TaskStatus,
    outcome: DriverResult,
    duration: float,
) -> None:
    """Append a checkpoint of the task's outcome (under the session lock: sequence order)."""
    sequence = db.scalar(
        select(func.coalesce(func.max(Checkpoint.sequence), 0)).where(
            Checkpoint.session_id == session_id
        )
    )
    db.add(
        Checkpoint(
            session_id=session_id,
            task_id=job.task_id,
            sequence=sequence + 1,
            kind="task",
            data={
                "key": key,
                "status": status.value,
                "attempt": job.attempt,
                "agent_id": job.agent.id,
                "duration_s": round(duration, 3),
                "result": outcome.as_dict(),
            },
        )
    )


def _update_agent_figures(
    db: DbSession, agent_id: str, outcome: DriverResult, duration: float
) -> None:
    values = {
        "total_duration_seconds": Agent.total_duration_seconds + duration,
        "total_tokens": Agent.total_tokens + sum(outcome.tokens.values()),
        "total_cost": Agent.total_cost + outcome.cost,
    }
    if outcome.succeeded:
        values["tasks_completed"] = Agent.tasks_completed + 1
    else:
        values["tasks_failed"] = Agent.tasks_failed + 1
    db.execute(update(Agent).where(Agent.id == agent_id).values(**values))
