"""What the dashboard's pages show, read through the services the API uses: a page of
sessions with filters and counts, one session with its Gantt of attempts, the agents."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session as DbSession

from app.engine.lifecycle import allowed_actions
from app.schemas.sessions import dump_session_detail
from app.services import events as event_service
from app.services import history
from app.services import sessions as session_service
from app.services.performance import BUSY_STATUSES, agent_loads, performance_of
from models import Agent, Session, SessionTask
from models.base import utcnow
from models.enums import SessionPriority, SessionStatus, SessionType

PAGE_SIZE = 25
EVENTS_SHOWN = 200
TEXT_MAX = 200


def _filters(status: str | None, type: str | None, tag: str | None, text: str | None) -> list:
    """WHERE clauses for the list's filters; unknown statuses or types match nothing."""
    clauses = []
    if status:
        clauses.append(Session.status == SessionStatus(status) if status in _STATUSES else False)
    if type:
        clauses.append(Session.type == SessionType(type) if type in _TYPES else False)
    if tag:
        clauses.append(Session.tags.contains([tag]))
    if text:
        pattern = (
            "%"
            + text[:TEXT_MAX].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            + "%"
        )
        clauses.append(or_(Session.title.ilike(pattern), Session.prompt.ilike(pattern),
                           Session.id.startswith(text[:36])))  # fmt: skip
    return clauses


_STATUSES = {status.value for status in SessionStatus}
_TYPES = {kind.value for kind in SessionType}


def status_counts(db: DbSession) -> dict[str, int]:
    """How many sessions are in each status (all of them, not only the filtered ones)."""
    rows = db.execute(select(Session.status, func.count()).group_by(Session.status))
    return {status.value: number for status, number in rows}


