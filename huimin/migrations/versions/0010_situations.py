"""content: life situations as data staff extend in admin

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 10:00:00

situations: the words that tell a situation (卧床, 没儿没女 …), the programme words it
stands for and up to three FAQ ids to offer; loaded from content/situations.yaml by
`huimin init` (staff edits and removals kept) and read by the bot with the FAQ.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "situations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("cues", sa.JSON(), nullable=False),
        sa.Column("means", sa.JSON(), nullable=False),
        sa.Column("offer", sa.JSON(), nullable=False),
        sa.Column("removed", sa.Boolean(), nullable=False),
        sa.Column("edited_by_admin", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("situations")
