"""registry: who last changed an application, confirmed import conflicts, grant codes

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 12:00:00

``applications.changed_by`` names who set an application's current values (an import,
or a member of staff in the UI), so an import can hold back a row that would overwrite
a change made in the UI; existing rows take the source of their latest status change.
``import_jobs.confirmed`` keeps the rows staff confirmed in the preview although they
move a stage backwards or overwrite a UI change. ``grant_codes`` holds the short
one-day codes a family member asks the bot for and a clerk types in the staff UI to
grant them access (hashed, single use).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("applications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("changed_by", sa.String(length=40), nullable=True))
    op.execute(
        "UPDATE applications SET changed_by = (SELECT s.source FROM status_changes s "
        "WHERE s.application_id = applications.id "
        "ORDER BY s.recorded_at DESC, s.id DESC LIMIT 1)")
    with op.batch_alter_table("import_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("confirmed", sa.JSON(), nullable=True))
    op.create_table(
        "grant_codes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("openid", sa.String(length=64), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_by", sa.String(length=80), nullable=True),
        sa.Column("beneficiary_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["beneficiary_id"], ["beneficiaries.id"],
                                name=op.f("fk_grant_codes_beneficiary_id_beneficiaries")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grant_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_grant_codes_code_hash")),
    )
    with op.batch_alter_table("grant_codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_grant_codes_openid"), ["openid"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("grant_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_grant_codes_openid"))
    op.drop_table("grant_codes")
    with op.batch_alter_table("import_jobs", schema=None) as batch_op:
        batch_op.drop_column("confirmed")
    with op.batch_alter_table("applications", schema=None) as batch_op:
        batch_op.drop_column("changed_by")
