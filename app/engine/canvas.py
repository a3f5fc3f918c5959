"""Compile the dispatchable part of a DAG into a Celery canvas (pure; no broker needed).

A dispatch unit starts at each task that is ready now. It extends as a `chain` through every
successor that has that task as its only predecessor while the task has no other successor
(a series run, finish_to_start only: `dependencies.chainable`); each run is sent on its own
(a `group` would only add a group id to the same messages). A task with several
predecessors (a join) is never put in a canvas ahead of time: the completion of its last
predecessor dispatches it, counted in PostgreSQL rather than in a Redis chord counter, so a
join survives a Redis restart and non-series-parallel DAGs keep all their parallelism.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import networkx as nx
from celery import chain
from celery.canvas import Signature

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
