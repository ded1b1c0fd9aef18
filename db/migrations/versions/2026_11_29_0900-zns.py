"""ZNS: the OA's tokens, the daily ZNS budget, OA webhook events, receipts on outbox rows

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.models

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, db.models.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tracking_id", sa.String(length=48), nullable=True))
        batch_op.add_column(sa.Column("provider_message_id", sa.String(length=64), nullable=True))
        batch_op.add_column(_when("delivered_at"))
        batch_op.create_index("ix_outbox_message_tracking_id", ["tracking_id"], unique=False)
        batch_op.create_index(
            "ix_outbox_message_provider_message_id", ["provider_message_id"], unique=False
        )
    op.create_table(
        "zns_token",
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("access_token", sa.Text(), nullable=True),
        _when("access_expires_at"),
        sa.Column("refresh_token", sa.Text(), nullable=False),
        sa.Column("seed_hash", sa.String(length=64), nullable=True),
        _when("refreshed_at"),
        _when("refresh_lease_until"),
        sa.Column("auth_error", sa.String(length=500), nullable=True),
        _when("auth_error_at"),
        _when("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("app_id", name=op.f("pk_zns_token")),
    )
    op.create_table(
        "zns_budget",
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("claimed", sa.Integer(), nullable=False),
        sa.Column("daily_quota", sa.Integer(), nullable=True),
        sa.Column("remaining", sa.Integer(), nullable=True),
        sa.Column("remaining_claimed", sa.Integer(), nullable=False),
        _when("reported_at"),
        _when("held_until"),
        sa.Column("held_reason", sa.String(length=300), nullable=True),
        sa.PrimaryKeyConstraint("app_id", name=op.f("pk_zns_budget")),
    )
    op.create_table(
        "zns_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_key", sa.String(length=200), nullable=False),
        sa.Column("event_name", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("msg_id", sa.String(length=64), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        _when("received_at", nullable=False),
        sa.Column("reply_status", sa.String(length=16), nullable=True),
        sa.Column("reply_attempts", sa.Integer(), nullable=False),
        _when("lease_until"),
        _when("replied_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_zns_event")),
        sa.UniqueConstraint("event_key", name=op.f("uq_zns_event_event_key")),
    )
    op.create_index(
        "ix_zns_event_event_name_received_at", "zns_event", ["event_name", "received_at"]
    )
    op.create_index("ix_zns_event_reply_status", "zns_event", ["reply_status"])


def downgrade() -> None:
    op.drop_index("ix_zns_event_reply_status", table_name="zns_event")
    op.drop_index("ix_zns_event_event_name_received_at", table_name="zns_event")
    op.drop_table("zns_event")
    op.drop_table("zns_budget")
    op.drop_table("zns_token")
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_message_provider_message_id")
        batch_op.drop_index("ix_outbox_message_tracking_id")
        batch_op.drop_column("delivered_at")
        batch_op.drop_column("provider_message_id")
        batch_op.drop_column("tracking_id")