def sessions_page(db: DbSession, *, status=None, type=None, tag=None, text=None, page: int = 1,
                  page_size: int = PAGE_SIZE) -> dict[str, Any]:  # fmt: skip
    """One page of sessions, newest first, as rows for the list, with the filtered total."""
    clauses = _filters(status, type, tag, text)
    total = db.scalar(select(func.count()).select_from(Session).where(*clauses))
    sessions = list(db.scalars(
        select(Session).where(*clauses).order_by(Session.created_at.desc(), Session.id)
        .offset((page - 1) * page_size).limit(page_size)
    ))  # fmt: skip
    ids = [session.id for session in sessions]
    counts = session_service.task_counts(db, ids)
    costs = dict(db.execute(
        select(SessionTask.session_id, func.coalesce(func.sum(SessionTask.cost), 0.0))
        .where(SessionTask.session_id.in_(ids)).group_by(SessionTask.session_id)
    ).all()) if ids else {}  # fmt: skip
    now = utcnow()
    rows = []
    for session in sessions:
        by_status = counts.get(session.id, {})
        done = sum(by_status.get(name, 0) for name in ("completed", "skipped"))
        tasks = sum(by_status.values())
        rows.append({
            "id": session.id, "title": session.title, "status": session.status.value,
            "type": session.type.value, "priority": SessionPriority(session.priority).name.lower(),
            "tags": list(session.tags or []), "tasks": tasks, "done": done,
            "failed": by_status.get("failed", 0),
            "progress": round(100 * done / tasks) if tasks else 0,
            "cost": round(float(costs.get(session.id, 0.0)), 4),
            "created_at": session.created_at.isoformat(),
            "age": human_age(now - session.created_at),
        })  # fmt: skip
    pages = max(1, -(-total // page_size))
    return {"rows": rows, "total": total, "page": page, "pages": pages, "page_size": page_size,
            "counts": status_counts(db)}  # fmt: skip


def human_age(delta: timedelta) -> str:
    """`42 s`, `5 min`, `3 h`, `2 d`."""
    seconds = max(0, int(delta.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def gantt(detail: dict[str, Any], events: list) -> dict[str, Any]:
    """Bars of every attempt, from the session's event log: each attempt's queue wait (from
    when it could run, to its start) apart from its run (start to end, or to now)."""
    ends: dict[str, datetime] = {}
    attempts: dict[str, list[dict[str, Any]]] = {}
    retry_ready: dict[str, datetime] = {}
    launched = None
    for event in events:
        kind, task_id, at = event.type, event.task_id, event.created_at
        if kind in ("session.launched", "session.queued") and launched is None:
            launched = at
        if task_id is None:
            continue
        mine = attempts.setdefault(task_id, [])
        number = (event.data or {}).get("attempt")
        if kind in ("task.assigned", "task.started"):
            current = next((a for a in mine if a["attempt"] == number), None)
            if current is None:
                current = {
                    "attempt": number,
                    "ready": retry_ready.pop(task_id, None),
                    "assigned": None,
                    "started": None,
                    "ended": None,
                    "outcome": None,
                }
                mine.append(current)  # fmt: skip
            current["assigned" if kind == "task.assigned" else "started"] = at
        elif kind in ("task.completed", "task.failed", "task.cancelled", "task.retry_scheduled"):
            open_ = next((a for a in reversed(mine) if a["ended"] is None), None)
            if open_ is not None:
                open_["ended"], open_["outcome"] = at, kind.removeprefix("task.")
            if kind == "task.retry_scheduled":
                retry_ready[task_id] = at + timedelta(seconds=(event.data or {}).get("delay_s", 0))
            else:
                ends[task_id] = at
    tasks = {task["id"]: task for task in detail["tasks"]}
    key_to_id = {task["key"]: task["id"] for task in detail["tasks"]}
    now = utcnow()
    bars = []
    for task_id, mine in attempts.items():
        task = tasks.get(task_id)
        if task is None:
            continue
        preds = [ends.get(key_to_id.get(dep["key"])) for dep in task["depends_on"]]
        first_ready = max([t for t in (launched, *preds) if t is not None], default=None)
        for attempt in mine:
            start = attempt["started"]
            ready = attempt["ready"] or first_ready or attempt["assigned"] or start
            end = attempt["ended"] or (now if start else None)
            if ready is None or (start is None and end is None):
                continue
            bars.append({"task_id": task_id, "key": task["key"], "attempt": attempt["attempt"],
                         "ready": ready, "started": start, "ended": end,
                         "outcome": attempt["outcome"] or ("running" if start else "waiting"),
                         "wait_ms": _ms((start or now) - ready),
                         "run_ms": _ms(end - start) if start and end else 0})  # fmt: skip
    return _scaled(bars)


def _ms(delta: timedelta) -> int:
    return max(0, round(delta.total_seconds() * 1000))


def _scaled(bars: list[dict[str, Any]]) -> dict[str, Any]:
    """Bars with left and width as percentages of the span from the first ready to the last end."""
    if not bars:
        return {"bars": [], "span_ms": 0}
    origin = min(bar["ready"] for bar in bars)
    finish = max(bar["ended"] or bar["started"] or bar["ready"] for bar in bars)
    span = max(_ms(finish - origin), 1)
    shown = []
    for bar in sorted(bars, key=lambda b: (b["ready"], b["key"], b["attempt"] or 0)):
        wait_from = _ms(bar["ready"] - origin)
        shown.append({
            "task_id": bar["task_id"], "key": bar["key"], "attempt": bar["attempt"],
            "outcome": bar["outcome"], "wait_ms": bar["wait_ms"], "run_ms": bar["run_ms"],
            "wait_left": round(100 * wait_from / span, 2),
            "wait_width": round(100 * bar["wait_ms"] / span, 2),
            "run_left": round(100 * (wait_from + bar["wait_ms"]) / span, 2),
            "run_width": round(100 * bar["run_ms"] / span, 2),
        })  # fmt: skip
    return {"bars": shown, "span_ms": span}


def session_page(db: DbSession, reader, session_id: str) -> dict[str, Any]:
    """Everything the session page draws: the API's detail document, the allowed actions,
    checkpoints, the last events, the Gantt and the agents' names."""
    session, tasks = session_service.session_detail(reader, session_id)
    detail = dump_session_detail(session, tasks)
    events = event_service.list_events(db, session_id, 0, 100_000)
    checkpoints = history.list_checkpoints(db, session_id)
    agent_ids = {task["assigned_agent_id"] for task in detail["tasks"]} - {None}
    names = dict(db.execute(select(Agent.id, Agent.name).where(Agent.id.in_(agent_ids))).all())
    for task in detail["tasks"]:
        task["agent_name"] = names.get(task["assigned_agent_id"])
    return {
        "session": detail,
        "cost": round(sum(task["cost"] or 0.0 for task in detail["tasks"]), 4),
        "allowed_actions": allowed_actions(session["status"]),
        "last_seq": events[-1].seq if events else 0,
        "events": [_event(event) for event in events[-EVENTS_SHOWN:]],
        "checkpoints": [{"id": c.id, "sequence": c.sequence, "kind": c.kind,
                         "task_key": (c.data or {}).get("key"),
                         "created_at": c.created_at.isoformat()} for c in checkpoints],
        "gantt": gantt(detail, events),
    }  # fmt: skip


def _event(event) -> dict[str, Any]:
    return {"seq": event.seq, "type": event.type, "task_id": event.task_id,
            "agent_id": event.agent_id, "data": event.data,
            "created_at": event.created_at.isoformat()}  # fmt: skip


def agents_page(db: DbSession) -> list[dict[str, Any]]:
    """Every agent with its load, tier, health, failure streak and the tasks it works on."""
    loads = agent_loads(db)
    busy = db.execute(
        select(SessionTask.assigned_agent_id, SessionTask.session_id, SessionTask.key,
               SessionTask.status)
        .where(SessionTask.status.in_(BUSY_STATUSES), SessionTask.assigned_agent_id.is_not(None))
    ).all()  # fmt: skip
    current: dict[str, list[dict[str, str]]] = {}
    for agent_id, session_id, key, status in busy:
        current.setdefault(agent_id, []).append(
            {"session_id": session_id, "key": key, "status": status.value}
        )
    rows = []
    for agent in db.scalars(select(Agent).order_by(Agent.name)):
        performance = performance_of(agent, loads.get(agent.id, 0))
        rows.append({
            "id": agent.id, "name": agent.name, "type": agent.type.value,
            "driver": agent.driver.value, "status": agent.status.value,
            "health_reason": agent.health_reason, "maintenance": agent.maintenance,
            "maintenance_reason": agent.maintenance_reason,
            "load": performance.current_load, "capacity": performance.capacity,
            "load_level": performance.load_level.value, "tier": performance.tier.value,
            "failure_streak": performance.consecutive_failures,
            "success_rate": performance.success_rate,
            "last_heartbeat_at": agent.last_heartbeat_at.isoformat()
            if agent.last_heartbeat_at else None,
            "current_tasks": current.get(agent.id, []),
        })  # fmt: skip
    return rows
