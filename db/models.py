"""Typed SQLAlchemy 2 models: the roster, the class catalog, registrations and plumbing."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    """Return the current time, timezone-aware in UTC."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC that always reads back timezone-aware.

    SQLite keeps no offset and returns naive values; PostgreSQL returns aware ones. This
    makes both behave like PostgreSQL.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: dt.datetime | None, _dialect: Dialect
    ) -> dt.datetime | None:
        """Refuse naive datetimes and store aware ones in UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware one")
        return value.astimezone(dt.UTC)

    def process_result_value(
        self, value: dt.datetime | None, _dialect: Dialect
    ) -> dt.datetime | None:
        """Return the stored value as an aware UTC datetime."""
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UTCDateTime(),
        dict[str, Any]: JSON,
    }


def _enum(cls: type[StrEnum]) -> Enum:
    # Stored as plain strings with a CHECK-free VARCHAR so adding a member needs no migration
    # of a database enum type on PostgreSQL.
    return Enum(
        cls,
        native_enum=False,
        create_constraint=False,
        length=32,
        values_callable=lambda members: [m.value for m in members],
    )


class UnitKind(StrEnum):
    SCHOOL = "school"
    PARTY_COMMITTEE = "party_committee"
    DEPARTMENT = "department"
    DISTRICT = "district"
    POLITICAL_CENTER = "political_center"
    COMMUNE = "commune"
    OTHER = "other"


class TheoryLevel(StrEnum):
    """Political theory level (trình độ lý luận chính trị), ordered from lowest."""

    SO_CAP = "so_cap"
    TRUNG_CAP = "trung_cap"
    CAO_CAP = "cao_cap"

    @property
    def rank(self) -> int:
        """Return the level's order: a higher level satisfies a lower requirement."""
        return list(TheoryLevel).index(self) + 1


class Role(StrEnum):
    LEARNER = "learner"
    UNIT_HEAD = "unit_head"
    ADMIN = "admin"


class Program(StrEnum):
    SO_CAP_LLCT = "so_cap_llct"
    TRUNG_CAP_LLCT = "trung_cap_llct"
    CAP_NHAT_KIEN_THUC = "cap_nhat_kien_thuc"
    KY_NANG = "ky_nang"
    NGHIEP_VU = "nghiep_vu"
    CHUYEN_DE = "chuyen_de"
    DANG_VIEN_MOI = "dang_vien_moi"


class Form(StrEnum):
    FULL_TIME = "full_time"
    PART_TIME = "part_time"
    ONLINE = "online"


class ClassStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class RegistrationStatus(StrEnum):
    PENDING_APPROVAL = "pending_approval"
    CONFIRMED = "confirmed"
    WAITLISTED = "waitlisted"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    ATTENDED = "attended"
    # A waitlisted person offered a freed seat, held for them until offer_expires_at.
    OFFERED = "offered"


LIVE_REGISTRATION_STATUSES = (
    RegistrationStatus.PENDING_APPROVAL,
    RegistrationStatus.CONFIRMED,
    RegistrationStatus.WAITLISTED,
    RegistrationStatus.ATTENDED,
    RegistrationStatus.OFFERED,
)


_LIVE_SQL = "status IN ({})".format(", ".join(f"'{s.value}'" for s in LIVE_REGISTRATION_STATUSES))


class InboxStatus(StrEnum):
    """Where a stored platform update is: waiting, answered in the database, replies sent."""

    RECEIVED = "received"
    HANDLED = "handled"
    ANSWERED = "answered"
    FAILED = "failed"


class OutboxStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    # Not sent, and rightly so: a later reminder superseded it, or it expired (the class
    # started) while it waited.
    SKIPPED = "skipped"


class Unit(Base):
    __tablename__ = "unit"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[UnitKind] = mapped_column(_enum(UnitKind))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("unit.id", ondelete="SET NULL"))

    parent: Mapped[Unit | None] = relationship(remote_side=[id])


