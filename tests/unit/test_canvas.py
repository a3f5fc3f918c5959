"""Canvas compilation: series runs become chains sent one by one; no broker needed."""

from celery import Celery
from celery.canvas import _chain

from app.engine import canvas
from app.planning import build_task_graph

celery = Celery("canvas-test", set_as_current=False)


def graph_of(*pairs):
    return build_task_graph([{"key": k, "depends_on": d} for k, d in pairs])


def signature(key):
    return celery.signature("sessions.run_task", args=("s", key, 1), immutable=True)


def test_series_run_stops_at_forks_and_joins():
    graph = graph_of(("a", []), ("b", ["a"]), ("c", ["b"]), ("d", ["c"]), ("e", ["c"]))
    assert canvas.series_run(graph, "a") == ["a", "b", "c"]
    join = graph_of(("a", []), ("x", []), ("b", ["a"]), ("c", ["b", "x"]))
    assert canvas.series_run(join, "a") == ["a", "b"]


def test_a_chain_dag_is_one_chain():
    graph = graph_of(("a", []), ("b", ["a"]), ("c", ["b"]))
    (compiled,) = canvas.compile_runs(canvas.dispatch_runs(graph, ["a"]), signature)
    assert isinstance(compiled, _chain)
    assert [task.args[1] for task in compiled.tasks] == ["a", "b", "c"]


def test_parallel_ready_runs_are_sent_side_by_side():
    graph = graph_of(("a", []), ("a2", ["a"]), ("b", []), ("j", ["a2", "b"]))
    runs = canvas.dispatch_runs(graph, ["a", "b"])
    assert runs == [["a", "a2"], ["b"]]
    first, second = canvas.compile_runs(runs, signature)
    assert [task.args[1] for task in first.tasks] == ["a", "a2"]
    assert second.args[1] == "b"


def test_join_is_never_compiled_ahead_of_its_predecessors():
    graph = graph_of(("a", []), ("b", []), ("j", ["a", "b"]))
    runs = canvas.dispatch_runs(graph, ["a", "b"])
    assert all("j" not in run for run in runs)


def test_nothing_ready_compiles_to_nothing():
    assert canvas.compile_runs([], signature) == []
