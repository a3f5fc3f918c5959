"""Sessions: submit a coding request as a DAG, follow it, list them."""

from __future__ import annotations

import logging

from flask import current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint
from kombu.exceptions import OperationalError

from app.extensions import db
from app.schemas.common import ErrorResponseSchema
from app.schemas.sessions import (
    SessionCreateSchema,
    SessionPageSchema,
    SessionQuerySchema,
    SessionSchema,
)
from app.services import planning as planning_service
from app.services import sessions as session_service
from app.services.errors import ValidationFailed

logger = logging.getLogger(__name__)

blp = Blueprint("sessions", __name__, url_prefix="/api/v1/sessions", description="Sessions.")

IDEMPOTENCY_HEADER = "Idempotency-Key"


def enqueue_launch(session) -> None:
    """Ask a worker to launch a committed session; the reconciler retries if Redis is down."""
    from tasks.sessions import launch

    try:
        launch.apply_async((session.id,), priority=session.priority)
    except OperationalError as error:
        logger.warning("launch not enqueued session_id=%s error=%s", session.id, error)


def _planned(data: dict, key: str | None, fingerprint: str | None) -> tuple[dict, str | None]:
    """Plan a prompt-only request outside any transaction: (data with its dag, replayed id)."""
    options = data.get("planning") or {}
    with db.session.begin():
        existing = key and session_service.find_by_idempotency_key(db.session, key, fingerprint)
        if existing:
            return data, existing.id
        agent = None
        if options.get("planner", "auto") == "auto":
            agent = planning_service.find_planner_agent(db.session)
    proposed = planning_service.propose_plan(
        data["prompt"],
        title=data.get("title"),
        target_level=options.get("target_level", planning_service.DEFAULT_TARGET_LEVEL),
        max_depth=options.get("max_depth", planning_service.DEFAULT_MAX_DEPTH),
        agent=agent,
        workdir=data.get("workdir"),
    )
    return planning_service.planned_session_data(data, proposed), None


@blp.route("")
class Sessions(MethodView):
    @blp.arguments(SessionQuerySchema, location="query")
    @blp.response(200, SessionPageSchema)
    def get(self, args):
        """List sessions, newest first"""
        items, total = session_service.list_sessions(db.session, **args)
        return {
            "items": items,
            "total": total,
            "page": args["page"],
            "page_size": args["page_size"],
        }

    @blp.arguments(SessionCreateSchema)
    @blp.response(201, SessionSchema)
    @blp.alt_response(200, schema=SessionSchema, description="Replay of an Idempotency-Key.")
    @blp.alt_response(422, schema=ErrorResponseSchema, description="Invalid session or DAG.")
    def post(self, data):
        """Submit a session with its DAG (or only a prompt, to have it planned) and start it"""
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if key is not None and not 1 <= len(key) <= 200:
            raise ValidationFailed(
                "Idempotency-Key must be 1-200 characters.",
                {IDEMPOTENCY_HEADER: ["Must be 1-200 characters."]},
            )
        fingerprint = session_service.request_fingerprint(request.get_json()) if key else None
        if "dag" not in data:
            data, replay = _planned(data, key, fingerprint)
            if replay is not None:
                return session_service.get_session(db.session, replay), 200
        with db.session.begin():
            session, created = session_service.create_session(
                db.session,
                data,
                idempotency_key=key,
                fingerprint=fingerprint,
                workspace_root=current_app.config["WORKSPACE_ROOT"],
            )
            if created:
                session_service.start_session(db.session, session)
        if created:
            enqueue_launch(session)
        session = session_service.get_session(db.session, session.id)
        return session, 201 if created else 200


@blp.route("/<session_id>")
class SessionItem(MethodView):
    @blp.response(200, SessionSchema)
    @blp.alt_response(404, schema=ErrorResponseSchema, description="No such session.")
    def get(self, session_id):
        """Get a session with its tasks, their statuses and results"""
        return session_service.get_session(db.session, session_id)
