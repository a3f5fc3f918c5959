"""Claiming a task: the first step of every task message, on the hot path of every DAG hop.

A message carries (session_id, task_id, epoch). The task is routed first, from the cached
graph's immutable routing facts (capabilities, driver, technologies, complexity), and then
claimed with one fenced UPDATE that also records the agent and the new attempt and returns
what the driver job needs from the task and its session. The statements are built once per
process.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

import networkx as nx
from sqlalchemy import and_, bindparam, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session as DbSession

from app.drivers.base import AgentSpec, DriverJob
from app.services import task_context
from app.services.events import record_event
from app.services.routing import route_task
from app.workspaces import branch_name
from models import Session, SessionTask, TaskDependency
from models.base import utcnow
from models.enums import SESSION_ACTIVE, TASK_FINISHED, DependencyType, TaskStatus

from . import waitlist
from .dispatch import Dispatch, dispatch_ready
from .graph_cache import session_graph
from .locking import lock_session
from .worktrees import needs_worktree

logger = logging.getLogger(__name__)

_tasks, _sessions = SessionTask.__table__, Session.__table__
_dependencies, _predecessor = TaskDependency.__table__, SessionTask.__table__.alias("predecessor")
# A dependency that does not yet allow the task to start (see `dependencies`): finish_to_start
# needs the predecessor completed, start_to_start started; optional ones only finished.
# finish_to_finish and start_to_finish never hold a start back.
_UNSATISFIED = (
    select(_dependencies.c.id)
    .join(_predecessor, _predecessor.c.id == _dependencies.c.depends_on_id)
    .where(
        _dependencies.c.task_id == _tasks.c.id,
        or_(
            and_(
                _dependencies.c.type == DependencyType.FINISH_TO_START,
                _predecessor.c.status != TaskStatus.COMPLETED,
            ),
            and_(
                _dependencies.c.type == DependencyType.START_TO_START,
                _predecessor.c.status.not_in([TaskStatus.IN_PROGRESS, TaskStatus.COMPLETED]),
            ),
        ),
        or_(_dependencies.c.required, _predecessor.c.status.not_in(TASK_FINISHED)),
    )
    .exists()
)
_CLAIMABLE = (
    _tasks.c.id == bindparam("p_task_id"),
    _tasks.c.session_id == bindparam("p_session_id"),
    _tasks.c.status == TaskStatus.READY,
    _tasks.c.epoch == bindparam("p_epoch"),
    _sessions.c.id == _tasks.c.session_id,
    _sessions.c.epoch == bindparam("p_epoch"),
    _sessions.c.status.in_(SESSION_ACTIVE),
    ~_UNSATISFIED,
)
# max_attempts is enforced here: a task whose attempts are used up never runs again.
_HAS_ATTEMPTS_LEFT = _tasks.c.executions < _tasks.c.max_attempts
# What every claim records: the agent, the new attempt and who holds it; it leaves any wait list.
_ASSIGNMENT = {
    "assigned_agent_id": bindparam("p_agent_id"),
    "attempt": _tasks.c.attempt + 1,
    "heartbeat_at": bindparam("p_now"),
    "worker": bindparam("p_worker"),
    "error": None,
    "waiting_agent_id": None,
    "waiting_since": None,
    "woken_at": None,
}
_CLAIM = (
    update(_tasks)
    .where(*_CLAIMABLE, _HAS_ATTEMPTS_LEFT)
    .values(status=TaskStatus.ASSIGNED, **_ASSIGNMENT)
    .returning(
        _tasks.c.key,
        _tasks.c.attempt,
        _tasks.c.title,
        _tasks.c.description,
        _tasks.c.command,
        _tasks.c.timeout_seconds,
        _tasks.c.queued_at,
        _sessions.c.prompt,
        _sessions.c.workdir,
        _sessions.c.repository_url,
        _sessions.c.repository_branch,
        # A budget covers the attempt (app/engine/budget.py): the session's or the task's.
        (
            (_sessions.c.budget != literal({}, JSONB)) | (_tasks.c.budget != literal({}, JSONB))
        ).label("budgeted"),
    )  # fmt: skip
)
_waiter = SessionTask.__table__.alias("waiter")
# Nobody else is in the chosen agent's wait list (else `waitlist.better_waiters` decides).
_NOBODY_WAITING = ~(
    select(_waiter.c.id)
    .where(
        _waiter.c.waiting_agent_id == bindparam("p_agent_id"),
        _waiter.c.status == TaskStatus.READY,
        _waiter.c.id != bindparam("p_task_id"),
    )
    .exists()
)


# The same claim when the worker already holds a free slot of the chosen agent: the attempt
# starts at once, fenced by the slot's token, and no second transaction is needed to start it.
# The first form also needs nobody else waiting for the agent (one statement on the hot path);
# otherwise `waitlist.better_waiters` decides whether the slot is this task's (the second).
def _claim_and_start(*conditions):
    return (
        update(_tasks)
        .where(
            *_CLAIMABLE,
            _HAS_ATTEMPTS_LEFT,
            _tasks.c.fence_token <= bindparam("p_token"),
            *conditions,
        )
        .values(
            status=TaskStatus.IN_PROGRESS,
            **_ASSIGNMENT,
            fence_token=bindparam("p_token"),
            started_at=bindparam("p_now"),
            executions=_tasks.c.executions + 1,
            branch=None,
        )
        .returning(*_CLAIM.exported_columns)
    )


_CLAIM_AND_START = _claim_and_start(_NOBODY_WAITING)
_CLAIM_AND_START_ANYWAY = _claim_and_start()
# No free slot: the task joins the agent's wait list (`waitlist`) and stays `ready`; a task
# parked before keeps its place (its waiting_since).
_PARK = (
    update(_tasks)
    .where(*_CLAIMABLE, _HAS_ATTEMPTS_LEFT)
    .values(
        waiting_agent_id=bindparam("p_agent_id"),
        waiting_since=func.coalesce(_tasks.c.waiting_since, bindparam("p_now")),
        woken_at=None,
    )
    .returning(_tasks.c.key, (_tasks.c.waiting_since == bindparam("p_now")).label("first"))
)
_BLOCK = (
    update(_tasks)
    .where(*_CLAIMABLE)
    .values(status=TaskStatus.BLOCKED, error=bindparam("p_error"))
    .returning(_tasks.c.id)
)
_EXHAUST = (
    update(_tasks)
    .where(*_CLAIMABLE, ~_HAS_ATTEMPTS_LEFT)
    .values(
        status=TaskStatus.FAILED,
        finished_at=bindparam("p_now"),
        error=func.concat("Out of attempts (", _tasks.c.executions, " of ",
                          _tasks.c.max_attempts, "); last error: ",
                          func.coalesce(_tasks.c.error, "none")),
    )
    .returning(_tasks.c.key, _tasks.c.error)
)  # fmt: skip
_STALE_READY = (
    _tasks.c.id == bindparam("p_task_id"),
    _tasks.c.status == TaskStatus.READY,
    _tasks.c.epoch == bindparam("p_epoch"),
    _UNSATISFIED,
)
_LOCK_STALE_READY = select(_tasks.c.id).where(*_STALE_READY).with_for_update(key_share=True)
_RETURN_TO_PENDING = (
    update(_tasks).where(*_STALE_READY).values(status=TaskStatus.PENDING).returning(_tasks.c.id)
)


class TakeSlot(Protocol):
    """Takes one of the chosen agent's (a row's) slots without waiting: its fencing token, or
    None when none is free; `release` gives it back, `spare` counts the slots still free."""

    def __call__(self, agent: Any, workdir: str) -> int | None: ...

    def release(self) -> None: ...

    def spare(self, agent: Any) -> int: ...


def claim(
    db: DbSession,
    session_id: str,
    task_id: str,
    epoch: int,
    worker: str = "",
    take_slot: TakeSlot | None = None,
) -> DriverJob | Dispatch | waitlist.Parked | None:
    """Claim a ready task for this epoch, route it to an agent and return the driver job.

    With `take_slot`, a task whose agent has a free slot starts in the same transaction
    (`job.started_token` is then the slot's fencing token; in a git workdir it is only
    `assigned`, holding the slot, until its worktree is made); a task whose agent has none, or
    whose slot better waiters were woken for, is parked in the agent's wait list (`Parked`).
    Without `take_slot` the task is `assigned` and its runner takes the slot. Returns None when
    the message is stale or duplicated, or when no agent can take the task (the task is then
    `blocked` with the reason); what to dispatch next when its attempts were used up (it fails).
    """
    graph = session_graph(db, session_id)
    if task_id not in graph:
        logger.info("claim of unknown task session_id=%s task_id=%s", session_id, task_id)
        return None
    facts = graph.nodes[task_id]
    if facts["action"] == "integrate":
        return _claim_integration(db, graph, session_id, task_id, epoch, worker)
    decision = route_task(db, facts["routing"])
    agent = decision.waitable
    params = {"p_task_id": task_id, "p_session_id": session_id, "p_epoch": epoch}
    if agent is None:
        error = f"No routable agent for this task: {decision.reason}"
        if db.execute(_BLOCK, {**params, "p_error": error}).first() is not None:
            record_event(db, session_id, "task.blocked", task_id=task_id, reason=error)
            return None
        return _not_claimed(db, session_id, task_id, epoch)
    params.update(p_agent_id=agent.id, p_now=utcnow(), p_worker=worker)
    token = take_slot(agent, graph.graph["workdir"]) if take_slot is not None else None
    if take_slot is not None and token is None:
        return _park(db, params, session_id, task_id, epoch)
    start_now = token is not None and not needs_worktree(graph.graph["workdir"])
    row = db.execute(_CLAIM_AND_START, {**params, "p_token": token}).first() if start_now else None
    if token is not None and row is None:  # others wait for this agent, or a stale message
        if _yields(db, take_slot, agent, task_id):
            return _park(db, params, session_id, task_id, epoch)
        if start_now:
            row = db.execute(_CLAIM_AND_START_ANYWAY, {**params, "p_token": token}).first()
    if row is None:
        token = None  # not started here (a stale message, or a newer fencing token was seen)
        row = db.execute(_CLAIM, params).first()
    if row is None:
        return _not_claimed(db, session_id, task_id, epoch)
    predecessors = [graph.nodes[pred]["key"] for pred in graph.pred[task_id]]
    context = task_context.context_for_task(db, session_id, predecessors) if predecessors else {}
    record_event(db, session_id, "task.assigned", task_id=task_id, agent_id=agent.id,
                 key=row.key, attempt=row.attempt)  # fmt: skip
    if token is not None:
        record_event(db, session_id, "task.started", task_id=task_id, agent_id=agent.id,
                     key=row.key, attempt=row.attempt, fence_token=token)  # fmt: skip
    integrated = bool(graph.graph["integrations"] & nx.ancestors(graph, task_id))
    return _job(
        session_id, task_id, row, AgentSpec.of(agent),
        command=row.command,
        prompt=prompt_for(row.title, row.description, row.prompt, context),
        context=context,
        capacity=agent.capacity,
        base_ref=branch_name(session_id, "integration") if integrated else "HEAD",
        started_token=token,
    )  # fmt: skip


def _yields(db: DbSession, take_slot: TakeSlot, agent, task_id: str) -> bool:
    """Whether a claim that got a slot must give it back: more waiters of the agent rank above
    its task than slots stay free (they were, or will be, woken for them)."""
    better = waitlist.better_waiters(db, agent.id, task_id)
    if better == 0 or better <= take_slot.spare(agent):
        return False
    take_slot.release()
    return True


def _park(
    db: DbSession, params: dict, session_id: str, task_id: str, epoch: int
) -> waitlist.Parked | Dispatch | None:
    """Put the task in its agent's wait list; the worker is free again at once."""
    row = db.execute(_PARK, params).first()
    if row is None:
        return _not_claimed(db, session_id, task_id, epoch)
    if row.first:
        record_event(db, session_id, "task.waiting_for_agent", task_id=task_id,
                     agent_id=params["p_agent_id"], key=row.key)  # fmt: skip
    return waitlist.Parked(session_id, task_id, params["p_agent_id"])


