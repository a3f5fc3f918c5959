"""Record what an attempt produced: fenced by attempt and by the agent lease's fencing token,
then checkpoint it, hand it to successors as context and dispatch what can run next."""

from __future__ import annotations

import logging
import random
from dataclasses import replace
from datetime import timedelta

from sqlalchemy import bindparam, case, func, insert, literal, select, update
from sqlalchemy.orm import Session as DbSession

from app.drivers.base import DriverJob, DriverResult
from app.metrics import observe_fencing_rejection
from app.services import performance, task_context
from app.services.events import record_event
from models import Agent, Checkpoint, SessionTask
from models.base import utcnow
from models.enums import SESSION_ACTIVE, TASK_FINISHED, SessionStatus, TaskStatus

from . import budget
from .dispatch import Dispatch, dispatch_ready
from .locking import CLAIMED, LockedSession, fenced, lock_session

logger = logging.getLogger(__name__)

RETRY_BASE_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0


_tasks = SessionTask.__table__


def _record_statement(*conditions):
    """Store an attempt's outcome on its task, under `conditions` (the attempt's fence). An
    attempt that broke before its driver started (still `assigned`) counts as an execution."""
    return (
        update(_tasks)
        .where(*conditions)
        .values(
            status=bindparam("p_status", type_=_tasks.c.status.type),
            finished_at=bindparam("p_now"),
            result=bindparam("p_result", type_=_tasks.c.result.type),
            error=bindparam("p_error"),
            tokens=bindparam("p_tokens", type_=_tasks.c.tokens.type),
            cost=bindparam("p_cost"),
            executions=_tasks.c.executions
            + case((_tasks.c.status == TaskStatus.ASSIGNED, 1), else_=0),
        )
        .returning(_tasks.c.key)
    )


# A driver's outcome is fenced by the attempt and the agent slot's token; an attempt abandoned
# by the engine (its workspace or its outcome could not be made) by the attempt alone.
_RECORD = _record_statement(*fenced(TaskStatus.IN_PROGRESS))
_RECORD_ABANDONED = _record_statement(*fenced(CLAIMED, token=False))
_LOCK_ATTEMPT = select(SessionTask).where(*fenced(TaskStatus.IN_PROGRESS))
_LOCK_ABANDONED = select(SessionTask).where(*fenced(CLAIMED, token=False))


def record_outcome(
    db: DbSession,
    job: DriverJob,
    epoch: int,
    outcome: DriverResult,
    duration: float,
    fence_token: int | None = 0,
) -> Dispatch | None:
    """Persist a task's outcome if this attempt still owns the task, then dispatch what follows.

    `fence_token` None records the outcome of an attempt the engine abandoned, assigned or in
    progress. Locks in the engine's order (`locking`): the task (its fenced UPDATE), then the
    session, so that concurrent completions of one session queue only for the checkpoint
    sequence and the dispatch of successors, then the agent, held only until the commit.
    """
    outcome = outcome.storable()
    if job.meter is not None or duration:  # not again for a retry's final failure
        budget.charge_outcome(db, job, outcome, duration)  # the task row first, then session
    if not outcome.succeeded and outcome.retryable:
        return _schedule_retry(db, job, epoch, outcome, fence_token)
    status = TaskStatus.COMPLETED if outcome.succeeded else TaskStatus.FAILED
    owned = db.execute(
        _RECORD if fence_token is not None else _RECORD_ABANDONED,
        {"p_task_id": job.task_id, "p_attempt": job.attempt, "p_token": fence_token,
         "p_status": status, "p_now": utcnow(), "p_result": outcome.as_dict(),
         "p_error": outcome.error, "p_tokens": dict(outcome.tokens), "p_cost": outcome.cost},
    ).first()  # fmt: skip
    if owned is None:
        _reject_outcome(db, job, epoch)
        return None
    task_context.record_task_output(db, job.session_id, owned.key, outcome.as_dict())
    record_event(db, job.session_id, f"task.{status.value}", task_id=job.task_id,
                 agent_id=job.agent.id, key=owned.key, duration_s=round(duration, 3),
                 error=outcome.error)  # fmt: skip
    session = lock_session(db, job.session_id)
    _checkpoint(db, session.id, job, owned.key, status, outcome, duration)
    if outcome.succeeded and session.status is SessionStatus.DEGRADED:
        session = _recover_if_no_retry_left(db, session, job)
    dispatch = (
        dispatch_ready(db, session, job.task_id) if session.status in SESSION_ACTIVE else None
    )
    if job.agent.id:  # last, so the agent's row lock is held only until the commit
        record_agent_outcome(db, job.agent.id, outcome, duration)
    return dispatch


def abandon_attempt(
    db: DbSession, job: DriverJob, epoch: int, reason: str, retryable: bool = True
) -> Dispatch | None:
    """End an attempt that broke outside its driver (its workspace, a value PostgreSQL
    refused, an engine bug) as a failure with its reason: retried while attempts remain."""
    failure = DriverResult(succeeded=False, error=reason, retryable=retryable)
    return record_outcome(db, job, epoch, failure, 0.0, fence_token=None)


_RETRYING = (
    select(_tasks.c.id)
    .where(
        _tasks.c.session_id == bindparam("p_session_id"),
        _tasks.c.id != bindparam("p_task_id"),
        _tasks.c.status.not_in(TASK_FINISHED),
        (_tasks.c.executions > 1) | _tasks.c.error.is_not(None),
    )
    .limit(1)
)


