"""link codes: one-time codes that link a Zalo account to a roster person

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-26 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.models

revision: str = "0006"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, db.models.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "link_code",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=True),
        sa.Column("issued_by_id", sa.Integer(), nullable=True),
        sa.Column("code_hash", sa.String(length=200), nullable=False),
        _when("created_at", nullable=False),
        _when("expires_at", nullable=False),
        _when("used_at"),
        sa.Column("failures", sa.Integer(), nullable=False),
        _when("locked_until"),
        sa.ForeignKeyConstraint(
            ["issued_by_id"],
            ["person.id"],
            name=op.f("fk_link_code_issued_by_id_person"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["person.id"],
            name=op.f("fk_link_code_person_id_person"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_code")),
    )
    op.create_index("ix_link_code_person_id_channel", "link_code", ["person_id", "channel"])


def downgrade() -> None:
    op.drop_index("ix_link_code_person_id_channel", table_name="link_code")
    op.drop_table("link_code")
