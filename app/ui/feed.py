"""The sessions list's live feed: one thread per web process notices that any session changed.

Each tick it reads, in one statement, every status's number of sessions and the sum of their
event numbers (`sessions.event_seq` grows with every event a session records, in its commit),
so a new session, a status change or any event changes the answer; on a change it wakes every
open list stream, which then tells its tab to refresh its page of rows (one fetch per change
per tab, never a request per row). It sleeps while no list is open.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from models import Session

logger = logging.getLogger(__name__)

_sessions = Session.__table__
_FINGERPRINT = select(
    _sessions.c.status, func.count(), func.coalesce(func.sum(_sessions.c.event_seq), 0)
).group_by(_sessions.c.status)


class SessionsFeed:
    """Wakes the list streams of this process whenever any session changed."""

    def __init__(self, poll_seconds: float = 0.25) -> None:
        self.poll_seconds = poll_seconds
        self.version = 0
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._listeners: set[threading.Event] = set()
        self._work = threading.Event()
        self._engine: Engine | None = None
        self._pid: int | None = None
        self._seen = None

    @contextmanager
    def listen(self, engine: Engine) -> Iterator[threading.Event]:
        """An event set at every change while in the block."""
        wake = threading.Event()
        with self._lock:
            self._listeners.add(wake)
            self._engine = engine
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="sessions-feed", daemon=True).start()
            self._work.set()
        try:
            yield wake
        finally:
            with self._lock:
                self._listeners.discard(wake)

    def _run(self) -> None:
        while True:
            self._work.wait()
            with self._lock:
                if not self._listeners:
                    self._work.clear()
                    self._seen = None  # the next listener starts from a fresh reading
                    continue
            try:
                self._tick()
            except SQLAlchemyError as error:
                logger.warning("sessions feed query failed error=%s", type(error).__name__)
            time.sleep(self.poll_seconds)

    def _tick(self) -> None:
        with self._engine.connect() as connection:
            rows = sorted((getattr(row[0], "value", row[0]), row[1], int(row[2]))
                          for row in connection.execute(_FINGERPRINT))  # fmt: skip
        if rows == self._seen:
            return
        first = self._seen is None
        self._seen = rows
        with self._lock:
            self.counts = {status: number for status, number, _ in rows}
            if first:
                return
            self.version += 1
            for wake in self._listeners:
                wake.set()
