"""Approvals: open one (a gate, a plan, a spent budget), list the inbox, take a decision once.

A decision is one conditional UPDATE (`status = 'pending'`): of two racing decisions exactly
one changes the row, the other gets a 409. What a decision does to the session and its tasks
is the engine's (`app/engine/approvals.py`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session as DbSession

from models import Approval, ApprovalKind, ApprovalStatus, Session, SessionTask
from models.base import utcnow
from models.enums import SessionStatus

from .errors import Conflict, NotFound
from .events import record_event

DECISIONS = {"approve": ApprovalStatus.APPROVED, "reject": ApprovalStatus.REJECTED}
_approvals = Approval.__table__


def find_pending(
    db: DbSession, session_id: str, kind: ApprovalKind, task_id: str | None = None
) -> Approval | None:
    """The pending approval of this kind for the session (and task), if there is one."""
    return db.scalar(
        select(Approval).where(
            Approval.session_id == session_id,
            Approval.kind == kind,
            Approval.task_id.is_(None) if task_id is None else Approval.task_id == task_id,
            Approval.status == ApprovalStatus.PENDING,
        )
    )


def open_approval(
    db: DbSession,
    session_id: str,
    kind: ApprovalKind,
    *,
    task_id: str | None = None,
    figures: dict[str, Any] | None = None,
    policy: dict[str, Any] | None = None,
) -> Approval:
    """Open an approval (or return the pending one of the same kind and task) and record
    `approval.requested`. The session's `approval_policy` may make it expire."""
    existing = find_pending(db, session_id, kind, task_id)
    if existing is not None:
        return existing
    policy = policy or {}
    expires = policy.get("expires_in_seconds")
    approval = Approval(
        session_id=session_id, task_id=task_id, kind=kind, figures=figures or {},
        expires_at=utcnow() + timedelta(seconds=expires) if expires else None,
        default_decision=policy.get("default_decision", "reject") if expires else None,
    )  # fmt: skip
    db.add(approval)
    db.flush()
    record_event(db, session_id, "approval.requested", task_id=task_id,
                 approval_id=approval.id, kind=kind.value,
                 expires_at=approval.expires_at.isoformat() if approval.expires_at else None,
                 figures=figures or {})  # fmt: skip
    return approval


def hold_plan(db: DbSession, session: Session) -> Approval:
    """A session with `approve_plan` waits, paused (reason `plan`), before its first task."""
    session.transition_to(SessionStatus.PAUSED)
    session.pause_reason = "plan"
    record_event(db, session.id, "session.pause", status=session.status.value, reason="plan")
    tasks = [{"key": t.key, "title": t.title, "command": t.command,
              "depends_on": [d.depends_on.key for d in t.dependencies]}
             for t in session.tasks]  # fmt: skip
    figures = {"tasks": tasks, "plan_info": session.plan_info or {}}
    return open_approval(db, session.id, ApprovalKind.PLAN, figures=figures,
                         policy=session.approval_policy)  # fmt: skip


def gate_figures(db: DbSession, predecessor_ids: list[str]) -> dict[str, Any]:
    """What a gate shows: each predecessor's status, output and diff summary."""
    rows = db.execute(
        select(SessionTask.key, SessionTask.status, SessionTask.result)
        .where(SessionTask.id.in_(predecessor_ids))
        .order_by(SessionTask.position)
    ).all()
    shown = []
    for key, status, result in rows:
        result = result or {}
        diff = [{"file": d.get("file"), "additions": d.get("additions"),
                 "deletions": d.get("deletions")} for d in result.get("diff") or []]  # fmt: skip
        shown.append({
            "key": key, "status": status.value, "summary": (result.get("summary") or "")[:2000],
            "stdout_tail": (result.get("stdout_tail") or "")[-2000:],
            "files_changed": result.get("files_changed") or [], "diff": diff,
        })  # fmt: skip
    return {"predecessors": shown}


def approved_tasks(db: DbSession, task_ids: list[str]) -> set[str]:
    """Which of these tasks have an approved gate (or one whose expiry approved it)."""
    rows = db.scalars(
        select(Approval.task_id).where(
            Approval.task_id.in_(task_ids),
            Approval.kind == ApprovalKind.GATE,
            (Approval.status == ApprovalStatus.APPROVED)
            | (
                (Approval.status == ApprovalStatus.EXPIRED)
                & (Approval.default_decision == "approve")
            ),
        )
    )
    return set(rows)


def take_decision(
    db: DbSession,
    approval_id: str,
    decision: str,
    decided_by: str,
    comment: str | None = None,
    *,
    expired: bool = False,
) -> Approval:
    """Decide a pending approval, once: NotFound, or Conflict when it was already decided."""
    status = ApprovalStatus.EXPIRED if expired else DECISIONS[decision]
    row = db.execute(
        update(_approvals)
        .where(_approvals.c.id == approval_id, _approvals.c.status == ApprovalStatus.PENDING)
        .values(status=status, decided_at=utcnow(), decided_by=decided_by, comment=comment)
        .returning(_approvals.c.id)
    ).first()
    approval = db.get(Approval, approval_id, populate_existing=True)
    if approval is None:
        raise NotFound(f"Approval {approval_id} not found.")
    if row is None:
        raise Conflict(
            f"Approval {approval_id} was already decided: {approval.status.value}"
            f"{' by ' + approval.decided_by if approval.decided_by else ''}.",
            {"status": [approval.status.value]},
        )
    record_event(db, approval.session_id, "approval.decided", task_id=approval.task_id,
                 approval_id=approval.id, kind=approval.kind.value, decision=decision,
                 status=status.value, decided_by=decided_by, comment=comment)  # fmt: skip
    return approval


def withdraw(db: DbSession, session_id: str, reason: str) -> int:
    """Expire a finished session's pending approvals (nobody can act on them any more)."""
    rows = db.execute(
        update(_approvals)
        .where(_approvals.c.session_id == session_id,
               _approvals.c.status == ApprovalStatus.PENDING)
        .values(status=ApprovalStatus.EXPIRED, decided_at=utcnow(), decided_by="system",
                comment=reason)
        .returning(_approvals.c.id)
    ).all()  # fmt: skip
    return len(rows)


def list_approvals(
    db: DbSession,
    *,
    status: ApprovalStatus | None = None,
    session_id: str | None = None,
    page: int = 1,
    page_size: int = 20,
) -> tuple[list[Approval], int]:
    """One page of approvals, oldest request first, and the total for the filters."""
    query = select(Approval)
    if status is not None:
        query = query.where(Approval.status == status)
    if session_id is not None:
        if db.get(Session, session_id) is None:
            raise NotFound(f"Session {session_id} not found.")
        query = query.where(Approval.session_id == session_id)
    total = db.scalar(select(func.count()).select_from(query.subquery()))
    items = db.scalars(
        query.order_by(Approval.requested_at, Approval.id)
        .offset((page - 1) * page_size).limit(page_size)
    )  # fmt: skip
    return list(items), total


def due_for_expiry(db: DbSession, limit: int = 500) -> list[str]:
    """Ids of pending approvals whose expiry passed."""
    return list(db.scalars(
        select(Approval.id)
        .where(Approval.status == ApprovalStatus.PENDING, Approval.expires_at <= utcnow())
        .order_by(Approval.expires_at).limit(limit)
    ))  # fmt: skip
