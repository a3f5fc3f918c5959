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
from networkx.classes.reportviews import InDegreeView, OutDegreeView

from app.planning.graph import build_ordered_task_graph as build_ordered_graph
from app.planning.graph import topological_generations

from .dependencies import chainable


def series_run(graph: nx.DiGraph, start: str) -> list[str]:
    """`start` followed by the tasks that can only ever run right after it, in order."""
    # Not graph.out_degree / graph.in_degree: networkx caches those views on the graph, and
    # each points back at it, a reference cycle that outlives the graph's last user.
    successors = graph.succ
    run = [start]
    node = start
    while len(successors[node]) == 1:
        (successor,) = successors[node]
        if not chainable(graph, node, successor):
            break
        run.append(successor)
        node = successor
    return run


def dispatch_runs(graph: nx.DiGraph, ready: Iterable[str]) -> list[list[str]]:
    """The series runs to dispatch for the ready tasks, in a stable order."""
    return [series_run(graph, key) for key in sorted(ready)]


def compile_runs(
    runs: list[list[str]], make_signature: Callable[[str], Signature]
) -> list[Signature]:
    """One signature per run: a chain for a series run, the task's own for a single task.
    Sent one by one they cost less than as a `group`, which only adds a group id."""
    return [
        make_signature(run[0]) if len(run) == 1 else chain(*map(make_signature, run))
        for run in runs
    ]


def compile_canvas(
    runs: list[list[str]], make_signature: Callable[[str], Signature]
) -> Signature | None:
    """A group of chains for the runs; a single run is a chain, a single task a signature."""
    pieces = compile_runs(runs, make_signature)
    if not pieces:
        return None
    return pieces[0] if len(pieces) == 1 else group(pieces)


def plan_runs(graph: nx.DiGraph, generations: list[list[str]] | None = None) -> list[list[str]]:
    """Partition every task into the series runs it will be dispatched in, in topological order.

    A task starts a run unless it has exactly one predecessor, is that predecessor's only
    successor and may be chained behind it (`dependencies.chainable`). `generations`, when
    the caller has them, are the graph's `topological_generations` (nx.topological_sort's
    order).
    """
    if generations is None:
        generations = topological_generations(graph)
    if generations is None:
        raise nx.NetworkXUnfeasible("Graph contains a cycle.")
    in_degree, out_degree = InDegreeView(graph), OutDegreeView(graph)  # uncached, see above

    def chained(node: str) -> bool:
        if in_degree[node] != 1:
            return False
        predecessor = next(iter(graph.pred[node]))
        return out_degree[predecessor] == 1 and chainable(graph, predecessor, node)

    starts = [node for generation in generations for node in generation if not chained(node)]
    return [series_run(graph, start) for start in starts]


def compile_dispatch_plan(spec: dict, session_id: str = "preview", epoch: int = 1) -> dict:
    """Validate a DAG spec, partition it into series runs and compile the first dispatch.

    Pure: signatures are built by name, so no broker or Celery app is needed.
    """
    from celery import signature

    graph, generations = build_ordered_graph(spec["tasks"])
    runs = plan_runs(graph, generations)
    roots = [run for run in runs if not graph.pred[run[0]]]

    def make_signature(key: str) -> Signature:
        return signature("sessions.run_task", args=(session_id, key, epoch), immutable=True)

    return {"runs": runs, "first_dispatch": compile_canvas(roots, make_signature)}
