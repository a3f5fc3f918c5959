"""HTTP API: one flask-smorest blueprint per resource."""

from flask_smorest import Api

from . import agents, health, session_actions, session_events, sessions


def register_blueprints(api: Api) -> None:
    """Attach every resource's blueprint to the API."""
    api.register_blueprint(health.blp)
    api.register_blueprint(agents.blp)
    api.register_blueprint(sessions.blp)
    api.register_blueprint(session_actions.blp)
    api.register_blueprint(session_events.blp)
