"""Tasks that drive sessions: launch a session, run one of its tasks."""

from __future__ import annotations

import logging
import threading
import time

from celery import shared_task

from app.drivers import get_driver
from app.drivers.base import DriverResult
from app.extensions import db
from app.services import canvas, execution

logger = logging.getLogger(__name__)


def apply_dispatch(dispatch: execution.Dispatch | None) -> None:
    """Send the task runs of a committed dispatch as one Celery canvas."""
    if dispatch is None or not dispatch.runs:
        return

    def signature(task_id: str):
        return run_task.si(dispatch.session_id, task_id, dispatch.epoch).set(
            priority=dispatch.priority
        )

    compiled = canvas.compile_canvas(dispatch.runs, signature)
    compiled.apply_async(priority=dispatch.priority)
    logger.info(
        "dispatched session_id=%s epoch=%s runs=%s",
        dispatch.session_id,
        dispatch.epoch,
        len(dispatch.runs),
    )


@shared_task(name="sessions.launch", ignore_result=True)
def launch(session_id: str) -> None:
    """Start a session under a new epoch and dispatch its runnable tasks."""
    with db.session.begin():
        dispatch = execution.launch(db.session, session_id)
    apply_dispatch(dispatch)


@shared_task(name="sessions.run_task", bind=True, max_retries=None)
def run_task(self, session_id: str, task_id: str, epoch: int) -> dict:
    """Claim a task, run it with its agent's driver, record the outcome, dispatch successors."""
    with db.session.begin():
        job = execution.claim(db.session, session_id, task_id, epoch)
    if job is None:
        return {"task_id": task_id, "claimed": False}
    started = time.monotonic()
    try:
        outcome = get_driver(job.agent.driver).run(job, threading.Event())
    except Exception as error:  # a driver bug must still end the attempt in PostgreSQL
        logger.exception("driver crashed session_id=%s task_id=%s", session_id, task_id)
        outcome = DriverResult(succeeded=False, error=f"Driver error: {error!r}", retryable=True)
    duration = time.monotonic() - started
    with db.session.begin():
        dispatch = execution.record_outcome(db.session, job, epoch, outcome, duration)
    if dispatch is not None and dispatch.retry_in is not None:
        raise self.retry(countdown=dispatch.retry_in)
    apply_dispatch(dispatch)
    return {"task_id": task_id, "claimed": True, "succeeded": outcome.succeeded}
