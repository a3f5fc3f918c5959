"""Tasks that drive sessions: launch a session, run one of its tasks."""

from __future__ import annotations

import logging

from celery import shared_task
from flask import current_app

from app.engine import runner
from app.engine.launch import launch as launch_session
from app.engine.transactions import in_transaction
from app.services.errors import NotFound

from .helpers import WORKER_NAME, apply_dispatch

logger = logging.getLogger(__name__)


@shared_task(name="sessions.launch", ignore_result=True)
def launch(session_id: str) -> None:
    """Start a session under a new epoch and dispatch its runnable tasks."""
    lease_seconds = current_app.config["TASK_LEASE_SECONDS"]
    try:
        dispatch = in_transaction(launch_session, session_id, lease_seconds)
    except NotFound:
        logger.warning("launch of unknown session_id=%s ignored", session_id)
        return
    apply_dispatch(dispatch)


@shared_task(name="sessions.run_task", bind=True, max_retries=None, ignore_result=True)
def run_task(self, session_id: str, task_id: str, epoch: int) -> None:
    """Claim a task, take a slot of its agent, run the driver, record the outcome, dispatch."""
    dispatch = runner.run_task(session_id, task_id, epoch, WORKER_NAME, apply_dispatch)
    if dispatch is not None and dispatch.retry_in is not None:
        raise self.retry(countdown=dispatch.retry_in)
    apply_dispatch(dispatch)
