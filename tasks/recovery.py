"""Beat jobs that keep sessions healthy: the timeout watchdog and the reconciler, and the wake-up
of sessions with blocked tasks, and of agents' waiting tasks, after an agent became available.

Each beat job only finds due ids and fans out one guarded, idempotent task per id.
"""

from __future__ import annotations

import logging

from celery import shared_task
from flask import current_app
from kombu.exceptions import OperationalError as BrokerError

from app.engine import lifecycle, recovery, waitlist
from app.engine.broker import broker_messages
from app.engine.transactions import in_transaction
from app.extensions import db
from app.services import agents, beat_jobs

from .helpers import apply_dispatch
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
        if recovery.is_unblock(reason):
            unblock.delay(session_id)
        else:
            relaunch.delay(session_id, reason)
    orphaned = in_transaction(recovery.orphan_children_of_halted_parents)
    waiting = in_transaction(waitlist.agents_with_waiters)
    for agent_id in waiting:
        wake_waiters.delay(agent_id)
    return {"relaunched": len(lost), "orphaned": len(orphaned), "agents_with_waiters": len(waiting)}


@shared_task(name="recovery.wake_waiters", ignore_result=True)
def wake_waiters(agent_id: str) -> int:
    """Send the best waiting tasks of an agent, one per free slot (idempotent: none when its
    slots are taken or promised to woken waiters)."""
    dispatches = in_transaction(waitlist.wake, agent_id)
    for dispatch in dispatches:
        apply_dispatch(dispatch)
    return len(dispatches)


@shared_task(name="recovery.relaunch", ignore_result=True)
def relaunch(session_id: str, reason: str) -> None:
    """Requeue one session whose work was lost, then launch it under a new epoch."""
    if in_transaction(recovery.requeue_lost, session_id, reason):
        launch.delay(session_id)


@shared_task(name="recovery.resume_blocked", ignore_result=True)
def resume_blocked(agent_ids: list[str] | None = None) -> int:
    """After agents became available (`agent_ids`, for the log): wake every session with a
    blocked task that an agent can now take."""
    for agent_id in agent_ids or ():  # more slots, or back in service: its waiters first
        wake_waiters(agent_id)
    due = in_transaction(recovery.sessions_to_unblock)
    logger.info("resume_blocked agent_ids=%s sessions=%d", agent_ids, len(due))
    for session_id in due:
        unblock.delay(session_id)
    return len(due)


@shared_task(name="recovery.unblock", ignore_result=True)
def unblock(session_id: str) -> None:
    """Relaunch one session whose blocked tasks an agent can now take (idempotent: a session
    with no such task left is not touched)."""
    lease_seconds = current_app.config["TASK_LEASE_SECONDS"]
    apply_dispatch(in_transaction(recovery.resume_blocked, session_id, lease_seconds))


def wake_blocked() -> None:
    """After a commit that made agents available (the services note them in the DB session),
    enqueue `recovery.resume_blocked`; with the broker down, the reconciler finds them."""
    agent_ids = agents.take_available(db.session)
    if not agent_ids:
        return
    try:
        resume_blocked.delay(sorted(agent_ids))
    except BrokerError as error:
        logger.warning("resume_blocked not enqueued agent_ids=%s error=%s", sorted(agent_ids),
                       error)  # fmt: skip
