"""A session's append-only event log, as JSON pages or a server-sent-events stream."""

from __future__ import annotations

import json
import time

from flask import Response, request, stream_with_context
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from app.extensions import db
from app.schemas.common import ErrorResponseSchema
from app.schemas.history import EventPageSchema, EventQuerySchema, EventSchema
from app.services import events as event_service
from app.services.errors import NotFound, ValidationFailed
from models import Session
from models.enums import SESSION_FINISHED

blp = Blueprint(
    "session_events", __name__, url_prefix="/api/v1/sessions",
    description="Session event logs and live streams.",
)  # fmt: skip

POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0


def _sse(event) -> str:
    payload = json.dumps(EventSchema().dump(event))
    return f"id: {event.id}\nevent: {event.type}\ndata: {payload}\n\n"


def _stream(session_id: str, after: int):
    """Yield events as SSE until the session has finished and everything was sent."""
    yield "retry: 2000\n\n"
    last_sent = time.monotonic()
    while True:
        with DbSession(bind=db.engine) as own:
            batch = event_service.list_events(own, session_id, after, limit=500)
            status = own.scalar(select(Session.status).where(Session.id == session_id))
        for event in batch:
            after = event.id
            yield _sse(event)
            last_sent = time.monotonic()
        if not batch and status in SESSION_FINISHED:
            return
        if time.monotonic() - last_sent > KEEPALIVE_SECONDS:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        if len(batch) < 500:
            time.sleep(POLL_SECONDS)


@blp.route("/<session_id>/events")
class Events(MethodView):
    @blp.arguments(EventQuerySchema, location="query")
    @blp.response(200, EventPageSchema)
    @blp.alt_response(404, schema=ErrorResponseSchema, description="No such session.")
    def get(self, args, session_id):
        """A session's events, oldest first; `Accept: text/event-stream` streams them live.

        The stream replays from the `Last-Event-ID` header (or `after`) and ends once the
        session has finished and every event was sent.
        """
        if db.session.get(Session, session_id) is None:
            raise NotFound(f"Session {session_id} not found.")
        if request.accept_mimetypes.best == "text/event-stream":
            after = args["after"]
            header = request.headers.get("Last-Event-ID")
            if header:
                if not header.isdigit():
                    raise ValidationFailed("Last-Event-ID must be an event id.",
                                           {"Last-Event-ID": ["Not an event id."]})  # fmt: skip
                after = int(header)
            db.session.remove()
            return Response(
                stream_with_context(_stream(session_id, after)),
                mimetype="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        items = event_service.list_events(db.session, session_id, args["after"], args["limit"])
        return {"items": items, "next_after": items[-1].id if items else args["after"]}
