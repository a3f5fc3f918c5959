"""Schemas for agents: registration, changes, performance and routing dry runs."""

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

import app.sandbox as sandbox
from app.drivers.endpoints import LOCAL as LOCAL_ENDPOINT
from app.planning.complexity import ComplexityLevel
from app.schemas.limits import MAX_CAPABILITIES, MAX_TECHNOLOGIES, at_most
from app.services.performance import LoadLevel, Tier
from models.enums import AgentCapability, AgentDriver, AgentStatus, AgentType

NAME = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", error="Use letters, digits, _ . -")
TEXT = validate.Regexp(r"^[^\x00]*$", error="Must not contain NUL characters.")
TECHNOLOGY = validate.And(validate.Length(min=1, max=100), TEXT)


def _technologies(**kwargs):
    at_most_technologies = at_most(MAX_TECHNOLOGIES, "technologies")
    return fields.List(
        fields.String(validate=TECHNOLOGY),
        validate=validate.Length(max=MAX_TECHNOLOGIES, error=at_most_technologies),
        **kwargs,
    )


def _capabilities(validate_more=None, **kwargs):
    limit = validate.Length(max=MAX_CAPABILITIES, error=at_most(MAX_CAPABILITIES, "capabilities"))
    checks = [limit, validate_more] if validate_more else [limit]
    return fields.List(fields.Enum(AgentCapability, by_value=True), validate=checks, **kwargs)


_URL = validate.URL(require_tld=False, schemes={"http", "https"})


def _url_or_local(value: str) -> None:
    """An OpenCode server's http(s) URL, or `local`: the server beside the task's worker."""
    if value != LOCAL_ENDPOINT:
        _URL(value)


def _endpoint(**kwargs):
    kwargs.setdefault("metadata", {})["description"] = (
        "The OpenCode server's URL, or `local`: the server beside whichever worker runs the "
        "task (the worker's WORKER_OPENCODE_URL)."
    )
    return fields.String(validate=_url_or_local, **kwargs)


def _model(**kwargs):
    return fields.String(validate=validate.And(validate.Length(max=200), TEXT), **kwargs)


CONFIG_HELP = {
    "description": "Driver settings (secret: never returned). `env`: variables for the "
    "agent's shell commands (NAME: value strings; the commands see no other worker variable "
    "than PATH, HOME, locale and the like)."
}


def _valid_config(config) -> None:
    """An agent's config: any keys; `env`, when present, a bounded NAME -> string mapping."""
    if "env" in config and (problems := sandbox.env_problems(config["env"])) is not None:
        raise ValidationError({"env": problems})


class AgentCreateSchema(Schema):
    name = fields.String(required=True, validate=NAME)
    type = fields.Enum(AgentType, by_value=True, required=True)
    capabilities = _capabilities(validate.Length(min=1), required=True)
    driver = fields.Enum(AgentDriver, by_value=True, required=True)
    endpoint = _endpoint(load_default=None)
    model = _model(load_default=None)
    config = fields.Dict(load_default=dict, validate=_valid_config, metadata=CONFIG_HELP)
    capacity = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100))
    preferred_technologies = _technologies(load_default=list)
    avoided_technologies = _technologies(load_default=list)
    maintenance = fields.Boolean(load_default=False)

    @validates_schema
    def _endpoint_for_opencode(self, data, **kwargs):
        if data.get("driver") is AgentDriver.OPENCODE and not data.get("endpoint"):
            raise ValidationError("An opencode agent needs the URL of its server.", "endpoint")


class AgentUpdateSchema(Schema):
    """Every field is optional; what is sent replaces the stored value ({} changes nothing)."""

    name = fields.String(validate=NAME)
    type = fields.Enum(AgentType, by_value=True)
    capabilities = _capabilities(validate.Length(min=1))
    driver = fields.Enum(AgentDriver, by_value=True)
    endpoint = _endpoint(allow_none=True)
    model = _model(allow_none=True)
    config = fields.Dict(validate=_valid_config, metadata=CONFIG_HELP)
    capacity = fields.Integer(validate=validate.Range(min=1, max=100))
    preferred_technologies = _technologies()
    avoided_technologies = _technologies()
    status = fields.Enum(
        AgentStatus,
        by_value=True,
        metadata={"description": "active (also resets health) or inactive."},
    )


class MaintenanceSchema(Schema):
    on = fields.Boolean(required=True)
    reason = fields.String(
        load_default=None, validate=validate.And(validate.Length(max=1000), TEXT)
    )


class PerformanceSchema(Schema):
    tasks_completed = fields.Integer()
    tasks_failed = fields.Integer()
    tasks_total = fields.Integer()
    success_rate = fields.Float(allow_none=True, metadata={"description": "null: no tasks yet"})
    success_score = fields.Float(metadata={"description": "Beta(2,2)-smoothed, used to route"})
    mean_duration_seconds = fields.Float(allow_none=True)
    total_duration_seconds = fields.Float()
    total_tokens = fields.Integer()
    mean_tokens = fields.Float(allow_none=True)
    total_cost = fields.Float()
    tier = fields.Enum(Tier, by_value=True)
    current_load = fields.Integer()
    capacity = fields.Integer()
    load_ratio = fields.Float()
    load_level = fields.Enum(LoadLevel, by_value=True)
    consecutive_failures = fields.Integer()