def _job(session_id: str, task_id: str, row, agent: AgentSpec, **rest) -> DriverJob:
    """The driver job of a claimed row (the `_CLAIM` statement's columns)."""
    return DriverJob(
        session_id=session_id, task_id=task_id, task_key=row.key, attempt=row.attempt,
        title=row.title, description=row.description, agent=agent, workdir=row.workdir or "",
        timeout_seconds=float(row.timeout_seconds), queued_at=row.queued_at,
        repository=row.repository_url, repository_branch=row.repository_branch,
        budgeted=bool(row.budgeted), **rest,
    )  # fmt: skip


def _not_claimed(db: DbSession, session_id: str, task_id: str, epoch: int) -> Dispatch | None:
    """A stale or duplicate message changes nothing. A ready task whose attempts are used up
    fails (what can run next is returned); one that arrived before its predecessors finished
    waits in `pending` again, so that the completion of its last predecessor dispatches it
    (under the session lock)."""
    params = {"p_task_id": task_id, "p_epoch": epoch}
    exhausted = db.execute(
        _EXHAUST, {**params, "p_session_id": session_id, "p_now": utcnow()}
    ).first()
    if exhausted is not None:
        logger.warning("out of attempts session_id=%s task_id=%s", session_id, task_id)
        record_event(db, session_id, "task.failed", task_id=task_id, key=exhausted.key,
                     error=exhausted.error)  # fmt: skip
        return dispatch_ready(db, lock_session(db, session_id))
    logger.info("claim skipped session_id=%s task_id=%s epoch=%s", session_id, task_id, epoch)
    if db.execute(_LOCK_STALE_READY, params).first() is None:  # the task first, then its session
        return None
    if lock_session(db, session_id).epoch != epoch:
        return None
    if db.execute(_RETURN_TO_PENDING, params).first():
        record_event(db, session_id, "task.waiting", task_id=task_id)
    return None


