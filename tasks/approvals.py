"""Beat job of approvals: expire those whose time ran out, carrying out their default decision."""

from __future__ import annotations

import logging

from celery import shared_task

from app.api.sessions import enqueue_launch
from app.engine import approvals as engine_approvals
from app.engine.transactions import in_transaction
from app.services import approvals, beat_jobs

from . import helpers

logger = logging.getLogger(__name__)


@shared_task(name="maintenance.expire_approvals", ignore_result=True)
@beat_jobs.beat_job("maintenance.expire_approvals")
def expire_approvals() -> dict:
    """Find pending approvals past their expiry and expire each in its own task."""
    due = in_transaction(approvals.due_for_expiry)
    return {"approvals": helpers.fan_out(expire_approval, [(approval_id,) for approval_id in due])}


@shared_task(name="maintenance.expire_approval", ignore_result=True)
def expire_approval(approval_id: str) -> str | None:
    """Expire one approval (a no-op once it is decided) and send what its decision released."""
    decided = in_transaction(engine_approvals.expire, approval_id)
    if decided is None:
        return None
    helpers.apply_dispatch(decided.dispatch)
    if decided.launch is not None:
        enqueue_launch(decided.launch)
    logger.info("approval expired approval_id=%s session_id=%s", approval_id,
                decided.approval.session_id)  # fmt: skip
    return decided.approval.status.value
