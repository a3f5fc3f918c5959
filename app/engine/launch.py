"""Launch: start (or restart) a session under a new epoch and dispatch what can run.

Queued messages of older epochs become no-ops, because a claim needs the session's current
epoch. Tasks in progress keep running while their lease is fresh; those whose lease expired
(their worker is gone) go back to `pending` and run again under a new attempt.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import and_, or_
from sqlalchemy.orm import Session as DbSession

from app.services.events import record_event
from models import SessionTask
from models.base import utcnow
from models.enums import SESSION_ACTIVE, SessionStatus, TaskStatus

from .dispatch import Dispatch, dispatch_ready
from .locking import lock_session
from .transitions import REQUEUE

logger = logging.getLogger(__name__)
T = TaskStatus


def launch(db: DbSession, session_id: str, lease_seconds: float = 30.0) -> Dispatch | None:
    """Bump the session's epoch, requeue its lost or waiting tasks and dispatch them."""
    session = lock_session(db, session_id, all_tasks=True, load=True)
    if session.status not in SESSION_ACTIVE:
        logger.info("launch skipped session_id=%s status=%s", session_id, session.status.value)
        return None
    session.epoch += 1
    if session.status is SessionStatus.QUEUED:
        session.transition_to(SessionStatus.RUNNING)
    stale_before = utcnow() - timedelta(seconds=lease_seconds)
    lost = REQUEUE.apply(
        db,
        SessionTask.session_id == session_id,
        or_(
            SessionTask.status.in_([T.READY, T.BLOCKED]),
            and_(
                SessionTask.status.in_([T.ASSIGNED, T.IN_PROGRESS]),
                or_(SessionTask.heartbeat_at.is_(None), SessionTask.heartbeat_at < stale_before),
            ),
        ),
    )
    record_event(db, session_id, "session.launched", epoch=session.epoch, requeued=len(lost))
    return dispatch_ready(db, session)
