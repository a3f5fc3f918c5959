"""Server-sent event streams of a session's log: one watcher per process, a cap per token and a
maximum lifetime.

A stream holds no request thread: the web runs gevent workers (Procfile), so an open stream is
a greenlet that sleeps until the process's one `SessionWatcher` sees its session change. Each
tick the watcher reads the state of every watched session in one statement and, for a session
with new events, reads them once and hands the rendered frames to all of its streams; a stream
reads the log itself only to replay what came before. Events go out in `seq` order (`seq` is
handed out in commit order, `app/services/events.py`), so resuming from `Last-Event-ID` (the
last `seq` received) misses none.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis
from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from models import Session, SessionEvent
from models.enums import SESSION_FINISHED

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0
BATCH = 500

_sessions, _events = Session.__table__, SessionEvent.__table__
_STATE = select(_sessions.c.status, _sessions.c.event_seq).where(
    _sessions.c.id == bindparam("p_id")
)
_WATCHED = select(_sessions.c.id, _sessions.c.status, _sessions.c.event_seq).where(
    _sessions.c.id.in_(bindparam("p_ids", expanding=True))
)
# EventSchema's fields, in its order.
_EVENTS = (
    select(
        _events.c.id,
        _events.c.seq,
        _events.c.type,
        _events.c.task_id,
        _events.c.agent_id,
        _events.c.data,
        _events.c.created_at,
    )  # fmt: skip
    .where(
        _events.c.session_id == bindparam("p_id"),
        _events.c.seq > bindparam("p_after"),
        _events.c.seq <= bindparam("p_upto"),
    )
    .order_by(_events.c.seq)
    .limit(bindparam("p_limit"))
)
# A session's state: (status, seq of its last event); no state: the session does not exist.
State = tuple
# Rendered events: (seq, SSE frame), in seq order.
Frames = tuple[tuple[int, str], ...]


def session_state(engine: Engine, session_id: str) -> State | None:
    """(status, seq of its last event) of a session, or None if there is none."""
    with engine.connect() as connection:
        row = connection.execute(_STATE, {"p_id": session_id}).first()
    return tuple(row) if row is not None else None


def frame(row) -> str:
    """One event as an SSE frame: its seq as the id, its type, EventSchema's JSON as data."""
    payload = json.dumps({"id": row.id, "seq": row.seq, "type": row.type,
                          "task_id": row.task_id, "agent_id": row.agent_id, "data": row.data,
                          "created_at": row.created_at.isoformat()})  # fmt: skip
    return f"id: {row.seq}\nevent: {row.type}\ndata: {payload}\n\n"


def read_frames(
    connection: Connection, session_id: str, after: int, upto: int, limit: int = BATCH
) -> Frames:
    """The session's events numbered after `after` up to `upto`, at most `limit`, rendered."""
    params = {"p_id": session_id, "p_after": after, "p_upto": upto, "p_limit": limit}
    return tuple((row.seq, frame(row)) for row in connection.execute(_EVENTS, params))


class Watch:
    """What a stream learns from the watcher: `update` is (state, frames of the events that
    came with it, or None), replaced as a whole and announced by `wake`."""

    __slots__ = ("update", "wake")

    def __init__(self) -> None:
        self.update: tuple[State | None, Frames | None] | None = None
        self.wake = threading.Event()


class SessionWatcher:
    """Wakes the streams of a session when its last event or its status changes.

    One daemon thread per process (a greenlet under gevent), started with the first stream,
    each `poll_seconds` reads the state of every watched session in one statement and the new
    events of each session that has some, once for all its streams; it sleeps while nothing
    is watched."""

    def __init__(self, poll_seconds: float = POLL_SECONDS) -> None:
        self.poll_seconds = poll_seconds
        self._lock = threading.Lock()
        self._watches: dict[str, set[Watch]] = {}
        self._seen: dict[str, State | None] = {}
        self._work = threading.Event()
        self._engine: Engine | None = None
        self._pid: int | None = None

    @contextmanager
    def watch(self, engine: Engine, session_id: str) -> Iterator[Watch]:
        """A `Watch` of the session that the thread keeps up to date while in the block."""
        watch = Watch()
        with self._lock:
            self._watches.setdefault(session_id, set()).add(watch)
            self._ensure_running(engine)
            self._work.set()
        try:
            yield watch
        finally:
            with self._lock:
                watches = self._watches.get(session_id, set())
                watches.discard(watch)
                if not watches:
                    self._watches.pop(session_id, None)
                    self._seen.pop(session_id, None)

    def _ensure_running(self, engine: Engine) -> None:
        self._engine = engine
        if self._pid != os.getpid():  # first use, or first use after a fork
            self._pid = os.getpid()
            threading.Thread(target=self._run, name="stream-watcher", daemon=True).start()

    def _run(self) -> None:
        while True:
            self._work.wait()
            with self._lock:
                ids = list(self._watches)
                seen = dict(self._seen)
                if not ids:
                    self._work.clear()
                    continue
            try:
                self._tick(ids, seen)
            except SQLAlchemyError as error:
                logger.warning("stream watcher query failed error=%s", type(error).__name__)
            time.sleep(self.poll_seconds)

    def _tick(self, ids: list[str], seen: dict[str, State | None]) -> None:
        updates = {}
        with self._engine.connect() as connection:
            states = {row.id: (row.status, row.event_seq)
                      for row in connection.execute(_WATCHED, {"p_ids": ids})}  # fmt: skip
            for session_id in ids:
                state, before = states.get(session_id), seen.get(session_id, ())
                if state == before:
                    continue
                frames = None
                if state and before and 0 < state[1] - before[1] <= BATCH:
                    # The state was read first: its events are all visible now.
                    frames = read_frames(connection, session_id, before[1], state[1])
                updates[session_id] = (state, frames)
        with self._lock:
            for session_id, update in updates.items():
                if session_id not in self._watches:
                    continue
                self._seen[session_id] = update[0]
                for watch in self._watches[session_id]:
                    watch.update = update
                    watch.wake.set()


