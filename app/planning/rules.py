"""Rules (UI, database, service, security) that add or split tasks; one rule per task.

A rule *applies to* a task when it creates or rewrites it; it may add dependency edges to other
tasks but never rewrites a task another rule has shaped (DraftPlan.claim enforces this).
Rules run once each, in ascending priority, on the shaped draft before decomposition. UI and
database rules reshape the build and do not apply to compact (trivial or simple) plans; a new
or split-out service always gets configuration and deployment; a security-sensitive domain
always gets a security review.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.planning.capabilities import AgentCapability as Cap
from app.planning.complexity import COMPONENTS, RequestProfile
from app.planning.draft import DraftPlan, DraftTask, task_description
from app.planning.intent import Intent
from app.planning.template_model import Template
from app.planning.text import TokenIndex


@dataclass(frozen=True)
class RuleContext:
    """What a rule's action may read: the chosen template, the request and its profile."""

    template: Template
    profile: RequestProfile
    request: str
    intent: Intent
    compact: bool = False


@dataclass(frozen=True)
class Rule:
    """A rule and what triggers it; `action` edits the draft and says what it did.

    `match` returns the words (or domains) that trigger the rule, empty when it does not match;
    a `structural` rule reshapes the build step and is skipped in compact plans.
    """

    name: str
    priority: int
    match: Callable[[TokenIndex, RuleContext], list[str]]
    templates: frozenset[str]
    action: Callable[[DraftPlan, RuleContext], str]
    structural: bool = False


def _new_task(
    context: RuleContext,
    key: str,
    title: str,
    phase: str,
    capabilities: tuple[Cap, ...],
    instruction: str,
    base_hours: tuple[float, float, float] = (0.5, 1, 2),
) -> DraftTask:
    return DraftTask(
        key=key,
        title=title,
        description=task_description(instruction, context.request),
        phase=phase,
        capabilities=capabilities,
        estimate=context.profile.estimate(base_hours),
    )


def split_frontend(draft: DraftPlan, context: RuleContext) -> str:
    """Split the build step into parallel backend and frontend branches, or scope it to the UI."""
    key = draft.roles["build"][0]
    if draft.owner(key):
        return f"skipped: {key} is already shaped by rule {draft.owner(key)}"
    task = draft.task(key)
    backend_components = tuple(c for c in task.components if c != "ui")
    if not backend_components and context.template.name != "web_service":
        draft.replace_task(
            task.evolve(
                title=f"{task.title} (user interface)",
                description=task_description(
                    "Make the user-facing changes: views, state and styling.", context.request
                ),
                components=("ui",),
            )
        )
        draft.claim(key, "ui")
        return f"{key} is front-end work only; scoped to the user interface"
    backend = task.evolve(
        key=draft.unique_key(f"{key}-backend"),
        title=f"{task.title} (backend)",
        description=task_description(
            "Server side of the change: domain logic, persistence and API.", context.request
        ),
        components=backend_components,
        estimate=task.estimate.scaled(0.6),
    )
    frontend = task.evolve(
        key=draft.unique_key(f"{key}-frontend"),
        title=f"{task.title} (frontend)",
        description=task_description(
            "User-interface side of the change, against the agreed API.", context.request
        ),
        components=("ui",),
        estimate=task.estimate.scaled(0.5),
    )
    draft.split(key, [backend, frontend])
    for child in (backend, frontend):
        draft.claim(child.key, "ui")
    draft.roles["backend"] = [backend.key]
    draft.roles["frontend"] = [frontend.key]
    return f"split {key} into parallel {backend.key} and {frontend.key}"


def add_schema_step(draft: DraftPlan, context: RuleContext) -> str:
    """Add a schema and migration task before the backend implementation."""
    anchors = draft.roles.get("backend") or draft.roles["build"]
    schema = _new_task(
        context, draft.unique_key("schema"), "Design the schema and write the migration", "design",
        (Cap.SYSTEM_DESIGN, Cap.CODE_GENERATION),
        "Model the data, write a reviewed schema migration, and keep it reversible.",
    )  # fmt: skip
    draft.insert_before(schema, anchors)
    draft.claim(schema.key, "database")
    return f"added {schema.key} before {', '.join(anchors)}"


