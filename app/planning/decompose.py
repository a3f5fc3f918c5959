"""Recursive decomposition: split every task above the target level until its leaves reach it."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from itertools import pairwise

from app.planning.capabilities import AgentCapability as Cap
from app.planning.complexity import ComplexityLevel, component_label
from app.planning.draft import DraftPlan, DraftTask
from app.planning.errors import PlanningError

MAX_TASKS = 1000
JOIN_SHARE = 0.15
# Parallel components share slightly less than the whole: the integration join does the rest.
COMPONENT_SHARE = 0.85
MAX_PARTS = 4
# Work in these phases splits into parallel parts joined by an integration task; other phases
# (analysis, design, diagnosis, ...) split into a sequence.
PARALLEL_PHASES = frozenset({"implementation", "fix", "execution", "testing", "documentation"})
CODE_PHASES = frozenset({"implementation", "fix", "execution"})


@dataclass(frozen=True)
class Child:
    """One child of a named split; `share` is its fraction of the parent's estimate."""

    suffix: str
    title: str
    capabilities: tuple[Cap, ...] | None
    share: float
    after: tuple[str, ...] = ()


NAMED_SPLITS: dict[str, tuple[Child, ...]] = {
    "requirements": (
        Child("scope", "Clarify scope and constraints", (Cap.REQUIREMENTS_ANALYSIS,), 0.5),
        Child("acceptance", "Write acceptance criteria", (Cap.REQUIREMENTS_ANALYSIS,), 0.6,
              ("scope",)),
    ),
    "design": (
        Child("architecture", "Sketch the architecture", (Cap.ARCHITECTURE_PLANNING,), 0.55),
        Child("interfaces", "Specify interfaces and data contracts", (Cap.SYSTEM_DESIGN,), 0.55,
              ("architecture",)),
    ),
    "testing": (
        Child("unit", "Write and run unit tests", None, 0.5),
        Child("integration", "Write and run integration tests", None, 0.6),
    ),
    "deployment": (
        Child("prepare", "Prepare the configuration", (Cap.CONFIGURATION,), 0.4),
        Child("rollout", "Roll out", (Cap.DEPLOYMENT,), 0.5, ("prepare",)),
        Child("smoke", "Smoke-check and monitor", (Cap.MONITORING,), 0.3, ("rollout",)),
    ),
}  # fmt: skip

Split = tuple[list[DraftTask], list[tuple[str, str]], str]


def _child(
    draft: DraftPlan, parent: DraftTask, suffix: str, title: str, share: float, **changes
) -> DraftTask:
    return parent.evolve(
        key=draft.unique_key(f"{parent.key}-{suffix}"),
        title=title,
        description=f"{title} (part of: {parent.title}).\n\n{parent.description}",
        estimate=parent.estimate.scaled(share),
        depth=parent.depth + 1,
        split="parts",
        **changes,
    )


def _join(draft: DraftPlan, parent: DraftTask, members: list[DraftTask]) -> Split:
    if parent.phase in CODE_PHASES:
        suffix, title, phase = "integrate", f"Integrate: {parent.title}", "integration"
        capabilities = (Cap.CONFLICT_RESOLUTION, Cap.CODE_GENERATION)
    else:
        suffix, title, phase = "consolidate", f"Consolidate: {parent.title}", parent.phase
        capabilities = parent.capabilities
    join = _child(draft, parent, suffix, title, JOIN_SHARE, phase=phase, capabilities=capabilities)
    return [*members, join], [(member.key, join.key) for member in members], ""


def split_named(draft: DraftPlan, task: DraftTask) -> Split:
    """Split a template step by its named recipe (e.g. design -> architecture, interfaces)."""
    recipe = NAMED_SPLITS[task.split]
    children = {
        child.suffix: _child(
            draft, task, child.suffix, child.title, child.share,
            capabilities=child.capabilities or task.capabilities,
        )
        for child in recipe
    }  # fmt: skip
    internal = [
        (children[before].key, children[child.suffix].key)
        for child in recipe
        for before in child.after
    ]
    return list(children.values()), internal, f"by the {task.split} recipe"


def split_components(draft: DraftPlan, task: DraftTask) -> Split:
    """One parallel child per distinct component, then an integration join."""
    components = list(dict.fromkeys(task.components))
    share = COMPONENT_SHARE / len(components)
    members = [
        _child(draft, task, slug, f"{task.title}: {component_label(slug)}", share,
               components=(slug,))
        for slug in components
    ]  # fmt: skip
    children, internal, _ = _join(draft, task, members)
    return children, internal, f"per component ({', '.join(components)})"


def split_parts(draft: DraftPlan, task: DraftTask, target: ComplexityLevel) -> Split:
    """2-4 equal parts sized for the target level: parallel with a join, or a sequence."""
    count = min(max(math.ceil(task.estimate.expected_hours / target.upper_hours), 2), MAX_PARTS)
    members = [
        _child(draft, task, str(number), f"{task.title} (part {number} of {count})", 1 / count)
        for number in range(1, count + 1)
    ]
    if task.phase in PARALLEL_PHASES:
        children, internal, _ = _join(draft, task, members)
        return children, internal, f"into {count} parallel parts"
    internal = [(before.key, after.key) for before, after in pairwise(members)]
    return members, internal, f"into {count} sequential parts"


def split_task(draft: DraftPlan, task: DraftTask, target: ComplexityLevel) -> Split:
    """The children, internal edges and a short explanation for splitting `task`."""
    if task.split in NAMED_SPLITS:
        return split_named(draft, task)
    if task.split == "components" and len(set(task.components)) >= 2:
        return split_components(draft, task)
    return split_parts(draft, task, target)


def decompose(draft: DraftPlan, target: ComplexityLevel, max_depth: int) -> list[str]:
    """Split tasks above `target` (compared by rank) until leaves reach it or `max_depth`."""
    reasons = []
    pending = deque(draft.keys())
    while pending:
        key = pending.popleft()
        task = draft.task(key)
        level, hours = task.estimate.level, task.estimate.expected_hours
        if level <= target:
            continue
        if task.depth >= max_depth:
            reasons.append(f"{key} stays {level.value} ({hours} h): max depth {max_depth} reached")
            continue
        children, internal, how = split_task(draft, task, target)
        new_keys = draft.split(key, children, internal)
        reasons.append(f"split {key} ({level.value}, {hours} h) {how}: {', '.join(new_keys)}")
        if len(draft) > MAX_TASKS:
            raise PlanningError(
                f"plan would exceed {MAX_TASKS} tasks; choose a higher target_level "
                "or a lower max_depth"
            )
        pending.extend(new_keys)
    return reasons
