"""offers and inbound updates

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 03:35:43.895557
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.models

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_LIVE = "status IN ('pending_approval', 'confirmed', 'waitlisted', 'attended')"
NEW_LIVE = "status IN ('pending_approval', 'confirmed', 'waitlisted', 'attended', 'offered')"


def _live_index(batch_op: object, where: str) -> None:
    batch_op.create_index(  # type: ignore[attr-defined]
        "uq_registration_live_person_class",
        ["person_id", "class_id"],
        unique=True,
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )


def upgrade() -> None:
    op.create_table(
        "inbound_update",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("update_key", sa.String(length=64), nullable=False),
        sa.Column("chat_id", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "received",
                "handled",
                "answered",
                "failed",
                name="inboxstatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_until", db.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("replies", sa.JSON(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("received_at", db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("handled_at", db.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_update")),
        sa.UniqueConstraint(
            "channel", "update_key", name=op.f("uq_inbound_update_channel_update_key")
        ),
    )
    with op.batch_alter_table("inbound_update", schema=None) as batch_op:
        batch_op.create_index(
            "ix_inbound_update_status_channel_chat_id",
            ["status", "channel", "chat_id"],
            unique=False,
        )

    with op.batch_alter_table("registration", schema=None) as batch_op:
        batch_op.add_column(sa.Column("decided_by_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("offer_expires_at", db.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_registration_decided_by_id_person"),
            "person",
            ["decided_by_id"],
            ["id"],
            ondelete="SET NULL",
        )
        # An offered seat is a live registration too: one per person and class.
        batch_op.drop_index("uq_registration_live_person_class")
        _live_index(batch_op, NEW_LIVE)


def downgrade() -> None:
    # The older schema has no offers: a held offer goes back to the waitlist.
    op.execute("UPDATE registration SET status = 'waitlisted' WHERE status = 'offered'")
    with op.batch_alter_table("registration", schema=None) as batch_op:
        batch_op.drop_index("uq_registration_live_person_class")
        _live_index(batch_op, OLD_LIVE)
        batch_op.drop_constraint(
            batch_op.f("fk_registration_decided_by_id_person"), type_="foreignkey"
        )
        batch_op.drop_column("offer_expires_at")
        batch_op.drop_column("decided_by_id")

    with op.batch_alter_table("inbound_update", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_update_status_channel_chat_id")

    op.drop_table("inbound_update")
