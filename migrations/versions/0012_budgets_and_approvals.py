"""budgets and approvals

Sessions and tasks get a `budget` (limits) and what was spent on them (`spent_tokens`,
`spent_cost_usd`, `spent_agent_seconds`, counted over every attempt); sessions get
`approve_plan`, `approval_policy` (expiry and default decision) and `pause_reason`; tasks get
`requires_approval` and the new status `awaiting_approval` (task statuses are VARCHARs with a
CHECK constraint, so the constraint is recreated with the new value). `approvals` holds the
decisions, pending or made.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 18:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_TASK_STATUSES = ("pending", "ready", "assigned", "in_progress", "blocked", "paused",
                     "completed", "failed", "cancelled", "skipped")  # fmt: skip
NEW_TASK_STATUSES = (*OLD_TASK_STATUSES[:6], "awaiting_approval", *OLD_TASK_STATUSES[6:])


def _task_status_check(statuses: tuple[str, ...]) -> None:
    op.drop_constraint(op.f("ck_session_tasks_task_status"), "session_tasks", type_="check")
    values = ", ".join(f"'{status}'" for status in statuses)
    op.create_check_constraint(op.f("ck_session_tasks_task_status"), "session_tasks",
                               f"status IN ({values})")  # fmt: skip


def _spent_columns(table: str) -> None:
    op.add_column(table, sa.Column("budget", postgresql.JSONB(astext_type=sa.Text()),
                                   server_default="{}", nullable=False))  # fmt: skip
    op.add_column(table, sa.Column("spent_tokens", sa.BigInteger(), server_default="0",
                                   nullable=False))  # fmt: skip
    op.add_column(table, sa.Column("spent_cost_usd", sa.Float(), server_default="0",
                                   nullable=False))  # fmt: skip
    op.add_column(table, sa.Column("spent_agent_seconds", sa.Float(), server_default="0",
                                   nullable=False))  # fmt: skip


def upgrade() -> None:
    _spent_columns("sessions")
    op.add_column("sessions", sa.Column("approve_plan", sa.Boolean(), server_default="false",
                                        nullable=False))  # fmt: skip
    op.add_column("sessions", sa.Column("approval_policy", postgresql.JSONB(astext_type=sa.Text()),
                                        server_default="{}", nullable=False))  # fmt: skip
    op.add_column("sessions", sa.Column("pause_reason", sa.String(32), nullable=True))
    _spent_columns("session_tasks")
    op.add_column("session_tasks", sa.Column("requires_approval", sa.Boolean(),
                                             server_default="false", nullable=False))  # fmt: skip
    _task_status_check(NEW_TASK_STATUSES)
    op.create_table(
        "approvals",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("task_id", sa.String(36), nullable=True),
        sa.Column("kind", sa.Enum("gate", "plan", "budget", name="approval_kind",
                                  native_enum=False, create_constraint=True, length=32),
                  nullable=False),
        sa.Column("status", sa.Enum("pending", "approved", "rejected", "expired",
                                    name="approval_status", native_enum=False,
                                    create_constraint=True, length=32),
                  nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(200), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("figures", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("default_decision", sa.String(16), nullable=True),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"],
                                name=op.f("fk_approvals_session_id_sessions"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["task_id"], ["session_tasks.id"],
                                name=op.f("fk_approvals_task_id_session_tasks"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approvals")),
    )  # fmt: skip
    op.create_index(op.f("ix_approvals_session_id"), "approvals", ["session_id"])
    op.create_index(op.f("ix_approvals_task_id"), "approvals", ["task_id"])
    op.create_index("ix_approvals_status_requested_at", "approvals", ["status", "requested_at"])


def downgrade() -> None:
    op.drop_table("approvals")
    op.execute("UPDATE session_tasks SET status = 'pending' WHERE status = 'awaiting_approval'")
    _task_status_check(OLD_TASK_STATUSES)
    for column in ("requires_approval", "spent_agent_seconds", "spent_cost_usd", "spent_tokens",
                   "budget"):  # fmt: skip
        op.drop_column("session_tasks", column)
    for column in ("pause_reason", "approval_policy", "approve_plan", "spent_agent_seconds",
                   "spent_cost_usd", "spent_tokens", "budget"):  # fmt: skip
        op.drop_column("sessions", column)
