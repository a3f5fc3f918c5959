"""The shape of a plan template: its steps, their base estimates and their dependencies."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.planning.capabilities import AgentCapability
from models.enums import DependencyType

Hours = tuple[float, float, float]


@dataclass(frozen=True)
class After:
    """A dependency of a template step on an earlier step."""

    key: str
    type: DependencyType = DependencyType.FINISH_TO_START
    required: bool = True


@dataclass(frozen=True)
class Step:
    """One task of a template, with its base estimate for an average-sized request."""

    key: str
    title: str
    phase: str
    capabilities: tuple[AgentCapability, ...]
    base_hours: Hours
    instruction: str
    after: tuple[After, ...] = ()
    optional: bool = False
    split: str = "parts"
    per_component: bool = False
    # The step is planned only when the request names one of these words (empty: always).
    when: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Template:
    """A named sequence of steps; `build` is the step that keyword rules and components act on."""

    name: str
    keywords: dict[str, int]
    steps: tuple[Step, ...]
    build: str
    lead_verbs: frozenset[str] = field(default_factory=frozenset)
    requires_any: frozenset[str] = field(default_factory=frozenset)
    design: str | None = None
    deploy: str | None = None
    # The core work of an average request, for sizing the whole request (default: the build
    # step's base hours), and what the build step does when it is the plan's only task.
    size_hours: Hours | None = None
    # The opening step a moderate request folds into the next one (e.g. requirements).
    fold: str | None = None
    compact: str = ""
    review: str = "Review the diff for correctness, clarity, tests and consistency."
    changes_code: bool = True

    def step(self, key: str) -> Step:
        """The step with `key`."""
        return next(step for step in self.steps if step.key == key)

    @property
    def core_hours(self) -> Hours:
        """The base hours that size a request planned with this template."""
        return self.size_hours or self.step(self.build).base_hours

    @property
    def final(self) -> str:
        """The key of the step that closes the plan."""
        return self.steps[-1].key
