"""Approvals: a person's decision the engine waits for (a gate, a plan, a spent budget)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, StrEnum, Timestamp, new_id, utcnow


class ApprovalKind(str, enum.Enum):
    GATE = "gate"
    PLAN = "plan"
    BUDGET = "budget"


class ApprovalStatus(str, enum.Enum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


class Approval(Base):
    """One request for a decision; decided once (a conditional UPDATE on `status`)."""

    __tablename__ = "approvals"
    __table_args__ = (Index("ix_approvals_status_requested_at", "status", "requested_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    task_id: Mapped[str | None] = mapped_column(
        ForeignKey("session_tasks.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[ApprovalKind] = mapped_column(StrEnum(ApprovalKind, "approval_kind"))
    status: Mapped[ApprovalStatus] = mapped_column(
        StrEnum(ApprovalStatus, "approval_status"), default=ApprovalStatus.PENDING
    )
    requested_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(Timestamp())
    # The API token's name, or "expiry" for the default decision of an expired approval.
    decided_by: Mapped[str | None] = mapped_column(String(200))
    comment: Mapped[str | None] = mapped_column(Text)
    # What the person decides on: spent and limits (budget), predecessors' outputs (gate), ...
    figures: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    expires_at: Mapped[datetime | None] = mapped_column(Timestamp())
    default_decision: Mapped[str | None] = mapped_column(String(16))
