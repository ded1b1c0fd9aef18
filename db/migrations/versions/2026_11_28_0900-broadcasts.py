"""broadcasts: announcements to an audience, their outbox notices and progress message

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.models

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str) -> sa.Column[object]:
    return sa.Column(name, db.models.UTCDateTime(timezone=True), nullable=True)


def upgrade() -> None:
    op.create_table(
        "broadcast",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "draft",
                "sending",
                "done",
                "stopped",
                "cancelled",
                name="broadcaststatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("scope_unit_id", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("message", sa.JSON(), nullable=False),
        sa.Column("audience", sa.JSON(), nullable=True),
        sa.Column("urgent", sa.Boolean(), nullable=False),
        sa.Column("origin_channel", sa.String(length=16), nullable=True),
        sa.Column("origin_chat_id", sa.String(length=64), nullable=True),
        sa.Column("progress_message_id", sa.String(length=64), nullable=True),
        sa.Column("progress_shown", sa.JSON(), nullable=True),
        _when("progress_shown_at"),
        _when("progress_lease_until"),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column("never_linked", sa.Integer(), nullable=False),
        sa.Column("unreachable", sa.Integer(), nullable=False),
        sa.Column("created_at", db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", db.models.UTCDateTime(timezone=True), nullable=False),
        _when("started_at"),
        _when("finished_at"),
        sa.Column("stopped_by_id", sa.Integer(), nullable=True),
        _when("reported_at"),
        sa.ForeignKeyConstraint(
            ["author_id"],
            ["person.id"],
            name=op.f("fk_broadcast_author_id_person"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["scope_unit_id"],
            ["unit.id"],
            name=op.f("fk_broadcast_scope_unit_id_unit"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["stopped_by_id"],
            ["person.id"],
            name=op.f("fk_broadcast_stopped_by_id_person"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_broadcast")),
    )
    op.create_index("ix_broadcast_status", "broadcast", ["status"])
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("broadcast_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            op.f("fk_outbox_message_broadcast_id_broadcast"),
            "broadcast",
            ["broadcast_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_index(
            "ix_outbox_message_broadcast_id_status", ["broadcast_id", "status"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_message_broadcast_id_status")
        batch_op.drop_constraint(
            op.f("fk_outbox_message_broadcast_id_broadcast"), type_="foreignkey"
        )
        batch_op.drop_column("broadcast_id")
    op.drop_index("ix_broadcast_status", table_name="broadcast")
    op.drop_table("broadcast")