def event_stream(
    engine: Engine,
    watcher: SessionWatcher,
    session_id: str,
    after: int,
    max_seconds: float,
    keepalive_seconds: float = KEEPALIVE_SECONDS,
) -> Iterator[str]:
    """Yield the session's events after `after` as SSE, then new ones as they commit, until
    the session has finished and everything was sent, or `max_seconds` have passed: then a
    last `id:` line names the last event sent, for the client to resume from."""
    deadline = time.monotonic() + max_seconds
    yield "retry: 2000\n\n"
    last_sent = time.monotonic()
    with watcher.watch(engine, session_id) as watch:
        try:  # read once watching began, so that no later change is missed
            state, frames = session_state(engine, session_id), None
        except SQLAlchemyError as error:
            logger.warning("event stream failed session_id=%s error=%s", session_id,
                           type(error).__name__)  # fmt: skip
            return
        while True:
            if state is None:
                return
            status, last_seq = state
            # The watcher's frames, when they follow on from what this stream sent.
            if frames and frames[0][0] <= after + 1:
                for seq, text in frames:
                    if seq > after:
                        after = seq
                        yield text
                        last_sent = time.monotonic()
            try:
                while after < last_seq:  # the state was read first: all of it is visible
                    with engine.connect() as connection:
                        batch = read_frames(connection, session_id, after, last_seq)
                    for seq, text in batch:
                        after = seq
                        yield text
                    if len(batch) < BATCH:  # what is missing was deleted (retention)
                        after = last_seq
                    last_sent = time.monotonic()
            except SQLAlchemyError as error:  # the client resumes from the last id it got
                logger.warning("event stream ended session_id=%s error=%s", session_id,
                               type(error).__name__)  # fmt: skip
                return
            if status in SESSION_FINISHED:
                return
            now = time.monotonic()
            if now >= deadline:
                yield (f": open for {max_seconds:g} s, the longest a stream stays open;"
                       f" reconnect with Last-Event-ID\nid: {after}\n\n")  # fmt: skip
                return
            if now - last_sent >= keepalive_seconds:
                yield ": keep-alive\n\n"
                last_sent = now
            watch.wake.wait(max(0.0, min(keepalive_seconds - (now - last_sent), deadline - now)))
            if watch.wake.is_set():
                watch.wake.clear()
                (state, frames) = watch.update
            else:
                frames = None


class StreamSlots:
    """At most `limit` open streams per token, counted in Redis across every web process.

    Each open stream holds a member of a sorted set per token, scored with the time it may be
    held until (its maximum lifetime and a grace), so the slots of a process that died free
    themselves. Without Redis, streams are let through (and logged): their lifetime still
    bounds them."""

    GRACE_SECONDS = 30
    _ACQUIRE = """
local now = tonumber(redis.call('TIME')[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""

    def __init__(self, client: redis.Redis, prefix: str = "orchestrator:streams:") -> None:
        self.client = client
        self.prefix = prefix
        self._acquire = client.register_script(self._ACQUIRE)

    def acquire(self, token_id: str, limit: int, max_seconds: float) -> Callable[[], None] | None:
        """Take a slot: the function that gives it back, or None when the token has `limit`."""
        key, member = self.prefix + token_id, uuid.uuid4().hex
        hold = int(max_seconds) + 1 + self.GRACE_SECONDS
        try:
            if not self._acquire(keys=[key], args=[limit, hold, member]):
                return None
        except redis.RedisError as error:
            logger.warning("stream slots unavailable token_id=%s error=%s", token_id,
                           type(error).__name__)  # fmt: skip
            return lambda: None

        def release() -> None:
            try:
                self.client.zrem(key, member)
            except redis.RedisError:  # the slot expires with its score
                pass

        return release
