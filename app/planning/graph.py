"""The one DAG module: validate a DAG, its generations, levels, critical path, DOT and Mermaid.

Two validators share the graph helpers: `build_graph(spec)` for planning specs (PlanningError
listing every problem) and `build_task_graph(tasks)` for a session's submitted DAG (DagError
keyed by request field path). Pure: no database, broker or Flask app.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import networkx as nx
from networkx.classes.reportviews import InDegreeView

from app.planning.complexity import pert_expected
from app.planning.errors import PlanningError
from models.enums import DependencyType

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
    """The spec as a DiGraph (nodes: task, hours; edges: type, required); cycles not checked."""
    tasks = spec.get("tasks") if isinstance(spec, Mapping) else None
    if not isinstance(tasks, list):
        raise PlanningError("a DAG spec is a mapping with a 'tasks' list")
    errors: list[str] = []
    task_by_key: dict[str, Mapping[str, Any]] = {}
    # Filled while checking: lists of (key, attributes) for add_nodes_from / add_edges_from
    # would allocate dicts that networkx only copies (docs/benchmarks.md, Planning).
    graph = nx.DiGraph()
    for position, task in enumerate(tasks):
        key = task.get("key") if isinstance(task, Mapping) else None
        if not isinstance(key, str) or not key:
            errors.append(f"task #{position} has no 'key' string")
        elif key in task_by_key:
            errors.append(f"duplicate task key {key!r}")
        else:
            task_by_key[key] = task
            graph.add_node(key, task=task, hours=_checked_hours(key, task, errors))
    for key, task in task_by_key.items():  # a rejected duplicate adds no edges
        for predecessor, kind, required in _dependencies(key, task, task_by_key, errors):
            graph.add_edge(predecessor, key, type=kind, required=required)
    if errors:
        raise PlanningError(f"invalid DAG spec: {'; '.join(errors)}", errors)
    return graph


def _checked_hours(key: str, task: Mapping[str, Any], errors: list[str]) -> float:
    try:
        hours = task_hours(task)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        errors.append(f"task {key!r} has an unreadable estimate: {exc!r}")
        return UNESTIMATED_HOURS
    if not math.isfinite(hours) or hours < 0:
        errors.append(f"task {key!r} has invalid expected hours {hours}")
    return hours


def _dependencies(
    key: str, task: Mapping[str, Any], known: Mapping[str, Any], errors: list[str]
) -> list[tuple[str, str, bool]]:
    """The task's valid (predecessor, type, required) dependencies; errors for the others."""
    dependencies = task.get("depends_on", [])
    if not isinstance(dependencies, list):
        errors.append(f"task {key!r}: 'depends_on' must be a list")
        return []
    edges, seen = [], set()
    for dependency in dependencies:
        if not isinstance(dependency, Mapping) or not isinstance(dependency.get("key"), str):
            errors.append(f"task {key!r}: each dependency needs a 'key' string, got {dependency!r}")
            continue
        predecessor = dependency["key"]
        kind = dependency.get("type", DependencyType.FINISH_TO_START.value)
        required = dependency.get("required", True)
        if predecessor not in known:
            errors.append(f"task {key!r} depends on unknown task {predecessor!r}")
        elif predecessor == key:
            errors.append(f"task {key!r} depends on itself (cycle: {key} -> {key})")
        elif predecessor in seen:
            errors.append(f"task {key!r} depends on {predecessor!r} more than once")
        elif kind not in DEPENDENCY_TYPES:
            errors.append(f"task {key!r}: unknown dependency type {kind!r} on {predecessor!r}")
        elif not isinstance(required, bool):
            errors.append(f"task {key!r}: 'required' on {predecessor!r} must be true or false")
        else:
            seen.add(predecessor)
            edges.append((predecessor, kind, required))
    return edges


def topological_generations(graph: nx.DiGraph) -> list[list[str]] | None:
    """Kahn's generations in `nx.topological_generations` order; None when a cycle blocks them.

    A fresh `InDegreeView`, not `graph.in_degree`: networkx caches its degree and edge views on
    the graph and each view points back at it, a reference cycle that keeps the whole graph
    alive until the cyclic garbage collector runs instead of freeing it when dropped.
    """
    successors = graph.succ
    waiting, current = {}, []
    for key, degree in InDegreeView(graph):
        if degree:
            waiting[key] = degree
        else:
            current.append(key)
    generations, seen = [], 0
    while current:
        generations.append(current)
        seen += len(current)
        following = []
        for key in current:
            for successor in successors[key]:
                left = waiting[successor] - 1
                waiting[successor] = left
                if not left:
                    following.append(successor)
        current = following
    return generations if seen == len(graph) else None


def _generations(graph: nx.DiGraph) -> list[list[str]] | None:
    """Topological generations, each in spec order; None when the graph has a cycle."""
    generations = topological_generations(graph)
    if generations is None:
        return None
    position = {key: index for index, key in enumerate(graph)}
    return [sorted(generation, key=position.__getitem__) for generation in generations]


def find_cycle(graph: nx.DiGraph) -> list[str] | None:
    """The keys of one cycle, first key repeated at the end, or None when the graph is acyclic."""
    if topological_generations(graph) is not None:
        return None
    return _cycle_in(graph)


