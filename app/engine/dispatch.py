"""Dispatch: decide from task statuses what can run next, what can never run, and when a
session is over. Runs under the caller's session lock; statuses are read fresh with light
queries, the DAG's structure comes from the per-process `graph_cache`."""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session as DbSession

from app.services.events import record_event
from models import Session, SessionTask
from models.base import utcnow
from models.enums import SESSION_ACTIVE, TASK_FINISHED, SessionStatus, TaskStatus

from . import canvas, gates
from .dependencies import (
    blocked_forever,
    ready_tasks,
    releases_at_start,
    releases_beyond_successors,
)
from .graph_cache import session_graph
from .locking import LockedSession, lock_session
from .transitions import MARK_READY, SKIP


@dataclass
class Dispatch:
    """Task runs to enqueue after the transaction commits; `retry_in` re-runs the same task."""

    session_id: str
    epoch: int
    priority: int
    runs: list[list[str]] = field(default_factory=list)
    retry_in: float | None = None


_tasks = SessionTask.__table__
_STATUSES = select(_tasks.c.id, _tasks.c.status).where(_tasks.c.session_id == bindparam("p_id"))


def task_statuses(db: DbSession, session_id: str) -> dict[str, TaskStatus]:
    """Current status of every task of the session."""
    return {task_id: status for task_id, status in db.execute(_STATUSES, {"p_id": session_id})}


def dispatch_ready(
    db: DbSession, session: Session | LockedSession, completed: str | None = None
) -> Dispatch:
    """Skip tasks that can never run, mark runnable ones ready, return them as runs.

    After the completion of task `completed` only its successors can have become runnable and
    no task can have become unreachable (unless it releases more through a finish_to_finish
    or start_to_finish edge), so only they are looked at; any other change (a launch, a
    failure, a start) looks at every task.
    """
    graph = session_graph(db, session.id)
    statuses = task_statuses(db, session.id)
    if (
        completed is not None
        and statuses.get(completed) is TaskStatus.COMPLETED
        and not releases_beyond_successors(graph, completed)
    ):
        pending = [tid for tid in graph.succ[completed] if statuses[tid] is TaskStatus.PENDING]
    else:
        _skip_unreachable(db, session, graph, statuses)
        pending = [tid for tid, s in statuses.items() if s is TaskStatus.PENDING]
    finished = {tid for tid, s in statuses.items() if s in TASK_FINISHED}
    ready = ready_tasks(graph, statuses, pending)
    # Chains may only run through tasks whose other predecessors have all finished.
    unfinished = graph.subgraph(tid for tid in statuses if tid not in finished)
    runs = [
        [tid for tid in run if statuses[tid] is TaskStatus.PENDING]
        for run in canvas.dispatch_runs(unfinished, ready)
    ]
    if graph.graph["gated"]:
        runs = gates.hold_gated(db, session, graph, runs)
    queued = [tid for run in runs for tid in run]
    if queued:
        # A fresh message is sent: out of any wait list (`waitlist`), keeping the aging clock.
        MARK_READY.apply(db, _tasks.c.id.in_(queued), epoch=session.epoch, queued_at=utcnow(),
                         waiting_agent_id=None, woken_at=None)  # fmt: skip
    for tid in queued:
        statuses[tid] = TaskStatus.READY
    finish_if_done(db, session, statuses)
    return Dispatch(session.id, session.epoch, session.priority, runs)


def _skip_unreachable(
    db: DbSession,
    session: Session | LockedSession,
    graph: nx.DiGraph,
    statuses: dict[str, TaskStatus],
) -> None:
    skipped = []
    for task_id in graph.graph["order"]:
        if statuses[task_id] not in SKIP.sources:
            continue
        if blocked_forever(graph, statuses, task_id):
            statuses[task_id] = TaskStatus.SKIPPED
            skipped.append(task_id)
            record_event(db, session.id, "task.skipped", task_id=task_id,
                         reason="a required predecessor did not complete")  # fmt: skip
    if skipped:
        SKIP.apply(db, _tasks.c.id.in_(skipped), finished_at=utcnow())


def dispatch_after_start(
    db: DbSession, session_id: str, task_id: str, epoch: int
) -> Dispatch | None:
    """After task `task_id` started: dispatch what its start released (start_to_start
    successors, tasks it is the start_to_finish predecessor of), if anything."""
    if not releases_at_start(session_graph(db, session_id), task_id):
        return None
    session = lock_session(db, session_id)
    if session.status not in SESSION_ACTIVE or session.epoch != epoch:
        return None
    return dispatch_ready(db, session)


def finish_if_done(
    db: DbSession, session: Session | LockedSession, statuses: dict[str, TaskStatus]
) -> None:
    """End an active session whose tasks have all finished: completed, partially or failed."""
    if session.status not in SESSION_ACTIVE:
        return
    if any(status not in TASK_FINISHED for status in statuses.values()):
        return
    if isinstance(session, LockedSession):
        session = db.get(Session, session.id, populate_existing=True)
    tasks = list(
        db.scalars(
            select(SessionTask)
            .where(SessionTask.session_id == session.id)
            .execution_options(populate_existing=True)
        )
    )
    if all(task.status is TaskStatus.COMPLETED for task in tasks):
        target = SessionStatus.COMPLETED
    elif all(task.status is TaskStatus.COMPLETED for task in tasks if not task.optional):
        target = SessionStatus.PARTIALLY_COMPLETED
    else:
        target = SessionStatus.FAILED
        failed = sorted(t.key for t in tasks if t.status is not TaskStatus.COMPLETED)
        session.error = "Tasks that did not complete: " + ", ".join(failed)
    session.transition_to(target)
    session.metrics = session_metrics(session, tasks)
    record_event(db, session.id, f"session.{target.value}", **session.metrics)


def session_metrics(session: Session, tasks: list[SessionTask]) -> dict:
    """Execution figures of a finished session."""
    counts: dict[str, int] = {}
    for task in tasks:
        counts[task.status.value] = counts.get(task.status.value, 0) + 1
    wall = (
        (session.finished_at - session.started_at).total_seconds()
        if session.started_at and session.finished_at
        else None
    )
    return {
        "tasks": counts,
        "wall_seconds": wall,
        "tokens": sum(sum(task.tokens.values()) for task in tasks),
        "cost": round(sum(task.cost for task in tasks), 6),
        "executions": sum(task.executions for task in tasks),
    }
