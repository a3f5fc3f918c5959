"""The attempt runner: claim a task, hold its agent's slot and its lease while the driver
works, record the outcome. Called by the `sessions.run_task` Celery task; returns what to
dispatch next (or when to run the same message again), for the caller to enqueue after commit.

Whatever happens, a slot the runner took is given back, and an attempt whose slot lease or
task lease is lost is stopped (its driver's cancel event is set) and retried, not failed.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace

from flask import current_app
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session as DbSession

from app.drivers import get_driver
from app.drivers.base import DriverJob, DriverResult
from app.extensions import db
from app.locks import LockTimeout
from app.metrics import observe_lease_age, observe_task_finished, observe_task_started
from models.base import utcnow

from . import attempts, worktrees
from .claim import claim
from .dispatch import Dispatch
from .outcome import record_outcome
from .slots import SlotTaker, agent_semaphore
from .transactions import in_transaction

logger = logging.getLogger(__name__)

SLOT_WAIT_RETRY_SECONDS = 1.0


class AttemptLease:
    """Renews a running attempt's lease in PostgreSQL; sets `cancel` when the attempt must stop
    (the task was taken away, the session was cancelled or stopped, or the lease was lost)."""

    def __init__(self, job: DriverJob, interval: float, timeout: float):
        self.job, self.interval, self.timeout = job, interval, timeout
        self.cancel = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="attempt-lease")

    def __enter__(self) -> AttemptLease:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._done.set()
        self._thread.join(5)

    def _run(self) -> None:
        started = last_renewal = time.monotonic()
        while not self._done.wait(self.interval):
            try:
                with DbSession(bind=db.engine) as own, own.begin():
                    owned = attempts.renew_lease(own, self.job)
                last_renewal = time.monotonic()
                observe_lease_age(self.job.agent.name, last_renewal - started)
            except DBAPIError as error:
                logger.warning("lease renewal failed session_id=%s task_id=%s: %s",
                               self.job.session_id, self.job.task_id, error.orig)  # fmt: skip
                owned = time.monotonic() - last_renewal < self.timeout
            if not owned:
                logger.info("lease ended, stopping session_id=%s task_id=%s",
                            self.job.session_id, self.job.task_id)  # fmt: skip
                self.cancel.set()
                return


def run_task(session_id: str, task_id: str, epoch: int, worker: str) -> Dispatch | None:
    """Run one task message to its end; None when the message was stale or duplicated."""
    config = current_app.config
    slot_lost = threading.Event()
    running: dict[str, AttemptLease] = {}

    def on_slot_lost(_lease) -> None:
        slot_lost.set()
        if "lease" in running:
            running["lease"].cancel.set()

    owner = f"{worker}/{task_id}"
    taker = SlotTaker(owner, on_slot_lost)
    try:  # whatever happens, a slot the claim took is given back
        job = in_transaction(claim, session_id, task_id, epoch, worker, taker)
        if job is None or job.started_token is None:
            taker.release()
        if job is None:
            return None
        heartbeat, lease_s = config["TASK_HEARTBEAT_SECONDS"], config["TASK_LEASE_SECONDS"]
        with AttemptLease(job, heartbeat, lease_s) as lease:
            running["lease"] = lease
            if slot_lost.is_set():
                lease.cancel.set()
            if job.started_token is not None:  # the claim started it: the slot is held
                return _execute(job, epoch, lease, job.started_token, slot_lost)
            if not job.agent.id:  # an engine step (integration): no agent slot to take
                return _start_and_execute(job, epoch, lease, 0, slot_lost)
            semaphore = agent_semaphore(job.agent.id, job.capacity)
            try:
                agent_lease = semaphore.acquire(
                    timeout=config["AGENT_WAIT_SECONDS"], owner=owner, on_lost=on_slot_lost
                )
            except LockTimeout:
                in_transaction(attempts.release_assignment, job)
                return Dispatch(session_id, epoch, 0, retry_in=SLOT_WAIT_RETRY_SECONDS)
            with agent_lease:
                return _start_and_execute(job, epoch, lease, agent_lease.token, slot_lost)
    finally:
        taker.release()


def _start_and_execute(
    job: DriverJob, epoch: int, lease: AttemptLease, token: int, slot_lost: threading.Event
) -> Dispatch | None:
    """Start an attempt that holds its agent's slot (in its worktree, if the session has a git
    workdir), run it and return what to dispatch next."""
    job, branch = worktrees.prepare(job)
    if not in_transaction(attempts.start_attempt, job, token, branch):
        return None
    return _execute(job, epoch, lease, token, slot_lost, branch)


def _execute(
    job: DriverJob,
    epoch: int,
    lease: AttemptLease,
    token: int,
    slot_lost: threading.Event,
    branch: str | None = None,
) -> Dispatch | None:
    """Run a started attempt's driver and record its outcome; return what to dispatch next.

    An attempt stopped because its agent slot's lease was lost is retried, not failed."""
    if job.queued_at is not None:
        observe_task_started(job.agent.name, (utcnow() - job.queued_at).total_seconds())
    started = time.monotonic()
    try:
        outcome = get_driver(job.agent.driver).run(job, lease.cancel)
    except Exception as error:  # a driver bug must still end the attempt in PostgreSQL
        logger.exception("driver crashed session_id=%s task_id=%s", job.session_id, job.task_id)
        outcome = DriverResult(succeeded=False, error=f"Driver error: {error!r}", retryable=True)
    duration = time.monotonic() - started
    if branch and outcome.succeeded:
        outcome = worktrees.commit(job, outcome)
    if slot_lost.is_set() and not outcome.succeeded:
        outcome = replace(outcome, retryable=True,
                          error=f"The agent slot's lease was lost: {outcome.error}")  # fmt: skip
    status = "completed" if outcome.succeeded else "failed"
    observe_task_finished(job.agent.name, status, duration, outcome.tokens, outcome.cost)
    return in_transaction(record_outcome, job, epoch, outcome, duration, token)
