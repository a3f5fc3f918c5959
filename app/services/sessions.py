"""Sessions: create one with its DAG in one transaction, start it, find and list them."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from datetime import datetime
from typing import Any

import psycopg2
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import selectinload

from app.planning import DagError, build_task_graph
from app.workspaces import BRANCH_PREFIX, branch_clashes
from models import Session, SessionTask, TaskDependency
from models.base import new_id
from models.enums import DependencyType, SessionStatus, SessionType, TaskStatus

from . import approvals, budgets
from .agents import missing_capabilities
from .errors import NotFound, ValidationFailed
from .events import record_event
from .planning import check_plan_capabilities

logger = logging.getLogger(__name__)


def request_fingerprint(payload: dict[str, Any]) -> str:
    """A stable hash of a request body, to tell a retried request from a different one."""
    canonical = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def find_by_idempotency_key(db: DbSession, key: str, fingerprint: str) -> Session | None:
    """The session created earlier with this key; 422 if that request had another body."""
    session = db.scalar(select(Session).where(Session.idempotency_key == key))
    if session is not None and session.request_hash != fingerprint:
        raise ValidationFailed(
            "This Idempotency-Key was already used with a different request body.",
            {"Idempotency-Key": ["Already used with a different request body."]},
        )
    return session


def create_session(
    db: DbSession,
    data: dict[str, Any],
    *,
    idempotency_key: str | None = None,
    fingerprint: str | None = None,
    workspace_root: str = "/tmp/orchestrator",
) -> tuple[Session, bool]:
    """Validate and persist a session with its DAG; return (session, created).

    With an idempotency key, a repeated request returns the session made the first time.
    A planned DAG (`plan_info` set) must be covered by opencode agents: its tasks have no command.
    """
    if idempotency_key:
        existing = find_by_idempotency_key(db, idempotency_key, fingerprint or "")
        if existing is not None:
            return existing, False
    data = dict(data)
    data.pop("planning", None)  # planning options only matter for a request without a dag
    task_specs = data.pop("dag")["tasks"]
    try:
        graph = build_task_graph(task_specs)
    except DagError as error:
        raise ValidationFailed("The DAG is invalid.", error.errors) from error
    session_id = new_id()
    _check_branches(session_id, task_specs)
    _check_parent(db, data.get("parent_id"))
    if data.get("plan_info"):
        check_plan_capabilities(db, task_specs)
    else:
        _check_capabilities(db, task_specs)
    data["budget"] = budgets.limits_of(data.get("budget"))
    budgets.check_cost_budgets(db, data["budget"], task_specs)
    repository = data.pop("repository", None)
    if repository:
        if data.get("workdir"):
            raise ValidationFailed("Give either a workdir or a repository, not both.",
                                   {"repository": ["Not with a workdir."]})  # fmt: skip
        data["repository_url"], data["repository_branch"] = repository["url"], repository["branch"]
    elif not data.get("workdir"):
        data["workdir"] = os.path.join(workspace_root, session_id)
    elif not os.path.isabs(data["workdir"]):
        raise ValidationFailed("workdir must be an absolute path.", {"workdir": ["Not absolute."]})
    session = Session(
        **data, id=session_id, idempotency_key=idempotency_key, request_hash=fingerprint
    )
    db.add(session)
    _add_tasks(db, session, task_specs, graph)
    try:
        with db.begin_nested():
            db.flush()
    except IntegrityError:
        if not idempotency_key:
            raise
        db.expunge_all()
        existing = find_by_idempotency_key(db, idempotency_key, fingerprint or "")
        if existing is None:
            raise
        return existing, False
    record_event(db, session.id, "session.created", title=session.title, tasks=len(task_specs))
    return session, True


def _check_branches(session_id: str, task_specs: list[dict[str, Any]]) -> None:
    """422 naming the task keys that would share a git branch (`workspaces.branch_name`), with
    each other or with the session's integration branch."""
    keys = [spec["key"] for spec in task_specs]
    clashes = branch_clashes(session_id, keys)
    if not clashes:
        return
    positions = {key: index for index, key in enumerate(keys)}
    errors: dict[str, list[str]] = {}
    messages = []
    for branch, clashing in clashes:
        shown = ", ".join(f"'{key}'" for key in clashing)
        branch = f"{BRANCH_PREFIX}/<session>/{branch.rsplit('/', 1)[-1]}"
        if len(clashing) > 1:
            message = (f"Task keys {shown} map to one git branch ({branch}; letter case does "
                       "not count); rename all but one.")  # fmt: skip
        else:
            message = f"Task key {shown} maps to the session's integration branch; rename it."
        messages.append(message)
        for key in clashing:
            errors.setdefault(f"dag.tasks.{positions[key]}.key", []).append(message)
    more = f" ({len(messages) - 1} more in errors)" if len(messages) > 1 else ""
    raise ValidationFailed(messages[0] + more, errors)


