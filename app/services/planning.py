"""Planning: decompose a request with the planner agent or the heuristics, and shape the result."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from app.drivers.base import AgentSpec
from app.planning import Plan, PlanningError, analyze, plan
from models import Agent
from models.enums import AgentCapability, AgentDriver, AgentStatus

from .errors import ValidationFailed
from .planner_agent import PlannerAgentFailed, ask_planner_agent, plan_from_answer

logger = logging.getLogger(__name__)

DEFAULT_TARGET_LEVEL = "moderate"
DEFAULT_MAX_DEPTH = 3
PLANNER_CAPABILITY = AgentCapability.TASK_DECOMPOSITION.value
# A planned task is one agent turn; give it room, within the session's own limit.
PLANNED_TASK_TIMEOUT_SECONDS = 1800
PLANNED_TASK_MAX_ATTEMPTS = 3
_FIELDS = ("prompt", "title", "max_depth", "target_level")


@dataclass(frozen=True)
class ProposedPlan:
    """A plan and what to record about it: which planner, why, and any fallback."""

    plan: Plan
    info: dict[str, Any]


def find_planner_agent(db: DbSession) -> AgentSpec | None:
    """The routable opencode agent offering task_decomposition (first by name), or None."""
    agent = db.scalar(
        select(Agent)
        .where(
            Agent.status == AgentStatus.ACTIVE,
            Agent.maintenance.is_(False),
            Agent.driver == AgentDriver.OPENCODE,
            Agent.capabilities.contains([PLANNER_CAPABILITY]),
        )
        .order_by(Agent.name)
        .limit(1)
    )
    return AgentSpec.of(agent) if agent is not None else None


def propose_plan(
    prompt: str,
    *,
    title: str | None = None,
    target_level: str = DEFAULT_TARGET_LEVEL,
    max_depth: int = DEFAULT_MAX_DEPTH,
    agent: AgentSpec | None = None,
    workdir: str | None = None,
) -> ProposedPlan:
    """Plan with the planner agent when given, else (or when it fails) with the heuristics."""
    try:
        heuristic = plan(prompt, title=title, target_level=target_level, max_depth=max_depth)
    except PlanningError as error:
        raise ValidationFailed(
            f"Cannot plan this request: {error}", {_field_of(error): error.errors}
        ) from error
    options = {"target_level": target_level, "max_depth": max_depth}
    if agent is None:
        return ProposedPlan(heuristic, _info(heuristic, options))
    request = f"{title}\n{prompt.strip()}" if title else prompt.strip()
    try:
        answer, opencode_session = ask_planner_agent(
            agent,
            request,
            target_level=target_level,
            max_depth=max_depth,
            workdir=workdir if workdir and os.path.isabs(workdir) else None,
        )
        proposed = plan_from_answer(answer, title=heuristic.title)
    except Exception as error:  # any failure of the agent means the heuristics plan instead
        reason = f"{error}" if isinstance(error, PlannerAgentFailed) else repr(error)
        log = logger.warning if isinstance(error, PlannerAgentFailed) else logger.exception
        log("planner_agent_fallback agent_id=%s agent=%s reason=%s", agent.id, agent.name, reason)
        note = f"planner agent {agent.name} failed ({reason}); the heuristic planner was used"
        info = _info(heuristic, options, agent={"id": agent.id, "name": agent.name})
        info["fallback_reason"] = reason
        info["reasons"] = [note, *heuristic.reasons]
        return ProposedPlan(heuristic, info)
    logger.info(
        "planner_agent_plan agent_id=%s agent=%s opencode_session=%s tasks=%d",
        agent.id, agent.name, opencode_session, len(proposed.tasks),
    )  # fmt: skip
    identity = {"id": agent.id, "name": agent.name, "opencode_session": opencode_session}
    return ProposedPlan(proposed, _info(proposed, options, agent=identity))


def _info(chosen: Plan, options: dict[str, Any], agent: dict | None = None) -> dict[str, Any]:
    return {
        "planner": chosen.planner,
        "template": chosen.template or None,
        "reasons": list(chosen.reasons),
        "agent": agent,
        "fallback_reason": None,
        **options,
        "critical_path": list(chosen.critical_path),
        "expected_makespan_hours": chosen.expected_makespan_hours,
        "total_hours": chosen.total_hours,
    }


def _field_of(error: PlanningError) -> str:
    message = str(error)
    if "complexity level" in message:
        return "target_level"
    return next((name for name in _FIELDS if message.startswith(name)), "prompt")


def preview(proposed: ProposedPlan) -> dict[str, Any]:
    """What POST /plans shows: tasks with schedule and level, edges, levels, critical path."""
    chosen = proposed.plan
    analysis = analyze({"tasks": chosen.tasks})
    level_of = {key: index for index, level in enumerate(analysis.levels) for key in level}
    critical = set(analysis.critical_path)
    tasks = [
        {
            **task,
            "level": level_of[task["key"]],
            "earliest_start_hours": round(analysis.schedule[task["key"]][0], 3),
            "earliest_finish_hours": round(analysis.schedule[task["key"]][1], 3),
            "on_critical_path": task["key"] in critical,
        }
        for task in chosen.tasks
    ]
    return {
        **proposed.info,
        "title": chosen.title,
        "task_count": len(tasks),
        "tasks": tasks,
        "edges": edges_of(chosen.tasks),
        "levels": analysis.levels,
        "dag": {"tasks": [_submittable(task) for task in session_task_specs(chosen)]},
    }


def edges_of(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every dependency of spec tasks as {from, to, type, required}."""
    return [
        {"from": dep["key"], "to": task["key"], "type": dep["type"], "required": dep["required"]}
        for task in tasks
        for dep in task["depends_on"]
    ]


