"""Pure DAG logic on networkx: validate a submitted DAG.

Critical paths, levels and makespans of a DAG spec live in `app.planning.graph`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import networkx as nx

from app.planning.graph import topological_generations


class DagError(ValueError):
    """A submitted DAG is invalid; `errors` maps field paths to messages."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


def normalize_dependency(raw: str | Mapping[str, Any]) -> tuple[str, str, bool]:
    """Turn a dependency given as a key or as {key, type, required} into a tuple."""
    if isinstance(raw, str):
        return raw, "finish_to_start", True
    return raw["key"], raw.get("type", "finish_to_start"), raw.get("required", True)


def build_graph(tasks: list[Mapping[str, Any]]) -> nx.DiGraph:
    """Validate tasks (unique keys, known dependencies, no cycle) and return the DAG.

    Nodes are task keys; an edge u -> v means v depends on u.
    """
    return build_ordered_graph(tasks)[0]


def build_ordered_graph(
    tasks: list[Mapping[str, Any]],
) -> tuple[nx.DiGraph, list[list[str]]]:
    """`build_graph`, and the DAG's topological generations found while checking for cycles.

    Linear in tasks + dependencies, and it leaves no reference cycle behind (see
    `topological_generations`), so a dropped graph is freed at once.
    """
    errors: dict[str, list[str]] = {}
    graph = nx.DiGraph()
    for index, task in enumerate(tasks):
        key = task["key"]
        if key in graph:
            errors.setdefault(f"dag.tasks.{index}.key", []).append(f"Duplicate task key '{key}'.")
        graph.add_node(key)
    for index, task in enumerate(tasks):
        dependent = task["key"]
        for position, raw in enumerate(task.get("depends_on") or []):
            key, dep_type, required = normalize_dependency(raw)
            if key == dependent:
                message = f"Task '{key}' cannot depend on itself."
            elif key not in graph:
                message = f"Unknown task key '{key}'."
            else:
                graph.add_edge(key, dependent, type=dep_type, required=required)
                continue
            errors.setdefault(f"dag.tasks.{index}.depends_on.{position}", []).append(message)
    if errors:
        raise DagError(errors)
    generations = topological_generations(graph)  # linear; find_cycle is not on large DAGs
    if generations is not None:
        return graph, generations
    knot = next(c for c in nx.strongly_connected_components(graph) if len(c) > 1)
    cycle = nx.find_cycle(graph.subgraph(knot))
    path = " -> ".join([edge[0] for edge in cycle] + [cycle[0][0]])
    raise DagError({"dag.tasks": [f"Dependency cycle: {path}."]})
