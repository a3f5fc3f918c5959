"""The append-only session event log: the audit trail and the source of progress streams."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session as DbSession

from models import SessionEvent
from models.base import utcnow

logger = logging.getLogger(__name__)

_events = SessionEvent.__table__
# One statement: take the session's next sequence number and append the event with it. The
# UPDATE locks the session row (FOR NO KEY UPDATE, as `engine.locking.lock_session` does) until
# the commit, so the next writer of this session gets the next number only after this event is
# visible: numbers are handed out in commit order and a reader that sees N has seen 1..N.
# Written in SQL so that the session's `updated_at` (an ORM onupdate) stays as it was.
_APPEND = text(
    "WITH next AS (UPDATE sessions SET event_seq = event_seq + 1 WHERE id = :session_id"
    " RETURNING event_seq)"
    " INSERT INTO session_events (session_id, seq, task_id, agent_id, type, data, created_at)"
    " VALUES (:session_id, (SELECT event_seq FROM next), :task_id, :agent_id, :type, :data,"
    " :created_at)"
).bindparams(
    bindparam("data", type_=_events.c.data.type),
    bindparam("created_at", type_=_events.c.created_at.type),
)


def record_event(
    db: DbSession,
    session_id: str,
    type: str,
    *,
    task_id: str | None = None,
    agent_id: str | None = None,
    **data: Any,
) -> None:
    """Append one event to a session's log, in the caller's transaction, with the session's
    next sequence number.

    This locks the session row until the commit: in the engine's lock order (task, session,
    agent) it counts as taking the session lock, so call it after any task row the
    transaction locks, never before. Objects the caller added but did not flush yet (a new
    session, say) are flushed first, so that the event can refer to them."""
    if db.new:
        db.flush()
    db.execute(
        _APPEND,
        {"session_id": session_id, "task_id": task_id, "agent_id": agent_id, "type": type,
         "data": data, "created_at": utcnow()},
    )  # fmt: skip
    logger.info(
        "event=%s session_id=%s task_id=%s agent_id=%s", type, session_id, task_id, agent_id
    )


def list_events(
    db: DbSession, session_id: str, after_seq: int = 0, limit: int = 100
) -> list[SessionEvent]:
    """Events of a session numbered above `after_seq`, in order."""
    query = (
        select(SessionEvent)
        .where(SessionEvent.session_id == session_id, SessionEvent.seq > after_seq)
        .order_by(SessionEvent.seq)
        .limit(limit)
    )
    return list(db.scalars(query))
