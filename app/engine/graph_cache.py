"""The immutable structure of a session's DAG, read once and cached per process.

A DAG never changes after submission, so every hop of it can route, lock and dispatch from
this cache; task statuses are always read fresh.
"""

from __future__ import annotations

from collections import OrderedDict

import networkx as nx
from sqlalchemy import func, select
from sqlalchemy.orm import Session as DbSession

from app.services.routing import TaskFacts, task_facts
from models import Session, SessionTask, TaskDependency

GRAPH_CACHE_SIZE = 256
_graphs: OrderedDict[str, nx.DiGraph] = OrderedDict()


def session_graph(db: DbSession, session_id: str) -> nx.DiGraph:
    """The session's DAG over task ids (edge u -> v: v depends on u; edges carry the
    dependency's type and whether it is required), cached per process.

    Nodes carry the tasks' immutable facts: key, action, has_command, capabilities and
    `routing` (the `TaskFacts` routing reads: capabilities, driver, technologies, the complexity
    level of the estimate; equal facts share one object); the graph carries the session's
    workdir, its integration steps and a topological order of its tasks (the order in which
    several of them are locked)."""
    graph = _graphs.get(session_id)
    if graph is not None:
        _graphs.move_to_end(session_id)
        return graph
    graph = nx.DiGraph()
    nodes = db.execute(
        select(SessionTask.id, SessionTask.key, SessionTask.action,
               SessionTask.command.is_not(None), SessionTask.required_capabilities,
               SessionTask.technologies, SessionTask.estimate_hours)
        .where(SessionTask.session_id == session_id)
    ).all()  # fmt: skip
    shared: dict[tuple, TaskFacts] = {}
    for tid, key, action, has_command, capabilities, technologies, hours in nodes:
        capabilities = tuple(capabilities or ())
        given = (capabilities, has_command, tuple(technologies or ()), hours)
        if (routing := shared.get(given)) is None:
            routing = shared[given] = task_facts(*given)
        graph.add_node(tid, key=key, action=action, has_command=has_command,
                       capabilities=capabilities, routing=routing)  # fmt: skip
    # A session's repository URL stands for its workdir: its tasks work in worktrees too.
    graph.graph["workdir"] = (
        db.scalar(
            select(func.coalesce(Session.repository_url, Session.workdir)).where(
                Session.id == session_id
            )
        )
        or ""
    )
    graph.graph["integrations"] = frozenset(
        tid for tid, _, action, *_ in nodes if action == "integrate"
    )
    # Tasks that wait for a person's approval before they run (app/engine/gates.py).
    graph.graph["gated"] = frozenset(
        db.scalars(
            select(SessionTask.id).where(
                SessionTask.session_id == session_id, SessionTask.requires_approval
            )
        )
    )
    edges = db.execute(
        select(TaskDependency.depends_on_id, TaskDependency.task_id, TaskDependency.type,
               TaskDependency.required)
        .where(TaskDependency.session_id == session_id)
    )  # fmt: skip
    graph.add_edges_from(
        (pred, task, {"type": kind.value, "required": required})
        for pred, task, kind, required in edges
    )
    graph.graph["order"] = list(nx.lexicographical_topological_sort(graph))
    _graphs[session_id] = graph
    while len(_graphs) > GRAPH_CACHE_SIZE:
        _graphs.popitem(last=False)
    return graph
