"""The attempt runner: claim a task, hold its agent's slot and its lease while the driver
works, record the outcome. Called by the `sessions.run_task` Celery task; returns what to
dispatch next (or when to run the same message again), for the caller to enqueue after commit.

A task whose agent has no free slot is parked in the agent's wait list by the claim and the
worker is free at once (`waitlist`). Whatever happens, a slot the runner took is given back,
and then the best waiters of that agent are woken (sent with `enqueue`); an attempt whose slot
lease or task lease is lost is stopped (its driver's cancel event is set) and retried.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace

import redis
from flask import current_app
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session as DbSession

from app.drivers import get_driver
from app.drivers.base import DriverJob, DriverResult
from app.extensions import db
from app.metrics import observe_lease_age, observe_task_finished, observe_task_started
from app.workspaces import WorkspaceError
from models.base import utcnow

from . import attempts, budget, waitlist, worktrees
from .claim import claim
from .dispatch import Dispatch, dispatch_after_start
from .outcome import abandon_attempt, record_outcome
from .slots import SlotTaker
from .transactions import in_transaction

logger = logging.getLogger(__name__)

SLOT_WAIT_RETRY_SECONDS = 1.0


class AttemptLease:
    """Renews a running attempt's lease in PostgreSQL; sets `cancel` when the attempt must stop
    (the task was taken away, the session was cancelled or stopped, or the lease was lost)."""

    def __init__(self, job: DriverJob, interval: float, timeout: float):
        self.job, self.interval, self.timeout = job, interval, timeout
        self.cancel = threading.Event()
        self.meter: budget.Meter | None = None
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
                if owned and self.meter is not None:
                    self.meter.heartbeat()
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


class _SlotWatch:
    """Whether the attempt's agent slot lease was lost; losing it stops the running driver."""

    def __init__(self) -> None:
        self.lost = threading.Event()
        self.lease: AttemptLease | None = None

    def on_lost(self, _slot_lease) -> None:
        self.lost.set()
        if self.lease is not None:
            self.lease.cancel.set()


def run_task(
    session_id: str, task_id: str, epoch: int, worker: str, enqueue=None
) -> Dispatch | None:
    """Run one task message to its end; None when the message was stale or duplicated.

    `enqueue(dispatch)` sends what the attempt's start released (start_to_start successors)
    while the driver still runs, and the waiters woken when the slot is given back."""
    watch = _SlotWatch()
    taker = SlotTaker(f"{worker}/{task_id}", watch.on_lost)
    try:  # whatever happens, a slot the claim took is given back
        job = in_transaction(claim, session_id, task_id, epoch, worker, taker)
        if isinstance(job, waitlist.Parked):  # a slot may have freed while it parked
            wake_waiters(job.agent_id, enqueue)
            return None
        if not isinstance(job, DriverJob):
            return job  # None (a stale or duplicate message), or the dispatch of a task failed
        try:  # whatever breaks after the claim ends the attempt in PostgreSQL, with its reason
            return _hold_and_run(job, epoch, taker, watch, enqueue)
        except Exception as error:
            retryable = not isinstance(error, WorkspaceError)
            logger.exception("attempt broke session_id=%s task_id=%s agent_id=%s retryable=%s",
                             session_id, task_id, job.agent.id, retryable)  # fmt: skip
            reason = f"{'Engine' if retryable else 'Workspace'} error: {error}"[:2000]
            return in_transaction(abandon_attempt, job, epoch, reason, retryable)
    finally:
        agent_id = taker.agent_id
        if taker.release():
            wake_waiters(agent_id, enqueue)


def wake_waiters(agent_id: str, enqueue) -> None:
    """Send the best waiters of an agent that has free slots (after the commit that freed one).
    A failure is only logged: the reconciler wakes waiters of agents with free slots."""
    if enqueue is None:
        return
    try:
        if not waitlist.anyone_waiting(db.reader, agent_id):
            return
        for dispatch in in_transaction(waitlist.wake, agent_id):
            enqueue(dispatch)
    except (DBAPIError, redis.RedisError) as error:
        logger.warning("waiters not woken agent_id=%s error=%s", agent_id, error)


