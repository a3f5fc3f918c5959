"""Keyword rules (UI, database, microservice, auth) that add or split tasks; one rule per task.

A rule *applies to* a task when it creates or rewrites it; it may add dependency edges to other
tasks but never rewrites a task another rule has shaped (DraftPlan.claim enforces this).
Rules run once each, in ascending priority, on the template's tasks before decomposition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.planning.capabilities import AgentCapability as Cap
from app.planning.complexity import COMPONENTS, RequestProfile
from app.planning.draft import DraftPlan, DraftTask, task_description
from app.planning.template_model import Template
from app.planning.text import TokenIndex


@dataclass(frozen=True)
class RuleContext:
    """What a rule's action may read: the chosen template, the request and its profile."""

    template: Template
    profile: RequestProfile
    request: str


@dataclass(frozen=True)
class KeywordRule:
    """A rule triggered by whole-word keywords; `action` edits the draft and says what it did."""

    name: str
    priority: int
    terms: tuple[str, ...]
    templates: frozenset[str]
    action: Callable[[DraftPlan, RuleContext], str]


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


def add_service_contracts(draft: DraftPlan, context: RuleContext) -> str:
    """Add service-boundary contracts after design and service configuration before deployment."""
    contracts = _new_task(
        context, draft.unique_key("contracts"), "Define service boundaries and API contracts",
        "design", (Cap.ARCHITECTURE_PLANNING, Cap.SYSTEM_DESIGN),
        "Fix each service's responsibility, its API contract and its failure behaviour.",
    )  # fmt: skip
    design = context.template.design
    if design and design in draft:
        draft.insert_after(design, contracts)
    else:
        draft.insert_before(contracts, draft.roles["build"])
    draft.claim(contracts.key, "microservice")
    done = f"added {contracts.key}"
    deploy = context.template.deploy
    if deploy and deploy in draft:
        config = _new_task(
            context, draft.unique_key("service-config"), "Containerise and configure the services",
            "deployment", (Cap.CONFIGURATION, Cap.SCALING),
            "Write container images, service discovery, health checks and scaling settings.",
        )  # fmt: skip
        draft.add_task(config, after=contracts.key)
        draft.depend(contracts.key, config.key)
        draft.depend(config.key, deploy)
        draft.claim(config.key, "microservice")
        done += f" and {config.key} (parallel to implementation, before {deploy})"
    return done


def add_security_review(draft: DraftPlan, context: RuleContext) -> str:
    """Add a security review after the build step; the final step waits for it."""
    builds = draft.roles["build"]
    review = _new_task(
        context, draft.unique_key("security-review"), "Review security", "review",
        (Cap.SECURITY_AUDIT, Cap.CODE_REVIEW),
        "Audit the change for authentication, authorisation, secrets and injection flaws.",
    )  # fmt: skip
    draft.add_task(review, after=builds[-1])
    for build in builds:
        draft.depend(build, review.key)
    draft.depend(review.key, context.template.final)
    draft.claim(review.key, "auth")
    return f"added {review.key} after {', '.join(builds)}, before {context.template.final}"


_CODE_TEMPLATES = frozenset({"feature", "web_service", "refactoring"})
_UI_TERMS = COMPONENTS["ui"][1] + ("ux", "button", "modal", "widget", "svelte", "html")
_AUTH_TERMS = COMPONENTS["auth"][1] + (
    "authorisation", "logout", "saml", "permission", "permissions", "security", "2fa", "mfa",
    "sign in", "sign-in", "signup", "sign-up", "log in", "log-in", "csrf", "xss",
)  # fmt: skip

RULES: tuple[KeywordRule, ...] = (
    KeywordRule("ui", 10, _UI_TERMS, _CODE_TEMPLATES, split_frontend),
    KeywordRule("database", 20, COMPONENTS["data"][1], frozenset({"feature", "web_service"}),
                add_schema_step),
    KeywordRule("microservice", 30, ("microservice", "microservices", "micro-service",
                                     "micro-services", "service mesh"), _CODE_TEMPLATES,
                add_service_contracts),
    KeywordRule("auth", 40, _AUTH_TERMS,
                frozenset({"feature", "web_service", "refactoring", "bug_fix", "data_migration",
                           "infrastructure", "performance"}), add_security_review),
)  # fmt: skip


def apply_rules(
    draft: DraftPlan,
    index: TokenIndex,
    context: RuleContext,
    rules: tuple[KeywordRule, ...] = RULES,
) -> list[str]:
    """Apply every matching rule once, by priority; returns one reason per matched rule."""
    reasons = []
    for rule in sorted(rules, key=lambda rule: (rule.priority, rule.name)):
        matched = index.find(rule.terms)
        if not matched:
            continue
        words = ", ".join(matched)
        if context.template.name not in rule.templates:
            reasons.append(
                f"rule {rule.name} matched ({words}) but does not apply to "
                f"template {context.template.name}"
            )
            continue
        reasons.append(f"rule {rule.name} (priority {rule.priority}; {words}): "
                       f"{rule.action(draft, context)}")  # fmt: skip
    return reasons