def _recover_if_no_retry_left(db: DbSession, locked: LockedSession, job: DriverJob):
    """A degraded session runs normally again once no other task of it is being retried."""
    params = {"p_session_id": locked.id, "p_task_id": job.task_id}
    if db.execute(_RETRYING, params).first() is not None:
        return locked
    lock_session(db, locked.id, load=True).transition_to(SessionStatus.RUNNING)
    record_event(db, locked.id, "session.recovered", task_id=job.task_id,
                 reason="its retried task succeeded")  # fmt: skip
    db.flush()  # before dispatch may re-read the session
    return replace(locked, status=SessionStatus.RUNNING)


def _reject_outcome(db: DbSession, job: DriverJob, epoch: int) -> None:
    observe_fencing_rejection("stale_attempt_or_token")
    record_event(db, job.session_id, "task.outcome_rejected", task_id=job.task_id,
                 attempt=job.attempt, epoch=epoch)  # fmt: skip


def _schedule_retry(
    db: DbSession, job: DriverJob, epoch: int, outcome: DriverResult, fence_token: int | None
) -> Dispatch | None:
    """Put a retryable failure back to `ready` with a backoff, or fail it when out of attempts."""
    task = db.scalar(
        (_LOCK_ATTEMPT if fence_token is not None else _LOCK_ABANDONED).with_for_update(
            key_share=True
        ),
        {"p_task_id": job.task_id, "p_attempt": job.attempt, "p_token": fence_token},
    )
    if task is None:
        _reject_outcome(db, job, epoch)
        return None
    executions = task.executions + (task.status is TaskStatus.ASSIGNED)  # broke before its start
    if executions >= task.max_attempts:
        final = replace(outcome, retryable=False,
                        error=f"{outcome.error} (gave up after {executions} attempts)")  # fmt: skip
        return record_outcome(db, job, epoch, final, 0.0, fence_token)
    task.executions = executions
    delay = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** max(executions - 1, 0))
    delay = delay * (0.5 + random.random() / 2)
    task.transition_to(TaskStatus.READY)
    task.error = outcome.error
    task.queued_at = utcnow() + timedelta(seconds=delay)
    record_event(db, job.session_id, "task.retry_scheduled", task_id=task.id, key=task.key,
                 attempt=task.attempt, delay_s=round(delay, 2), error=outcome.error)  # fmt: skip
    session = lock_session(db, job.session_id, load=True)
    if session.status is SessionStatus.RUNNING:
        session.transition_to(SessionStatus.DEGRADED)
        record_event(db, session.id, "session.degraded", reason="a task is being retried")
    if job.agent.id:  # last, as in every outcome: task, session, agent
        record_agent_outcome(db, job.agent.id, outcome, 0.0)
    if session.status not in SESSION_ACTIVE:  # paused meanwhile: its resume runs it again
        task.transition_to(TaskStatus.PAUSED if session.status is SessionStatus.PAUSED
                           else TaskStatus.PENDING)  # fmt: skip
        return None
    return Dispatch(session.id, epoch, session.priority, retry_in=delay)


def _checkpoint_statement():
    """Append a checkpoint with the session's next sequence number, in one statement."""
    table = Checkpoint.__table__
    following = select(
        bindparam("p_session_id"), bindparam("p_task_id"),
        func.coalesce(func.max(table.c.sequence), 0) + 1, literal("task"),
        bindparam("p_data", type_=table.c.data.type), bindparam("p_now"),
    ).where(table.c.session_id == bindparam("p_session_id"))  # fmt: skip
    columns = ["session_id", "task_id", "sequence", "kind", "data", "created_at"]
    return insert(table).from_select(columns, following)


_CHECKPOINT = _checkpoint_statement()


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
    data = {
        "key": key,
        "status": status.value,
        "attempt": job.attempt,
        "agent_id": job.agent.id,
        "duration_s": round(duration, 3),
        "result": outcome.as_dict(),
    }
    db.execute(
        _CHECKPOINT,
        {"p_session_id": session_id, "p_task_id": job.task_id, "p_data": data, "p_now": utcnow()},
    )


_agents = Agent.__table__
_AGENT_FIGURES = {
    "total_duration_seconds": _agents.c.total_duration_seconds + bindparam("p_duration"),
    "total_tokens": _agents.c.total_tokens + bindparam("p_tokens"),
    "total_cost": _agents.c.total_cost + bindparam("p_cost"),
}
_AGENT_SUCCEEDED = (
    update(_agents)
    .where(_agents.c.id == bindparam("p_agent_id"))
    .values(**_AGENT_FIGURES, tasks_completed=_agents.c.tasks_completed + 1,
            consecutive_failures=0)
)  # fmt: skip
_AGENT_FAILED = (
    update(_agents)
    .where(_agents.c.id == bindparam("p_agent_id"))
    .values(**_AGENT_FIGURES, tasks_failed=_agents.c.tasks_failed + 1)
)


def record_agent_outcome(
    db: DbSession, agent_id: str, outcome: DriverResult, duration: float
) -> None:
    """Add an attempt's outcome to its agent's figures and failure streak.

    A success updates the figures and ends the streak in one statement; a failure also counts
    towards making the agent unhealthy (`performance.note_outcome`)."""
    params = {"p_agent_id": agent_id, "p_duration": duration, "p_cost": outcome.cost,
              "p_tokens": sum(outcome.tokens.values())}  # fmt: skip
    db.execute(_AGENT_SUCCEEDED if outcome.succeeded else _AGENT_FAILED, params)
    if not outcome.succeeded:
        performance.note_outcome(db, agent_id, succeeded=False)