class Person(Base):
    """A roster entry: a cadre, civil servant or public employee the school trains."""

    __tablename__ = "person"

    id: Mapped[int] = mapped_column(primary_key=True)
    phone: Mapped[str] = mapped_column(String(10), unique=True)
    full_name: Mapped[str] = mapped_column(String(255))
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id", ondelete="RESTRICT"), index=True)
    position: Mapped[str] = mapped_column(String(255), default="")
    gender: Mapped[str | None] = mapped_column(String(16))
    birth_year: Mapped[int | None] = mapped_column(Integer)
    theory_level: Mapped[TheoryLevel | None] = mapped_column(_enum(TheoryLevel))
    is_learner: Mapped[bool] = mapped_column(Boolean, default=True)
    is_unit_head: Mapped[bool] = mapped_column(Boolean, default=False)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    # The channel notices go to when the person is linked on several; None: the one they
    # used last.
    preferred_channel: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    unit: Mapped[Unit] = relationship()

    @property
    def roles(self) -> frozenset[Role]:
        """Return the person's roles as a set."""
        flags = {
            Role.LEARNER: self.is_learner,
            Role.UNIT_HEAD: self.is_unit_head,
            Role.ADMIN: self.is_admin,
        }
        return frozenset(role for role, held in flags.items() if held)


class ChannelAccount(Base):
    """Links a chat-platform user to a roster person; at most one account per channel."""

    __tablename__ = "channel_account"
    __table_args__ = (
        UniqueConstraint("channel", "external_id"),
        UniqueConstraint("person_id", "channel"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(64))
    reachable: Mapped[bool] = mapped_column(Boolean, default=True)
    # When the account last became unreachable (blocked the bot); None while reachable.
    unreachable_since: Mapped[dt.datetime | None]
    # The earliest time the next notice may go to this chat: the per-chat rate limit,
    # shared by every process.
    next_send_at: Mapped[dt.datetime | None]
    linked_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime | None]

    person: Mapped[Person] = relationship()


class TrainingClass(Base):
    """A class (lớp) the school opens: one run of a program at a place and time."""

    __tablename__ = "training_class"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    title: Mapped[str] = mapped_column(String(500))
    # Title and code folded to lower-case ASCII (see db.text.fold), so a search
    # without diacritics is one LIKE on both SQLite and PostgreSQL.
    search_text: Mapped[str] = mapped_column(Text, default="")
    program: Mapped[Program] = mapped_column(_enum(Program), index=True)
    form: Mapped[Form] = mapped_column(_enum(Form))
    location: Mapped[str] = mapped_column(String(500), default="")
    start_date: Mapped[dt.date] = mapped_column(Date, index=True)
    end_date: Mapped[dt.date] = mapped_column(Date)
    registration_deadline: Mapped[dt.date] = mapped_column(Date)
    capacity: Mapped[int] = mapped_column(Integer)
    max_age: Mapped[int | None] = mapped_column(Integer)
    required_theory_level: Mapped[TheoryLevel | None] = mapped_column(_enum(TheoryLevel))
    requires_approval: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[ClassStatus] = mapped_column(_enum(ClassStatus), default=ClassStatus.OPEN)
    # Online classes: where to join (sent the day before).
    online_url: Mapped[str | None] = mapped_column(String(500))
    # The dates, times, place and status last announced to its registrants; the change
    # sweep compares it with the class as it is now.
    announced: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    quotas: Mapped[list[ClassQuota]] = relationship(
        back_populates="training_class", cascade="all, delete-orphan"
    )
    sessions: Mapped[list[ClassSession]] = relationship(
        back_populates="training_class",
        cascade="all, delete-orphan",
        order_by="ClassSession.starts_at",
    )


class ClassQuota(Base):
    """Seats of a class reserved for one unit (chỉ tiêu)."""

    __tablename__ = "class_quota"

    class_id: Mapped[int] = mapped_column(
        ForeignKey("training_class.id", ondelete="CASCADE"), primary_key=True
    )
    unit_id: Mapped[int] = mapped_column(
        ForeignKey("unit.id", ondelete="CASCADE"), primary_key=True
    )
    seats: Mapped[int] = mapped_column(Integer)

    training_class: Mapped[TrainingClass] = relationship(back_populates="quotas")
    unit: Mapped[Unit] = relationship()


