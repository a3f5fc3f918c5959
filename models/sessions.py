"""Sessions and their DAG: tasks (nodes) and dependencies (edges)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, StrEnum, Timestamp, new_id, utcnow
from .enums import (
    SESSION_TRANSITIONS,
    TASK_TRANSITIONS,
    DependencyType,
    SessionStatus,
    SessionType,
    TaskStatus,
)


class InvalidTransition(Exception):
    """A status change that the transition table does not allow."""

    def __init__(self, kind: str, current: str, target: str, allowed: list[str]):
        super().__init__(f"{kind} cannot go from {current} to {target}")
        self.current = current
        self.target = target
        self.allowed = allowed


class Session(Base):
    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    prompt: Mapped[str] = mapped_column(Text, default="")
    type: Mapped[SessionType] = mapped_column(
        StrEnum(SessionType, "session_type"), default=SessionType.EXECUTION
    )
    priority: Mapped[int] = mapped_column(Integer, default=2)
    status: Mapped[SessionStatus] = mapped_column(
        StrEnum(SessionStatus, "session_status"), default=SessionStatus.PENDING, index=True
    )
    parent_id: Mapped[str | None] = mapped_column(
        ForeignKey("sessions.id", ondelete="SET NULL"), index=True
    )
    agent_preferences: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    max_duration_seconds: Mapped[int] = mapped_column(Integer, default=3600)
    tags: Mapped[list[str]] = mapped_column(JSONB, default=list)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, default=dict)
    created_by: Mapped[str | None] = mapped_column(String(200))
    workdir: Mapped[str | None] = mapped_column(Text)
    # Instead of a workdir: a git URL every worker host can reach, and the base branch (None:
    # the remote's default branch). Tasks push orch/<session>/<task> there.
    repository_url: Mapped[str | None] = mapped_column(Text)
    repository_branch: Mapped[str | None] = mapped_column(String(200))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    request_hash: Mapped[str | None] = mapped_column(String(64))
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    # The `seq` of the session's last event; only `record_event` changes it, in SQL (the ORM's
    # copy is not refreshed).
    event_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    # Which planner made the DAG and why (empty for a DAG the request carried).
    plan_info: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    # Budgets and approvals (app/engine/budget.py, app/services/approvals.py): the limits
    # {max_tokens, max_cost_usd, max_agent_seconds} over all tasks and attempts, what was spent,
    # whether a person approves the plan first, how long approvals wait, and why it is paused.
    budget: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    spent_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    spent_cost_usd: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    spent_agent_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    approve_plan: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    approval_policy: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default="{}"
    )
    pause_reason: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp())
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp())

    tasks: Mapped[list[SessionTask]] = relationship(
        back_populates="session",
        cascade="all, delete-orphan",
        order_by="SessionTask.position",
    )

    def transition_to(self, target: SessionStatus) -> None:
        """Change status if the transition table allows it, else raise InvalidTransition."""
        allowed = SESSION_TRANSITIONS[self.status]
        if target not in allowed:
            raise InvalidTransition(
                "session", self.status.value, target.value, sorted(s.value for s in allowed)
            )
        self.status = target
        now = utcnow()
        if target is SessionStatus.RUNNING and self.started_at is None:
            self.started_at = now
        if not SESSION_TRANSITIONS[target] or target in (
            SessionStatus.FAILED,
            SessionStatus.TIMEOUT,
            SessionStatus.STOPPED,
        ):
            self.finished_at = now


class SessionTask(Base):
    __tablename__ = "session_tasks"
    __table_args__ = (
        UniqueConstraint("session_id", "key"),
        Index("ix_session_tasks_waiting_agent_id_status", "waiting_agent_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    key: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer, default=0)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    command: Mapped[str | None] = mapped_column(Text)
    action: Mapped[str | None] = mapped_column(String(32))
    branch: Mapped[str | None] = mapped_column(String(200))
    required_capabilities: Mapped[list[str]] = mapped_column(JSONB, default=list)
    technologies: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default="[]")
    optional: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[TaskStatus] = mapped_column(
        StrEnum(TaskStatus, "task_status"), default=TaskStatus.PENDING
    )
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    timeout_seconds: Mapped[int] = mapped_column(Integer, default=600)
    assigned_agent_id: Mapped[str | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL"), index=True
    )
    # The agent whose wait list holds this task (no free slot when it was claimed), since when,
    # and when a freed slot sent it a message again (app/engine/waitlist.py).
    waiting_agent_id: Mapped[str | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL")
    )
    waiting_since: Mapped[datetime | None] = mapped_column(Timestamp())
    woken_at: Mapped[datetime | None] = mapped_column(Timestamp())
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    fence_token: Mapped[int] = mapped_column(BigInteger, default=0)
    estimate_hours: Mapped[float | None] = mapped_column(Float)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    tokens: Mapped[dict[str, int]] = mapped_column(JSONB, default=dict)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    executions: Mapped[int] = mapped_column(Integer, default=0)
    # The task's own budget and what all its attempts spent; a gate before it starts.
    budget: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    spent_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    spent_cost_usd: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    spent_agent_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    requires_approval: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default="false"
    )
    worker: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(Timestamp())
    created_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow, onupdate=utcnow)
    queued_at: Mapped[datetime | None] = mapped_column(Timestamp())
    started_at: Mapped[datetime | None] = mapped_column(Timestamp())
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp())

    session: Mapped[Session] = relationship(back_populates="tasks")
    dependencies: Mapped[list[TaskDependency]] = relationship(
        foreign_keys="TaskDependency.task_id",
        cascade="all, delete-orphan",
        back_populates="task",
    )

    def transition_to(self, target: TaskStatus) -> None:
        """Change status if the transition table allows it, else raise InvalidTransition."""
        allowed = TASK_TRANSITIONS[self.status]
        if target not in allowed:
            raise InvalidTransition(
                "task", self.status.value, target.value, sorted(s.value for s in allowed)
            )
        self.status = target


class TaskDependency(Base):
    """An edge of the DAG: `task` depends on `depends_on`."""

    __tablename__ = "task_dependencies"
    __table_args__ = (
        UniqueConstraint("task_id", "depends_on_id"),
        Index("ix_task_dependencies_depends_on_id", "depends_on_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    task_id: Mapped[str] = mapped_column(ForeignKey("session_tasks.id", ondelete="CASCADE"))
    depends_on_id: Mapped[str] = mapped_column(ForeignKey("session_tasks.id", ondelete="CASCADE"))
    type: Mapped[DependencyType] = mapped_column(
        StrEnum(DependencyType, "dependency_type"), default=DependencyType.FINISH_TO_START
    )
    required: Mapped[bool] = mapped_column(Boolean, default=True)

    task: Mapped[SessionTask] = relationship(foreign_keys=[task_id], back_populates="dependencies")
    depends_on: Mapped[SessionTask] = relationship(foreign_keys=[depends_on_id])
