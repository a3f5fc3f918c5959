"""The immutable structure of a session's DAG, read once and cached per process.

A DAG never changes after submission, so every hop of it can route, lock and dispatch from
this cache; task statuses are always read fresh.
"""

from __future__ import annotations

from collections import OrderedDict

import networkx as nx
from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from models import Session, SessionTask, TaskDependency

GRAPH_CACHE_SIZE = 256
_graphs: OrderedDict[str, nx.DiGraph] = OrderedDict()


def session_graph(db: DbSession, session_id: str) -> nx.DiGraph:
    """The session's DAG over task ids (edge u -> v: v depends on u; edges carry the
    dependency's type and whether it is required), cached per process.

    Nodes carry the tasks' immutable facts: key, action, has_command and capabilities; the
    graph carries the session's workdir, its integration steps and a topological order of
    its tasks (the order in which several of them are locked)."""
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
