"""Tasks that drive sessions: launch a session, run one of its tasks."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import redis
from celery import shared_task
from flask import current_app
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import DBAPIError

from app.drivers import get_driver
from app.drivers.base import DriverJob, DriverResult
from app.extensions import db
from app.locks import FairSemaphore, LockTimeout
from app.metrics import observe_lease_age, observe_task_finished, observe_task_started
from app.services import canvas, claims, execution, outcomes
from app.workspaces import WorkspaceError, branch_name, commit_all, create_worktree
from models.base import utcnow

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
    """Send the task runs of a committed dispatch (a chain per series run).

    If the broker is down the tasks stay `ready` in PostgreSQL and the reconciler sends them.
    """
    if dispatch is None or not dispatch.runs:
        return

    def signature(task_id: str):
        return run_task.si(dispatch.session_id, task_id, dispatch.epoch).set(
            priority=dispatch.priority
        )

    try:
        for run in canvas.compile_runs(dispatch.runs, signature):
            run.apply_async(priority=dispatch.priority)
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

        started = last_renewal = time.monotonic()
        while not self._done.wait(self.interval):
            try:
                with DbSession(bind=db.engine) as own, own.begin():
                    owned = execution.renew_lease(own, self.job)
                last_renewal = time.monotonic()
                observe_lease_age(self.job.agent.name, last_renewal - started)
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


def redis_client() -> redis.Redis:
    """A Redis client for this app's REDIS_URL, shared by the tasks of this process."""
    clients = current_app.extensions.setdefault("task_redis", {})
    url = current_app.config["REDIS_URL"]
    if url not in clients:
        clients[url] = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
    return clients[url]


def agent_semaphore(agent_id: str, capacity: int) -> FairSemaphore:
    """The fair, leased semaphore guarding the agent's `capacity` slots."""
    return FairSemaphore(
        redis_client(),
        f"agent:{agent_id}",
        capacity=capacity,
        lease_ttl=current_app.config["TASK_LEASE_SECONDS"],
    )


class SlotTaker:
    """Takes a free slot of the agent a claim chose, so that the claim starts the attempt in
    the same transaction. It never waits (a busy agent leaves the task `assigned`), and holds
    at most one slot: a claim step retried after a database error gives back the first."""

    def __init__(self, owner: str, on_lost):
        self.owner, self.on_lost, self.lease = owner, on_lost, None

    def __call__(self, agent, workdir: str) -> int | None:
        self.release()
        if needs_worktree(workdir):  # the worktree is made before the attempt starts
            return None
        semaphore = agent_semaphore(agent.id, agent.capacity)
        self.lease = semaphore.try_acquire(owner=self.owner, on_lost=self.on_lost)
        return self.lease.token if self.lease is not None else None

    def release(self) -> None:
        if self.lease is not None:
            self.lease.release()
            self.lease = None


@shared_task(name="sessions.run_task", bind=True, max_retries=None, ignore_result=True)
def run_task(self, session_id: str, task_id: str, epoch: int) -> None:
    """Claim a task, take a slot of its agent, run the driver, record the outcome, dispatch."""
    config = current_app.config
    slot_lost = threading.Event()
    running: dict[str, Lease] = {}

    def on_slot_lost(_lease) -> None:
        slot_lost.set()
        if "lease" in running:
            running["lease"].cancel.set()

    owner = f"{WORKER_NAME}/{task_id}"
    taker = SlotTaker(owner, on_slot_lost)
    try:  # whatever happens, a slot the claim took is given back
        job = in_transaction(claims.claim, session_id, task_id, epoch, WORKER_NAME, taker)
        if job is None or job.started_token is None:
            taker.release()
        if job is None:
            return
        with Lease(job, config["TASK_HEARTBEAT_SECONDS"], config["TASK_LEASE_SECONDS"]) as lease:
            running["lease"] = lease
            if slot_lost.is_set():
                lease.cancel.set()
            if job.started_token is not None:  # the claim started it: the slot is held
                dispatch = _execute(job, epoch, lease, job.started_token, slot_lost)
                taker.release()
            elif not job.agent.id:  # an engine step (integration): no agent slot to take
                dispatch = _attempt(job, epoch, lease, 0, slot_lost)
            else:
                try:
                    agent_lease = agent_semaphore(job.agent.id, job.capacity).acquire(
                        timeout=config["AGENT_WAIT_SECONDS"], owner=owner, on_lost=on_slot_lost
                    )
                except LockTimeout:
                    in_transaction(execution.release_assignment, job)
                    raise self.retry(countdown=1.0) from None
                with agent_lease:
                    dispatch = _attempt(job, epoch, lease, agent_lease.token, slot_lost)
    finally:
        taker.release()
    if dispatch is not None and dispatch.retry_in is not None:
        raise self.retry(countdown=dispatch.retry_in)
    apply_dispatch(dispatch)


def _attempt(job: DriverJob, epoch: int, lease: Lease, token: int, slot_lost: threading.Event):
    """Start an attempt that holds its agent's slot (in its worktree, if the session has a git
    workdir), run it and return what to dispatch next."""
    job, branch = _workspace(job)
    if not in_transaction(execution.start_attempt, job, token, branch):
        return None
    return _execute(job, epoch, lease, token, slot_lost, branch)


def _execute(
    job: DriverJob,
    epoch: int,
    lease: Lease,
    token: int,
    slot_lost: threading.Event,
    branch: str | None = None,
):
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
        outcome = _commit_worktree(job, outcome)
    if slot_lost.is_set() and not outcome.succeeded:
        outcome = replace(outcome, retryable=True,
                          error=f"The agent slot's lease was lost: {outcome.error}")  # fmt: skip
    status = "completed" if outcome.succeeded else "failed"
    observe_task_finished(job.agent.name, status, duration, outcome.tokens, outcome.cost)
    return in_transaction(outcomes.record_outcome, job, epoch, outcome, duration, token)


def needs_worktree(workdir: str) -> bool:
    """Whether tasks of a session with this workdir work in their own git worktree."""
    return (Path(workdir) / ".git").exists()


def _workspace(job: DriverJob) -> tuple[DriverJob, str | None]:
    """When the session's workdir is a git repository, the task works in its own worktree."""
    if not job.agent.id or not needs_worktree(job.workdir):
        return job, None
    worktree = create_worktree(job.workdir, job.session_id, job.task_key, base=job.base_ref)
    return replace(job, workdir=str(worktree)), branch_name(job.session_id, job.task_key)


def _commit_worktree(job: DriverJob, outcome: DriverResult) -> DriverResult:
    """Commit what the task changed on its branch, so an integration step can merge it."""
    try:
        commit = commit_all(job.workdir, f"{job.task_key}: {job.title}")
    except WorkspaceError as error:
        return replace(outcome, succeeded=False, error=f"Could not commit the worktree: {error}")
    return replace(outcome, summary=outcome.summary or f"commit {commit or 'none'}")
