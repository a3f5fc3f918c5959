"""Schemas for sessions and their DAG, and a direct dump of the session detail."""

from collections.abc import Mapping, Sequence

from marshmallow import Schema, ValidationError, fields, pre_load, validate, validates_schema

from app.services.budgets import spent, spent_of
from app.workspaces import branch_problem, repository_url_problem
from models.enums import (
    AgentCapability,
    DependencyType,
    SessionPriority,
    SessionStatus,
    SessionType,
    TaskStatus,
)

from .approvals import ApprovalPolicySchema, budget_field
from .common import PageArgsSchema
from .limits import (
    MAX_CAPABILITIES,
    MAX_DAG_DEPENDENCIES,
    MAX_DEPENDENCIES,
    MAX_TAGS,
    MAX_TASK_TECHNOLOGIES,
    MAX_TASKS,
    MAX_TECHNOLOGY_LENGTH,
    at_most,
)
from .plans import PlanOptionsSchema


def repository_of(url: str | None, branch: str | None) -> dict | None:
    """A session's `repository` as the API shows it."""
    return None if url is None else {"url": url, "branch": branch}


KEY = validate.Regexp(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", error="Use 1-100 letters, digits, _ . - characters."
)
# A technology a task uses ("python", "react", "postgresql"): routing filters out agents that
# avoid one and prefers agents that prefer them (compared case-insensitively).
TECHNOLOGY = validate.Regexp(
    rf"^(?=.*\S)[^\x00-\x1f]{{1,{MAX_TECHNOLOGY_LENGTH}}}$",
    error=f"Use 1-{MAX_TECHNOLOGY_LENGTH} characters, not all blank, no control characters.",
)


class DependencySchema(Schema):
    key = fields.String(required=True, validate=KEY)
    type = fields.Enum(DependencyType, by_value=True, load_default=DependencyType.FINISH_TO_START)
    required = fields.Boolean(load_default=True)


class DependencyField(fields.Field):
    """A dependency given as a task key, or as {key, type, required}."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            value = {"key": value}
        if not isinstance(value, dict):
            raise ValidationError("Give a task key or an object with a key.")
        loaded = DependencySchema().load(value)
        return {**loaded, "type": loaded["type"].value}

    def _serialize(self, value, attr, obj, **kwargs):
        return value


class PriorityField(fields.Field):
    """A priority given by name (critical … deferred) or number (0 … 4)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and value.upper() in SessionPriority.__members__:
            return SessionPriority[value.upper()].value
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 4:
            return value
        raise ValidationError("Use critical, high, medium, low, deferred or 0-4.")

    def _serialize(self, value, attr, obj, **kwargs):
        return SessionPriority(value).name.lower() if value is not None else None


class TaskSpecSchema(Schema):
    key = fields.String(required=True, validate=KEY)
    title = fields.String(validate=validate.Length(min=1, max=200))
    description = fields.String(load_default="", validate=validate.Length(max=20000))
    command = fields.String(load_default=None, validate=validate.Length(min=1, max=20000))
    action = fields.String(
        load_default=None,
        validate=validate.OneOf(["integrate"]),
        metadata={"description": "integrate: merge the branches of the task's predecessors."},
    )
    required_capabilities = fields.List(
        fields.Enum(AgentCapability, by_value=True),
        load_default=list,
        validate=validate.Length(
            max=MAX_CAPABILITIES, error=at_most(MAX_CAPABILITIES, "capabilities")
        ),
    )
    technologies = fields.List(
        fields.String(validate=TECHNOLOGY),
        load_default=list,
        validate=validate.Length(
            max=MAX_TASK_TECHNOLOGIES, error=at_most(MAX_TASK_TECHNOLOGIES, "technologies per task")
        ),
        metadata={
            "description": "Technologies the task uses: agents avoiding one are not "
            "routed to, agents preferring them score higher."
        },
    )
    depends_on = fields.List(
        DependencyField(),
        load_default=list,
        validate=validate.Length(
            max=MAX_DEPENDENCIES, error=at_most(MAX_DEPENDENCIES, "dependencies per task")
        ),
    )
    optional = fields.Boolean(load_default=False)
    timeout_seconds = fields.Integer(load_default=600, validate=validate.Range(min=1, max=86400))
    max_attempts = fields.Integer(load_default=3, validate=validate.Range(min=1, max=10))
    budget = budget_field("this task")
    requires_approval = fields.Boolean(
        load_default=False,
        metadata={"description": "Once its dependencies are done the task waits "
                  "(awaiting_approval) for a gate approval."},
    )  # fmt: skip
    estimate_hours = fields.Float(
        load_default=None,
        validate=validate.Range(min=0),
        metadata={
            "description": "Expected hours; its complexity level (trivial < 0.25, simple "
            "< 1, moderate < 4, complex < 8, else expert) is scored by routing."
        },
    )


