"""The planner agent: ask an OpenCode server for a plan as JSON and validate what comes back."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace
from typing import Any

import requests
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

import app.drivers.endpoints as endpoints
from app.drivers.base import AgentSpec
from app.drivers.opencode_client import (
    BREAKERS,
    OpenCodeClient,
    OpenCodeError,
    OpenCodeUnavailable,
    Timeouts,
)
from app.planning import (
    DEPENDENCY_TYPES,
    KNOWN_CAPABILITIES,
    Estimate,
    Plan,
    PlanningError,
    analyze,
)
from app.workspaces import branch_clashes

logger = logging.getLogger(__name__)

PLANNER_NAME = "opencode_agent"
DEFAULT_TIMEOUT_SECONDS = 120.0
MAX_TASKS = 200
KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
# The planner only reads the repository: it must not edit, run commands or wait for a human.
READ_ONLY_RULES = [
    {"permission": name, "pattern": "*", "action": "deny"}
    for name in ("edit", "bash", "question", "external_directory", "doom_loop", "webfetch")
]
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)
_USERINFO = re.compile(r"//[^/@]*@")

HOURS = {"type": "number", "minimum": 0}
PLAN_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["tasks"],
    "properties": {
        "reasons": {"type": "array", "items": {"type": "string"}},
        "tasks": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_TASKS,
            "items": {
                "type": "object",
                "required": ["key", "title", "description", "required_capabilities", "estimate"],
                "properties": {
                    "key": {"type": "string", "pattern": KEY_PATTERN},
                    "title": {"type": "string", "minLength": 1, "maxLength": 200},
                    "description": {"type": "string", "maxLength": 20000},
                    "phase": {"type": "string"},
                    "required_capabilities": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "string", "enum": sorted(KNOWN_CAPABILITIES)},
                    },
                    "depends_on": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["key"],
                            "properties": {
                                "key": {"type": "string"},
                                "type": {"type": "string", "enum": sorted(DEPENDENCY_TYPES)},
                                "required": {"type": "boolean"},
                            },
                        },
                    },
                    "optional": {"type": "boolean"},
                    "estimate": {
                        "type": "object",
                        "required": ["optimistic_hours", "likely_hours", "pessimistic_hours"],
                        "properties": {
                            "optimistic_hours": HOURS,
                            "likely_hours": HOURS,
                            "pessimistic_hours": HOURS,
                        },
                    },
                },
            },
        },
    },
}


class PlannerAgentFailed(Exception):
    """The planner agent could not give a usable plan; the message says why."""


class _EstimateSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    optimistic_hours = fields.Float(required=True, validate=validate.Range(min=0))
    likely_hours = fields.Float(required=True, validate=validate.Range(min=0))
    pessimistic_hours = fields.Float(required=True, validate=validate.Range(min=0))


class _DependencySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    key = fields.String(required=True)
    type = fields.String(load_default="finish_to_start")
    required = fields.Boolean(load_default=True)


class _TaskSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    key = fields.String(required=True, validate=validate.Regexp(KEY_PATTERN))
    title = fields.String(required=True, validate=validate.Length(min=1, max=200))
    description = fields.String(load_default="", validate=validate.Length(max=20000))
    phase = fields.String(load_default="")
    required_capabilities = fields.List(
        fields.String(validate=validate.OneOf(sorted(KNOWN_CAPABILITIES))),
        required=True,
        validate=validate.Length(min=1),
    )
    depends_on = fields.List(fields.Nested(_DependencySchema), load_default=list)
    optional = fields.Boolean(load_default=False)
    estimate = fields.Nested(_EstimateSchema, required=True)


class _PlanSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    tasks = fields.List(
        fields.Nested(_TaskSchema), required=True, validate=validate.Length(min=1, max=MAX_TASKS)
    )
    reasons = fields.List(fields.String(), load_default=list)


def agent_prompt(request: str, target_level: str, max_depth: int) -> str:
    """The instruction that asks the planner agent for a DAG of subtasks."""
    return (
        "You plan work for a team of autonomous coding agents. Decompose the request below into "
        "a DAG of subtasks and answer with JSON only, following the given schema.\n"
        "- key: short unique slug; title: imperative; description: what to do and how to know "
        "it is done (it is the whole prompt the agent receives).\n"
        f"- required_capabilities: one or more of {', '.join(sorted(KNOWN_CAPABILITIES))}.\n"
        "- depends_on: keys of earlier tasks; type finish_to_start unless another fits; "
        "required false when the task can go on without it. No cycles.\n"
        "- estimate: optimistic <= likely <= pessimistic hours for a skilled engineer.\n"
        f"- Split until every task is at most {target_level} (nesting at most {max_depth} "
        "levels); let independent tasks run in parallel.\n"
        "- reasons: one line per decision you made.\n\n"
        f"Request:\n{request}"
    )


def ask_planner_agent(
    agent: AgentSpec,
    request: str,
    *,
    target_level: str,
    max_depth: int,
    workdir: str | None = None,
) -> tuple[Any, str | None]:
    """Send the planning prompt with a JSON-schema format; return (answer, opencode session id)."""
    if not agent.endpoint:
        raise PlannerAgentFailed(f"agent {agent.name} has no OpenCode endpoint")
    if agent.endpoint == endpoints.LOCAL:
        if not endpoints.worker_server():
            raise PlannerAgentFailed(f"agent {agent.name} is 'local' and this host has no "
                                     f"{endpoints.WORKER_SETTING}")  # fmt: skip
        agent = replace(agent, endpoint=endpoints.worker_server())
    refused = endpoints.refusal(agent.endpoint)
    if refused:
        raise PlannerAgentFailed(f"agent {agent.name}: {refused}")
    breaker = BREAKERS.get(agent.endpoint)
    if not breaker.allow():
        raise PlannerAgentFailed(f"OpenCode server of {agent.name} is unavailable (circuit open)")
    config = agent.config or {}
    timeout = float(config.get("planner_timeout_seconds") or DEFAULT_TIMEOUT_SECONDS)
    password = config.get("password")
    auth = (config.get("username") or "opencode", password) if password else None
    client = OpenCodeClient(
        agent.endpoint,
        workdir,
        username=config.get("username"),
        password=password,
        timeouts=Timeouts(read=timeout),
        retry_attempts=2,
    )
    session_id = None
    try:
        session_id = client.create_session("orchestrator plan", permission=READ_ONLY_RULES)["id"]
        body: dict[str, Any] = {
            "parts": [{"type": "text", "text": agent_prompt(request, target_level, max_depth)}],
            "format": {"type": "json_schema", "schema": PLAN_JSON_SCHEMA, "retryCount": 1},
        }
        if agent.model:
            provider_id, _, model_id = agent.model.partition("/")
            body["model"] = {"providerID": provider_id, "modelID": model_id}
        reply = _post_message(client, session_id, body, auth, timeout)
    except requests.Timeout as exc:
        breaker.record_failure()
        _abort(client, session_id)
        raise PlannerAgentFailed(f"no answer within {timeout:g}s") from exc
    except (requests.RequestException, OpenCodeUnavailable) as exc:
        breaker.record_failure()
        raise PlannerAgentFailed(_shown(f"server unavailable: {exc}")) from exc
    except PlannerAgentFailed:
        breaker.record_success()  # it answered, only not with something usable
        raise
    except (OpenCodeError, KeyError, TypeError) as exc:
        breaker.record_success()  # it answered; a refusal is not an outage
        raise PlannerAgentFailed(_shown(f"request refused: {type(exc).__name__}: {exc}")) from exc
    finally:
        client.close()
    breaker.record_success()
    return _structured(reply), session_id


def _shown(message: str) -> str:
    return _USERINFO.sub("//", message)  # never log or store credentials from a URL


def _post_message(
    client: OpenCodeClient, session_id: str, body: dict, auth: Any, timeout: float
) -> Any:
    """POST /session/{id}/message (the synchronous prompt that accepts `format`)."""
    params = {"directory": client.directory} if client.directory else {}
    with requests.Session() as http:
        http.trust_env = False  # reach the server directly, as the OpenCode client does
        response = http.post(
            f"{client.base_url}/session/{session_id}/message",
            json=body,
            params=params,
            auth=auth,
            timeout=(client.timeouts.connect, timeout),
            allow_redirects=False,  # the agent's credentials go to its own server only
        )
    if 300 <= response.status_code < 400:
        raise OpenCodeError(f"HTTP {response.status_code}: redirects are not followed")
    if response.status_code >= 500:
        raise OpenCodeUnavailable(f"HTTP {response.status_code}: {response.text[:300]}")
    if response.status_code >= 400:
        raise OpenCodeError(f"HTTP {response.status_code}: {response.text[:300]}")
    try:
        return response.json()
    except ValueError as exc:
        raise PlannerAgentFailed(f"reply is not valid JSON: {response.text[:200]!r}") from exc


def _abort(client: OpenCodeClient, session_id: str | None) -> None:
    if session_id is None:
        return
    try:
        client.abort(session_id)
    except OpenCodeError as exc:
        logger.warning("planner_abort_failed opencode_session=%s error=%s", session_id, exc)


def _structured(reply: Any) -> Any:
    """The plan in an assistant message: `info.structured`, else JSON in its text parts."""
    if not isinstance(reply, dict) or not isinstance(reply.get("info"), dict):
        raise PlannerAgentFailed(f"reply is not an assistant message: {str(reply)[:200]!r}")
    info = reply["info"]
    if info.get("error"):
        error = info["error"]
        message = (error.get("data") or {}).get("message") if isinstance(error, dict) else error
        name = error.get("name") if isinstance(error, dict) else "error"
        raise PlannerAgentFailed(f"the planning turn failed: {name}: {message}")
    if info.get("structured") is not None:
        return info["structured"]
    text = "".join(
        part.get("text", "") for part in reply.get("parts") or [] if part.get("type") == "text"
    )
    fenced = _FENCE.match(text)
    try:
        return json.loads(fenced.group(1) if fenced else text)
    except ValueError as exc:
        raise PlannerAgentFailed(f"answer is not valid JSON: {text[:200]!r}") from exc


def plan_from_answer(answer: Any, *, title: str) -> Plan:
    """Validate an agent's answer (schema, estimates, acyclic, capabilities) into a Plan."""
    try:
        loaded = _PlanSchema().load(answer if isinstance(answer, dict) else {"tasks": answer})
    except ValidationError as exc:
        raise PlannerAgentFailed(f"answer does not match the plan schema: {exc.messages}") from exc
    tasks = []
    try:
        for task in loaded["tasks"]:
            hours = task["estimate"]
            estimate = Estimate.from_hours(
                hours["optimistic_hours"], hours["likely_hours"], hours["pessimistic_hours"]
            )
            tasks.append({**task, "estimate": estimate.to_dict()})
        analysis = analyze({"tasks": tasks})
    except PlanningError as exc:
        raise PlannerAgentFailed(f"invalid plan: {'; '.join(exc.errors)}") from exc
    clashes = branch_clashes("plan", [task["key"] for task in tasks])
    if clashes:
        shown = "; ".join(", ".join(keys) for _, keys in clashes)
        raise PlannerAgentFailed(f"invalid plan: task keys share a git branch: {shown}")
    total = sum(task["estimate"]["expected_hours"] for task in tasks)
    return Plan(
        tasks=tasks,
        planner=PLANNER_NAME,
        reasons=loaded["reasons"],
        critical_path=analysis.critical_path,
        expected_makespan_hours=round(analysis.makespan_hours, 3),
        total_hours=round(total, 3),
        title=title,
    )
