"""What a dependency asks of its predecessor, by type (pure; unit-tested without a database).

For an edge A -> B (B depends on A):
- finish_to_start (the default): B starts once A has finished: completed when required, in any
  way when optional.
- start_to_start: B starts once A has started (it is in progress or has completed), or, when
  optional, once A has finished in any way.
- finish_to_finish: B may start at any time, but B's finish only counts for B's own successors
  once A has finished as above (B's dependants wait for A too).
- start_to_finish: B may start at any time, but B's finish only counts for its successors once
  A has started.
A required dependency whose predecessor ended without completing makes B unreachable (skipped),
unless B already started.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import networkx as nx

FS, SS, FF, SF = "finish_to_start", "start_to_start", "finish_to_finish", "start_to_finish"
FINISHED = frozenset({"completed", "failed", "cancelled", "skipped"})
STARTED = frozenset({"in_progress", "completed"})
# Edges that constrain B's start, and edges that constrain when B's finish counts.
START_EDGES = frozenset({FS, SS})
FINISH_EDGES = frozenset({FF, SF})


def _kind(edge: Mapping[str, Any]) -> str:
    return str(getattr(edge.get("type"), "value", edge.get("type") or FS))


def _met(edge: Mapping[str, Any], status: str | None) -> bool:
    """Whether predecessor status `status` meets this edge's condition."""
    kind, required = _kind(edge), edge.get("required", True)
    if status is not None and not required and status in FINISHED:
        return True
    if kind in (FS, FF):
        return status == "completed"
    return status in STARTED


def _status(statuses: Mapping[str, Any], key: str) -> str | None:
    status = statuses.get(key)
    return None if status is None else str(getattr(status, "value", status))


def released(graph: nx.DiGraph, statuses: Mapping[str, Any], key: str) -> bool:
    """Whether task `key`'s finish counts for its successors (its finish_to_finish and
    start_to_finish predecessors have finished / started)."""
    return all(
        _met(edge, _status(statuses, pred))
        for pred, edge in graph.pred[key].items()
        if _kind(edge) in FINISH_EDGES
    )


def can_start(graph: nx.DiGraph, statuses: Mapping[str, Any], key: str) -> bool:
    """Whether task `key`'s dependencies allow it to start now."""
    for pred, edge in graph.pred[key].items():
        kind = _kind(edge)
        if kind not in START_EDGES:
            continue
        if not _met(edge, _status(statuses, pred)):
            return False
        if kind == FS and not released(graph, statuses, pred):
            return False
    return True


def ready_tasks(
    graph: nx.DiGraph, statuses: Mapping[str, Any], candidates: Iterable[str] | None = None
) -> list[str]:
    """Unfinished tasks (of `candidates`, else all) whose dependencies allow them to start.

    `statuses` maps tasks to their status; a task missing from it has not started."""
    return [
        key
        for key in (graph.nodes if candidates is None else candidates)
        if _status(statuses, key) not in FINISHED and can_start(graph, statuses, key)
    ]


def blocked_forever(graph: nx.DiGraph, statuses: Mapping[str, Any], key: str) -> bool:
    """True when a required predecessor ended without completing (or a required predecessor's
    own finish can never count), so task `key` can never run."""
    for pred, edge in graph.pred[key].items():
        if not edge.get("required", True):
            continue
        status = _status(statuses, pred)
        if status in FINISHED and status != "completed":
            return True
        if _kind(edge) == FS and status == "completed" and _never_released(graph, statuses, pred):
            return True
    return False


def _never_released(graph: nx.DiGraph, statuses: Mapping[str, Any], key: str) -> bool:
    return any(
        edge.get("required", True) and _status(statuses, pred) in FINISHED - {"completed"}
        for pred, edge in graph.pred[key].items()
        if _kind(edge) in FINISH_EDGES
    )


def releases_at_start(graph: nx.DiGraph, key: str) -> bool:
    """Whether another task may become runnable when task `key` starts (it has a
    start_to_start successor, or is the start_to_finish predecessor of a task)."""
    return any(_kind(edge) in (SS, SF) for edge in graph.succ[key].values())


def releases_beyond_successors(graph: nx.DiGraph, key: str) -> bool:
    """Whether the finish of task `key` may release tasks other than its direct successors
    (through a finish_to_finish or start_to_finish edge out of it)."""
    return any(_kind(edge) in FINISH_EDGES for edge in graph.succ[key].values())


def chainable(graph: nx.DiGraph, predecessor: str, successor: str) -> bool:
    """Whether `successor` may be chained right behind `predecessor` in one Celery chain: its
    only dependency is a finish_to_start one on `predecessor`, whose finish counts at once."""
    return (
        len(graph.pred[successor]) == 1
        and _kind(graph.pred[successor][predecessor]) == FS
        and not any(_kind(edge) in FINISH_EDGES for edge in graph.pred[predecessor].values())
    )