def _cycle_in(graph: nx.DiGraph) -> list[str]:
    """One cycle of a graph known to be cyclic, as keys with the first repeated at the end.

    `nx.find_cycle` over a whole large graph can be super-linear (docs/benchmarks.md, Planning),
    so it searches only the first strongly connected component of more than one task, from that
    component's first task in graph order (a deterministic start, whatever the hash seed).
    """
    knot = next((c for c in nx.strongly_connected_components(graph) if len(c) > 1), None)
    if knot is None:  # the only cycles are self-loops
        key = next(nx.nodes_with_selfloops(graph))
        return [key, key]
    source = next(key for key in graph if key in knot)
    edges = nx.find_cycle(graph.subgraph(knot), source=source)
    return [edges[0][0], *(target for _, target in edges)]


def _checked_generations(graph: nx.DiGraph) -> list[list[str]]:
    generations = _generations(graph)
    if generations is None:
        path = " -> ".join(_cycle_in(graph))
        raise PlanningError(f"invalid DAG spec: dependency cycle {path}", [f"cycle: {path}"])
    return generations


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


def build_task_graph(tasks: list[Mapping[str, Any]]) -> nx.DiGraph:
    """Validate a session's tasks (unique keys, known dependencies, no cycle); return the DAG.

    Nodes are task keys; an edge u -> v means v depends on u. Raises DagError with the
    request's field paths (`dag.tasks.1.key`, `dag.tasks.0.depends_on.2`, `dag.tasks`).
    """
    return build_ordered_task_graph(tasks)[0]


def build_ordered_task_graph(
    tasks: list[Mapping[str, Any]],
) -> tuple[nx.DiGraph, list[list[str]]]:
    """`build_task_graph`, and the DAG's topological generations found while checking for cycles.

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
    generations = topological_generations(graph)  # linear, unlike nx.find_cycle
    if generations is None:
        path = " -> ".join(_cycle_in(graph))
        raise DagError({"dag.tasks": [f"Dependency cycle: {path}."]})
    return graph, generations


def validate_spec(spec: Spec) -> nx.DiGraph:
    """The spec's graph once keys, dependencies and acyclicity check out; else PlanningError."""
    graph = build_graph(spec)
    _checked_generations(graph)
    return graph


@dataclass(frozen=True)
class DagAnalysis:
    """Everything the planner and the dispatcher want to know about a valid DAG, in one pass."""

    graph: nx.DiGraph
    levels: list[list[str]]
    schedule: dict[str, tuple[float, float]]
    critical_path: list[str]
    makespan_hours: float


def analyze(graph_or_spec: GraphOrSpec) -> DagAnalysis:
    """Validate once, then levels, earliest schedule and critical path (linear in tasks + edges).

    The critical path is the chain of binding dependencies that ends last; with only
    finish_to_start edges it is the longest path weighted by task hours.
    """
    graph = graph_or_spec
    if not isinstance(graph, nx.DiGraph):
        graph = build_graph(graph_or_spec)
    levels = _checked_generations(graph)
    schedule, binding = _forward_pass(graph, levels)
    if not schedule:
        return DagAnalysis(graph, levels, schedule, [], 0.0)
    last = max(schedule.items(), key=lambda item: item[1][1])[0]
    path = [last]
    while binding[path[-1]] is not None:
        path.append(binding[path[-1]])
    path.reverse()
    return DagAnalysis(graph, levels, schedule, path, schedule[last][1])


def _forward_pass(
    graph: nx.DiGraph, levels: list[list[str]]
) -> tuple[dict[str, tuple[float, float]], dict[str, str | None]]:
    schedule: dict[str, tuple[float, float]] = {}
    binding: dict[str, str | None] = {}
    predecessors, nodes = graph.pred, graph.nodes
    for level in levels:
        for key in level:
            duration = nodes[key].get("hours", UNESTIMATED_HOURS)
            start, cause = 0.0, None
            for predecessor, edge in predecessors[key].items():
                pred_start, pred_finish = schedule[predecessor]
                kind = edge.get("type", DependencyType.FINISH_TO_START)
                if kind == DependencyType.FINISH_TO_START:
                    bound = pred_finish
                elif kind == DependencyType.START_TO_START:
                    bound = pred_start
                elif kind == DependencyType.FINISH_TO_FINISH:
                    bound = pred_finish - duration
                else:
                    bound = pred_start - duration
                if bound > start:
                    start, cause = bound, predecessor
            schedule[key] = (start, start + duration)
            binding[key] = cause
    return schedule, binding


def earliest_schedule(graph_or_spec: GraphOrSpec) -> dict[str, tuple[float, float]]:
    """Earliest (start, finish) hours per task with unlimited parallelism, by dependency type."""
    return analyze(graph_or_spec).schedule


def critical_path(graph_or_spec: GraphOrSpec) -> tuple[list[str], float]:
    """The chain of binding dependencies that ends last, and the makespan it sets (hours)."""
    analysis = analyze(graph_or_spec)
    return analysis.critical_path, analysis.makespan_hours


def expected_makespan(graph_or_spec: GraphOrSpec) -> float:
    """Hours from the first start to the last finish with unlimited parallelism."""
    return analyze(graph_or_spec).makespan_hours


def topological_levels(graph_or_spec: GraphOrSpec) -> list[list[str]]:
    """Topological generations (each after all its predecessors' levels), in spec order."""
    graph = graph_or_spec
    if not isinstance(graph, nx.DiGraph):
        graph = build_graph(graph_or_spec)
    return _checked_generations(graph)


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
