"""DAG spec helpers: build and validate a networkx graph, critical path, levels, DOT and Mermaid."""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import networkx as nx

from app.planning.complexity import pert_expected
from app.planning.errors import PlanningError


class DependencyType(StrEnum):
    """How a task's start or finish is tied to a predecessor's start or finish."""

    FINISH_TO_START = "finish_to_start"
    START_TO_START = "start_to_start"
    FINISH_TO_FINISH = "finish_to_finish"
    START_TO_FINISH = "start_to_finish"


DEPENDENCY_TYPES = frozenset(kind.value for kind in DependencyType)
# Hours given to a task whose spec carries no estimate, so unestimated DAGs still rank paths.
UNESTIMATED_HOURS = 1.0

Spec = Mapping[str, Any]
GraphOrSpec = nx.DiGraph | Spec


def task_hours(task: Mapping[str, Any]) -> float:
    """A spec task's expected hours: its estimate's expected_hours, else PERT, else 1 h."""
    estimate = task.get("estimate")
    if not estimate:
        return UNESTIMATED_HOURS
    if estimate.get("expected_hours") is not None:
        return float(estimate["expected_hours"])
    return pert_expected(
        float(estimate["optimistic_hours"]),
        float(estimate["likely_hours"]),
        float(estimate["pessimistic_hours"]),
    )


def build_graph(spec: Spec) -> nx.DiGraph:
    """A DiGraph of the spec (node attrs: task, hours; edge attrs: type, required), unchecked for cycles."""
    tasks = spec.get("tasks") if isinstance(spec, Mapping) else None
    if not isinstance(tasks, list):
        raise PlanningError("a DAG spec is a mapping with a 'tasks' list")
    errors: list[str] = []
    graph = nx.DiGraph()
    for position, task in enumerate(tasks):
        key = task.get("key") if isinstance(task, Mapping) else None
        if not isinstance(key, str) or not key:
            errors.append(f"task #{position} has no 'key' string")
        elif key in graph:
            errors.append(f"duplicate task key {key!r}")
        else:
            try:
                hours = task_hours(task)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                errors.append(f"task {key!r} has an unreadable estimate: {exc!r}")
                hours = UNESTIMATED_HOURS
            if not math.isfinite(hours) or hours < 0:
                errors.append(f"task {key!r} has invalid expected hours {hours}")
            graph.add_node(key, task=task, hours=hours)
    for task in tasks:
        key = task.get("key") if isinstance(task, Mapping) else None
        if isinstance(key, str) and key in graph and graph.nodes[key]["task"] is task:  # skips rejected duplicates
            _add_dependencies(graph, task, errors)
    if errors:
        raise PlanningError(f"invalid DAG spec: {'; '.join(errors)}", errors)
    return graph


def _add_dependencies(graph: nx.DiGraph, task: Mapping[str, Any], errors: list[str]) -> None:
    key = task["key"]
    dependencies = task.get("depends_on", [])
    if not isinstance(dependencies, list):
        errors.append(f"task {key!r}: 'depends_on' must be a list")
        return
    for dependency in dependencies:
        if not isinstance(dependency, Mapping) or not isinstance(dependency.get("key"), str):
            errors.append(f"task {key!r}: each dependency needs a 'key' string, got {dependency!r}")
            continue
        predecessor = dependency["key"]
        kind = dependency.get("type", DependencyType.FINISH_TO_START.value)
        required = dependency.get("required", True)
        if predecessor not in graph:
            errors.append(f"task {key!r} depends on unknown task {predecessor!r}")
        elif predecessor == key:
            errors.append(f"task {key!r} depends on itself (cycle: {key} -> {key})")
        elif graph.has_edge(predecessor, key):
            errors.append(f"task {key!r} depends on {predecessor!r} more than once")
        elif kind not in DEPENDENCY_TYPES:
            errors.append(f"task {key!r}: unknown dependency type {kind!r} on {predecessor!r}")
        elif not isinstance(required, bool):
            errors.append(f"task {key!r}: 'required' on {predecessor!r} must be true or false")
        else:
            graph.add_edge(predecessor, key, type=kind, required=required)


def find_cycle(graph: nx.DiGraph) -> list[str] | None:
    """The keys of one cycle, first key repeated at the end, or None when the graph is acyclic."""
    if nx.is_directed_acyclic_graph(graph):
        return None
    edges = nx.find_cycle(graph)
    return [edges[0][0], *(target for _, target in edges)]


def validate_spec(spec: Spec) -> nx.DiGraph:
    """The spec's graph after checking keys, dependencies and acyclicity; PlanningError otherwise."""
    graph = build_graph(spec)
    cycle = find_cycle(graph)
    if cycle:
        path = " -> ".join(cycle)
        raise PlanningError(f"invalid DAG spec: dependency cycle {path}", [f"cycle: {path}"])
    return graph