class DagSchema(Schema):
    tasks = fields.List(
        fields.Nested(TaskSpecSchema),
        required=True,
        validate=[
            validate.Length(min=1),
            validate.Length(max=MAX_TASKS, error=at_most(MAX_TASKS, "tasks per DAG")),
        ],
    )

    @pre_load
    def _dependencies_in_all(self, data, **kwargs):
        """Refuse too many dependencies in all before loading any of them."""
        tasks = data.get("tasks") if isinstance(data, dict) else None
        if isinstance(tasks, list):
            lists = (task.get("depends_on") for task in tasks if isinstance(task, dict))
            total = sum(len(deps) for deps in lists if isinstance(deps, list))
            if total > MAX_DAG_DEPENDENCIES:
                message = at_most(MAX_DAG_DEPENDENCIES, f"dependencies in all (not {total})")
                raise ValidationError(message, "tasks")
        return data


def _repository_url(url: str) -> None:
    problem = repository_url_problem(url)
    if problem:
        raise ValidationError(problem)


def _branch(branch: str) -> None:
    problem = branch_problem(branch)
    if problem:
        raise ValidationError(problem)


class RepositorySchema(Schema):
    url = fields.String(
        required=True,
        validate=[validate.Length(max=2000), _repository_url],
        metadata={"description": "A git URL every worker host can reach: file://, ssh:// "
                  "(or user@host:path), https:// or git://; no credentials in it."},
    )  # fmt: skip
    branch = fields.String(
        load_default=None,
        allow_none=True,
        validate=[validate.Length(max=200), _branch],
        metadata={"description": "The base branch; default: the remote's HEAD (else main)."},
    )


class SessionCreateSchema(Schema):
    title = fields.String(
        validate=validate.Length(min=1, max=200),
        metadata={"description": "Required with a dag; a planned session gets one otherwise."},
    )
    prompt = fields.String(required=True, validate=validate.Length(min=1, max=100000))
    description = fields.String(load_default="", validate=validate.Length(max=20000))
    type = fields.Enum(SessionType, by_value=True, load_default=SessionType.EXECUTION)
    priority = PriorityField(load_default=SessionPriority.MEDIUM.value)
    parent_id = fields.String(load_default=None)
    max_duration_seconds = fields.Integer(
        load_default=3600, validate=validate.Range(min=60, max=86400)
    )
    tags = fields.List(
        fields.String(validate=validate.Length(max=100)),
        load_default=list,
        validate=validate.Length(max=MAX_TAGS, error=at_most(MAX_TAGS, "tags")),
    )
    metadata = fields.Dict(load_default=dict, attribute="meta", data_key="metadata")
    agent_preferences = fields.Dict(load_default=dict)
    created_by = fields.String(load_default=None, validate=validate.Length(max=200))
    workdir = fields.String(load_default=None, validate=validate.Length(max=4000))
    repository = fields.Nested(
        RepositorySchema,
        load_default=None,
        metadata={"description": "Instead of workdir: the git repository the tasks work on, "
                  "each in its own worktree on its worker's host, pushing orch/<session>/<task>."},
    )  # fmt: skip
    dag = fields.Nested(
        DagSchema, metadata={"description": "Without a dag, the prompt is planned into one."}
    )
    planning = fields.Nested(PlanOptionsSchema, metadata={"description": "Used without a dag."})
    budget = budget_field("the session (every task)")
    approve_plan = fields.Boolean(
        load_default=False,
        metadata={"description": "Wait (paused, reason plan) for a plan approval first."},
    )
    approvals = fields.Nested(
        ApprovalPolicySchema, load_default=dict, attribute="approval_policy",
        metadata={"description": "Approvals of this session expire after expires_in_seconds "
                  "with default_decision (default reject)."},
    )  # fmt: skip

    @validates_schema
    def _title_with_dag(self, data, **kwargs):
        if "dag" in data and not data.get("title"):
            raise ValidationError("Missing data for required field.", "title")

    @validates_schema
    def _workdir_or_repository(self, data, **kwargs):
        if data.get("workdir") and data.get("repository"):
            raise ValidationError("Give either a workdir or a repository, not both.", "repository")


class TaskSchema(Schema):
    id = fields.String()
    key = fields.String()
    title = fields.String()
    description = fields.String()
    command = fields.String(allow_none=True)
    action = fields.String(allow_none=True)
    branch = fields.String(allow_none=True)
    required_capabilities = fields.List(fields.String())
    technologies = fields.List(fields.String())
    depends_on = fields.Method("_depends_on")
    optional = fields.Boolean()
    status = fields.Enum(TaskStatus, by_value=True)
    attempt = fields.Integer()
    max_attempts = fields.Integer()
    executions = fields.Integer()
    worker = fields.String(allow_none=True, metadata={"description": "host:pid of the worker."})
    heartbeat_at = fields.DateTime(allow_none=True)
    fence_token = fields.Integer()
    assigned_agent_id = fields.String(allow_none=True)
    result = fields.Dict(allow_none=True)
    error = fields.String(allow_none=True)
    tokens = fields.Dict()
    cost = fields.Float()
    budget = fields.Dict()
    requires_approval = fields.Boolean()
    metrics = fields.Function(lambda task: {"spent": spent_of(task)})
    queued_at = fields.DateTime(allow_none=True)
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)

    def _depends_on(self, task):
        return [
            {"key": dep.depends_on.key, "type": dep.type.value, "required": dep.required}
            for dep in task.dependencies
        ]


