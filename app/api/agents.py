"""Agents: the registry of worker identities, their health and performance, and routing dry runs.

DELETE refuses (409) while the agent has tasks assigned or in progress, otherwise marks it
inactive (history is kept; PATCH status=active brings it back).

Changing an agent's endpoint or config (its credentials, its commands' env) needs the admin
scope, and so does registering one with a config; a write token may do the rest. After a
commit that made an agent available (registered, reactivated, out of maintenance, more
capacity...), sessions with blocked tasks are woken (`tasks.recovery.wake_blocked`).
"""

from __future__ import annotations

from dataclasses import replace
from enum import Enum

from flask import g
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from app.extensions import db
from app.schemas.agents import (
    AgentCreateSchema,
    AgentQuerySchema,
    AgentSchema,
    AgentUpdateSchema,
    MaintenanceSchema,
    RouteRequestSchema,
    RoutingDecisionSchema,
)
from app.schemas.common import ErrorResponseSchema
from app.services import agents as agent_service
from app.services import routing
from app.services.performance import agent_loads, performance_of
from models import Agent

blp = Blueprint("agents", __name__, url_prefix="/api/v1/agents", description="Agent registry.")
NOT_FOUND = {"schema": ErrorResponseSchema, "description": "No such agent."}
# Fields a write token may not change: where the agent's credentials go, and its config.
ADMIN_FIELDS = ("endpoint", "config")


class AgentView:
    """An agent as the API shows it: its columns plus its performance figures."""

    def __init__(self, agent: Agent, load: int):
        self._agent = agent
        self.performance = performance_of(agent, load)

    def __getattr__(self, name: str):
        return getattr(self._agent, name)


def _shown(agent: Agent) -> AgentView:
    return AgentView(agent, agent_service.busy_tasks(db.session, agent.id))


def _plain(value):
    return value.value if isinstance(value, Enum) else value


def _wake_blocked() -> None:
    """After the commit: wake sessions whose blocked tasks an agent may now take."""
    from tasks.recovery import wake_blocked

    wake_blocked()


def _require_admin_for(changes: dict) -> None:
    """403 unless the token is admin, when `changes` set an endpoint or a config."""
    sensitive = [name for name in ADMIN_FIELDS if name in changes]
    principal = getattr(g, "principal", None)
    if sensitive and (principal is None or not principal.allows("admin")):
        abort(403, message=f"Changing an agent's {' or '.join(sensitive)} needs the 'admin' scope.")


@blp.route("")
class Agents(MethodView):
    @blp.arguments(AgentQuerySchema, location="query")
    @blp.response(200, AgentSchema(many=True))
    def get(self, filters):
        """List agents, filtered by type, capability, status and maintenance"""
        agents = agent_service.list_agents(
            db.session, **{key: _plain(value) for key, value in filters.items()}
        )
        loads = agent_loads(db.session)
        return [AgentView(agent, loads.get(agent.id, 0)) for agent in agents]

    @blp.arguments(AgentCreateSchema)
    @blp.response(201, AgentSchema)
    @blp.alt_response(403, schema=ErrorResponseSchema,
                      description="config sent without the admin scope.")
    @blp.alt_response(409, schema=ErrorResponseSchema, description="The name is taken.")
    def post(self, data):
        """Register an agent

        A config (credentials, the commands' env) needs the admin scope."""
        _require_admin_for({"config": data["config"]} if data.get("config") else {})
        with db.session.begin():
            agent = agent_service.register_agent(db.session, **data)
            shown = AgentView(agent, 0)
        _wake_blocked()
        return shown


@blp.route("/route")
class Route(MethodView):
    @blp.arguments(RouteRequestSchema)
    @blp.response(200, RoutingDecisionSchema)
    def post(self, args):
        """Dry run: which agent a task would go to, every candidate's score and the reason

        The body is a task as the engine routes it (required_capabilities, technologies,
        command or not, estimate_hours or a complexity level); the facts are derived and
        routed by the same functions as a claim, so without prefer_driver and require_driver
        the answer is the engine's."""
        facts = routing.task_facts(
            [_plain(capability) for capability in args["required_capabilities"]],
            args["command"] is not None,
            args["technologies"],
            args["estimate_hours"],
            args["complexity"],
        )
        if args["require_driver"] is not None:
            facts = replace(facts, require_driver=_plain(args["require_driver"]))
        decision = routing.route_task(
            db.session, facts, prefer_driver=_plain(args["prefer_driver"])
        )
        return {
            "task": facts,
            "chosen": decision.chosen,
            "assigned": decision.waitable,
            "candidates": decision.candidates,
            "reason": decision.reason,
            "weights": routing.WEIGHTS,
        }


@blp.route("/<agent_id>")
class AgentItem(MethodView):
    @blp.response(200, AgentSchema)
    @blp.alt_response(404, **NOT_FOUND)
    def get(self, agent_id):
        """Get an agent with its performance figures"""
        return _shown(agent_service.get_agent(db.session, agent_id))

    @blp.arguments(AgentUpdateSchema)
    @blp.response(200, AgentSchema)
    @blp.alt_response(403, schema=ErrorResponseSchema,
                      description="endpoint or config sent without the admin scope.")
    @blp.alt_response(404, **NOT_FOUND)
    @blp.alt_response(409, schema=ErrorResponseSchema, description="The name is taken.")
    def patch(self, changes, agent_id):
        """Change an agent's settings; status=active brings an unhealthy agent back

        endpoint and config need the admin scope; a new endpoint drops the stored credentials
        (config username and password) unless config is sent too."""
        _require_admin_for(changes)
        with db.session.begin():
            shown = _shown(agent_service.update_agent(db.session, agent_id, **changes))
        _wake_blocked()
        return shown

    @blp.response(204)
    @blp.alt_response(404, **NOT_FOUND)
    @blp.alt_response(409, schema=ErrorResponseSchema, description="It has tasks in progress.")
    def delete(self, agent_id):
        """Deregister an idle agent (it becomes inactive)"""
        with db.session.begin():
            agent_service.deregister_agent(db.session, agent_id)


@blp.route("/<agent_id>/maintenance")
class Maintenance(MethodView):
    @blp.arguments(MaintenanceSchema)
    @blp.response(200, AgentSchema)
    @blp.alt_response(404, **NOT_FOUND)
    def post(self, args, agent_id):
        """Turn maintenance on (out of routing) or off (resets health)"""
        with db.session.begin():
            agent = agent_service.set_maintenance(db.session, agent_id, args["on"], args["reason"])
            shown = _shown(agent)
        _wake_blocked()
        return shown


@blp.route("/<agent_id>/heartbeat")
class Heartbeat(MethodView):
    @blp.response(200, AgentSchema)
    @blp.alt_response(404, **NOT_FOUND)
    @blp.alt_response(409, schema=ErrorResponseSchema, description="The agent is deregistered.")
    def post(self, agent_id):
        """Record that an agent is alive"""
        with db.session.begin():
            shown = _shown(agent_service.record_heartbeat(db.session, agent_id))
        _wake_blocked()
        return shown
