"""What a decision on an approval does: a gate runs its task or fails it, a budget raises its
limits and resumes the session or cancels it, a plan resumes the session or cancels it.

The decision itself is taken first (`services.approvals.take_decision`, the approval row), so
locks go approval, then tasks, then session, then agent. Returns what to do after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session as DbSession

from app.services import approvals, budgets
from app.services.errors import Conflict, ValidationFailed
from app.services.events import record_event
from models import Approval, ApprovalKind, ApprovalStatus, Session, SessionTask
from models.base import utcnow
from models.enums import SESSION_ACTIVE, SessionStatus, TaskStatus

from . import lifecycle
from .dispatch import Dispatch, dispatch_ready
from .locking import lock_session

_tasks = SessionTask.__table__


@dataclass
class Decided:
    """A decided approval and what the caller sends after the commit."""

    approval: Approval
    dispatch: Dispatch | None = None
    launch: Session | None = None


def decide(
    db: DbSession,
    approval_id: str,
    decision: str,
    decided_by: str,
    comment: str | None = None,
    budget: dict[str, Any] | None = None,
    expired: bool = False,
) -> Decided:
    """Decide an approval once (409 for a second decision) and carry the decision out."""
    approval = approvals.take_decision(db, approval_id, decision, decided_by, comment,
                                       expired=expired)  # fmt: skip
    if approval.kind is ApprovalKind.GATE:
        return _gate(db, approval, decision, comment)
    if decision == "approve" and approval.kind is ApprovalKind.BUDGET:
        # Every task, then the session, in the engine's order, before changing any of them.
        lock_session(db, approval.session_id, all_tasks=True)
        _raise_limits(db, approval, budget or {})
    return _session_decision(db, approval, decision)


def _gate(db: DbSession, approval: Approval, decision: str, comment: str | None) -> Decided:
    """Approving runs the task (paused if the session is); rejecting fails it with the comment,
    and its dependants are skipped as for any failure."""
    if decision == "approve":
        values: dict[str, Any] = {"status": TaskStatus.PENDING}
    else:
        error = f"Rejected at its approval gate: {comment or 'no comment'}"
        values = {"status": TaskStatus.FAILED, "error": error, "finished_at": utcnow()}
    changed = db.execute(
        update(_tasks)
        .where(_tasks.c.id == approval.task_id, _tasks.c.status == TaskStatus.AWAITING_APPROVAL)
        .values(**values)
        .returning(_tasks.c.key)
    ).first()
    if changed is None:  # no longer waiting (the session was stopped meanwhile): nothing to do
        return Decided(approval)
    if decision != "approve":
        record_event(db, approval.session_id, "task.failed", task_id=approval.task_id,
                     key=changed.key, error=values["error"])  # fmt: skip
    session = lock_session(db, approval.session_id)
    if session.status in SESSION_ACTIVE:
        return Decided(approval, dispatch=dispatch_ready(db, session))
    if decision == "approve" and session.status is SessionStatus.PAUSED:
        db.execute(update(_tasks).where(_tasks.c.id == approval.task_id)
                   .values(status=TaskStatus.PAUSED))  # fmt: skip
    return Decided(approval)


def _raise_limits(db: DbSession, approval: Approval, raised: dict[str, Any]) -> None:
    """Approving a spent budget raises its limits; each limit reached must be raised above
    what was spent (422 otherwise), so that the session can go on."""
    figures = approval.figures or {}
    target: Session | SessionTask | None
    if figures.get("scope") == "task" and figures.get("task_id"):
        target = db.get(SessionTask, figures["task_id"], populate_existing=True)
    else:
        target = db.get(Session, approval.session_id, populate_existing=True)
    if target is None:
        return
    limits = {**(target.budget or {}), **{k: v for k, v in raised.items() if v is not None}}
    still = _too_low(limits, budgets.spent_of(target), figures)
    if still:
        raise ValidationFailed(
            "Approving a spent budget needs higher limits, above what was spent: "
            + ", ".join(f"{limit} > {floor}" for limit, floor in still.items())
            + ".",
            {f"budget.{limit}": [f"Give more than {floor}."] for limit, floor in still.items()},
        )
    target.budget = limits
    record_event(db, approval.session_id, "budget.raised", task_id=figures.get("task_id"),
                 scope=figures.get("scope", "session"), limits=limits)  # fmt: skip


def _too_low(limits: dict, spent: dict, figures: dict) -> dict[str, float]:
    """The limits that must be higher (with the value to exceed): those reached, and those
    that stopped the attempt and were not raised since."""
    floors = {limit: spent[budgets.LIMITS[limit]] for limit in budgets.exhausted(limits, spent)}
    before = figures.get("limits") or {}
    for limit in figures.get("reached") or []:
        if limit in limits and limits[limit] <= before.get(limit, 0):
            floors[limit] = max(before[limit], floors.get(limit, 0))
    return floors


def _session_decision(db: DbSession, approval: Approval, decision: str) -> Decided:
    """A plan or budget approval resumes its paused session, a rejection cancels it."""
    session = db.get(Session, approval.session_id)
    if decision == "approve":
        if session.status is not SessionStatus.PAUSED:
            return Decided(approval)
        session, launches = lifecycle.apply_action(db, approval.session_id, "resume")
        return Decided(approval, launch=session if launches else None)
    if session.status in lifecycle.ACTIONS["cancel"][0]:
        lifecycle.apply_action(db, approval.session_id, "cancel")
        session.error = f"Cancelled: its {approval.kind.value} approval was rejected" + (
            f": {approval.comment}" if approval.comment else "."
        )
    return Decided(approval)


def expire(db: DbSession, approval_id: str) -> Decided | None:
    """An approval whose expiry passed is `expired` and its default decision carried out;
    None if it was decided meanwhile. Approving a spent budget this way keeps its limits, so
    a budget's default approval only resumes a session whose limits were raised since."""
    approval = db.get(Approval, approval_id, populate_existing=True)
    if approval is None or approval.status is not ApprovalStatus.PENDING:
        return None
    decision = approval.default_decision or "reject"
    if approval.kind is ApprovalKind.BUDGET and decision == "approve":
        limits, spent = _limits_and_spent(db, approval)
        decision = "reject" if _too_low(limits, spent, approval.figures or {}) else decision
    comment = f"Expired: default decision {decision}."
    try:
        return decide(db, approval_id, decision, "expiry", comment, expired=True)
    except Conflict:  # a person decided it in the meantime
        return None


def _limits_and_spent(db: DbSession, approval: Approval) -> tuple[dict, dict]:
    figures = approval.figures or {}
    if figures.get("scope") == "task" and figures.get("task_id"):
        target = db.get(SessionTask, figures["task_id"])
    else:
        target = db.get(Session, approval.session_id)
    return (target.budget or {}), budgets.spent_of(target)
