"""Lifecycle actions on a session, its checkpoints and its tree of child sessions."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from app.engine import lifecycle
from app.extensions import db
from app.schemas.common import ErrorResponseSchema
from app.schemas.history import ActionResultSchema, CheckpointSchema, SessionTreeSchema
from app.services import history

from .sessions import enqueue_launch

blp = Blueprint(
    "session_actions", __name__, url_prefix="/api/v1/sessions",
    description="Lifecycle actions, checkpoints and trees of sessions.",
)  # fmt: skip


def _result(session) -> dict:
    return {
        "id": session.id,
        "status": session.status,
        "allowed_actions": lifecycle.allowed_actions(session.status),
    }


def _act(session_id: str, action: str) -> dict:
    with db.session.begin():
        session, launches = lifecycle.apply_action(db.session, session_id, action)
    if launches:
        enqueue_launch(session)
    return _result(session)


def _action_view(action: str, summary: str):
    @blp.route(f"/<session_id>/{action}", endpoint=action)
    class Action(MethodView):
        @blp.response(200, ActionResultSchema)
        @blp.alt_response(404, schema=ErrorResponseSchema, description="No such session.")
        @blp.alt_response(409, schema=ErrorResponseSchema, description="Not allowed now.")
        def post(self, session_id):
            return _act(session_id, action)

    Action.post.__doc__ = summary
    return Action


StartView = _action_view("start", "Start a pending session")
PauseView = _action_view("pause", "Pause: no new task starts; running ones finish")
ResumeView = _action_view("resume", "Resume a paused session")
CancelView = _action_view("cancel", "Cancel: running tasks are stopped, nothing runs again")
StopView = _action_view("stop", "Stop: running tasks are stopped; retry resumes later")
RetryView = _action_view("retry", "Retry what did not complete, from the last checkpoint")


@blp.route("/<session_id>/checkpoints")
class Checkpoints(MethodView):
    @blp.response(200, CheckpointSchema(many=True))
    @blp.alt_response(404, schema=ErrorResponseSchema, description="No such session.")
    def get(self, session_id):
        """List a session's checkpoints, oldest first"""
        return history.list_checkpoints(db.session, session_id)


@blp.route("/<session_id>/checkpoints/<int:checkpoint_id>/restore")
class RestoreCheckpoint(MethodView):
    @blp.response(200, ActionResultSchema)
    @blp.alt_response(404, schema=ErrorResponseSchema, description="No such checkpoint.")
    @blp.alt_response(409, schema=ErrorResponseSchema, description="Not allowed now.")
    def post(self, session_id, checkpoint_id):
        """Restore the session to a checkpoint and run the rest again"""
        with db.session.begin():
            session = lifecycle.restore_checkpoint(db.session, session_id, checkpoint_id)
        enqueue_launch(session)
        return _result(session)


@blp.route("/<session_id>/tree")
class Tree(MethodView):
    @blp.response(200, SessionTreeSchema)
    @blp.alt_response(404, schema=ErrorResponseSchema, description="No such session.")
    def get(self, session_id):
        """The session and its descendants"""
        return history.session_tree(db.session, session_id)
