"""Routing: hard filters, then a weighted score in [0, 1], pick the best available agent for a task.

Hard filters (each failing one is named in the candidate's `excluded_reason`): status active,
not in maintenance, the driver the task requires (a task without a command needs `opencode`),
every required capability, no avoided technology of the task, spare capacity (load < capacity).

Score = sum of WEIGHTS[c] * c over the components c, each in [0, 1]:

- capability_fit (0.30): required / agent capabilities (Jaccard; 1.0 for a task that requires
  none). A specialist that has exactly what the task needs scores 1.0.
- success_rate (0.25): (completed + 2) / (finished + 4), a Beta(2, 2) prior: 0.5 for a new
  agent, so a newcomer outranks an agent with a poor record and is never scored 0.
- load (0.20): spare capacity fraction, 1 - load / capacity.
- technology (0.10): share of the task's technologies the agent prefers; 0.5 when the task
  names none or the agent prefers none (neutral).
- complexity_fit (0.15): COMPLEXITY_FIT[agent type][level]; 0.5 when the level is unknown.

Ties are broken by name. `prefer_driver` is a soft filter: eligible agents with that driver
rank ahead of the others whatever their scores.

The engine routes a task from its `TaskFacts` (`task_facts`: its capabilities, the driver its
command or its lack of one needs, its technologies, and the complexity level of its estimate),
cached with the session's graph; `POST /agents/route` derives them with the same function from a
task-spec-like body and calls the same `route_task`, so its answer is the engine's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session as DbSession

from app.planning.complexity import ComplexityLevel, level_for_hours
from app.planning.errors import PlanningError
from models import Agent
from models.enums import AgentDriver, AgentStatus, AgentType

from .errors import ValidationFailed
from .performance import BUSY_COUNTS, agent_loads, success_score

WEIGHTS = {
    "capability_fit": 0.30,
    "success_rate": 0.25,
    "load": 0.20,
    "technology": 0.10,
    "complexity_fit": 0.15,
}
NEUTRAL = 0.5
AT_CAPACITY = "at capacity"
AVOIDS = "avoids technologies"
# Fit of each agent type for tasks of each level: trivial, simple, moderate, complex, expert.
# Architects, analysts and orchestrators plan big work; implementers are best at small tasks;
# reviewers, debuggers and integrators peak at moderate ones.
COMPLEXITY_FIT: dict[AgentType, tuple[float, float, float, float, float]] = {
    AgentType.ARCHITECT: (0.2, 0.3, 0.6, 1.0, 1.0),
    AgentType.ANALYST: (0.3, 0.4, 0.7, 1.0, 1.0),
    AgentType.ORCHESTRATOR: (0.3, 0.5, 0.8, 1.0, 1.0),
    AgentType.OPTIMIZER: (0.4, 0.6, 0.9, 1.0, 0.8),
    AgentType.IMPLEMENTER: (1.0, 1.0, 0.9, 0.6, 0.4),
    AgentType.DEBUGGER: (0.6, 0.8, 1.0, 0.9, 0.7),
    AgentType.REVIEWER: (0.7, 0.9, 1.0, 0.8, 0.7),
    AgentType.INTEGRATOR: (0.5, 0.7, 1.0, 0.9, 0.7),
}


@dataclass(frozen=True)
class Candidate:
    agent: Agent
    load: int
    score: float
    breakdown: dict[str, float]
    excluded: tuple[str, ...] = ()

    @property
    def eligible(self) -> bool:
        """Whether the agent passed every hard filter."""
        return not self.excluded

    @property
    def excluded_reason(self) -> str | None:
        """Every hard filter the agent failed, or None."""
        return "; ".join(self.excluded) or None

    @property
    def only_avoids(self) -> bool:
        """Whether the task's technologies are the only thing that rules the agent out."""
        return len(self.excluded) == 1 and self.excluded[0].startswith(AVOIDS)

    @property
    def only_busy(self) -> bool:
        """Whether spare capacity is the only thing the agent lacks."""
        return len(self.excluded) == 1 and self.excluded[0].startswith(AT_CAPACITY)


@dataclass(frozen=True)
class RoutingDecision:
    chosen: Agent | None
    candidates: list[Candidate]
    reason: str
    saturated: list[Candidate] = field(default_factory=list)

    @property
    def waitable(self) -> Agent | None:
        """The chosen agent, else, when every agent that fits is at capacity, the least loaded
        of them: a task given to it waits for a slot instead of being blocked."""
        if self.chosen is not None:
            return self.chosen
        return self.saturated[0].agent if self.saturated else None


