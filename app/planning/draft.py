"""The mutable DAG a plan is built in: tasks, typed edges, rule ownership, splits with rewiring."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import networkx as nx

from app.planning.capabilities import AgentCapability
from app.planning.complexity import Estimate
from app.planning.errors import PlanningError
from models.enums import DependencyType

FS = DependencyType.FINISH_TO_START
# Which side of a split node an edge attaches to: a constraint on the node's start goes to the
# split's entries, a constraint on its finish goes to the split's exits.
_INCOMING_TO_ENTRIES = {DependencyType.FINISH_TO_START, DependencyType.START_TO_START}
_OUTGOING_FROM_EXITS = {DependencyType.FINISH_TO_START, DependencyType.FINISH_TO_FINISH}


@dataclass(frozen=True)
class DraftTask:
    """A task while the plan is being built; `split` names how it is decomposed if too big."""

    key: str
    title: str
    description: str
    phase: str
    capabilities: tuple[AgentCapability, ...]
    estimate: Estimate
    optional: bool = False
    split: str = "parts"
    components: tuple[str, ...] = ()
    depth: int = 1

    def evolve(self, **changes: Any) -> DraftTask:
        """A copy with `changes` applied."""
        return replace(self, **changes)


class DraftPlan:
    """DraftTasks in a DAG with a stable order, roles (e.g. "build") and one owner rule per task."""

    def __init__(self) -> None:
        self.graph = nx.DiGraph()
        self.roles: dict[str, list[str]] = {}
        self.rule_by_task: dict[str, str] = {}
        self._sort_keys: dict[str, tuple[int, ...]] = {}
        self._created = 0

    def __len__(self) -> int:
        return self.graph.number_of_nodes()

    def __contains__(self, key: str) -> bool:
        return key in self.graph

    def task(self, key: str) -> DraftTask:
        """The task with `key`."""
        return self.graph.nodes[key]["task"]

    def keys(self) -> list[str]:
        """Task keys in plan order (dependencies first, siblings in creation order)."""
        return list(nx.lexicographical_topological_sort(self.graph, key=self._sort_keys.get))

    def add_task(self, task: DraftTask, *, after: str | None = None) -> DraftTask:
        """Add a new task; it sorts just after task `after` when given. Keys must be new."""
        if task.key in self.graph:
            raise PlanningError(f"internal planner error: task key {task.key!r} added twice")
        self._created += 1
        prefix = self._sort_keys[after] if after else ()
        self._sort_keys[task.key] = (*prefix, self._created)
        self.graph.add_node(task.key, task=task)
        return task

    def replace_task(self, task: DraftTask) -> None:
        """Swap in a rewritten version of an existing task (same key, same edges)."""
        self.graph.nodes[task.key]["task"] = task

    def unique_key(self, candidate: str) -> str:
        """`candidate`, or `candidate-2`, `-3`, ... when the key is taken."""
        key, counter = candidate, 1
        while key in self.graph:
            counter += 1
            key = f"{candidate}-{counter}"
        return key

    def depend(
        self, predecessor: str, successor: str, kind: str = FS, required: bool = True
    ) -> None:
        """Make `successor` depend on `predecessor` (an existing edge is left as it is)."""
        if not self.graph.has_edge(predecessor, successor):
            self.graph.add_edge(
                predecessor, successor, type=DependencyType(kind), required=required
            )

    def insert_before(self, task: DraftTask, anchors: list[str]) -> None:
        """Add `task` between the anchors and their finish_to_start predecessors."""
        self.add_task(task, after=anchors[0])
        for anchor in anchors:
            for predecessor, _, data in list(self.graph.in_edges(anchor, data=True)):
                if data["type"] == FS and predecessor != task.key:
                    self.graph.remove_edge(predecessor, anchor)
                    self.depend(predecessor, task.key, FS, data["required"])
            self.depend(task.key, anchor)

    def insert_after(self, anchor: str, task: DraftTask) -> None:
        """Add `task` after `anchor`; it takes over the anchor's finish_to_start successors."""
        self.add_task(task, after=anchor)
        for _, successor, data in list(self.graph.out_edges(anchor, data=True)):
            if data["type"] == FS and successor != task.key:
                self.graph.remove_edge(anchor, successor)
                self.depend(task.key, successor, FS, data["required"])
        self.depend(anchor, task.key)

    def claim(self, key: str, rule: str) -> None:
        """Record that rule `rule` created or rewrote task `key`; a second rule is refused."""
        owner = self.rule_by_task.get(key)
        if owner is not None and owner != rule:
            raise PlanningError(
                f"task {key!r} is already shaped by rule {owner!r}; {rule!r} refused"
            )
        self.rule_by_task[key] = rule

    def owner(self, key: str) -> str | None:
        """The keyword rule that shaped task `key`, if any."""
        return self.rule_by_task.get(key)

    def split(
        self,
        key: str,
        children: Iterable[DraftTask],
        internal: Iterable[tuple[str, str]] = (),
    ) -> list[str]:
        """Replace task `key` by `children` (deduplicated by key) and rewire; returns the new keys.

        Predecessors attach to the children without internal predecessors (entries) and successors
        to those without internal successors (exits), by dependency type.
        """
        first_by_key: dict[str, DraftTask] = {}
        for child in children:
            first_by_key.setdefault(child.key, child)
        unique_children = list(first_by_key.values())
        if not unique_children:
            raise PlanningError(f"internal planner error: task {key!r} split into nothing")
        incoming = list(self.graph.in_edges(key, data=True))
        outgoing = list(self.graph.out_edges(key, data=True))
        anchor_sort = self._sort_keys[key]
        owner = self.rule_by_task.pop(key, None)
        self.graph.remove_node(key)
        for position, child in enumerate(unique_children):
            if child.key in self.graph:
                raise PlanningError(f"internal planner error: child key {child.key!r} exists")
            self._sort_keys[child.key] = (*anchor_sort, position)
            self.graph.add_node(child.key, task=child)
            if owner:
                self.rule_by_task[child.key] = owner
        child_keys = [child.key for child in unique_children]
        for predecessor, successor in internal:
            if predecessor not in first_by_key or successor not in first_by_key:
                raise PlanningError(f"internal planner error: edge {predecessor}->{successor}")
            self.depend(predecessor, successor)
        entries = [k for k in child_keys if not any(p in child_keys for p in self.graph.pred[k])]
        exits = [k for k in child_keys if not any(s in child_keys for s in self.graph.succ[k])]
        for predecessor, _, data in incoming:
            targets = entries if data["type"] in _INCOMING_TO_ENTRIES else exits
            for target in targets:
                self.depend(predecessor, target, data["type"], data["required"])
        for _, successor, data in outgoing:
            sources = exits if data["type"] in _OUTGOING_FROM_EXITS else entries
            for source in sources:
                self.depend(source, successor, data["type"], data["required"])
        for role, members in self.roles.items():
            if key in members:
                self.roles[role] = [
                    m for member in members for m in _expand(member, key, child_keys)
                ]
        return child_keys

    def to_spec_tasks(self) -> list[dict[str, Any]]:
        """Tasks as DAG-spec dicts, in plan order."""
        order = self.keys()
        position = {key: index for index, key in enumerate(order)}
        tasks = []
        for key in order:
            task = self.task(key)
            predecessors = sorted(self.graph.pred[key], key=position.__getitem__)
            tasks.append(
                {
                    "key": key,
                    "title": task.title,
                    "description": task.description,
                    "phase": task.phase,
                    "required_capabilities": [c.value for c in task.capabilities],
                    "depends_on": [
                        {
                            "key": predecessor,
                            "type": self.graph.edges[predecessor, key]["type"].value,
                            "required": self.graph.edges[predecessor, key]["required"],
                        }
                        for predecessor in predecessors
                    ],
                    "optional": task.optional,
                    "estimate": task.estimate.to_dict(),
                }
            )
        return tasks


def task_description(instruction: str, request: str) -> str:
    """A task's description: what to do, then the original request for context."""
    return f"{instruction}\n\nRequest:\n{request}"


def _expand(member: str, split_key: str, replacements: list[str]) -> list[str]:
    return replacements if member == split_key else [member]
