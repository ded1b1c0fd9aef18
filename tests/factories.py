"""Rows for tests, inserted directly, and a chat that sends messages through dispatch."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import (
    ChannelAccount,
    ClassQuota,
    ClassSession,
    ClassStatus,
    Form,
    Person,
    Program,
    Registration,
    RegistrationStatus,
    TheoryLevel,
    TrainingClass,
    Unit,
    UnitKind,
)
from db.repos import Repos
from db.text import fold
from handlers.choices import buttons_of, render_numbered
from handlers.dispatch import dispatch
from handlers.types import ChatSettings, Incoming, Reply

# 01:00 on 1 Dec 2026 in Vietnam (UTC+7) while it is still 30 Nov in UTC, so a test that
# used the UTC date instead of the school's would see the wrong "today".
NOW = dt.datetime(2026, 11, 30, 18, 0, tzinfo=dt.UTC)
TODAY = dt.date(2026, 12, 1)
# share_contact's default: the contact is the chat user's own.
OWN = "\x00own"


async def add_unit(session: AsyncSession, code: str, name: str, parent: Unit | None = None) -> Unit:
    """Insert a unit."""
    unit = Unit(
        code=code,
        name=name,
        kind=UnitKind.DEPARTMENT,
        parent_id=parent.id if parent else None,
    )
    session.add(unit)
    await session.flush()
    return unit


async def add_person(
    session: AsyncSession,
    phone: str,
    full_name: str,
    unit: Unit,
    *,
    birth_year: int | None = 1985,
    theory_level: TheoryLevel | None = None,
) -> Person:
    """Insert a roster person."""
    person = Person(
        phone=phone,
        full_name=full_name,
        unit_id=unit.id,
        birth_year=birth_year,
        theory_level=theory_level,
    )
    session.add(person)
    await session.flush()
    return person


async def add_class(
    session: AsyncSession,
    code: str,
    title: str,
    *,
    program: Program = Program.KY_NANG,
    form: Form = Form.FULL_TIME,
    start: dt.date,
    days: int = 5,
    deadline: dt.date | None = None,
    capacity: int = 30,
    max_age: int | None = None,
    theory_level: TheoryLevel | None = None,
    status: ClassStatus = ClassStatus.OPEN,
    location: str = "Trường Chính trị tỉnh",
    quotas: dict[Unit, int] | None = None,
) -> TrainingClass:
    """Insert a class, its search text folded the way the roster import folds it."""
    training_class = TrainingClass(
        code=code,
        title=title,
        search_text=fold(f"{code} {title}"),
        program=program,
        form=form,
        location=location,
        start_date=start,
        end_date=start + dt.timedelta(days=days - 1),
        registration_deadline=deadline or start - dt.timedelta(days=7),
        capacity=capacity,
        max_age=max_age,
        required_theory_level=theory_level,
        status=status,
    )
    session.add(training_class)
    await session.flush()
    for unit, seats in (quotas or {}).items():
        session.add(ClassQuota(class_id=training_class.id, unit_id=unit.id, seats=seats))
    await session.flush()
    return training_class


async def add_session(
    session: AsyncSession,
    training_class: TrainingClass,
    starts_at: dt.datetime,
    hours: int = 4,
    topic: str = "",
) -> None:
    """Insert one item of a class's schedule."""
    session.add(
        ClassSession(
            class_id=training_class.id,
            starts_at=starts_at,
            ends_at=starts_at + dt.timedelta(hours=hours),
            topic=topic,
        )
    )
    await session.flush()


async def add_registration(
    session: AsyncSession,
    person: Person,
    training_class: TrainingClass,
    status: RegistrationStatus = RegistrationStatus.CONFIRMED,
) -> None:
    """Insert a registration."""
    session.add(Registration(person_id=person.id, class_id=training_class.id, status=status))
    await session.flush()


async def link(session: AsyncSession, person: Person, channel: str, external_id: str) -> None:
    """Link a chat account to a person."""
    session.add(ChannelAccount(person_id=person.id, channel=channel, external_id=external_id))
    await session.flush()


@dataclass
class Chat:
    """One chat with the bot; each message is its own unit of work, as in production."""

    sessionmaker: async_sessionmaker[AsyncSession]
    user_id: str = "u1"
    channel: str = "test"
    now: dt.datetime = NOW
    settings: ChatSettings = field(default_factory=ChatSettings)
    # The app's language, as Telegram reports it (language_code).
    language_hint: str | None = None
    # A channel without verified phone numbers (Zalo): a typed phone starts a code.
    links_by_code: bool = False
    last: list[Reply] = field(default_factory=list)
    # The language the last replies are in.
    language: str = ""

    async def send(self, text: str | None = None, *, button: str | None = None) -> list[Reply]:
        """Send text or press a button; return the replies."""
        return await self._dispatch(text=text, button=button)

    async def share_contact(self, phone: str, user_id: str | None = OWN) -> list[Reply]:
        """Share a contact of `user_id` (default: the own; None: of no user); return replies."""
        contact_user_id = self.user_id if user_id == OWN else user_id
        return await self._dispatch(contact_phone=phone, contact_user_id=contact_user_id)

    async def _dispatch(self, **event: str | None) -> list[Reply]:
        incoming = Incoming(
            channel=self.channel,
            chat_id=self.user_id,
            user_id=self.user_id,
            language_hint=self.language_hint,
            links_by_code=self.links_by_code,
            **event,
        )
        async with self.sessionmaker() as session, session.begin():
            answer = await dispatch(incoming, Repos(session), now=self.now, settings=self.settings)
        self.last = answer.replies
        self.language = answer.language
        return self.last

    async def say(self, text: str, language: str = "vi") -> str:
        """Send text and return the replies as the console would print them."""
        return render(await self.send(text), language)

    async def press(self, data: str, language: str = "vi") -> str:
        """Press a button by its data and return the replies as text."""
        return render(await self.send(button=data), language)

    def data(self) -> list[str]:
        """Return the data of the buttons last shown, in numbered order."""
        return [button.data for button in buttons_of(self.last)]


def render(replies: list[Reply], language: str = "vi") -> str:
    """Return replies as plain text with numbered buttons."""
    return "\n\n".join(render_numbered(replies, language))