def _check_parent(db: DbSession, parent_id: str | None) -> None:
    if parent_id and db.get(Session, parent_id) is None:
        raise ValidationFailed(
            "The parent session does not exist.",
            {"parent_id": [f"Unknown session {parent_id}."]},
        )


def _check_capabilities(db: DbSession, task_specs: list[dict[str, Any]]) -> None:
    required = [
        [capability.value for capability in spec["required_capabilities"]]
        for spec in task_specs
        if spec["required_capabilities"]
    ]
    missing = missing_capabilities(db, required)
    if missing:
        raise ValidationFailed(
            "No registered agent has the capabilities some tasks require.",
            {"dag.tasks.required_capabilities": [f"No agent has: {m}." for m in missing]},
        )


def _add_tasks(db: DbSession, session: Session, specs: list[dict[str, Any]], graph) -> None:
    by_key: dict[str, SessionTask] = {}
    for position, spec in enumerate(specs):
        task = SessionTask(
            key=spec["key"],
            position=position,
            title=spec.get("title") or spec["key"],
            description=spec["description"],
            command=spec["command"],
            action=spec.get("action"),
            required_capabilities=[c.value for c in spec["required_capabilities"]],
            technologies=list(spec.get("technologies") or ()),
            optional=spec["optional"],
            timeout_seconds=spec["timeout_seconds"],
            max_attempts=spec["max_attempts"],
            estimate_hours=spec["estimate_hours"],
            budget=budgets.limits_of(spec.get("budget")),
            requires_approval=spec.get("requires_approval", False),
        )
        session.tasks.append(task)
        by_key[task.key] = task
    # graph.succ, not graph.edges: networkx caches an edge view that points back at the graph,
    # a reference cycle only the cyclic garbage collector frees.
    edges = ((pred, succ, edge) for pred, nbrs in graph.succ.items() for succ, edge in nbrs.items())
    for predecessor, successor, edge in edges:
        by_key[successor].dependencies.append(
            TaskDependency(
                session_id=session.id,
                depends_on=by_key[predecessor],
                type=DependencyType(edge["type"]),
                required=edge["required"],
            )
        )


def start_session(db: DbSession, session: Session) -> None:
    """Mark a pending session queued; the caller enqueues its launch after commit."""
    session.transition_to(SessionStatus.QUEUED)
    record_event(db, session.id, "session.queued", priority=session.priority)
    if session.approve_plan:  # it waits, paused, for a plan approval
        approvals.hold_plan(db, session)


def get_session(db: DbSession, session_id: str) -> Session:
    """The session with its tasks and their dependencies, or NotFound."""
    session = db.scalar(
        select(Session)
        .where(Session.id == session_id)
        .options(
            # A dependency's predecessor is a task of the same session, already loaded: the
            # many-to-one is served from the identity map, so it needs no third query.
            selectinload(Session.tasks).selectinload(SessionTask.dependencies)
        )
    )
    if session is None:
        raise NotFound(f"Session {session_id} not found.")
    return session


# The session detail, the most frequent read (clients poll it), in one statement and one JSON
# document: the session's columns that the response shows, and its tasks, each with its edges as
# [predecessor key, type, required]. Planning it cost PostgreSQL more than running it, so each
# pooled connection prepares it once (the mark lives in the pool's per-connection `info`, which
# a reconnect clears). It runs on a DBAPI connection of the autocommit engine (one statement sees
# one snapshot): no BEGIN and ROLLBACK round trips, and none of the ORM's per-statement work,
# which were most of the request's cost (docs/benchmarks.md).
DETAIL_STATEMENT = "orch_session_detail"
PREPARE_DETAIL = f"""PREPARE {DETAIL_STATEMENT} (varchar) AS
SELECT row_to_json(detail) FROM (
SELECT s.id, s.title, s.description, s.prompt, s.type, s.priority, s.status, s.parent_id,
       s.max_duration_seconds, s.tags, s.metadata, s.agent_preferences, s.created_by, s.workdir,
       s.repository_url, s.repository_branch,
       s.error, s.metrics, s.plan_info, s.created_at, s.updated_at, s.started_at, s.finished_at,
       s.budget, s.approve_plan, s.approval_policy AS approvals, s.pause_reason, s.spent_tokens,
       s.spent_cost_usd, s.spent_agent_seconds,
       (SELECT coalesce(json_agg(t ORDER BY t.position), '[]')
          FROM (SELECT t.position, t.id, t.key, t.title, t.description, t.command, t.action,
                       t.branch, t.required_capabilities, t.technologies, t.optional,
                       t.status, t.attempt,
                       t.max_attempts, t.executions, t.worker, t.heartbeat_at, t.fence_token,
                       t.assigned_agent_id, t.result, t.error, t.tokens, t.cost, t.queued_at,
                       t.started_at, t.finished_at, t.budget, t.requires_approval,
                       t.spent_tokens, t.spent_cost_usd, t.spent_agent_seconds,
                       (SELECT coalesce(json_agg(json_build_array(p.key, d.type, d.required)
                                                 ORDER BY d.id), '[]')
                          FROM task_dependencies d JOIN session_tasks p ON p.id = d.depends_on_id
                         WHERE d.task_id = t.id) AS depends_on
                  FROM session_tasks t WHERE t.session_id = s.id) t) AS tasks
  FROM sessions s WHERE s.id = $1) detail"""