class AgentSchema(Schema):
    id = fields.String(dump_only=True)
    name = fields.String()
    type = fields.Enum(AgentType, by_value=True)
    capabilities = fields.List(fields.String())
    driver = fields.Enum(AgentDriver, by_value=True)
    endpoint = fields.String(allow_none=True)
    model = fields.String(allow_none=True)
    capacity = fields.Integer()
    preferred_technologies = fields.List(fields.String())
    avoided_technologies = fields.List(fields.String())
    maintenance = fields.Boolean()
    maintenance_reason = fields.String(dump_only=True, allow_none=True)
    status = fields.Enum(AgentStatus, by_value=True, dump_only=True)
    health_reason = fields.String(dump_only=True, allow_none=True)
    consecutive_failures = fields.Integer(dump_only=True)
    last_heartbeat_at = fields.DateTime(dump_only=True, allow_none=True)
    tasks_completed = fields.Integer(dump_only=True)
    tasks_failed = fields.Integer(dump_only=True)
    total_duration_seconds = fields.Float(dump_only=True)
    total_tokens = fields.Integer(dump_only=True)
    total_cost = fields.Float(dump_only=True)
    performance = fields.Nested(PerformanceSchema, dump_only=True)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)


class AgentQuerySchema(Schema):
    type = fields.Enum(AgentType, by_value=True)
    capability = fields.Enum(AgentCapability, by_value=True)
    status = fields.Enum(AgentStatus, by_value=True)
    maintenance = fields.Boolean()


class RouteRequestSchema(Schema):
    """A task as the engine routes it (the task spec's fields that routing reads), plus two
    overrides the engine never uses (prefer_driver, require_driver)."""

    required_capabilities = _capabilities(required=True)
    technologies = _technologies(load_default=list)
    command = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(min=1, max=20000),
        metadata={
            "description": "As in the task spec (not run): a task without a command "
            "needs an opencode agent."
        },
    )
    estimate_hours = fields.Float(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=0),
        metadata={"description": "As in the task spec: the complexity level is derived from it."},
    )
    complexity = fields.Enum(
        ComplexityLevel,
        by_value=True,
        load_default=None,
        allow_none=True,
        metadata={"description": "A level instead of estimate_hours."},
    )
    prefer_driver = fields.Enum(AgentDriver, by_value=True, load_default=None, allow_none=True)
    require_driver = fields.Enum(
        AgentDriver,
        by_value=True,
        load_default=None,
        allow_none=True,
        metadata={"description": "Overrides the driver the command (or its absence) needs."},
    )

    @validates_schema
    def _one_complexity(self, data, **kwargs):
        if data.get("complexity") is not None and data.get("estimate_hours") is not None:
            raise ValidationError("Give complexity or estimate_hours, not both.", "complexity")


class RouteTaskSchema(Schema):
    """The routing facts the decision was made from, as the engine derives them."""

    required_capabilities = fields.List(fields.String(), attribute="capabilities")
    technologies = fields.List(fields.String())
    complexity = fields.Enum(ComplexityLevel, by_value=True, allow_none=True)
    require_driver = fields.String(allow_none=True)


class AgentBriefSchema(Schema):
    id = fields.String()
    name = fields.String()
    type = fields.Enum(AgentType, by_value=True)
    driver = fields.Enum(AgentDriver, by_value=True)
    capabilities = fields.List(fields.String())
    status = fields.Enum(AgentStatus, by_value=True)
    maintenance = fields.Boolean()
    capacity = fields.Integer()


class BreakdownSchema(Schema):
    capability_fit = fields.Float()
    success_rate = fields.Float()
    load = fields.Float()
    technology = fields.Float()
    complexity_fit = fields.Float()


class CandidateSchema(Schema):
    agent = fields.Nested(AgentBriefSchema)
    load = fields.Integer()
    score = fields.Float()
    breakdown = fields.Nested(BreakdownSchema)
    eligible = fields.Boolean()
    excluded_reason = fields.String(allow_none=True)


class RoutingDecisionSchema(Schema):
    task = fields.Nested(RouteTaskSchema)
    chosen = fields.Nested(AgentBriefSchema, allow_none=True)
    assigned = fields.Nested(
        AgentBriefSchema,
        allow_none=True,
        metadata={
            "description": "Whom the engine would assign the task: the chosen agent, else "
            "(every agent that fits is at capacity) the least loaded one, to wait for a "
            "slot; null: the task would be blocked with the reason."
        },
    )
    candidates = fields.List(fields.Nested(CandidateSchema))
    reason = fields.String()
    weights = fields.Dict(keys=fields.String(), values=fields.Float())