def _hold_and_run(
    job: DriverJob, epoch: int, taker: SlotTaker, watch: _SlotWatch, enqueue
) -> Dispatch | None:
    """Hold the attempt's lease (and the slot the claim took) while it runs."""
    config = current_app.config
    heartbeat, lease_s = config["TASK_HEARTBEAT_SECONDS"], config["TASK_LEASE_SECONDS"]
    with AttemptLease(job, heartbeat, lease_s) as lease:
        watch.lease = lease
        if watch.lost.is_set():
            lease.cancel.set()
        started = _Started(job, epoch, lease, watch.lost, enqueue)
        if job.started_token is not None:  # the claim started it: the slot is held
            return started.execute(job, job.started_token)
        if not job.agent.id:  # an engine step (integration): no agent slot to take
            return started.start_and_execute(0)
        if taker.lease is None:  # claimed without a slot (no taker): give it back, run later
            in_transaction(attempts.release_assignment, job)
            return Dispatch(job.session_id, epoch, 0, retry_in=SLOT_WAIT_RETRY_SECONDS)
        return started.start_and_execute(taker.lease.token)  # in its worktree


class _Started:
    """An attempt that holds what it needs (its lease, its agent's slot): start it if the
    claim did not, run its driver, record its outcome."""

    def __init__(self, job: DriverJob, epoch: int, lease: AttemptLease,
                 slot_lost: threading.Event, enqueue) -> None:  # fmt: skip
        self.job, self.epoch, self.lease = job, epoch, lease
        self.slot_lost, self.enqueue = slot_lost, enqueue

    def start_and_execute(self, token: int) -> Dispatch | None:
        """Start the attempt (in its worktree, if the session has a git workdir) and run it."""
        job, branch = worktrees.prepare(self.job)
        if not in_transaction(attempts.start_attempt, job, token, branch):
            return None
        return self.execute(job, token, branch)

    def execute(self, job: DriverJob, token: int, branch: str | None = None) -> Dispatch | None:
        """Run the started attempt's driver and record its outcome; return what to dispatch
        next. An attempt stopped because its agent slot's lease was lost is retried."""
        if self.enqueue is not None:
            released = in_transaction(
                dispatch_after_start, job.session_id, job.task_id, self.epoch
            )
            if released is not None:
                self.enqueue(released)
        if job.queued_at is not None:
            observe_task_started(job.agent.name, (utcnow() - job.queued_at).total_seconds())
        job = replace(job, meter=budget.Meter(job, self.lease.cancel))
        self.lease.meter = job.meter  # charged at each heartbeat under a budget
        started = time.monotonic()
        try:
            if job.meter.before_start():
                outcome = get_driver(job.agent.driver).run(job, self.lease.cancel)
            else:
                outcome = DriverResult(succeeded=False, error="Not started: a budget is spent")
        except Exception as error:  # a driver bug must still end the attempt in PostgreSQL
            logger.exception("driver crashed session_id=%s task_id=%s agent_id=%s",
                             job.session_id, job.task_id, job.agent.id)  # fmt: skip
            outcome = DriverResult(succeeded=False, error=f"Driver error: {error!r}",
                                   retryable=True)  # fmt: skip
        duration = time.monotonic() - started
        if branch and outcome.succeeded:
            outcome = worktrees.commit(job, outcome)
        if self.slot_lost.is_set() and not outcome.succeeded:
            error = f"The agent slot's lease was lost: {outcome.error}"
            outcome = replace(outcome, retryable=True, error=error)
        status = "completed" if outcome.succeeded else "failed"
        observe_task_finished(job.agent.name, status, duration, outcome.tokens, outcome.cost)
        if job.meter.interrupted is not None and not outcome.succeeded:
            job.meter.settle()  # the session is paused first: the task then waits in it
            return in_transaction(
                budget.record_interrupted, job, self.epoch, outcome, duration, token
            )
        dispatch = in_transaction(record_outcome, job, self.epoch, outcome, duration, token)
        budget.after_outcome(job)  # the outcome spent a budget: pause the session
        return dispatch
