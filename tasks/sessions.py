"""Tasks that drive sessions: launch a session, run one of its tasks."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from celery import shared_task
from flask import current_app
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import DBAPIError

from app.drivers import get_driver
from app.drivers.base import DriverJob, DriverResult
from app.extensions import db
from app.services import canvas, execution

logger = logging.getLogger(__name__)

WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"
DB_RETRY_SECONDS = 60.0


def in_transaction(step, *args):
    """Run `step(db_session, *args)` in one transaction, retrying while PostgreSQL is away."""
    deadline = time.monotonic() + DB_RETRY_SECONDS
    delay = 0.2
    while True:
        try:
            with db.session.begin():
                return step(db.session, *args)
        except DBAPIError as error:
            if not error.connection_invalidated and not _is_connection_error(error):
                raise
            if time.monotonic() > deadline:
                raise
            logger.warning("database unavailable, retrying in %.1fs: %s", delay, error.orig)
            db.session.remove()
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _is_connection_error(error: DBAPIError) -> bool:
    text = str(error.orig).lower()
    return any(marker in text for marker in ("connection", "server closed", "terminating"))


def apply_dispatch(dispatch: execution.Dispatch | None) -> None:
    """Send the task runs of a committed dispatch as one Celery canvas.

    If the broker is down the tasks stay `ready` in PostgreSQL and the reconciler sends them.
    """
    if dispatch is None or not dispatch.runs:
        return

    def signature(task_id: str):
        return run_task.si(dispatch.session_id, task_id, dispatch.epoch).set(
            priority=dispatch.priority
        )

    compiled = canvas.compile_canvas(dispatch.runs, signature)
    try:
        compiled.apply_async(priority=dispatch.priority)
    except BrokerError as error:
        logger.warning("dispatch not sent session_id=%s error=%s", dispatch.session_id, error)
        return
    logger.info("dispatched session_id=%s epoch=%s runs=%s", dispatch.session_id,
                dispatch.epoch, len(dispatch.runs))  # fmt: skip


class Lease:
    """Renews a running attempt's lease in PostgreSQL; sets `cancel` when the attempt must stop
    (the task was taken away, the session was cancelled or stopped, or the lease was lost)."""

    def __init__(self, job: DriverJob, interval: float, timeout: float):
        self.job, self.interval, self.timeout = job, interval, timeout
        self.cancel = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="lease")

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._done.set()
        self._thread.join(5)

    def _run(self) -> None:
        from sqlalchemy.orm import Session as DbSession

        last_renewal = time.monotonic()
        while not self._done.wait(self.interval):
            try:
                with DbSession(bind=db.engine) as own, own.begin():
                    owned = execution.renew_lease(own, self.job)
                last_renewal = time.monotonic()
            except DBAPIError as error:
                logger.warning("lease renewal failed task_id=%s: %s", self.job.task_id, error.orig)
                owned = time.monotonic() - last_renewal < self.timeout
            if not owned:
                logger.info("lease ended, stopping session_id=%s task_id=%s",
                            self.job.session_id, self.job.task_id)  # fmt: skip
                self.cancel.set()
                return


@shared_task(name="sessions.launch", ignore_result=True)
def launch(session_id: str) -> None:
    """Start a session under a new epoch and dispatch its runnable tasks."""
    lease_seconds = current_app.config["TASK_LEASE_SECONDS"]
    try:
        dispatch = in_transaction(execution.launch, session_id, lease_seconds)
    except execution.NotFound:
        logger.warning("launch of unknown session_id=%s ignored", session_id)
        return
    apply_dispatch(dispatch)


@shared_task(name="sessions.run_task", bind=True, max_retries=None, ignore_result=True)
def run_task(self, session_id: str, task_id: str, epoch: int) -> None:
    """Claim a task, run it with its agent's driver, record the outcome, dispatch successors."""
    job = in_transaction(execution.claim, session_id, task_id, epoch, WORKER_NAME)
    if job is None:
        return
    config = current_app.config
    started = time.monotonic()
    with Lease(job, config["TASK_HEARTBEAT_SECONDS"], config["TASK_LEASE_SECONDS"]) as lease:
        try:
            outcome = get_driver(job.agent.driver).run(job, lease.cancel)
        except Exception as error:  # a driver bug must still end the attempt in PostgreSQL
            logger.exception("driver crashed session_id=%s task_id=%s", session_id, task_id)
            outcome = DriverResult(succeeded=False, error=f"Driver error: {error!r}",
                                   retryable=True)  # fmt: skip
    duration = time.monotonic() - started
    dispatch = in_transaction(execution.record_outcome, job, epoch, outcome, duration)
    if dispatch is not None and dispatch.retry_in is not None:
        raise self.retry(countdown=dispatch.retry_in)
    apply_dispatch(dispatch)
