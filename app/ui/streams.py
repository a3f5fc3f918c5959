"""The dashboard's event streams, one per tab: a session page follows that session's event log
(the API's gapless stream, replayed from Last-Event-ID, authenticated by the cookie since an
EventSource cannot send headers); the sessions list follows `SessionsFeed`."""

from __future__ import annotations

import json
import os
import re
import time

from flask import Response, current_app, request, stream_with_context

from app.api.event_stream import (
    KEEPALIVE_SECONDS,
    SessionWatcher,
    StreamSlots,
    event_stream,
    session_state,
)
from app.engine.slots import redis_client
from app.extensions import db
from app.services.errors import NotFound, TooManyRequests
from models.enums import SESSION_FINISHED

from .auth import require
from .blueprint import blp
from .feed import SessionsFeed

# The session pages' watcher ticks faster than the API's (POLL_SECONDS): a node must change
# colour within a tenth of a second of its task finishing (bench/ui.py).
WATCH_SECONDS = 0.025
# The sessions list only needs to keep up with a reader.
FEED_SECONDS = 0.25
_EVENT_LINE = re.compile(r"^event: [^\n]*\n", re.MULTILINE)


def _seconds(name: str, default: float) -> float:
    """A tick length from the app config, else the environment, else `default`."""
    return float(current_app.config.get(name, os.environ.get(name, default)))


def _shared(name: str, make):
    extensions = current_app.extensions
    if name not in extensions:
        extensions[name] = make()
    return extensions[name]


def _slot(token_id: str):
    """A stream slot of the token (shared with the API's streams), or 429."""
    config = current_app.config
    limit, max_seconds = config["STREAMS_PER_TOKEN"], config["STREAM_MAX_SECONDS"]
    slots = _shared("stream_slots", lambda: StreamSlots(redis_client()))
    release = slots.acquire(token_id, limit, max_seconds)
    if release is None:
        raise TooManyRequests(f"This token has {limit} event streams open, the most it may;"
                              " close a tab, or wait.")  # fmt: skip
    return release


def _sse(generator) -> Response:
    return Response(stream_with_context(generator), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip


@blp.get("/sessions/<session_id>/stream")
def session_stream(session_id: str):
    """The session's events as SSE, from Last-Event-ID (or `after`), then live."""
    principal = require("read")
    header = request.headers.get("Last-Event-ID") or request.args.get("after") or "0"
    after = int(header) if header.isdigit() else 0
    db.session.remove()
    state = session_state(db.reader, session_id)
    if state is None:
        raise NotFound(f"Session {session_id} not found.")
    if state[0] in SESSION_FINISHED and after >= state[1]:
        return Response(status=204)  # an EventSource stops reconnecting
    interval = _seconds("UI_WATCH_SECONDS", WATCH_SECONDS)
    watcher = _shared("ui_session_watcher", lambda: SessionWatcher(poll_seconds=interval))
    release = _slot(principal.token_id)
    max_seconds = current_app.config["STREAM_MAX_SECONDS"]
    frames = event_stream(db.reader, watcher, session_id, after, max_seconds)
    response = _sse(_as_messages(frames))
    response.call_on_close(release)
    return response


def _as_messages(frames):
    """The API's frames without their `event:` line: a page's EventSource then hears every
    event, of types it knows or not, as a `message` (the type is in the data too)."""
    for text in frames:
        yield _EVENT_LINE.sub("", text)


def _feed_stream(feed: SessionsFeed, engine, max_seconds: float):
    yield "retry: 2000\n\n"
    deadline = time.monotonic() + max_seconds
    with feed.listen(engine) as wake:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if wake.wait(min(KEEPALIVE_SECONDS, remaining)):
                wake.clear()
                payload = json.dumps({"version": feed.version, "counts": feed.counts})
                yield f"event: sessions.changed\ndata: {payload}\n\n"
            else:
                yield ": keep-alive\n\n"


@blp.get("/stream")
def sessions_stream():
    """A change of any session, as SSE: the list refreshes its page when one comes."""
    principal = require("read")
    db.session.remove()
    interval = _seconds("UI_FEED_SECONDS", FEED_SECONDS)
    feed = _shared("ui_sessions_feed", lambda: SessionsFeed(poll_seconds=interval))
    release = _slot(principal.token_id)
    response = _sse(_feed_stream(feed, db.reader, current_app.config["STREAM_MAX_SECONDS"]))
    response.call_on_close(release)
    return response