def _as_graph(graph_or_spec: GraphOrSpec) -> nx.DiGraph:
    return graph_or_spec if isinstance(graph_or_spec, nx.DiGraph) else validate_spec(graph_or_spec)


def earliest_schedule(graph_or_spec: GraphOrSpec) -> dict[str, tuple[float, float]]:
    """Earliest (start, finish) hours of every task with unlimited parallelism (all dependency types)."""
    schedule, _ = _forward_pass(_as_graph(graph_or_spec))
    return schedule


def _forward_pass(
    graph: nx.DiGraph,
) -> tuple[dict[str, tuple[float, float]], dict[str, str | None]]:
    schedule: dict[str, tuple[float, float]] = {}
    binding: dict[str, str | None] = {}
    hours = graph.nodes
    for key in nx.topological_sort(graph):
        duration = hours[key]["hours"]
        start, cause = 0.0, None
        for predecessor, _, kind in graph.in_edges(key, data="type"):
            pred_start, pred_finish = schedule[predecessor]
            if kind == DependencyType.START_TO_START:
                bound = pred_start
            elif kind == DependencyType.FINISH_TO_FINISH:
                bound = pred_finish - duration
            elif kind == DependencyType.START_TO_FINISH:
                bound = pred_start - duration
            else:
                bound = pred_finish
            if bound > start:
                start, cause = bound, predecessor
        schedule[key] = (start, start + duration)
        binding[key] = cause
    return schedule, binding


def critical_path(graph_or_spec: GraphOrSpec) -> tuple[list[str], float]:
    """The chain of binding dependencies that ends last, and the makespan it sets (hours).

    With only finish_to_start edges this is the longest path weighted by task hours.
    """
    graph = _as_graph(graph_or_spec)
    schedule, binding = _forward_pass(graph)
    if not schedule:
        return [], 0.0
    last = max(schedule, key=lambda key: schedule[key][1])
    path = [last]
    while binding[path[-1]] is not None:
        path.append(binding[path[-1]])
    path.reverse()
    return path, schedule[last][1]


def expected_makespan(graph_or_spec: GraphOrSpec) -> float:
    """Hours from the first start to the last finish with unlimited parallelism."""
    return critical_path(graph_or_spec)[1]


def topological_levels(graph_or_spec: GraphOrSpec) -> list[list[str]]:
    """Topological generations: tasks whose predecessors all sit in earlier levels, spec order kept."""
    graph = _as_graph(graph_or_spec)
    order = {key: position for position, key in enumerate(graph.nodes)}
    return [sorted(level, key=order.__getitem__) for level in nx.topological_generations(graph)]


def _label(task: Mapping[str, Any], hours: float) -> str:
    title = str(task.get("title") or task["key"])
    return f"{title}\n{task['key']} · {hours:.1f} h"


def _dot_quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


_SHORT_TYPES = {"start_to_start": "SS", "finish_to_finish": "FF", "start_to_finish": "SF"}


def to_dot(spec: Spec) -> str:
    """Graphviz DOT text of the spec; optional tasks and optional edges are dashed."""
    graph = validate_spec(spec)
    lines = ["digraph plan {", "  rankdir=TB;", '  node [shape=box, style="rounded"];']
    for key, data in graph.nodes(data=True):
        style = ', style="rounded,dashed"' if data["task"].get("optional") else ""
        label = _dot_quote(_label(data["task"], data["hours"]))
        lines.append(f"  {_dot_quote(key)} [label={label}{style}];")
    for source, target, data in graph.edges(data=True):
        attributes = []
        if data["type"] in _SHORT_TYPES:
            attributes.append(f'label="{_SHORT_TYPES[data["type"]]}"')
        if not data["required"]:
            attributes.append("style=dashed")
        suffix = f" [{', '.join(attributes)}]" if attributes else ""
        lines.append(f"  {_dot_quote(source)} -> {_dot_quote(target)}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("\n", "<br/>")


def to_mermaid(spec: Spec) -> str:
    """Mermaid `graph TD` text of the spec; node ids are t0, t1, ... so any key is safe."""
    graph = validate_spec(spec)
    ids = {key: f"t{position}" for position, key in enumerate(graph.nodes)}
    lines = ["graph TD"]
    for key, data in graph.nodes(data=True):
        label = _mermaid_text(_label(data["task"], data["hours"]))
        opener, closer = ("([", "])") if data["task"].get("optional") else ("[", "]")
        lines.append(f'  {ids[key]}{opener}"{label}"{closer}')
    for source, target, data in graph.edges(data=True):
        arrow = "-->" if data["required"] else "-.->"
        label = f"|{_SHORT_TYPES[data['type']]}|" if data["type"] in _SHORT_TYPES else ""
        lines.append(f"  {ids[source]} {arrow}{label} {ids[target]}")
    return "\n".join(lines) + "\n"