class ClassSession(Base):
    """One dated item of a class's schedule."""

    __tablename__ = "class_session"
    # A schedule import matches sessions by class and start; the constraint's index also
    # serves every lookup of a class's sessions.
    __table_args__ = (UniqueConstraint("class_id", "starts_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    class_id: Mapped[int] = mapped_column(ForeignKey("training_class.id", ondelete="CASCADE"))
    starts_at: Mapped[dt.datetime]
    ends_at: Mapped[dt.datetime]
    topic: Mapped[str] = mapped_column(String(500), default="")
    location: Mapped[str | None] = mapped_column(String(500))

    training_class: Mapped[TrainingClass] = relationship(back_populates="sessions")


class Registration(Base):
    """A person's place (or request for one) in a class."""

    __tablename__ = "registration"
    __table_args__ = (
        # One live registration per person and class; cancelled and rejected ones stay as
        # history and do not block registering again.
        Index(
            "uq_registration_live_person_class",
            "person_id",
            "class_id",
            unique=True,
            sqlite_where=text(_LIVE_SQL),
            postgresql_where=text(_LIVE_SQL),
        ),
        Index("ix_registration_class_id_status", "class_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"), index=True)
    class_id: Mapped[int] = mapped_column(ForeignKey("training_class.id", ondelete="CASCADE"))
    status: Mapped[RegistrationStatus] = mapped_column(_enum(RegistrationStatus))
    registered_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("person.id", ondelete="SET NULL")
    )
    # Who approved or rejected it (a unit head or an admin).
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    reason: Mapped[str | None] = mapped_column(String(500))
    # While OFFERED: when the held seat passes to the next person on the waitlist.
    offer_expires_at: Mapped[dt.datetime | None]
    # When the latest reminder queued for it was due (the reminder sweep queues only a
    # later one).
    reminded_for: Mapped[dt.datetime | None]
    # While PENDING_APPROVAL: when the unit heads were told it waits too long.
    head_alerted_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    person: Mapped[Person] = relationship(foreign_keys=[person_id])
    registered_by: Mapped[Person | None] = relationship(foreign_keys=[registered_by_id])
    training_class: Mapped[TrainingClass] = relationship()


class OutboxMessage(Base):
    """A notification to deliver; its idempotency key makes a repeated enqueue a no-op."""

    __tablename__ = "outbox_message"
    __table_args__ = (
        Index("ix_outbox_message_status_due_at", "status", "due_at"),
        Index("ix_outbox_message_group_key", "group_key"),
        Index("ix_outbox_message_broadcast_id_status", "broadcast_id", "status"),
        Index("ix_outbox_message_tracking_id", "tracking_id"),
        Index("ix_outbox_message_provider_message_id", "provider_message_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    channel: Mapped[str | None] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[OutboxStatus] = mapped_column(_enum(OutboxStatus), default=OutboxStatus.QUEUED)
    due_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Urgent notices (a class moved or cancelled, a seat offered) go out in quiet hours too.
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    # Not sent after this (a reminder once the class started): it ends SKIPPED.
    expires_at: Mapped[dt.datetime | None]
    # Notices of one group (a registration's reminders) supersede each other: queuing
    # one skips the older ones still queued.
    group_key: Mapped[str | None] = mapped_column(String(100))
    # A broadcast's notice: its text is the broadcast's message (one copy, not one per row).
    broadcast_id: Mapped[int | None] = mapped_column(
        ForeignKey("broadcast.id", ondelete="SET NULL")
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None]
    # ZNS: the id the message is sent with (a function of the idempotency key, so every
    # attempt and every process uses the same one), set when it is claimed for ZNS.
    tracking_id: Mapped[str | None] = mapped_column(String(48))
    # The platform's id of the message it accepted (ZNS: msg_id).
    provider_message_id: Mapped[str | None] = mapped_column(String(64))
    # When the platform reported it reached the person's device (a ZNS receipt); SENT
    # rows without it were accepted but not (yet) confirmed delivered.
    delivered_at: Mapped[dt.datetime | None]


class InboundUpdate(Base):
    """A platform update stored before it is acknowledged, so none is lost in a crash.

    `update_key` is the platform's id of the update (Telegram's update_id); a second
    delivery of the same key is dropped by the unique constraint. Updates of one chat are
    handled in `id` order.
    """

    __tablename__ = "inbound_update"
    __table_args__ = (
        UniqueConstraint("channel", "update_key"),
        Index("ix_inbound_update_status_channel_chat_id", "status", "channel", "chat_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    update_key: Mapped[str] = mapped_column(String(64))
    chat_id: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[InboxStatus] = mapped_column(_enum(InboxStatus), default=InboxStatus.RECEIVED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[dt.datetime | None]
    # The rendered replies, kept between handling and sending so a crash resends them.
    replies: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    last_error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    handled_at: Mapped[dt.datetime | None]


class Conversation(Base):
    """The state of one chat: language and where it is in a flow, so any process can carry on."""

    __tablename__ = "conversation"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    chat_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    language: Mapped[str | None] = mapped_column(String(8))
    flow: Mapped[str | None] = mapped_column(String(32))
    step: Mapped[str | None] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The buttons last shown, as {"data": callback data, "words": [folded labels]}, so "2"
    # or a button's words typed in a chat without buttons press it.
    choices: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    expires_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DeliveryPace(Base):
    """A channel's global send rate, shared by every process: the next free send slot.

    A sender reserves slots by moving `next_at` on under the row's lock; `slowdown`
    stretches the interval after a 429 and eases back after sends that went through.
    """

    __tablename__ = "delivery_pace"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    next_at: Mapped[dt.datetime]
    slowdown: Mapped[float] = mapped_column(Float, default=1.0)


class JobRun(Base):
    """When a periodic job runs next; claiming the row makes one process of many run it."""

    __tablename__ = "job_run"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_run_at: Mapped[dt.datetime]
    last_started_at: Mapped[dt.datetime | None]
    last_finished_at: Mapped[dt.datetime | None]
    last_outcome: Mapped[str | None] = mapped_column(String(500))


class LinkCode(Base):
    """A one-time code that links a chat account where the platform cannot prove a phone.

    Zalo gives no verified phone number, so a Zalo account is linked to a roster person
    only once it types a code that reached that person some other way: sent to their
    account on another channel (`external_id` is then the account that asked), or issued
    by a unit head or an admin (`external_id` None: any account typing the person's phone
    and the code). Only a hash of the code is stored; it is used once, expires, and too
    many wrong codes lock it for a while.
    """

    __tablename__ = "link_code"
    __table_args__ = (Index("ix_link_code_person_id_channel", "person_id", "channel"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str | None] = mapped_column(String(64))
    issued_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    code_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]
    # Wrong codes typed since the last lock.
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None]


# ---------------------------------------------------------------------------- web admin


class AccountRole(StrEnum):
    """What a web admin account may do: everything, or one unit head's units."""

    ADMIN = "admin"
    UNIT_HEAD = "unit_head"


class AdminAccount(Base):
    """A login to the web admin. A unit head's account acts as its roster person."""

    __tablename__ = "admin_account"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    # argon2id, with its parameters and salt (PHC string format).
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[AccountRole] = mapped_column(_enum(AccountRole))
    # Unit heads: the roster person (their unit and the units under it are the scope).
    # Admins: optional, the person recorded as deciding approvals.
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    password_changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[dt.datetime | None]

    person: Mapped[Person | None] = relationship()


class AdminSession(Base):
    """A web admin login, stored so that every process serving the admin knows it."""

    __tablename__ = "admin_session"

    # SHA-256 of the cookie's token: the table alone does not let anyone in.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("admin_account.id", ondelete="CASCADE"), index=True
    )
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    account: Mapped[AdminAccount] = relationship()


class LoginThrottle(Base):
    """Failed logins counted per account name or client address, and the lock they cause."""

    __tablename__ = "login_throttle"

    # "account:<username>" or "address:<ip>".
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    first_failed_at: Mapped[dt.datetime]
    locked_until: Mapped[dt.datetime | None]


class AuditEntry(Base):
    """One admin action: who did what to what, when; written with the action itself."""

    __tablename__ = "audit_entry"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("admin_account.id", ondelete="SET NULL")
    )
    # Kept as written: the account may be renamed or removed later.
    username: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    target_label: Mapped[str] = mapped_column(String(500), default="")
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    client: Mapped[str | None] = mapped_column(String(64))


class WebUpload(Base):
    """A roster or class file uploaded for preview; applied at most once."""

    __tablename__ = "web_upload"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("admin_account.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    filename: Mapped[str] = mapped_column(String(255))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    applied_at: Mapped[dt.datetime | None]
    # What the apply did (counts and warnings), shown again on a second submit.
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class BroadcastStatus(StrEnum):
    # Being written: nothing is queued yet.
    DRAFT = "draft"
    # Queued in the outbox, one notice per recipient, going out.
    SENDING = "sending"
    # Every notice settled.
    DONE = "done"
    # Stopped by its author or an admin: what was not yet sent is not sent.
    STOPPED = "stopped"
    # A draft dropped before it was sent.
    CANCELLED = "cancelled"


class Broadcast(Base):
    """An announcement to an audience: a draft, then one outbox notice per recipient.

    The outbox rows point here (`outbox_message.broadcast_id`) and share `message`, so
    progress and the report are counts of those rows. The progress message shown in the
    author's chat is kept here too (`progress_*`), updated by the service on its own.
    """

    __tablename__ = "broadcast"
    __table_args__ = (
        Index("ix_broadcast_status", "status"),
        Index("ix_broadcast_form_key", "form_key", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[BroadcastStatus] = mapped_column(
        _enum(BroadcastStatus), default=BroadcastStatus.DRAFT
    )
    author_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    # The author's reach: this unit and the units under it; None: the whole school (admins).
    scope_unit_id: Mapped[int | None] = mapped_column(ForeignKey("unit.id", ondelete="CASCADE"))
    # The author's own words, and the message recipients get (an encoded Reply: a header
    # naming the sender, the text, a photo or document kept on its platform).
    text: Mapped[str] = mapped_column(Text, default="")
    message: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Who receives it (db.broadcasts.Audience as JSON); None until chosen.
    audience: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Sent in quiet hours too.
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    # The web admin form that made this draft (a random key per form shown), so that a
    # double submit of one form makes one draft.
    form_key: Mapped[str | None] = mapped_column(String(48))
    # The chat it was written in, where its progress and report are shown (None: written
    # elsewhere, e.g. on the web admin's page).
    origin_channel: Mapped[str | None] = mapped_column(String(16))
    origin_chat_id: Mapped[str | None] = mapped_column(String(64))
    # The progress message in that chat (its platform id, when the channel edits), what it
    # showed and when, and the lease of the process updating it.
    progress_message_id: Mapped[str | None] = mapped_column(String(64))
    progress_shown: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    progress_shown_at: Mapped[dt.datetime | None]
    progress_lease_until: Mapped[dt.datetime | None]
    # At the start: notices queued, and the audience's people who could not get one.
    recipients: Mapped[int] = mapped_column(Integer, default=0)
    never_linked: Mapped[int] = mapped_column(Integer, default=0)
    unreachable: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    stopped_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    # When the final report was shown in the origin chat.
    reported_at: Mapped[dt.datetime | None]


# ---------------------------------------------------------------------------- ZNS (Zalo OA)


class ZnsToken(Base):
    """The Official Account's OAuth tokens, rotated in place.

    A refresh token works once and is replaced by every refresh, so the new pair is
    stored here (committed) before the access token is used; `refresh_lease_until` lets
    one process of many refresh at a time (bot/channels/zns_tokens.py).
    """

    __tablename__ = "zns_token"

    app_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    access_token: Mapped[str | None] = mapped_column(Text)
    access_expires_at: Mapped[dt.datetime | None]
    refresh_token: Mapped[str] = mapped_column(Text)
    # SHA-256 of the configured refresh token that last seeded the row: another one in the
    # configuration is a new authorization and replaces the stored pair.
    seed_hash: Mapped[str | None] = mapped_column(String(64))
    refreshed_at: Mapped[dt.datetime | None]
    refresh_lease_until: Mapped[dt.datetime | None]
    # Zalo refused the refresh token (used, expired, revoked): an admin must authorize again.
    auth_error: Mapped[str | None] = mapped_column(String(500))
    auth_error_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ZnsBudget(Base):
    """Today's ZNS allowance, shared by every process: what was taken, what Zalo has left.

    A claim reserves ZNS sends under this row's lock, so the daily guard holds with
    several processes; Zalo's remaining quota comes back with every accepted message.
    """

    __tablename__ = "zns_budget"

    app_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # The school's local day the counters are of.
    day: Mapped[dt.date] = mapped_column(Date)
    # ZNS notices taken for sending that day.
    claimed: Mapped[int] = mapped_column(Integer, default=0)
    daily_quota: Mapped[int | None] = mapped_column(Integer)
    remaining: Mapped[int | None] = mapped_column(Integer)
    # `claimed` when `remaining` was reported: those taken since will use it up further.
    remaining_claimed: Mapped[int] = mapped_column(Integer, default=0)
    reported_at: Mapped[dt.datetime | None]
    # Nothing is sent by ZNS before then (the quota is used up, the tokens refused).
    held_until: Mapped[dt.datetime | None]
    held_reason: Mapped[str | None] = mapped_column(String(300))


class ZnsEvent(Base):
    """An event the OA's webhook received, stored once (Zalo posts it again for an hour)."""

    __tablename__ = "zns_event"
    __table_args__ = (
        Index("ix_zns_event_event_name_received_at", "event_name", "received_at"),
        Index("ix_zns_event_reply_status", "reply_status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # event_name and message.msg_id (or the follower and time of a follow).
    event_key: Mapped[str] = mapped_column(String(200), unique=True)
    event_name: Mapped[str] = mapped_column(String(64))
    # The OA user (Zalo's id of the person for this OA) who wrote or followed.
    user_id: Mapped[str | None] = mapped_column(String(64))
    msg_id: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # A text a user wrote to the OA: "pending" until the pointer to the bot is sent
    # ("sent"), or not ("skipped": told recently; "failed": refused).
    reply_status: Mapped[str | None] = mapped_column(String(16))
    reply_attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[dt.datetime | None]
    replied_at: Mapped[dt.datetime | None]