@dataclass(frozen=True, slots=True)
class TaskFacts:
    """What routing reads from a task (build it with `task_facts`)."""

    capabilities: tuple[str, ...]
    require_driver: str | None
    technologies: tuple[str, ...] = ()
    complexity: ComplexityLevel | None = None


def task_facts(
    capabilities: Iterable[str],
    has_command: bool,
    technologies: Iterable[str] = (),
    estimate_hours: float | None = None,
    complexity: ComplexityLevel | None = None,
) -> TaskFacts:
    """A task's routing facts, derived the same way for the engine and for `/agents/route`:
    the driver from whether it has a command, technologies normalised, and the complexity level
    of its estimate (`complexity_for_hours`) unless a level is given."""
    return TaskFacts(
        tuple(sorted(set(capabilities))),
        task_driver(has_command),
        tuple(sorted(_norm(technologies))),
        complexity if complexity is not None else complexity_for_hours(estimate_hours),
    )


def complexity_for_hours(hours: float | None) -> ComplexityLevel | None:
    """The level of a task's estimate (expected hours, on the planner's scale: trivial < 0.25 h,
    simple < 1, moderate < 4, complex < 8, else expert); None without a usable estimate."""
    if hours is None:
        return None
    try:
        return level_for_hours(hours)
    except PlanningError:
        return None


def _norm(values: Iterable[str]) -> set[str]:
    return {value.strip().casefold() for value in values if value and value.strip()}


def parse_complexity(value: ComplexityLevel | str | None) -> ComplexityLevel | None:
    """The complexity level named by `value`, None for none, or ValidationFailed."""
    if value is None:
        return None
    try:
        return ComplexityLevel.parse(value)
    except PlanningError as error:
        raise ValidationFailed(str(error), {"complexity": [str(error)]}) from error


def score_breakdown(
    agent: Agent,
    load: int,
    required: Iterable[str],
    technologies: Iterable[str] = (),
    complexity: ComplexityLevel | None = None,
) -> dict[str, float]:
    """Each score component of `agent` for a task, in [0, 1] (formulas in the module docstring)."""
    needed, have = set(required), set(agent.capabilities or ())
    fit = len(needed & have) / len(needed | have) if needed else 1.0
    wanted, preferred = _norm(technologies), _norm(agent.preferred_technologies or ())
    technology = len(wanted & preferred) / len(wanted) if wanted and preferred else NEUTRAL
    capacity = max(agent.capacity or 0, 1)
    table = COMPLEXITY_FIT.get(AgentType(agent.type)) if agent.type else None
    success = success_score(agent.tasks_completed or 0, agent.tasks_failed or 0)
    return {
        "capability_fit": round(fit, 4),
        "success_rate": round(success, 4),
        "load": round(max(0.0, 1.0 - load / capacity), 4),
        "technology": round(technology, 4),
        "complexity_fit": table[complexity.rank] if complexity and table else NEUTRAL,
    }


def weighted_score(breakdown: dict[str, float]) -> float:
    """The weighted sum of the components, in [0, 1]."""
    return round(sum(WEIGHTS[name] * breakdown[name] for name in WEIGHTS), 4)


def exclusions(
    agent: Agent,
    load: int,
    required: Iterable[str],
    technologies: Iterable[str] = (),
    require_driver: str | None = None,
) -> tuple[str, ...]:
    """The hard filters `agent` fails for a task, as reasons (empty when it is eligible)."""
    reasons = []
    status, driver = AgentStatus(agent.status), AgentDriver(agent.driver)
    if status is not AgentStatus.ACTIVE:
        detail = f": {agent.health_reason}" if agent.health_reason else ""
        reasons.append(f"{status.value}{detail}")
    if agent.maintenance:
        detail = f": {agent.maintenance_reason}" if agent.maintenance_reason else ""
        reasons.append(f"in maintenance{detail}")
    if require_driver and driver.value != require_driver:
        reasons.append(f"driver {driver.value}, the task needs {require_driver}")
    missing = set(required) - set(agent.capabilities or ())
    if missing:
        reasons.append("missing capabilities: " + ", ".join(sorted(missing)))
    avoided = _norm(technologies) & _norm(agent.avoided_technologies or ())
    if avoided:
        reasons.append(f"{AVOIDS}: " + ", ".join(sorted(avoided)))
    if load >= agent.capacity:
        reasons.append(f"{AT_CAPACITY} ({load}/{agent.capacity})")
    return tuple(reasons)


def _describe(candidate: Candidate) -> str:
    parts = ", ".join(f"{name} {value:.2f}" for name, value in candidate.breakdown.items())
    return f"{candidate.agent.name} (score {candidate.score:.3f}: {parts})"


