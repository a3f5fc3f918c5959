"""DAG graphs hold no reference cycle, so a dropped graph is freed at once, not by the collector.

networkx caches its degree and edge views on a graph and each view points back at the graph;
touching one (`graph.in_degree()`, `nx.topological_sort`, `graph.edges[u, v]`) would keep a
10,000-task DAG alive until a full collection (docs/benchmarks.md, Planning).
"""

import gc
import weakref
from collections.abc import Callable
from contextlib import contextmanager

import networkx as nx
import pytest

from app.engine import canvas, dispatch
from app.planning import (
    analyze,
    build_ordered_task_graph,
    build_task_graph,
    topological_generations,
    topological_levels,
)

TASKS = [
    {"key": "a"},
    {"key": "b", "depends_on": ["a"]},
    {"key": "c", "depends_on": ["a"]},
    {"key": "d", "depends_on": ["b", {"key": "c", "required": False}]},
    {"key": "e", "depends_on": ["d"]},
]
SPEC = {  # the same DAG as a planning spec: dependencies are mappings there
    "tasks": [
        {**task, "depends_on": [dict(key=dep) if isinstance(dep, str) else dep for dep in deps]}
        for task in TASKS
        for deps in [task.get("depends_on", [])]
    ]
}


@contextmanager
def collector_paused():
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def freed_when_dropped(make_and_use: Callable[[], nx.DiGraph]) -> bool:
    """Whether the graph `make_and_use` returns is freed as soon as the last reference goes."""
    with collector_paused():
        ref = weakref.ref(make_and_use())
        return ref() is None


def test_analyzed_graph_is_freed_when_dropped():
    def make_and_use():
        analysis = analyze(SPEC)
        assert analysis.critical_path == ["a", "b", "d", "e"]
        assert topological_levels(analysis.graph) == analysis.levels
        return analysis.graph

    assert freed_when_dropped(make_and_use)


def test_validated_graph_is_freed_after_dispatch_queries():
    def make_and_use():
        graph = build_task_graph(TASKS)
        assert dispatch.ready_tasks(graph, {"a": "completed"}) == ["b", "c"]
        assert not dispatch.blocked_forever(graph, {"c": "failed"}, "d")
        assert canvas.dispatch_runs(graph, ["a"]) == [["a"]]
        return graph

    assert freed_when_dropped(make_and_use)


def test_validating_and_analyzing_leave_no_garbage_for_the_collector():
    with collector_paused():
        gc.collect()
        build_ordered_task_graph(TASKS)
        analyze(SPEC)
        assert gc.collect() == 0


@pytest.mark.parametrize(
    "edges",
    [
        [("a", "b"), ("a", "c"), ("c", "d"), ("b", "d"), ("x", "d")],
        [("z", "y"), ("y", "x"), ("z", "x"), ("w", "x")],
    ],
)
def test_topological_generations_match_networkx_order(edges):
    graph = nx.DiGraph(edges)
    assert topological_generations(graph) == [list(g) for g in nx.topological_generations(graph)]


def test_topological_generations_are_none_for_a_cycle():
    assert topological_generations(nx.DiGraph([("a", "b"), ("b", "c"), ("c", "b")])) is None


def test_known_generations_are_the_topological_order():
    _graph, generations = build_ordered_task_graph(TASKS)
    assert [key for generation in generations for key in generation] == list(
        nx.topological_sort(_graph)
    )
