"""The execution engine: launch a session, claim a task, record its outcome, dispatch what follows.

Every step is idempotent and fenced by the session's epoch: a task message carries
(session_id, task_id, epoch) and only a task in `ready` under the same epoch can be claimed.
Joins are counted in PostgreSQL: completions of one session are serialised by a row lock on
the session, so the last predecessor to finish is the one that sees its successor ready.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from datetime import timedelta

import networkx as nx
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import aliased

from app.drivers.base import AgentSpec, DriverJob, DriverResult
from models import Agent, Checkpoint, Session, SessionTask, TaskDependency
from models.base import utcnow
from models.enums import SESSION_ACTIVE, TASK_FINISHED, SessionStatus, TaskStatus

from . import canvas, dags
from .agents import choose_agent
from .errors import NotFound
from .events import record_event

logger = logging.getLogger(__name__)

RETRY_BASE_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0
UNFINISHED_RUNNING = (TaskStatus.READY, TaskStatus.ASSIGNED, TaskStatus.IN_PROGRESS)


@dataclass
class Dispatch:
    """Task runs to enqueue after the transaction commits; `retry_in` re-runs the same task."""

    session_id: str
    epoch: int
    priority: int
    runs: list[list[str]] = field(default_factory=list)
    retry_in: float | None = None


def _lock_session(db: DbSession, session_id: str) -> Session:
    session = db.get(Session, session_id, with_for_update=True, populate_existing=True)
    if session is None:
        raise NotFound(f"Session {session_id} not found.")
    return session


def _session_graph(db: DbSession, session_id: str) -> tuple[nx.DiGraph, dict[str, SessionTask]]:
    tasks = {
        task.id: task
        for task in db.scalars(
            select(SessionTask)
            .where(SessionTask.session_id == session_id)
            .execution_options(populate_existing=True)
        )
    }
    graph = nx.DiGraph()
    graph.add_nodes_from(tasks)
    for edge in db.scalars(select(TaskDependency).where(TaskDependency.session_id == session_id)):
        graph.add_edge(edge.depends_on_id, edge.task_id, required=edge.required, type=edge.type)
    return graph, tasks


def launch(db: DbSession, session_id: str) -> Dispatch | None:
    """Start (or restart) a session under a new epoch and dispatch every task that can run.

    Messages of older epochs become no-ops, so the caller must know that in-flight work of
    the session is gone (first start, or the reconciler found it lost).
    """
    session = _lock_session(db, session_id)
    if session.status not in SESSION_ACTIVE:
        logger.info("launch skipped session_id=%s status=%s", session_id, session.status.value)
        return None
    session.epoch += 1
    if session.status is SessionStatus.QUEUED:
        session.transition_to(SessionStatus.RUNNING)
    graph, tasks = _session_graph(db, session_id)
    for task in tasks.values():
        if task.status in UNFINISHED_RUNNING or task.status is TaskStatus.BLOCKED:
            task.status = TaskStatus.PENDING
    record_event(db, session_id, "session.launched", epoch=session.epoch)
    dispatch = _dispatch_ready(db, session, graph, tasks)
    _finish_if_done(db, session, tasks)
    return dispatch


def _dispatch_ready(
    db: DbSession, session: Session, graph: nx.DiGraph, tasks: dict[str, SessionTask]
) -> Dispatch:
    """Skip tasks that can never run, mark runnable ones ready and return them as runs."""
    _skip_unreachable(db, session, graph, tasks)
    finished = {tid: t.status.value for tid, t in tasks.items() if t.status in TASK_FINISHED}
    pending = [tid for tid, t in tasks.items() if t.status is TaskStatus.PENDING]
    ready = dags.ready_tasks(graph, finished, pending)
    pending_only = graph.subgraph(pending)
    runs = canvas.dispatch_runs(pending_only, ready)
    now = utcnow()
    for run in runs:
        for task_id in run:
            task = tasks[task_id]
            task.transition_to(TaskStatus.READY)
            task.epoch = session.epoch
            task.queued_at = now
    return Dispatch(session.id, session.epoch, session.priority, runs)


def _skip_unreachable(
    db: DbSession, session: Session, graph: nx.DiGraph, tasks: dict[str, SessionTask]
) -> None:
    for task_id in nx.topological_sort(graph):
        task = tasks[task_id]
        if task.status not in (TaskStatus.PENDING, TaskStatus.READY):
            continue
        finished = {p: tasks[p].status.value for p in graph.pred[task_id]}
        finished = {p: s for p, s in finished.items() if TaskStatus(s) in TASK_FINISHED}
        if dags.blocked_forever(graph, finished, task_id):
            task.transition_to(TaskStatus.SKIPPED)
            task.finished_at = utcnow()
            record_event(db, session.id, "task.skipped", task_id=task_id, key=task.key,
                         reason="a required predecessor did not complete")  # fmt: skip


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


def claim(db: DbSession, session_id: str, task_id: str, epoch: int) -> DriverJob | None:
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


def record_outcome(
    db: DbSession, job: DriverJob, epoch: int, outcome: DriverResult, duration: float
) -> Dispatch | None:
    """Persist a task's outcome if this attempt still owns the task, then dispatch what follows."""
    session = _lock_session(db, job.session_id)
    task = db.get(SessionTask, job.task_id, populate_existing=True)
    if (
        task is None
        or task.status is not TaskStatus.IN_PROGRESS
        or task.epoch != epoch
        or task.attempt != job.attempt
    ):
        record_event(db, job.session_id, "task.outcome_rejected", task_id=job.task_id,
                     attempt=job.attempt, epoch=epoch)  # fmt: skip
        return None
    _update_agent_figures(db, job.agent.id, outcome, duration)
    if not outcome.succeeded and outcome.retryable and task.attempt < task.max_attempts:
        return _schedule_retry(db, session, task, outcome)
    task.transition_to(TaskStatus.COMPLETED if outcome.succeeded else TaskStatus.FAILED)
    task.finished_at = utcnow()
    task.result = outcome.as_dict()
    task.error = outcome.error
    task.tokens = dict(outcome.tokens)
    task.cost = outcome.cost
    _checkpoint(db, session, task, duration)
    record_event(db, session.id, f"task.{task.status.value}", task_id=task.id,
                 agent_id=job.agent.id, key=task.key, duration_s=round(duration, 3),
                 error=outcome.error)  # fmt: skip
    if session.status not in SESSION_ACTIVE:
        return None
    graph, tasks = _session_graph(db, session.id)
    dispatch = _dispatch_ready(db, session, graph, tasks)
    _finish_if_done(db, session, tasks)
    return dispatch


