"""admin: sign-in throttling per account and address; forced password change

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 10:00:00

``admin_login_throttle`` counts failed sign-ins per (account name, address) pair, per
account name and per address, with the lock each has earned (admin.accounts.LoginGuard);
it replaces the admin's use of ``guess_counters``. ``must_change_password`` makes a new
account, or one whose password an administrator set, choose its own password first.
Existing accounts are not flagged.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("admin_users") as batch:
        batch.add_column(sa.Column("must_change_password", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    op.create_table(
        "admin_login_throttle",
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("forget_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_admin_login_throttle")),
    )
    with op.batch_alter_table("admin_login_throttle") as batch:
        batch.create_index(batch.f("ix_admin_login_throttle_forget_at"), ["forget_at"],
                           unique=False)


def downgrade() -> None:
    op.drop_table("admin_login_throttle")
    with op.batch_alter_table("admin_users") as batch:
        batch.drop_column("must_change_password")