def _claim_integration(
    db: DbSession, graph: nx.DiGraph, session_id: str, task_id: str, epoch: int, worker: str
) -> DriverJob | None:
    """An integration step runs in the engine: merge the branches of every ancestor task."""
    row = db.execute(
        _CLAIM,
        {"p_task_id": task_id, "p_session_id": session_id, "p_epoch": epoch,
         "p_agent_id": None, "p_now": utcnow(), "p_worker": worker},
    ).first()  # fmt: skip
    if row is None:
        return _not_claimed(db, session_id, task_id, epoch)
    ancestors = nx.ancestors(graph, task_id)
    rows = db.execute(
        select(SessionTask.id, SessionTask.branch).where(
            SessionTask.id.in_(ancestors), SessionTask.branch.is_not(None)
        )
    )
    branches = {tid: branch for tid, branch in rows}
    ordered = [branches[tid] for tid in nx.topological_sort(graph) if tid in branches]
    integrator = AgentSpec(id="", name="integration", driver="integration")
    target = branch_name(session_id, "integration")
    return _job(session_id, task_id, row, integrator,
                context={"branches": ordered, "target_branch": target})  # fmt: skip


def prompt_for(title: str, description: str, session_prompt: str | None, context: dict) -> str:
    """What an agent is asked: the task, the session's request, and what came before it."""
    parts = [description or title]
    if session_prompt and session_prompt != description:
        parts.append(f"This task is part of the request: {session_prompt}")
    if context.get("predecessors") or context.get("session"):
        parts.append("Context from earlier tasks (JSON):\n" + json.dumps(context, indent=1))
    return "\n\n".join(parts)
