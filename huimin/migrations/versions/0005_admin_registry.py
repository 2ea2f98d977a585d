"""admin: daily tally of questions the bot answered (for the overview's charts)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 10:00:00

The registry, payout and reminder pages need no tables of their own: uploads wait in a
temporary folder until confirmed, and every change is written to admin_audit.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "question_tally",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("band", sa.String(length=16), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "band", name=op.f("pk_question_tally")),
    )


def downgrade() -> None:
    op.drop_table("question_tally")
