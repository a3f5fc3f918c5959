"""Agents: register and list the worker identities that tasks are routed to."""

from flask.views import MethodView
from flask_smorest import Blueprint

from app.extensions import db
from app.schemas.agents import AgentCreateSchema, AgentQuerySchema, AgentSchema
from app.schemas.common import ErrorResponseSchema
from app.services import agents as agent_service

blp = Blueprint("agents", __name__, url_prefix="/api/v1/agents", description="Agent registry.")


@blp.route("")
class Agents(MethodView):
    @blp.arguments(AgentQuerySchema, location="query")
    @blp.response(200, AgentSchema(many=True))
    def get(self, filters):
        """List agents"""
        return agent_service.list_agents(
            db.session, **{key: value.value for key, value in filters.items()}
        )

    @blp.arguments(AgentCreateSchema)
    @blp.response(201, AgentSchema)
    @blp.alt_response(409, schema=ErrorResponseSchema, description="The name is taken.")
    def post(self, data):
        """Register an agent"""
        with db.session.begin():
            agent = agent_service.register_agent(db.session, **data)
        return agent


@blp.route("/<agent_id>")
class AgentItem(MethodView):
    @blp.response(200, AgentSchema)
    @blp.alt_response(404, schema=ErrorResponseSchema, description="No such agent.")
    def get(self, agent_id):
        """Get an agent with its performance figures"""
        return agent_service.get_agent(db.session, agent_id)
