"""task wait list and technologies

A task whose agent had no free slot is parked in PostgreSQL instead of waiting in a worker:
`waiting_agent_id` is the agent whose wait list holds it and `waiting_since` when it joined
(the aging clock); `woken_at` when a freed slot sent it a message again (cleared when it
parks again or starts). The index on (waiting_agent_id, status) serves "the best waiter of this
agent". `technologies` is the task's technology list, used by routing.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 17:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("session_tasks", sa.Column("waiting_agent_id", sa.String(36), nullable=True))
    op.add_column(
        "session_tasks", sa.Column("waiting_since", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("session_tasks", sa.Column("woken_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "session_tasks",
        sa.Column(
            "technologies",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="[]",
            nullable=False,
        ),
    )
    op.create_foreign_key(
        op.f("fk_session_tasks_waiting_agent_id_agents"),
        "session_tasks",
        "agents",
        ["waiting_agent_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_index(
        "ix_session_tasks_waiting_agent_id_status",
        "session_tasks",
        ["waiting_agent_id", "status"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_session_tasks_waiting_agent_id_status", table_name="session_tasks")
    op.drop_constraint(
        op.f("fk_session_tasks_waiting_agent_id_agents"), "session_tasks", type_="foreignkey"
    )
    op.drop_column("session_tasks", "technologies")
    op.drop_column("session_tasks", "woken_at")
    op.drop_column("session_tasks", "waiting_since")
    op.drop_column("session_tasks", "waiting_agent_id")