class SessionSummarySchema(Schema):
    id = fields.String()
    title = fields.String()
    description = fields.String()
    prompt = fields.String()
    type = fields.Enum(SessionType, by_value=True)
    priority = PriorityField()
    status = fields.Enum(SessionStatus, by_value=True)
    parent_id = fields.String(allow_none=True)
    max_duration_seconds = fields.Integer()
    tags = fields.List(fields.String())
    metadata = fields.Dict(attribute="meta")
    agent_preferences = fields.Dict()
    created_by = fields.String(allow_none=True)
    workdir = fields.String(allow_none=True)
    repository = fields.Method(
        "_repository", metadata={"description": "{url, branch}, or null for a workdir."}
    )
    error = fields.String(allow_none=True)
    metrics = fields.Function(lambda session: {**(session.metrics or {}),
                                               "spent": spent_of(session)})
    budget = fields.Dict()
    approve_plan = fields.Boolean()
    approvals = fields.Dict(attribute="approval_policy")
    pause_reason = fields.String(allow_none=True, metadata={"description": "budget, plan, ..."})
    plan_info = fields.Dict(
        metadata={"description": "Which planner made the DAG and why; {} for a given dag."}
    )
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)
    progress = fields.Method("_progress")

    def _repository(self, session):
        return repository_of(session.repository_url, session.repository_branch)

    def _progress(self, session):
        counts = getattr(session, "task_counts", None)  # set by a list: it loads no tasks
        if counts is None:
            counts = {}
            for task in session.tasks:
                counts[task.status.value] = counts.get(task.status.value, 0) + 1
        return {"total": sum(counts.values()), "by_status": counts}


class SessionSchema(SessionSummarySchema):
    tasks = fields.List(fields.Nested(TaskSchema))


# The session detail's fields whose values `services.sessions.session_detail` already gives in
# their JSON form (it reads them from PostgreSQL as JSON); the others are converted below.
TASK_TIMES = ("heartbeat_at", "queued_at", "started_at", "finished_at")
SESSION_TIMES = ("created_at", "updated_at", "started_at", "finished_at")
_TASK_AS_IS = tuple(
    name for name in TaskSchema().fields
    if name not in ("required_capabilities", "depends_on", "status", "cost", "metrics",
                    *TASK_TIMES)
)  # fmt: skip
_SESSION_AS_IS = tuple(
    name for name in SessionSchema().fields
    if name not in ("type", "priority", "status", "tags", "progress", "tasks", "repository",
                    "metrics", *SESSION_TIMES)
)  # fmt: skip


def _when(value):
    return None if value is None else value.isoformat()


def _texts(values):
    return None if values is None else [str(value) for value in values]


def _task_detail(task: Mapping) -> dict:
    detail = {name: task[name] for name in _TASK_AS_IS}
    detail["required_capabilities"] = _texts(task["required_capabilities"])
    detail["depends_on"] = [
        {"key": key, "type": kind, "required": required}
        for key, kind, required in task["depends_on"]
    ]
    detail["status"] = task["status"].value
    detail["cost"] = float(task["cost"])
    detail["metrics"] = {"spent": spent(task["spent_tokens"], task["spent_cost_usd"],
                                        task["spent_agent_seconds"])}  # fmt: skip
    for name in TASK_TIMES:
        detail[name] = _when(task[name])
    return detail


def dump_session_detail(session: Mapping, tasks: Sequence[Mapping]) -> dict:
    """What `SessionSchema().dump` gives, from what `services.sessions.session_detail` read.

    Written out because marshmallow's per-field machinery was most of the cost of the most
    frequent read; `tests/api/test_session_detail.py` holds the two equal, field for field.
    """
    detail = {name: session[name] for name in _SESSION_AS_IS}
    detail["repository"] = repository_of(session["repository_url"], session["repository_branch"])
    detail["metrics"] = {**(session["metrics"] or {}), "spent": spent(
        session["spent_tokens"], session["spent_cost_usd"], session["spent_agent_seconds"])}
    counts: dict[str, int] = {}
    for task in tasks:
        counts[task["status"].value] = counts.get(task["status"].value, 0) + 1
    detail["type"] = session["type"].value
    detail["priority"] = SessionPriority(session["priority"]).name.lower()
    detail["status"] = session["status"].value
    detail["tags"] = _texts(session["tags"])
    for name in SESSION_TIMES:
        detail[name] = _when(session[name])
    detail["progress"] = {"total": len(tasks), "by_status": counts}
    detail["tasks"] = [_task_detail(task) for task in tasks]
    return detail


class SessionPageSchema(Schema):
    items = fields.List(fields.Nested(SessionSummarySchema))
    total = fields.Integer()
    page = fields.Integer()
    page_size = fields.Integer()


class SessionQuerySchema(PageArgsSchema):
    status = fields.Enum(SessionStatus, by_value=True)
    type = fields.Enum(SessionType, by_value=True)
    tag = fields.String(validate=validate.Length(max=100))
    parent_id = fields.String()
