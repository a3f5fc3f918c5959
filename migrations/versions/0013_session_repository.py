"""session repository

A session may name a git repository every worker host can reach (`repository_url`, with its
base branch `repository_branch`; NULL: the remote's default branch) instead of a local
workdir. Existing sessions keep their workdir and get NULLs.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 18:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sessions", sa.Column("repository_url", sa.Text(), nullable=True))
    op.add_column("sessions", sa.Column("repository_branch", sa.String(200), nullable=True))


def downgrade() -> None:
    op.drop_column("sessions", "repository_branch")
    op.drop_column("sessions", "repository_url")