def _schedule_retry(
    db: DbSession, session: Session, task: SessionTask, outcome: DriverResult
) -> Dispatch:
    delay = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** (task.attempt - 1))
    delay = delay * (0.5 + random.random() / 2)
    task.transition_to(TaskStatus.READY)
    task.error = outcome.error
    task.queued_at = utcnow() + timedelta(seconds=delay)
    record_event(db, session.id, "task.retry_scheduled", task_id=task.id, key=task.key,
                 attempt=task.attempt, delay_s=round(delay, 2), error=outcome.error)  # fmt: skip
    return Dispatch(session.id, session.epoch, session.priority, retry_in=delay)


def _checkpoint(db: DbSession, session: Session, task: SessionTask, duration: float) -> None:
    sequence = db.scalar(
        select(func.coalesce(func.max(Checkpoint.sequence), 0)).where(
            Checkpoint.session_id == session.id
        )
    )
    db.add(
        Checkpoint(
            session_id=session.id,
            task_id=task.id,
            sequence=sequence + 1,
            kind="task",
            data={
                "key": task.key,
                "status": task.status.value,
                "attempt": task.attempt,
                "duration_s": round(duration, 3),
                "result": task.result,
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


def _finish_if_done(db: DbSession, session: Session, tasks: dict[str, SessionTask]) -> None:
    if session.status not in SESSION_ACTIVE:
        return
    if any(task.status not in TASK_FINISHED for task in tasks.values()):
        return
    required_ok = all(
        task.status is TaskStatus.COMPLETED for task in tasks.values() if not task.optional
    )
    all_ok = all(task.status is TaskStatus.COMPLETED for task in tasks.values())
    if all_ok:
        target = SessionStatus.COMPLETED
    elif required_ok:
        target = SessionStatus.PARTIALLY_COMPLETED
    else:
        target = SessionStatus.FAILED
        failed = sorted(t.key for t in tasks.values() if t.status is TaskStatus.FAILED)
        session.error = "Failed tasks: " + ", ".join(failed)
    session.transition_to(target)
    session.metrics = _session_metrics(session, tasks)
    record_event(db, session.id, f"session.{target.value}", **session.metrics)


def _session_metrics(session: Session, tasks: dict[str, SessionTask]) -> dict:
    counts: dict[str, int] = {}
    for task in tasks.values():
        counts[task.status.value] = counts.get(task.status.value, 0) + 1
    wall = (
        (session.finished_at - session.started_at).total_seconds()
        if session.started_at and session.finished_at
        else None
    )
    return {
        "tasks": counts,
        "wall_seconds": wall,
        "tokens": sum(sum(task.tokens.values()) for task in tasks.values()),
        "cost": round(sum(task.cost for task in tasks.values()), 6),
        "executions": sum(task.executions for task in tasks.values()),
    }
