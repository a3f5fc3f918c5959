"""A session's append-only event log, as JSON pages or a server-sent-events stream."""

from __future__ import annotations

from flask import Response, current_app, g, request, stream_with_context
from flask.views import MethodView
from flask_smorest import Blueprint

from app.engine.slots import redis_client
from app.extensions import db
from app.schemas.common import ErrorResponseSchema
from app.schemas.history import EventPageSchema, EventQuerySchema, parse_cursor
from app.services import events as event_service
from app.services.errors import NotFound, TooManyRequests, ValidationFailed
from models import Session
from models.enums import SESSION_FINISHED

from .event_stream import SessionWatcher, StreamSlots, event_stream, session_state

blp = Blueprint(
    "session_events", __name__, url_prefix="/api/v1/sessions",
    description="Session event logs and live streams.",
)  # fmt: skip

_watcher = SessionWatcher()


def _stream_slots() -> StreamSlots:
    slots = current_app.extensions.get("stream_slots")
    if slots is None:
        slots = current_app.extensions["stream_slots"] = StreamSlots(redis_client())
    return slots


def _resume_from(args: dict) -> int:
    """Where a stream starts: the Last-Event-ID header (a reconnecting EventSource), else
    `after`."""
    header = request.headers.get("Last-Event-ID")
    if not header:
        return args["after"]
    try:
        return parse_cursor(header)
    except ValueError as error:
        raise ValidationFailed(
            f"Last-Event-ID must be the `seq` of an event: {error}",
            {"Last-Event-ID": [str(error)]},
        ) from error


@blp.route("/<session_id>/events")
class Events(MethodView):
    @blp.arguments(EventQuerySchema, location="query")
    @blp.response(200, EventPageSchema)
    @blp.alt_response(204, description="Stream: the session has finished and nothing is left.")
    @blp.alt_response(404, schema=ErrorResponseSchema, description="No such session.")
    @blp.alt_response(
        429, schema=ErrorResponseSchema, description="Stream: the token has too many open."
    )
    def get(self, args, session_id):
        """A session's events in `seq` order; `Accept: text/event-stream` streams them live.

        The stream replays from the `Last-Event-ID` header (or `after`), sends each event with
        its `seq` as the SSE id and ends once the session has finished and every event was
        sent, or after `STREAM_MAX_SECONDS`: reconnect with `Last-Event-ID` to go on (an
        `EventSource` does so by itself). A reconnection to a finished session with nothing
        left gets 204, which tells an `EventSource` to stop. A token may hold
        `STREAMS_PER_TOKEN` streams at once (429 beyond).
        """
        if request.accept_mimetypes.best != "text/event-stream":
            if db.session.get(Session, session_id) is None:
                raise NotFound(f"Session {session_id} not found.")
            items = event_service.list_events(
                db.session, session_id, args["after"], args["limit"]
            )
            return {"items": items, "next_after": items[-1].seq if items else args["after"]}
        after = _resume_from(args)
        db.session.remove()
        state = session_state(db.reader, session_id)
        if state is None:
            raise NotFound(f"Session {session_id} not found.")
        status, last_seq = state
        if status in SESSION_FINISHED and after >= last_seq:
            return Response(status=204)
        config = current_app.config
        limit, max_seconds = config["STREAMS_PER_TOKEN"], config["STREAM_MAX_SECONDS"]
        token_id = getattr(g, "principal", None) and g.principal.token_id
        release = _stream_slots().acquire(token_id or "anonymous", limit, max_seconds)
        if release is None:
            raise TooManyRequests(
                f"This token has {limit} event streams open, the most it may"
                f" (STREAMS_PER_TOKEN); close one, or wait: a stream ends after"
                f" {max_seconds:g} s (STREAM_MAX_SECONDS)."
            )
        response = Response(
            stream_with_context(event_stream(db.reader, _watcher, session_id, after, max_seconds)),
            mimetype="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        response.call_on_close(release)
        return response