EXECUTE_DETAIL = f"EXECUTE {DETAIL_STATEMENT}(%(session_id)s)"
# The prepared statement is gone (DEALLOCATE, DISCARD) or its result type changed (a migration).
MISSING_PREPARED, PLAN_CHANGED = "26000", "0A000"
SESSION_TIMES = ("created_at", "updated_at", "started_at", "finished_at")
TASK_TIMES = ("heartbeat_at", "queued_at", "started_at", "finished_at")


def _fetch_detail(pooled, session_id: str) -> dict[str, Any] | None:
    """Run the prepared detail statement on a pooled connection (preparing it when needed)."""
    with pooled.driver_connection.cursor() as cursor:
        for retry in (False, True):
            try:
                if DETAIL_STATEMENT not in pooled.info:
                    cursor.execute(PREPARE_DETAIL)
                    pooled.info[DETAIL_STATEMENT] = True
                cursor.execute(EXECUTE_DETAIL, {"session_id": session_id})
                row = cursor.fetchone()
                return None if row is None else row[0]
            except psycopg2.Error as error:
                if retry or error.pgcode not in (MISSING_PREPARED, PLAN_CHANGED):
                    raise
                logger.info("session detail prepared again pgcode=%s", error.pgcode)
                if error.pgcode == PLAN_CHANGED:
                    cursor.execute(f"DEALLOCATE {DETAIL_STATEMENT}")
                pooled.info.pop(DETAIL_STATEMENT, None)


def _typed(row: dict[str, Any], status, times: tuple[str, ...]) -> dict[str, Any]:
    """A row from the JSON document with the types its columns have (enums, datetimes)."""
    row["status"] = status(row["status"])
    for name in times:
        if row[name] is not None:
            row[name] = datetime.fromisoformat(row[name])
    return row


def session_detail(engine: Engine, session_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The session's columns and its tasks' (each with `depends_on`: [key, type, required] per
    edge) as plain data, or NotFound: what `get_session` loads, in one statement.

    Takes an autocommit engine (`db.reader`), not a session: it reads outside the ORM. A
    connection found broken (the database restarted) makes it drop the pool and try once more,
    as SQLAlchemy would.
    """
    for retry in (False, True):
        pooled = engine.raw_connection()
        try:
            session = _fetch_detail(pooled, session_id)
            break
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as error:
            if retry or not engine.dialect.is_disconnect(error, pooled.driver_connection, None):
                raise
            logger.warning("session detail lost its connection error=%s", type(error).__name__)
            pooled.invalidate(error)
            engine.dispose()
        finally:
            pooled.close()
    if session is None:
        raise NotFound(f"Session {session_id} not found.")
    tasks = [_typed(task, TaskStatus, TASK_TIMES) for task in session.pop("tasks")]
    session["type"] = SessionType(session["type"])
    return _typed(session, SessionStatus, SESSION_TIMES), tasks


def list_sessions(
    db: DbSession,
    *,
    page: int = 1,
    page_size: int = 20,
    status: SessionStatus | None = None,
    type=None,
    tag: str | None = None,
    parent_id: str | None = None,
) -> tuple[list[Session], int]:
    """One page of sessions, newest first, and the total count for the filters; each session
    carries `task_counts` (see `task_counts`) instead of its tasks."""
    query = select(Session)
    if status:
        query = query.where(Session.status == status)
    if type:
        query = query.where(Session.type == type)
    if tag:
        query = query.where(Session.tags.contains([tag]))
    if parent_id:
        query = query.where(Session.parent_id == parent_id)
    total = db.scalar(select(func.count()).select_from(query.subquery()))
    items = list(
        db.scalars(
            query.order_by(Session.created_at.desc(), Session.id)
            .offset((page - 1) * page_size)
            .limit(page_size)
        )
    )
    counts = task_counts(db, [session.id for session in items])
    for session in items:
        session.task_counts = counts.get(session.id, {})
    return items, total


def task_counts(db: DbSession, session_ids: list[str]) -> dict[str, dict[str, int]]:
    """Each session's number of tasks by status: one row per (session, status), so a list
    never reads the tasks themselves (their results and errors may be large)."""
    if not session_ids:
        return {}
    rows = db.execute(
        select(SessionTask.session_id, SessionTask.status, func.count())
        .where(SessionTask.session_id.in_(session_ids))
        .group_by(SessionTask.session_id, SessionTask.status)
    )
    counts: dict[str, dict[str, int]] = {}
    for session_id, status, number in rows:
        counts.setdefault(session_id, {})[status.value] = number
    return counts
