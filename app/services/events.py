"""The append-only session event log: the audit trail and the source of progress streams."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session as DbSession

from models import SessionEvent
from models.base import utcnow

logger = logging.getLogger(__name__)


_INSERT = insert(SessionEvent.__table__)


def record_event(
    db: DbSession,
    session_id: str,
    type: str,
    *,
    task_id: str | None = None,
    agent_id: str | None = None,
    **data: Any,
) -> None:
    """Append one event to a session's log, in the caller's transaction.

    Objects the caller added but did not flush yet (a new session, say) are flushed first, so
    that the event can refer to them."""
    if db.new:
        db.flush()
    db.execute(
        _INSERT,
        {"session_id": session_id, "task_id": task_id, "agent_id": agent_id, "type": type,
         "data": data, "created_at": utcnow()},
    )  # fmt: skip
    logger.info(
        "event=%s session_id=%s task_id=%s agent_id=%s", type, session_id, task_id, agent_id
    )


def list_events(
    db: DbSession, session_id: str, after_id: int = 0, limit: int = 100
) -> list[SessionEvent]:
    """Events of a session with an id above `after_id`, oldest first."""
    query = (
        select(SessionEvent)
        .where(SessionEvent.session_id == session_id, SessionEvent.id > after_id)
        .order_by(SessionEvent.id)
        .limit(limit)
    )
    return list(db.scalars(query))
