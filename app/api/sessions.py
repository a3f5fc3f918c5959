"""Sessions: submit a coding request as a DAG, follow it, list them."""

from __future__ import annotations

import hashlib
import logging

from flask import Response, current_app, request
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
    dump_session_detail,
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


ETAG_HEADER = {"description": "Tag of this representation, for If-None-Match.",
               "schema": {"type": "string"}}  # fmt: skip
IF_NONE_MATCH = {"in": "header", "name": "If-None-Match", "required": False,
                 "description": "An ETag from an earlier answer: 304 if the session is unchanged.",
                 "schema": {"type": "string"}}  # fmt: skip


@blp.route("/<session_id>")
class SessionItem(MethodView):
    @blp.response(200, SessionSchema, headers={"ETag": ETAG_HEADER})
    @blp.alt_response(304, description="Unchanged since the ETag in If-None-Match.")
    @blp.alt_response(404, schema=ErrorResponseSchema, description="No such session.")
    @blp.doc(parameters=[IF_NONE_MATCH])
    def get(self, session_id):
        """Get a session with its tasks, their statuses and results"""
        # The most frequent read (clients poll it): one prepared statement and a direct dump
        # (see dump_session_detail); returning a Response skips the schema's dump, not its
        # document.
        session, tasks = session_service.session_detail(db.reader, session_id)
        response = current_app.json.response(dump_session_detail(session, tasks))
        # A strong ETag of the body (werkzeug's add_etag and make_conditional cost 25 us here)
        etag = hashlib.sha1(response.get_data()).hexdigest()
        response.set_etag(etag)
        if "If-None-Match" in request.headers and request.if_none_match.contains_weak(etag):
            return Response(status=304, headers={"ETag": response.headers["ETag"]})
        return response
