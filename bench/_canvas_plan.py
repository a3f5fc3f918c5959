"""A whole-DAG canvas plan for the planning benchmark: every task partitioned into the series
runs the engine would dispatch, and the first dispatch compiled to a Celery canvas (pure; no
broker). The engine itself only compiles what is ready (`app.engine.canvas`)."""

from __future__ import annotations

from collections.abc import Callable

import networkx as nx
from celery import group, signature
from celery.canvas import Signature
from networkx.classes.reportviews import InDegreeView, OutDegreeView

from app.engine.canvas import compile_runs, series_run
from app.engine.dependencies import chainable
from app.planning.graph import build_ordered_task_graph, topological_generations


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
    successor and may be chained behind it (`dependencies.chainable`)."""
    if generations is None:
        generations = topological_generations(graph)
    if generations is None:
        raise nx.NetworkXUnfeasible("Graph contains a cycle.")
    # Uncached degree views: graph.in_degree would leave a reference cycle on the graph.
    in_degree, out_degree = InDegreeView(graph), OutDegreeView(graph)

    def chained(node: str) -> bool:
        if in_degree[node] != 1:
            return False
        predecessor = next(iter(graph.pred[node]))
        return out_degree[predecessor] == 1 and chainable(graph, predecessor, node)

    starts = [node for generation in generations for node in generation if not chained(node)]
    return [series_run(graph, start) for start in starts]


def compile_dispatch_plan(spec: dict, session_id: str = "preview", epoch: int = 1) -> dict:
    """Validate a DAG spec, partition it into series runs and compile the first dispatch."""
    graph, generations = build_ordered_task_graph(spec["tasks"])
    runs = plan_runs(graph, generations)
    roots = [run for run in runs if not graph.pred[run[0]]]

    def make_signature(key: str) -> Signature:
        return signature("sessions.run_task", args=(session_id, key, epoch), immutable=True)

    return {"runs": runs, "first_dispatch": compile_canvas(roots, make_signature)}
