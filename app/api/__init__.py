"""HTTP API: one flask-smorest blueprint per resource."""

from flask_smorest import Api

from . import (
    agents,
    approvals,
    contexts,
    health,
    maintenance,
    plans,
    session_actions,
    session_dag,
    session_events,
    sessions,
    tokens,
)


def register_blueprints(api: Api) -> None:
    """Attach every resource's blueprint to the API."""
    api.register_blueprint(health.blp)
    api.register_blueprint(agents.blp)
    api.register_blueprint(sessions.blp)
    api.register_blueprint(session_actions.blp)
    api.register_blueprint(session_events.blp)
    api.register_blueprint(plans.blp)
    api.register_blueprint(session_dag.blp)
    api.register_blueprint(contexts.blp)
    api.register_blueprint(tokens.blp)
    api.register_blueprint(maintenance.blp)
    api.register_blueprint(approvals.blp)