def rank(
    agents: Sequence[Agent],
    loads: dict[str, int],
    required: Iterable[str],
    technologies: Iterable[str] = (),
    complexity: ComplexityLevel | None = None,
    prefer_driver: str | None = None,
    require_driver: str | None = None,
) -> RoutingDecision:
    """Filter and score `agents` for a task and choose the best eligible one (no database)."""
    required, technologies = sorted(set(required)), list(technologies)
    candidates = []
    for agent in agents:
        load = loads.get(agent.id, 0)
        breakdown = score_breakdown(agent, load, required, technologies, complexity)
        reasons = exclusions(agent, load, required, technologies, require_driver)
        candidates.append(Candidate(agent, load, weighted_score(breakdown), breakdown, reasons))

    def order(candidate: Candidate):
        preferred = bool(prefer_driver) and candidate.agent.driver == prefer_driver
        return (not candidate.eligible, not preferred, -candidate.score, candidate.agent.name)

    candidates.sort(key=order)
    saturated = sorted(
        (c for c in candidates if c.only_busy),
        key=lambda c: (c.load / max(c.agent.capacity, 1), -c.score, c.agent.name),
    )
    eligible = [c for c in candidates if c.eligible]
    if eligible:
        best = eligible[0]
        reason = f"chose {_describe(best)}"
        if prefer_driver and best.agent.driver == prefer_driver:
            reason += f"; driver {prefer_driver} preferred"
        if len(eligible) > 1:
            reason += f"; runner-up {eligible[1].agent.name} ({eligible[1].score:.3f})"
        return RoutingDecision(best.agent, candidates, reason, saturated)
    if saturated:
        names = ", ".join(c.agent.name for c in saturated)
        reason = f"every agent that fits is at capacity ({names}); the task would wait for one"
    elif candidates:
        reason = "no agent fits: " + "; ".join(
            f"{c.agent.name} ({c.excluded_reason})" for c in candidates
        )
        avoiding = [c.agent.name for c in candidates if c.only_avoids]
        if avoiding:
            named = ", ".join(sorted(_norm(technologies)))
            reason = (f"every agent that fits otherwise avoids the task's technologies ({named}): "
                      f"{', '.join(avoiding)}; {reason}")  # fmt: skip
    else:
        reason = "no agents are registered"
    return RoutingDecision(None, candidates, reason, saturated)


def route(
    db: DbSession,
    required_capabilities: Iterable[str],
    technologies: Iterable[str] = (),
    complexity: ComplexityLevel | str | None = None,
    prefer_driver: str | None = None,
    require_driver: str | None = None,
) -> RoutingDecision:
    """Score every registered agent for a task and choose the best one that passes the filters."""
    agents = list(db.scalars(select(Agent).order_by(Agent.name)))
    return rank(
        agents,
        agent_loads(db),
        required_capabilities,
        technologies,
        parse_complexity(complexity),
        prefer_driver,
        require_driver,
    )


_busy = BUSY_COUNTS.subquery()
# Agents as plain rows (every column, as attributes) with their current load, in one query.
_AGENTS_WITH_LOAD = (
    select(Agent.__table__, func.coalesce(_busy.c.load, 0).label("current_load"))
    .outerjoin(_busy, _busy.c.agent_id == Agent.__table__.c.id)
    .order_by(Agent.__table__.c.name)
)


def agents_with_load(db: DbSession) -> tuple[list, dict[str, int]]:
    """Every agent as a plain row, and the current load by agent id, in one statement."""
    rows = db.execute(_AGENTS_WITH_LOAD).all()
    return rows, {row.id: row.current_load for row in rows}


def rank_task(
    agents: Sequence, loads: dict[str, int], facts: TaskFacts, prefer_driver: str | None = None
) -> RoutingDecision:
    """`rank` for a task's facts."""
    return rank(agents, loads, facts.capabilities, facts.technologies, facts.complexity,
                prefer_driver, facts.require_driver)  # fmt: skip


def route_task(
    db: DbSession,
    facts: TaskFacts | Iterable[str],
    require_driver: str | None = None,
    prefer_driver: str | None = None,
) -> RoutingDecision:
    """The engine's routing of a task (and `/agents/route`'s): one statement, agents read as
    rows, not ORM objects. `facts` may also be bare capabilities, with `require_driver`."""
    if not isinstance(facts, TaskFacts):
        facts = TaskFacts(tuple(sorted(set(facts))), require_driver)
    rows, loads = agents_with_load(db)
    return rank_task(rows, loads, facts, prefer_driver)


def task_driver(has_command: bool) -> str | None:
    """The driver a task requires: a task without a command needs an `opencode` agent."""
    return None if has_command else AgentDriver.OPENCODE.value
