"""Compile the dispatchable part of a DAG into a Celery canvas (pure; no broker needed).

A dispatch unit starts at each task that is ready now. It extends as a `chain` through every
successor that has that task as its only predecessor while the task has no other successor
(a series run), and the runs that start together form a `group`. A task with several
predecessors (a join) is never put in a canvas ahead of time: the completion of its last
predecessor dispatches it, counted in PostgreSQL rather than in a Redis chord counter, so a
join survives a Redis restart and non-series-parallel DAGs keep all their parallelism.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import networkx as nx
from celery import chain, group
from celery.canvas import Signature


def series_run(graph: nx.DiGraph, start: str) -> list[str]:
    """`start` followed by the tasks that can only ever run right after it, in order."""
    run = [start]
    node = start
    while graph.out_degree(node) == 1:
        (successor,) = graph.successors(node)
        if graph.in_degree(successor) != 1:
            break
        run.append(successor)
        node = successor
    return run


def dispatch_runs(graph: nx.DiGraph, ready: Iterable[str]) -> list[list[str]]:
    """The series runs to dispatch for the ready tasks, in a stable order."""
    return [series_run(graph, key) for key in sorted(ready)]


def compile_canvas(
    runs: list[list[str]], make_signature: Callable[[str], Signature]
) -> Signature | None:
    """A group of chains for the runs; a single run is a chain, a single task a signature."""
    pieces = [
        make_signature(run[0]) if len(run) == 1 else chain(*map(make_signature, run))
        for run in runs
    ]
    if not pieces:
        return None
    return pieces[0] if len(pieces) == 1 else group(pieces)


def plan_runs(graph: nx.DiGraph) -> list[list[str]]:
    """Partition every task into the series runs it will be dispatched in, in topological order.

    A task starts a run unless it has exactly one predecessor and is that predecessor's only
    successor; such a task is chained behind it.
    """
    starts = [
        node
        for node in nx.topological_sort(graph)
        if graph.in_degree(node) != 1 or graph.out_degree(next(iter(graph.pred[node]))) != 1
    ]
    return [series_run(graph, start) for start in starts]


def compile_dispatch_plan(spec: dict, session_id: str = "preview", epoch: int = 1) -> dict:
    """Validate a DAG spec, partition it into series runs and compile the first dispatch.

    Pure: signatures are built by name, so no broker or Celery app is needed.
    """
    from celery import signature

    from .dags import build_graph

    graph = build_graph(spec["tasks"])
    runs = plan_runs(graph)
    roots = [run for run in runs if graph.in_degree(run[0]) == 0]

    def make_signature(key: str) -> Signature:
        return signature("sessions.run_task", args=(session_id, key, epoch), immutable=True)

    return {"runs": runs, "first_dispatch": compile_canvas(roots, make_signature)}
