"""Run an engine step in its own transaction, riding out a PostgreSQL that is briefly away
and the rare deadlock or serialization failure (the step is then run again from the start)."""

from __future__ import annotations

import logging
import time

from sqlalchemy.exc import DBAPIError

from app.extensions import db

logger = logging.getLogger(__name__)

DB_RETRY_SECONDS = 60.0
# deadlock_detected, serialization_failure: PostgreSQL rolled the transaction back whole.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


def in_transaction(step, *args):
    """Run `step(db_session, *args)` in one transaction, retrying while PostgreSQL is away."""
    deadline = time.monotonic() + DB_RETRY_SECONDS
    delay = 0.2
    while True:
        try:
            with db.session.begin():
                return step(db.session, *args)
        except DBAPIError as error:
            if not _worth_retrying(error) or time.monotonic() > deadline:
                raise
            logger.warning("transaction retried in %.1fs step=%s: %s", delay,
                           getattr(step, "__name__", step), error.orig)  # fmt: skip
            db.session.remove()
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _worth_retrying(error: DBAPIError) -> bool:
    if error.connection_invalidated:
        return True
    if getattr(error.orig, "pgcode", None) in RETRYABLE_SQLSTATES:
        return True
    text = str(error.orig).lower()
    return any(marker in text for marker in ("connection", "server closed", "terminating"))
