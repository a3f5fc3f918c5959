"""Scheduling: decide from task statuses what can run next, what can never run, and when a
session is over. The DAG's structure never changes after submission, so each process caches
it; statuses are read fresh, with light queries, under the caller's session lock."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import networkx as nx
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session as DbSession

from models import Session, SessionTask, TaskDependency
from models.base import utcnow
from models.enums import SESSION_ACTIVE, TASK_FINISHED, SessionStatus, TaskStatus

from . import canvas, dags
from .events import record_event

GRAPH_CACHE_SIZE = 256
_graphs: OrderedDict[str, nx.DiGraph] = OrderedDict()


@dataclass
class Dispatch:
    """Task runs to enqueue after the transaction commits; `retry_in` re-runs the same task."""

    session_id: str
    epoch: int
    priority: int
    runs: list[list[str]] = field(default_factory=list)
    retry_in: float | None = None


def session_graph(db: DbSession, session_id: str) -> nx.DiGraph:
    """The session's DAG over task ids (edge u -> v: v depends on u), cached per process.

    Nodes carry the tasks' immutable facts: key, action, has_command and capabilities; the
    graph carries the session's workdir and its integration steps."""
    graph = _graphs.get(session_id)
    if graph is not None:
        _graphs.move_to_end(session_id)
        return graph
    graph = nx.DiGraph()
    nodes = db.execute(
        select(SessionTask.id, SessionTask.key, SessionTask.action,
               SessionTask.command.is_not(None), SessionTask.required_capabilities)
        .where(SessionTask.session_id == session_id)
    ).all()  # fmt: skip
    graph.add_nodes_from(
        (tid, {"key": key, "action": action, "has_command": has_command,
               "capabilities": tuple(capabilities or ())})
        for tid, key, action, has_command, capabilities in nodes
    )  # fmt: skip
    graph.graph["workdir"] = (
        db.scalar(select(Session.workdir).where(Session.id == session_id)) or ""
    )
    graph.graph["integrations"] = frozenset(
        tid for tid, _, action, *_ in nodes if action == "integrate"
    )
    edges = db.execute(
        select(TaskDependency.depends_on_id, TaskDependency.task_id, TaskDependency.required)
        .where(TaskDependency.session_id == session_id)
    )  # fmt: skip
    graph.add_edges_from((pred, task, {"required": required}) for pred, task, required in edges)
    _graphs[session_id] = graph
    while len(_graphs) > GRAPH_CACHE_SIZE:
        _graphs.popitem(last=False)
    return graph


_tasks = SessionTask.__table__
_STATUSES = select(_tasks.c.id, _tasks.c.status).where(_tasks.c.session_id == bindparam("p_id"))
_LOCK = (
    select(Session.__table__.c.id, Session.__table__.c.epoch, Session.__table__.c.priority,
           Session.__table__.c.status)
    .where(Session.__table__.c.id == bindparam("p_id"))
    .with_for_update(key_share=True)
)  # fmt: skip


@dataclass(frozen=True)
class LockedSession:
    """What dispatching needs of a session whose row this transaction has locked."""

    id: str
    epoch: int
    priority: int
    status: SessionStatus


def lock_session(db: DbSession, session_id: str) -> LockedSession | None:
    """Lock the session row (FOR NO KEY UPDATE: completions of one session serialise here,
    while inserts that reference the session are not blocked) and read what dispatch needs."""
    row = db.execute(_LOCK, {"p_id": session_id}).first()
    return LockedSession(*row) if row is not None else None


def task_statuses(db: DbSession, session_id: str) -> dict[str, TaskStatus]:
    """Current status of every task of the session."""
    return {task_id: status for task_id, status in db.execute(_STATUSES, {"p_id": session_id})}


def _set_status(db: DbSession, task_ids: list[str], status: TaskStatus, **values) -> None:
    if task_ids:
        db.execute(update(_tasks).where(_tasks.c.id.in_(task_ids)).values(status=status, **values))


def dispatch_ready(
    db: DbSession, session: Session | LockedSession, completed: str | None = None
) -> Dispatch:
    """Skip tasks that can never run, mark runnable ones ready, return them as runs.

    After the completion of task `completed` only its successors can have become runnable and
    no task can have become unreachable, so only they are looked at; any other change (a
    launch, a failure) looks at every task.
    """
    graph = session_graph(db, session.id)
    statuses = task_statuses(db, session.id)
    if completed is not None and statuses.get(completed) is TaskStatus.COMPLETED:
        pending = [tid for tid in graph.succ[completed] if statuses[tid] is TaskStatus.PENDING]
    else:
        _skip_unreachable(db, session, graph, statuses)
        pending = [tid for tid, s in statuses.items() if s is TaskStatus.PENDING]
    finished = {tid: s.value for tid, s in statuses.items() if s in TASK_FINISHED}
    ready = dags.ready_tasks(graph, finished, pending)
    # Chains may only run through tasks whose other predecessors have all finished.
    unfinished = graph.subgraph(tid for tid in statuses if tid not in finished)
    runs = [
        [tid for tid in run if statuses[tid] is TaskStatus.PENDING]
        for run in canvas.dispatch_runs(unfinished, ready)
    ]
    queued = [tid for run in runs for tid in run]
    _set_status(db, queued, TaskStatus.READY, epoch=session.epoch, queued_at=utcnow())
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
    for task_id in nx.topological_sort(graph):
        if statuses[task_id] not in (TaskStatus.PENDING, TaskStatus.READY):
            continue
        finished = {
            pred: statuses[pred].value
            for pred in graph.pred[task_id]
            if statuses[pred] in TASK_FINISHED
        }
        if dags.blocked_forever(graph, finished, task_id):
            statuses[task_id] = TaskStatus.SKIPPED
            skipped.append(task_id)
            record_event(db, session.id, "task.skipped", task_id=task_id,
                         reason="a required predecessor did not complete")  # fmt: skip
    _set_status(db, skipped, TaskStatus.SKIPPED, finished_at=utcnow())


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
