"""Beat jobs that keep sessions healthy: the timeout watchdog and the reconciler.

Each beat job only finds due ids and fans out one guarded, idempotent task per id.
"""

from __future__ import annotations

import logging

from celery import shared_task
from flask import current_app

from app.engine import lifecycle, recovery
from app.engine.broker import broker_messages
from app.engine.transactions import in_transaction
from app.services import beat_jobs

from .sessions import launch

logger = logging.getLogger(__name__)

@shared_task(name="recovery.watchdog", ignore_result=True)
@beat_jobs.beat_job("recovery.watchdog")
def watchdog() -> dict:
    """Find sessions past their max duration and time each one out."""
    due = in_transaction(recovery.sessions_past_deadline)
    for session_id in due:
        enforce_timeout.delay(session_id)
    return {"timed_out": len(due)}


@shared_task(name="recovery.enforce_timeout", ignore_result=True)
def enforce_timeout(session_id: str) -> None:
    """Time out one session if it is still past its deadline (idempotent)."""
    in_transaction(lifecycle.time_out, session_id)


@shared_task(name="recovery.reconcile", ignore_result=True)
@beat_jobs.beat_job("recovery.reconcile")
def reconcile() -> dict:
    """Relaunch sessions whose work was lost; orphan the children of halted parents."""
    config = current_app.config
    messages = broker_messages(config["CELERY_BROKER_URL"])
    lost = in_transaction(
        recovery.find_lost_work,
        config["TASK_LEASE_SECONDS"],
        config["DISPATCH_GRACE_SECONDS"],
        lambda task_id: task_id in messages,
    )
    for session_id, reason in lost.items():
        relaunch.delay(session_id, reason)
    orphaned = in_transaction(recovery.orphan_children_of_halted_parents)
    return {"relaunched": len(lost), "orphaned": len(orphaned)}


@shared_task(name="recovery.relaunch", ignore_result=True)
def relaunch(session_id: str, reason: str) -> None:
    """Requeue one session whose work was lost, then launch it under a new epoch."""
    if in_transaction(recovery.requeue_lost, session_id, reason):
        launch.delay(session_id)
