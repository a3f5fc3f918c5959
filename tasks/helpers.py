"""What the Celery task modules share: enqueue after commit, fan out, guard duplicates."""

from __future__ import annotations

import logging
import os
import socket

from celery import signature
from kombu.exceptions import OperationalError as BrokerError

from app.engine import canvas
from app.engine.dispatch import Dispatch
from app.engine.slots import redis_client

logger = logging.getLogger(__name__)

WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"
GUARD_SECONDS = 3600


def apply_dispatch(dispatch: Dispatch | None) -> None:
    """Send the task runs of a committed dispatch (a chain per series run).

    If the broker is down the tasks stay `ready` in PostgreSQL and the reconciler sends them.
    """
    if dispatch is None or not dispatch.runs:
        return

    def run_task(task_id: str):
        return signature(
            "sessions.run_task", args=(dispatch.session_id, task_id, dispatch.epoch),
            immutable=True, priority=dispatch.priority,
        )  # fmt: skip

    try:
        for run in canvas.compile_runs(dispatch.runs, run_task):
            run.apply_async(priority=dispatch.priority)
    except BrokerError as error:
        logger.warning("dispatch not sent session_id=%s error=%s", dispatch.session_id, error)
        return
    logger.info("dispatched session_id=%s epoch=%s runs=%s", dispatch.session_id,
                dispatch.epoch, len(dispatch.runs))  # fmt: skip


def fan_out(task, calls: list[tuple]) -> int:
    """Enqueue `task` once per argument tuple; return how many were sent."""
    for args in calls:
        task.delay(*args)
    return len(calls)


def first_delivery(key: str) -> bool:
    """True for the first delivery of a fanned-out task, False for a duplicate."""
    return bool(redis_client().set(f"orch:maintenance:{key}", 1, nx=True, ex=GUARD_SECONDS))
