"""DAG validation and planning, without a database or broker."""

import pytest

from app.engine import dispatch
from app.planning import DagError, build_task_graph


def spec(*pairs):
    """Tasks from (key, [dependencies]) pairs."""
    return [{"key": key, "depends_on": deps} for key, deps in pairs]


def test_valid_dag_becomes_a_graph_with_edges_from_dependency_to_dependent():
    graph = build_task_graph(
        spec(("a", []), ("b", ["a"]), ("c", [{"key": "a", "required": False}]))
    )
    assert set(graph.edges) == {("a", "b"), ("a", "c")}
    assert graph.edges["a", "c"]["required"] is False
    assert graph.edges["a", "b"]["type"] == "finish_to_start"


def test_cycle_is_named():
    with pytest.raises(DagError) as error:
        build_task_graph(spec(("a", ["c"]), ("b", ["a"]), ("c", ["b"]), ("d", [])))
    message = error.value.errors["dag.tasks"][0]
    assert message.startswith("Dependency cycle: ")
    assert {"a", "b", "c"} <= set(
        message.removeprefix("Dependency cycle: ").rstrip(".").split(" -> ")
    )


@pytest.mark.parametrize(
    "tasks, field, text",
    [
        (spec(("a", []), ("a", [])), "dag.tasks.1.key", "Duplicate task key 'a'"),
        (spec(("a", []), ("b", ["zz"])), "dag.tasks.1.depends_on.0", "Unknown task key 'zz'"),
        (spec(("a", ["a"])), "dag.tasks.0.depends_on.0", "cannot depend on itself"),
    ],
)
def test_bad_keys_name_the_field(tasks, field, text):
    with pytest.raises(DagError) as error:
        build_task_graph(tasks)
    assert text in error.value.errors[field][0]


def test_ready_tasks_wait_for_required_completion_only():
    graph = build_task_graph(
        spec(("a", []), ("b", []), ("c", ["a", {"key": "b", "required": False}]), ("d", ["c"]))
    )
    assert sorted(dispatch.ready_tasks(graph, {})) == ["a", "b"]
    assert dispatch.ready_tasks(graph, {"a": "completed"}) == ["b"]
    assert dispatch.ready_tasks(graph, {"a": "completed", "b": "failed"}) == ["c"]
    assert dispatch.ready_tasks(graph, {"a": "failed", "b": "completed"}) == []
    assert dispatch.blocked_forever(graph, {"a": "failed"}, "c")
    assert not dispatch.blocked_forever(graph, {"b": "failed"}, "c")
