"""How close the makespan of a DAG comes to its critical path, for several DAG shapes.

DAGs of `shell` tasks that sleep given durations run with enough agent slots, in one run: a
chain, a fan-out/fan-in, a diamond lattice, two series-parallel DAGs with uneven durations and
a random non-series-parallel DAG of 30 tasks. For each, `efficiency_<name>` = critical path /
measured makespan (first task start to last task end), and `layered_efficiency_<name>` = the
same for a layer-by-layer schedule (each topological level waits for the slowest task of the
level before) computed from the same durations.
"""

from __future__ import annotations

import os
import random
from datetime import datetime

import networkx as nx
import requests
from _harness import ROOT, Processes, auth_headers, register_shell_agent, services, wait_session

SLOTS = 16


def chain():
    return {f"c{i}": (0.8, [f"c{i - 1}"] if i else []) for i in range(5)}


def fan_out_fan_in():
    tasks = {"src": (0.5, [])}
    for i in range(8):
        tasks[f"f{i}"] = (0.6 + 0.15 * i, ["src"])
    tasks["sink"] = (0.5, [f"f{i}" for i in range(8)])
    return tasks


def diamond_lattice(size=4):
    tasks = {}
    rng = random.Random(7)
    for row in range(size):
        for col in range(size):
            deps = ([f"d{row - 1}_{col}"] if row else []) + ([f"d{row}_{col - 1}"] if col else [])
            tasks[f"d{row}_{col}"] = (rng.uniform(0.3, 0.7), deps)
    return tasks


def series_parallel_uneven():
    """start -> (a long branch | a chain of three short ones) -> join -> end."""
    return {
        "start": (0.4, []), "long": (2.0, ["start"]), "s1": (0.3, ["start"]),
        "s2": (0.3, ["s1"]), "s3": (0.3, ["s2"]), "join": (0.4, ["long", "s3"]),
        "end": (0.4, ["join"]),
    }  # fmt: skip


def series_parallel_nested():
    """Two parallel branches, each a fork-join of its own, with uneven durations."""
    return {
        "root": (0.3, []),
        "a": (0.4, ["root"]), "a1": (1.2, ["a"]), "a2": (0.3, ["a"]), "aj": (0.3, ["a1", "a2"]),
        "b": (0.9, ["root"]), "b1": (0.4, ["b"]), "b2": (0.8, ["b"]), "bj": (0.3, ["b1", "b2"]),
        "end": (0.3, ["aj", "bj"]),
    }  # fmt: skip


def random_dag(count=30, seed=11):
    """A random layered DAG that is not series-parallel (crossing dependencies)."""
    rng = random.Random(seed)
    tasks = {}
    for i in range(count):
        earlier = list(range(max(0, i - 8), i))
        deps = sorted(rng.sample(earlier, k=min(len(earlier), rng.randint(1, 3)))) if i else []
        tasks[f"r{i}"] = (round(rng.uniform(0.2, 1.0), 2), [f"r{d}" for d in deps])
    return tasks


SHAPES = {
    "chain": chain, "fan_out_fan_in": fan_out_fan_in, "diamond_lattice": diamond_lattice,
    "sp_uneven": series_parallel_uneven, "sp_nested": series_parallel_nested,
    "random_30": random_dag,
}  # fmt: skip


def graph_of(tasks) -> nx.DiGraph:
    graph = nx.DiGraph()
    for key, (duration, deps) in tasks.items():
        graph.add_node(key, duration=duration)
        graph.add_edges_from((dep, key) for dep in deps)
    return graph


def critical_path_length(graph) -> float:
    finish = {}
    for node in nx.topological_sort(graph):
        start = max((finish[p] for p in graph.pred[node]), default=0.0)
        finish[node] = start + graph.nodes[node]["duration"]
    return max(finish.values())


def layered_makespan(graph) -> float:
    return sum(max(graph.nodes[n]["duration"] for n in level)
               for level in nx.topological_generations(graph))  # fmt: skip


def measured_makespan(api: str, name: str, tasks) -> float:
    body = {"title": name, "prompt": "bench", "dag": {"tasks": [
        {"key": key, "command": f"sleep {duration}", "depends_on": deps}
        for key, (duration, deps) in tasks.items()]}}  # fmt: skip
    response = requests.post(f"{api}/api/v1/sessions", json=body, headers=auth_headers(),
                             timeout=30)  # fmt: skip
    response.raise_for_status()
    session = wait_session(api, response.json()["id"])
    assert session["status"] == "completed", session["status"]
    starts = [datetime.fromisoformat(t["started_at"]) for t in session["tasks"]]
    ends = [datetime.fromisoformat(t["finished_at"]) for t in session["tasks"]]
    return (max(ends) - min(starts)).total_seconds()


def main() -> None:
    results = {}
    with services() as (database_url, redis_url, home):
        env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
               "WORKSPACE_ROOT": str(home / "work"), "PYTHONPATH": str(ROOT)}  # fmt: skip
        processes = Processes(env, home)
        try:
            processes.worker("tasks.worker", SLOTS)
            api = processes.api()
            register_shell_agent(api, capacity=SLOTS)
            measured_makespan(api, "warm-up", {"w": (0.1, [])})
            for name, build in SHAPES.items():
                tasks = build()
                graph = graph_of(tasks)
                critical = critical_path_length(graph)
                results[name] = (
                    critical,
                    measured_makespan(api, name, tasks),
                    layered_makespan(graph),
                    nx.is_directed_acyclic_graph(graph),
                )
        finally:
            processes.stop()
    for name, (critical, makespan, layered, _) in results.items():
        print(f"critical_path_s_{name}: {critical:.2f}")
        print(f"makespan_s_{name}: {makespan:.2f}")
        print(f"efficiency_{name}: {critical / makespan:.3f}")
        print(f"layered_efficiency_{name}: {critical / layered:.3f}")


if __name__ == "__main__":
    main()
