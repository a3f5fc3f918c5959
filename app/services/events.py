"""The append-only session event log: the audit trail and the source of progress streams."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from models import SessionEvent

logger = logging.getLogger(__name__)


def record_event(
    db: DbSession,
    session_id: str,
    type: str,
    *,
    task_id: str | None = None,
    agent_id: str | None = None,
    **data: Any,
) -> SessionEvent:
    """Append one event to a session's log (flushed with the caller's transaction)."""
    event = SessionEvent(
        session_id=session_id, task_id=task_id, agent_id=agent_id, type=type, data=data
    )
    db.add(event)
    logger.info(
        "event=%s session_id=%s task_id=%s agent_id=%s", type, session_id, task_id, agent_id
    )
    return event


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
