"""session event sequence

Each session numbers its events 1, 2, 3, … in commit order: `sessions.event_seq` is the last
number handed out (under the session's row lock, so the next writer waits for the commit) and
`session_events.seq` the event's number, unique per session. Readers page and resume by it.
Existing events are numbered in id order.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "sessions", sa.Column("event_seq", sa.BigInteger(), server_default="0", nullable=False)
    )
    op.add_column("session_events", sa.Column("seq", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE session_events AS e SET seq = n.seq FROM (SELECT id, row_number() OVER"
        " (PARTITION BY session_id ORDER BY id) AS seq FROM session_events) AS n WHERE e.id = n.id"
    )
    op.execute(
        "UPDATE sessions AS s SET event_seq = n.last FROM (SELECT session_id, max(seq) AS last"
        " FROM session_events GROUP BY session_id) AS n WHERE s.id = n.session_id"
    )
    op.alter_column("session_events", "seq", nullable=False)
    # Its leading column serves every lookup by session, so the single-column index goes.
    op.create_unique_constraint(
        "uq_session_events_session_id_seq", "session_events", ["session_id", "seq"]
    )
    op.drop_index(op.f("ix_session_events_session_id"), table_name="session_events")


def downgrade() -> None:
    op.create_index(
        op.f("ix_session_events_session_id"), "session_events", ["session_id"], unique=False
    )
    op.drop_constraint("uq_session_events_session_id_seq", "session_events", type_="unique")
    op.drop_column("session_events", "seq")
    op.drop_column("sessions", "event_seq")
