"""The execution engine: launch a session, claim a task, record its outcome, dispatch what follows.

Every step is idempotent and fenced: a task message carries (session_id, task_id, epoch) and
only a task in `ready` under the session's current epoch can be claimed; an outcome is only
written while the same attempt still holds the task.
Joins are counted in PostgreSQL: completions of one session are serialised by a row lock on
the session, so the last predecessor to finish is the one that sees its successor ready.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import networkx as nx
from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import aliased

from app.drivers.base import AgentSpec, DriverJob
from app.workspaces import branch_name
from models import Session, SessionTask, TaskDependency
from models.base import utcnow
from models.enums import SESSION_ACTIVE, TASK_FINISHED, SessionStatus, TaskStatus

from . import contexts, scheduling
from .agents import choose_agent
from .errors import NotFound
from .events import record_event
from .routing import route
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
    session = db.get(Session, session_id, with_for_update={"key_share": True})
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
    if task.action == "integrate":
        return _integration_job(db, session, task, worker)
    agent = choose_agent(
        db, task.required_capabilities, require_driver=None if task.command else "opencode"
    )
    if agent is None:
        task.status = TaskStatus.BLOCKED
        task.error = "No routable agent for this task: " + (
            route(db, task.required_capabilities,
                  require_driver=None if task.command else "opencode").reason
        )  # fmt: skip
        record_event(db, session_id, "task.blocked", task_id=task_id, reason=task.error)
        return None
    task.assigned_agent_id = agent.id
    task.attempt += 1
    task.heartbeat_at = utcnow()
    task.worker = worker
    task.error = None
    predecessor = aliased(SessionTask)
    predecessors = list(
        db.scalars(
            select(predecessor.key)
            .join(TaskDependency, TaskDependency.depends_on_id == predecessor.id)
            .where(TaskDependency.task_id == task.id)
        )
    )
    graph = scheduling.session_graph(db, session_id)
    integrated = bool(graph.graph["integrations"] & nx.ancestors(graph, task.id))
    context = contexts.context_for_task(db, session_id, predecessors) if predecessors else {}
    record_event(db, session_id, "task.assigned", task_id=task_id, agent_id=agent.id,
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
        prompt=prompt_for(task, session, context),
        context=context,
        capacity=agent.capacity,
        queued_at=task.queued_at,
        base_ref=branch_name(session_id, "integration") if integrated else "HEAD",
    )


def _integration_job(db: DbSession, session: Session, task: SessionTask, worker: str) -> DriverJob:
    """An integration step runs in the engine: merge the branches of every ancestor task."""
    graph = scheduling.session_graph(db, session.id)
    ancestors = nx.ancestors(graph, task.id)
    rows = db.execute(
        select(SessionTask.id, SessionTask.branch).where(
            SessionTask.id.in_(ancestors), SessionTask.branch.is_not(None)
        )
    )
    branches = {task_id: branch for task_id, branch in rows}
    ordered = [branches[tid] for tid in nx.topological_sort(graph) if tid in branches]
    task.attempt += 1
    task.heartbeat_at = utcnow()
    task.worker = worker
    task.error = None
    return DriverJob(
        session_id=session.id,
        task_id=task.id,
        task_key=task.key,
        attempt=task.attempt,
        title=task.title,
        description=task.description,
        agent=AgentSpec(id="", name="integration", driver="integration"),
        workdir=session.workdir or "",
        timeout_seconds=float(task.timeout_seconds),
        context={"branches": ordered, "target_branch": branch_name(session.id, "integration")},
        queued_at=task.queued_at,
    )


def prompt_for(task: SessionTask, session: Session, context: dict) -> str:
    """What an agent is asked: the task, the session's request, and what came before it."""
    parts = [task.description or task.title]
    if session.prompt and session.prompt != task.description:
        parts.append(f"This task is part of the request: {session.prompt}")
    if context.get("predecessors") or context.get("session"):
        parts.append("Context from earlier tasks (JSON):\n" + json.dumps(context, indent=1))
    return "\n\n".join(parts)


def start_attempt(
    db: DbSession, job: DriverJob, fence_token: int, branch: str | None = None
) -> bool:
    """An assigned attempt that now holds its agent's lease starts, recording the lease's
    fencing token; False if the attempt lost its task meanwhile or a newer token was seen."""
    started = db.execute(
        update(SessionTask)
        .where(
            SessionTask.id == job.task_id,
            SessionTask.status == TaskStatus.ASSIGNED,
            SessionTask.attempt == job.attempt,
            SessionTask.fence_token <= fence_token,
        )
        .values(
            status=TaskStatus.IN_PROGRESS,
            fence_token=fence_token,
            started_at=utcnow(),
            heartbeat_at=utcnow(),
            executions=SessionTask.executions + 1,
            branch=branch,
        )
        .returning(SessionTask.key)
        .execution_options(synchronize_session=False)
    ).first()
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
