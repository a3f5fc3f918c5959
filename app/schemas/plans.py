"""Schemas for plan previews and the planning options a session may carry."""

from marshmallow import Schema, fields, validate

from app.planning import ComplexityLevel

LEVELS = [level.value for level in ComplexityLevel]
PLANNERS = ["auto", "heuristic"]


class PlanOptionsSchema(Schema):
    target_level = fields.String(
        load_default="moderate",
        validate=validate.OneOf(LEVELS),
        metadata={"description": "Split tasks until each is at most this level."},
    )
    max_depth = fields.Integer(load_default=3, validate=validate.Range(min=1, max=6))
    planner = fields.String(
        load_default="auto",
        validate=validate.OneOf(PLANNERS),
        metadata={"description": "auto: the planner agent if one is registered; heuristic: never."},
    )


class PlanRequestSchema(PlanOptionsSchema):
    prompt = fields.String(required=True, validate=validate.Length(min=1, max=20000))
    title = fields.String(load_default=None, validate=validate.Length(min=1, max=200))
    workdir = fields.String(
        load_default=None,
        validate=[
            validate.Length(max=4000),
            validate.Regexp(r"^/", error="Must be an absolute path."),
        ],
        metadata={"description": "Directory the planner agent may read (absolute)."},
    )


class EstimateSchema(Schema):
    optimistic_hours = fields.Float()
    likely_hours = fields.Float()
    pessimistic_hours = fields.Float()
    expected_hours = fields.Float()
    level = fields.String()


class PlannedDependencySchema(Schema):
    key = fields.String()
    type = fields.String()
    required = fields.Boolean()


class PlannedTaskSchema(Schema):
    key = fields.String()
    title = fields.String()
    description = fields.String()
    phase = fields.String()
    required_capabilities = fields.List(fields.String())
    depends_on = fields.List(fields.Nested(PlannedDependencySchema))
    optional = fields.Boolean()
    estimate = fields.Nested(EstimateSchema)
    level = fields.Integer(metadata={"description": "Topological level (0 = no dependencies)."})
    earliest_start_hours = fields.Float()
    earliest_finish_hours = fields.Float()
    on_critical_path = fields.Boolean()


class EdgeSchema(Schema):
    source = fields.String(data_key="from", attribute="from")
    to = fields.String()
    type = fields.String()
    required = fields.Boolean()


class PlanInfoSchema(Schema):
    planner = fields.String(metadata={"description": "heuristic or opencode_agent."})
    template = fields.String(allow_none=True)
    reasons = fields.List(fields.String())
    agent = fields.Dict(allow_none=True, metadata={"description": "The planner agent asked."})
    fallback_reason = fields.String(
        allow_none=True, metadata={"description": "Why the planner agent's plan was not used."}
    )
    target_level = fields.String()
    max_depth = fields.Integer()
    critical_path = fields.List(fields.String())
    expected_makespan_hours = fields.Float()
    total_hours = fields.Float()


class PlanPreviewSchema(PlanInfoSchema):
    title = fields.String()
    task_count = fields.Integer()
    tasks = fields.List(fields.Nested(PlannedTaskSchema))
    edges = fields.List(fields.Nested(EdgeSchema))
    levels = fields.List(fields.List(fields.String()))
    dag = fields.Dict(metadata={"description": "The plan as a session `dag`, ready to submit."})


class DagQuerySchema(Schema):
    format = fields.String(
        load_default="json",
        validate=validate.OneOf(["json", "dot", "mermaid"]),
        metadata={"description": "json, or dot / mermaid for text/plain Graphviz or Mermaid."},
    )


class DagNodeSchema(Schema):
    id = fields.String()
    key = fields.String()
    title = fields.String()
    status = fields.String()
    optional = fields.Boolean()
    required_capabilities = fields.List(fields.String())
    assigned_agent_id = fields.String(allow_none=True)
    estimate_hours = fields.Float(allow_none=True)
    level = fields.Integer()
    earliest_start_hours = fields.Float()
    earliest_finish_hours = fields.Float()
    on_critical_path = fields.Boolean()


class SessionDagSchema(Schema):
    session_id = fields.String()
    status = fields.String()
    nodes = fields.List(fields.Nested(DagNodeSchema))
    edges = fields.List(fields.Nested(EdgeSchema))
    levels = fields.List(fields.List(fields.String()))
    critical_path = fields.List(fields.String())
    expected_makespan_hours = fields.Float()