def session_task_specs(
    chosen: Plan, max_duration_seconds: int | None = None
) -> list[dict[str, Any]]:
    """The plan's tasks as the sessions service takes them: no command, for opencode agents."""
    timeout = min(
        PLANNED_TASK_TIMEOUT_SECONDS, max_duration_seconds or PLANNED_TASK_TIMEOUT_SECONDS
    )
    return [
        {
            "key": task["key"],
            "title": task["title"][:200],
            "description": task["description"],
            "command": None,
            "required_capabilities": [AgentCapability(c) for c in task["required_capabilities"]],
            "depends_on": [dict(dep) for dep in task["depends_on"]],
            "optional": task["optional"],
            "timeout_seconds": timeout,
            "max_attempts": PLANNED_TASK_MAX_ATTEMPTS,
            "estimate_hours": task["estimate"]["expected_hours"],
        }
        for task in chosen.tasks
    ]


def _submittable(spec: dict[str, Any]) -> dict[str, Any]:
    """A session task spec as JSON a client can send back in `dag`."""
    capabilities = [capability.value for capability in spec["required_capabilities"]]
    body = {key: value for key, value in spec.items() if key != "command"}
    return {**body, "required_capabilities": capabilities}


def planned_session_data(data: dict[str, Any], proposed: ProposedPlan) -> dict[str, Any]:
    """The create-session input for a prompt-only request: the planned DAG and its plan_info."""
    planned = {key: value for key, value in data.items() if key != "planning"}
    planned["title"] = data.get("title") or proposed.plan.title
    tasks = session_task_specs(proposed.plan, data.get("max_duration_seconds"))
    planned["dag"] = {"tasks": tasks}
    planned["plan_info"] = proposed.info
    return planned


def check_plan_capabilities(db: DbSession, task_specs: list[dict[str, Any]]) -> None:
    """422 naming the capabilities a planned DAG needs that no routable opencode agent has."""
    agents = db.scalars(
        select(Agent).where(
            Agent.status == AgentStatus.ACTIVE,
            Agent.maintenance.is_(False),
            Agent.driver == AgentDriver.OPENCODE,
        )
    )
    offered = [set(agent.capabilities) for agent in agents]
    missing: dict[str, list[str]] = {}
    for spec in task_specs:
        needed = {capability.value for capability in spec["required_capabilities"]}
        if not any(needed <= have for have in offered):
            missing.setdefault(", ".join(sorted(needed)), []).append(spec["key"])
    if missing:
        details = [f"No opencode agent has: {needs} (tasks: {', '.join(keys)})."
                   for needs, keys in sorted(missing.items())]  # fmt: skip
        raise ValidationFailed(
            "The planned DAG needs capabilities that no active opencode agent has; register "
            "agents with them or submit a dag.",
            {"dag": details},
        )
