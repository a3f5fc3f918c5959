"""Plans sized to the request: the analyser's level of the whole request picks the plan's shape.

trivial: the build step alone; simple: the build step and a review; moderate: the template
with its opening step (e.g. requirements) folded into the next; complex and expert: the whole
template. Steps with a `when` condition are planned only when the request names their topic.
Decomposition then splits whatever is still above the target level.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.planning.capabilities import AgentCapability as Cap
from app.planning.complexity import ComplexityLevel, Estimate, RequestProfile
from app.planning.draft import DraftPlan, DraftTask, task_description
from app.planning.intent import Intent
from app.planning.template_model import After, Template
from app.planning.text import TokenIndex

REVIEW_HOURS = (0.1, 0.25, 0.5)


@dataclass(frozen=True)
class RequestSize:
    """The whole request's core-work estimate and the level the plan is shaped for."""

    estimate: Estimate
    level: ComplexityLevel
    reason: str

    @property
    def compact(self) -> bool:
        """Whether the plan is one task, or a task and a review."""
        return self.level <= ComplexityLevel.SIMPLE


def request_size(template: Template, profile: RequestProfile, intent: Intent) -> RequestSize:
    """The level of the template's core work for this request (a new service: at least moderate)."""
    estimate = profile.estimate(template.core_hours, per_component=True)
    level = estimate.level
    why = f"request size {level.value} ({estimate.expected_hours} h of core work)"
    if intent.service and level < ComplexityLevel.MODERATE:
        level = ComplexityLevel.MODERATE
        why += f"; raised to moderate: a service is created or split ({' '.join(intent.service)})"
    return RequestSize(estimate, level, f"{why}: {_shape_of(template, level)}")


def _shape_of(template: Template, level: ComplexityLevel) -> str:
    if level is ComplexityLevel.TRIVIAL:
        return "one task"
    if level is ComplexityLevel.SIMPLE:
        reviews = template.step(template.build).phase == "review"
        return "one task (the review)" if reviews else "one task and a review"
    if level is ComplexityLevel.MODERATE and template.fold:
        return f"the {template.name} template, its {template.fold} step folded into the next"
    return f"the whole {template.name} template"


def draft_for(
    template: Template,
    profile: RequestProfile,
    request: str,
    size: RequestSize,
    intent: Intent,
    index: TokenIndex,
) -> DraftPlan:
    """The draft plan of the shape `size` asks for."""
    if size.compact:
        return _compact_draft(template, request, size, intent)
    skip = {step.key for step in template.steps if step.when and not index.find(step.when)}
    folded = template.fold if size.level is ComplexityLevel.MODERATE else None
    return _template_draft(template, profile, request, skip | {folded} - {None}, folded)


def _compact_draft(
    template: Template, request: str, size: RequestSize, intent: Intent
) -> DraftPlan:
    draft = DraftPlan()
    step = template.step(template.build)
    build = draft.add_task(
        DraftTask(
            key=step.key,
            title=step.title,
            description=task_description(template.compact or step.instruction, request),
            phase=step.phase,
            capabilities=step.capabilities,
            estimate=size.estimate,
        )
    )
    draft.roles["build"] = [build.key]
    draft.roles["final"] = [build.key]
    # A review-only plan is its review; a sensitive request's review is the security review
    # the security rule adds.
    wants_review = size.level is ComplexityLevel.SIMPLE and step.phase != "review"
    if wants_review and not intent.sensitive:
        review = draft.add_task(_review_task(draft, template, request))
        draft.depend(build.key, review.key)
        draft.roles["final"] = [review.key]
    return draft


def _review_task(draft: DraftPlan, template: Template, request: str) -> DraftTask:
    documents = not template.changes_code
    return DraftTask(
        key=draft.unique_key("review"),
        title="Review the documentation" if documents else "Review the change",
        description=task_description(template.review, request),
        phase="review",
        capabilities=(Cap.CODE_REVIEW, Cap.DOCUMENTATION) if documents else (Cap.CODE_REVIEW,),
        estimate=Estimate.from_hours(*REVIEW_HOURS),
    )


def _template_draft(
    template: Template, profile: RequestProfile, request: str, skip: set, folded: str | None
) -> DraftPlan:
    draft = DraftPlan()
    for step in template.steps:
        if step.key in skip:
            continue
        uses_components = step.per_component or step.split == "components"
        instruction = step.instruction
        if folded and any(dependency.key == folded for dependency in step.after):
            instruction = f"{template.step(folded).instruction} Then: {instruction}"
        draft.add_task(
            DraftTask(
                key=step.key,
                title=step.title,
                description=task_description(instruction, request),
                phase=step.phase,
                capabilities=step.capabilities,
                estimate=profile.estimate(step.base_hours, per_component=step.per_component),
                optional=step.optional,
                split=step.split,
                components=profile.components if uses_components else (),
            )
        )
        for dependency in _kept(template, step.after, skip):
            draft.depend(dependency.key, step.key, dependency.type, dependency.required)
    draft.roles["build"] = [template.build]
    draft.roles["final"] = [template.final]
    for role in ("design", "deploy"):
        key = getattr(template, role)
        if key and key in draft:
            draft.roles[role] = [key]
    return draft


def _kept(template: Template, after: tuple[After, ...], skip: set) -> list[After]:
    """`after` with each skipped step replaced by its own dependencies, recursively."""
    kept: list[After] = []
    for dependency in after:
        if dependency.key in skip:
            kept += _kept(template, template.step(dependency.key).after, skip)
        elif dependency.key not in {k.key for k in kept}:
            kept.append(dependency)
    return kept
