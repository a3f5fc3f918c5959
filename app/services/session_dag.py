"""A session's DAG as a graph: nodes with status, edges, levels, critical path, DOT and Mermaid."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session as DbSession

from app.planning import analyze, to_dot, to_mermaid
from app.planning.graph import UNESTIMATED_HOURS
from models import Session

from .errors import ValidationFailed
from .sessions import get_session

FORMATS = ("json", "dot", "mermaid")


def _spec(session: Session, *, with_status: bool = False) -> dict[str, list[dict[str, Any]]]:
    """The session's tasks as a planning spec (estimate_hours as expected hours, 1 h if none)."""
    tasks = []
    for task in session.tasks:
        title = f"{task.title} [{task.status.value}]" if with_status else task.title
        hours = UNESTIMATED_HOURS if task.estimate_hours is None else task.estimate_hours
        tasks.append(
            {
                "key": task.key,
                "title": title,
                "optional": task.optional,
                "estimate": {"expected_hours": hours},
                "depends_on": [
                    {"key": dep.depends_on.key, "type": dep.type.value, "required": dep.required}
                    for dep in task.dependencies
                ],
            }
        )
    return {"tasks": tasks}


def session_dag(db: DbSession, session_id: str) -> dict[str, Any]:
    """Nodes (with status and schedule), edges, levels and critical path of a session's DAG."""
    session = get_session(db, session_id)
    spec = _spec(session)
    analysis = analyze(spec)
    level_of = {key: index for index, level in enumerate(analysis.levels) for key in level}
    critical = set(analysis.critical_path)
    nodes = []
    for task in session.tasks:
        start, finish = analysis.schedule[task.key]
        nodes.append(
            {
                "id": task.id,
                "key": task.key,
                "title": task.title,
                "status": task.status.value,
                "optional": task.optional,
                "required_capabilities": list(task.required_capabilities),
                "assigned_agent_id": task.assigned_agent_id,
                "estimate_hours": task.estimate_hours,
                "level": level_of[task.key],
                "earliest_start_hours": round(start, 3),
                "earliest_finish_hours": round(finish, 3),
                "on_critical_path": task.key in critical,
            }
        )
    edges = [
        {"from": dep["key"], "to": task["key"], "type": dep["type"], "required": dep["required"]}
        for task in spec["tasks"]
        for dep in task["depends_on"]
    ]
    return {
        "session_id": session.id,
        "status": session.status.value,
        "nodes": nodes,
        "edges": edges,
        "levels": analysis.levels,
        "critical_path": analysis.critical_path,
        "expected_makespan_hours": round(analysis.makespan_hours, 3),
    }


def session_dag_text(db: DbSession, session_id: str, fmt: str) -> str:
    """The session's DAG as Graphviz DOT or Mermaid text, each node labelled with its status."""
    if fmt not in ("dot", "mermaid"):
        raise ValidationFailed(f"Unknown format {fmt!r}.", {"format": [f"Use {FORMATS}."]})
    spec = _spec(get_session(db, session_id), with_status=True)
    return to_dot(spec) if fmt == "dot" else to_mermaid(spec)
