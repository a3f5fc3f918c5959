"""Each dependency type asks what its documented semantics say of the predecessor."""

import networkx as nx
import pytest

from app.engine.canvas import series_run
from app.engine.dependencies import blocked_forever, ready_tasks, releases_at_start


def graph(*edges):
    dag = nx.DiGraph()
    for pred, succ, kind, *required in edges:
        dag.add_edge(pred, succ, type=kind, required=required[0] if required else True)
    return dag


@pytest.mark.parametrize(
    "kind, status, ready",
    [
        ("finish_to_start", None, False),
        ("finish_to_start", "in_progress", False),
        ("finish_to_start", "completed", True),
        ("start_to_start", None, False),
        ("start_to_start", "assigned", False),
        ("start_to_start", "in_progress", True),
        ("start_to_start", "completed", True),
        ("finish_to_finish", None, True),
        ("start_to_finish", None, True),
    ],
)
def test_what_a_dependency_needs_before_its_task_starts(kind, status, ready):
    dag = graph(("a", "b", kind))
    statuses = {"a": status} if status else {}
    assert (ready_tasks(dag, statuses, ["b"]) == ["b"]) is ready


def test_finish_to_finish_holds_back_the_successors_until_the_predecessor_finished():
    dag = graph(("a", "b", "finish_to_finish"), ("b", "c", "finish_to_start"))
    assert ready_tasks(dag, {"a": "in_progress", "b": "completed"}, ["c"]) == []
    assert ready_tasks(dag, {"a": "completed", "b": "completed"}, ["c"]) == ["c"]


def test_start_to_finish_holds_back_the_successors_until_the_predecessor_started():
    dag = graph(("a", "b", "start_to_finish"), ("b", "c", "finish_to_start"))
    assert ready_tasks(dag, {"b": "completed"}, ["c"]) == []
    assert ready_tasks(dag, {"a": "in_progress", "b": "completed"}, ["c"]) == ["c"]


def test_a_failed_required_predecessor_makes_every_kind_unreachable():
    for kind in ("finish_to_start", "start_to_start", "finish_to_finish", "start_to_finish"):
        assert blocked_forever(graph(("a", "b", kind)), {"a": "failed"}, "b"), kind
        assert not blocked_forever(graph(("a", "b", kind, False)), {"a": "failed"}, "b"), kind


def test_a_finish_that_can_never_count_makes_the_successors_unreachable():
    dag = graph(("a", "b", "finish_to_finish"), ("b", "c", "finish_to_start"))
    assert blocked_forever(dag, {"a": "failed", "b": "completed"}, "c")


def test_only_finish_to_start_edges_without_held_finishes_are_chained():
    assert series_run(graph(("a", "b", "finish_to_start")), "a") == ["a", "b"]
    assert series_run(graph(("a", "b", "start_to_start")), "a") == ["a"]
    held = graph(("x", "a", "finish_to_finish"), ("a", "b", "finish_to_start"))
    assert series_run(held, "a") == ["a"]


def test_a_start_releases_its_start_to_start_successors():
    assert releases_at_start(graph(("a", "b", "start_to_start")), "a")
    assert releases_at_start(graph(("a", "b", "start_to_finish")), "a")
    assert not releases_at_start(graph(("a", "b", "finish_to_start")), "a")
