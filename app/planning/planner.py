"""The heuristic planner: request -> one template -> a shape sized to the request -> rules ->
recursive decomposition."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from app.planning.complexity import ComplexityLevel, RequestProfile, analyze_request
from app.planning.decompose import decompose
from app.planning.draft import DraftPlan
from app.planning.errors import PlanningError
from app.planning.graph import analyze
from app.planning.intent import read_intent
from app.planning.rules import RuleContext, apply_rules
from app.planning.selection import select_template, template_for_intent
from app.planning.shape import draft_for, request_size
from app.planning.text import TokenIndex

PLANNER_NAME = "heuristic"
MAX_PROMPT_CHARS = 20_000
MIN_DEPTH, MAX_DEPTH = 1, 6
TITLE_CHARS = 80


@dataclass(frozen=True)
class Plan:
    """A planned DAG spec plus why it looks the way it does and what it should take."""

    tasks: list[dict[str, Any]]
    planner: str
    reasons: list[str]
    critical_path: list[str]
    expected_makespan_hours: float
    total_hours: float
    title: str = ""
    template: str = ""
    rule_by_task: dict[str, str] = field(default_factory=dict)

    def to_spec(self) -> dict[str, list[dict[str, Any]]]:
        """The DAG spec the sessions API accepts: {"tasks": [...]} (a deep copy)."""
        return {"tasks": copy.deepcopy(self.tasks)}


def plan(
    prompt: str,
    *,
    title: str | None = None,
    target_level: ComplexityLevel | str = "moderate",
    max_depth: int = 3,
) -> Plan:
    """Decompose a natural-language coding request into a DAG spec; PlanningError on bad input."""
    request = _checked_prompt(prompt)
    target = ComplexityLevel.parse(target_level)
    depth = _checked_depth(max_depth)
    plan_title = _checked_title(title) or _title_from(request)
    text = f"{title}\n{request}" if title else request
    index = TokenIndex(text)
    intent = read_intent(text)
    template, template_reason = template_for_intent(*select_template(index), intent)
    profile = analyze_request(text)
    size = request_size(template, profile, intent)
    draft = draft_for(template, profile, request, size, intent, index)
    reasons = [template_reason, _profile_reason(profile), size.reason]
    context = RuleContext(template, profile, request, intent, size.compact)
    reasons += apply_rules(draft, index, context)
    reasons += decompose_and_explain(draft, target, depth)
    tasks = draft.to_spec_tasks()
    analysis = analyze({"tasks": tasks})
    total = sum(task["estimate"]["expected_hours"] for task in tasks)
    return Plan(
        tasks=tasks,
        planner=PLANNER_NAME,
        reasons=reasons,
        critical_path=analysis.critical_path,
        expected_makespan_hours=round(analysis.makespan_hours, 3),
        total_hours=round(total, 3),
        title=plan_title,
        template=template.name,
        rule_by_task={key: rule for key, rule in draft.rule_by_task.items() if key in draft},
    )


def decompose_and_explain(draft: DraftPlan, target: ComplexityLevel, depth: int) -> list[str]:
    """Run recursive decomposition and prefix its reasons with the target it aimed at."""
    steps = decompose(draft, target, depth)
    return [f"decomposition target {target.value}, max depth {depth}", *steps]


def _checked_prompt(prompt: object) -> str:
    if not isinstance(prompt, str):
        raise PlanningError(f"prompt must be a string, got {type(prompt).__name__}")
    request = prompt.strip()
    if not request:
        raise PlanningError("prompt must not be empty")
    if len(request) > MAX_PROMPT_CHARS:
        raise PlanningError(f"prompt is {len(request)} characters; the limit is {MAX_PROMPT_CHARS}")
    return request


def _checked_depth(max_depth: object) -> int:
    if isinstance(max_depth, bool) or not isinstance(max_depth, int):
        raise PlanningError(f"max_depth must be an integer, got {max_depth!r}")
    if not MIN_DEPTH <= max_depth <= MAX_DEPTH:
        raise PlanningError(
            f"max_depth must be between {MIN_DEPTH} and {MAX_DEPTH}, got {max_depth}"
        )
    return max_depth


def _checked_title(title: object) -> str | None:
    if title is not None and not isinstance(title, str):
        raise PlanningError(f"title must be a string, got {type(title).__name__}")
    return title.strip() if title else None


def _title_from(request: str) -> str:
    first_line = " ".join(request.splitlines()[0].split())
    return first_line if len(first_line) <= TITLE_CHARS else first_line[: TITLE_CHARS - 1] + "…"


def _profile_reason(profile: RequestProfile) -> str:
    signals = "; ".join(profile.signals) or "no size signals"
    return f"size: scope x{profile.scale}, risk x{profile.risk} ({signals})"