def add_service_setup(draft: DraftPlan, context: RuleContext) -> str:
    """Service contracts after design; configuration before deployment, which is added if absent."""
    contracts = _new_task(
        context, draft.unique_key("contracts"), "Define service boundaries and API contracts",
        "design", (Cap.ARCHITECTURE_PLANNING, Cap.SYSTEM_DESIGN),
        "Fix each service's responsibility, its API contract and its failure behaviour.",
    )  # fmt: skip
    design = draft.roles.get("design")
    if design:
        draft.insert_after(design[-1], contracts)
    else:
        draft.insert_before(contracts, draft.roles["build"])
    draft.claim(contracts.key, "service")
    config = _new_task(
        context, draft.unique_key("service-config"), "Containerise and configure the services",
        "deployment", (Cap.CONFIGURATION, Cap.SCALING),
        "Write container images, service discovery, health checks and scaling settings.",
    )  # fmt: skip
    draft.add_task(config, after=contracts.key)
    draft.depend(contracts.key, config.key)
    draft.claim(config.key, "service")
    done = f"added {contracts.key} and {config.key} (parallel to implementation)"
    if draft.roles.get("deploy"):
        deploy = draft.roles["deploy"][0]
        draft.depend(config.key, deploy)
        return f"{done}, before {deploy}"
    final = draft.roles["final"][-1]
    deploy_task = _new_task(
        context, draft.unique_key("deploy"), "Deploy the services", "deployment",
        (Cap.DEPLOYMENT, Cap.MONITORING),
        "Roll out the new or split-out services behind health checks, then watch them.",
    )  # fmt: skip
    draft.add_task(deploy_task, after=final)
    for predecessor in (final, config.key):
        draft.depend(predecessor, deploy_task.key)
    draft.claim(deploy_task.key, "service")
    draft.roles["deploy"] = draft.roles["final"] = [deploy_task.key]
    return f"{done}; the template has no deployment, so added {deploy_task.key} after {final}"


_SECURITY_INSTRUCTIONS = {
    True: "Audit the change for authentication, authorisation, secrets, token and encryption "
    "flaws, and for injection.",
    False: "Check that the documentation exposes no secrets or exploitable detail and "
    "describes the security controls correctly.",
}


def add_security_review(draft: DraftPlan, context: RuleContext) -> str:
    """A security review after the build, before deployment (or the final step)."""
    covering = [step.key for step in context.template.steps
                if Cap.SECURITY_AUDIT in step.capabilities and step.key in draft]  # fmt: skip
    if covering:
        return f"covered by {', '.join(covering)} ({context.template.name} audits security)"
    builds = draft.roles["build"]
    review = _new_task(
        context, draft.unique_key("security-review"), "Review security", "review",
        (Cap.SECURITY_AUDIT, Cap.CODE_REVIEW),
        _SECURITY_INSTRUCTIONS[context.template.changes_code],
    )  # fmt: skip
    draft.add_task(review, after=builds[-1])
    for build in builds:
        draft.depend(build, review.key)
    draft.claim(review.key, "security")
    before = (draft.roles.get("deploy") or draft.roles["final"])[0]
    if before in builds:
        draft.roles["final"] = [review.key]
        return f"added {review.key} after {', '.join(builds)}; it closes the plan"
    draft.depend(review.key, before)
    return f"added {review.key} after {', '.join(builds)}, before {before}"


def _security_match(index: TokenIndex, context: RuleContext) -> list[str]:
    return [f"{domain}: {', '.join(words)}" for domain, words in context.intent.sensitive]


def _keywords(terms: tuple[str, ...]) -> Callable[[TokenIndex, RuleContext], list[str]]:
    return lambda index, context: index.find(terms)


_CODE_TEMPLATES = frozenset({"feature", "web_service", "refactoring"})
_CHANGING_TEMPLATES = _CODE_TEMPLATES | {"bug_fix", "performance", "infrastructure",
                                         "data_migration", "security_audit"}  # fmt: skip
_ALL_TEMPLATES = _CHANGING_TEMPLATES | {"documentation", "test_suite", "code_review",
                                        "security_review"}  # fmt: skip
_UI_TERMS = COMPONENTS["ui"][1] + ("ux", "widget", "svelte", "html")

RULES: tuple[Rule, ...] = (
    Rule("ui", 10, _keywords(_UI_TERMS), _CODE_TEMPLATES, split_frontend, structural=True),
    Rule("database", 20, _keywords(COMPONENTS["data"][1]), frozenset({"feature", "web_service"}),
         add_schema_step, structural=True),
    Rule("service", 30, lambda index, context: list(context.intent.service),
         _CHANGING_TEMPLATES, add_service_setup),
    Rule("security", 40, _security_match, _ALL_TEMPLATES, add_security_review),
)  # fmt: skip


def apply_rules(
    draft: DraftPlan,
    index: TokenIndex,
    context: RuleContext,
    rules: tuple[Rule, ...] = RULES,
) -> list[str]:
    """Apply every matching rule once, by priority; returns one reason per matched rule."""
    reasons = []
    for rule in sorted(rules, key=lambda rule: (rule.priority, rule.name)):
        matched = rule.match(index, context)
        if not matched:
            continue
        words = "; ".join(matched) if rule.name == "security" else ", ".join(matched)
        if context.template.name not in rule.templates:
            reasons.append(
                f"rule {rule.name} matched ({words}) but does not apply to "
                f"template {context.template.name}"
            )
        elif rule.structural and context.compact:
            reasons.append(
                f"rule {rule.name} matched ({words}) but the plan is compact: "
                "nothing to split or add"
            )
        else:
            reasons.append(f"rule {rule.name} (priority {rule.priority}; {words}): "
                           f"{rule.action(draft, context)}")  # fmt: skip
    return reasons
