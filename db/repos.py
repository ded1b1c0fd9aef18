"""Repositories grouped per session: what the flows read and write. None of them commits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from db.catalog import ClassRepo
from db.models import ChannelAccount, Conversation, Person, UTCDateTime, utcnow
from db.session import upsert_insert


class PeopleRepo:
    """Roster people and the chat accounts linked to them."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_phone(self, phone: str) -> Person | None:
        """Return the person with this (normalised) phone, with their unit, or None."""
        stmt = select(Person).options(joinedload(Person.unit)).where(Person.phone == phone)
        return (await self.session.scalars(stmt)).first()

    async def for_account(self, channel: str, external_id: str, now: dt.datetime) -> Person | None:
        """Return the person linked to this chat account, noting that it was seen now."""
        stmt = (
            select(ChannelAccount)
            .options(joinedload(ChannelAccount.person).joinedload(Person.unit))
            .where(ChannelAccount.channel == channel, ChannelAccount.external_id == external_id)
        )
        account = (await self.session.scalars(stmt)).first()
        if account is None:
            return None
        account.last_seen_at = now
        return account.person

    async def ensure_account(self, person: Person, channel: str, external_id: str) -> None:
        """Link `person` to the chat account, moving an existing link if needed."""
        stmt = select(ChannelAccount).where(
            ChannelAccount.channel == channel,
            (ChannelAccount.external_id == external_id) | (ChannelAccount.person_id == person.id),
        )
        accounts = list((await self.session.scalars(stmt)).all())
        if len(accounts) == 1:
            accounts[0].person_id = person.id
            accounts[0].external_id = external_id
            return
        for account in accounts:  # two half-matching links: replace both with one
            await self.session.delete(account)
        await self.session.flush()
        self.session.add(
            ChannelAccount(person_id=person.id, channel=channel, external_id=external_id)
        )

    async def account_of(self, person_id: int, channel: str) -> ChannelAccount | None:
        """Return the chat account `person_id` has on `channel`, or None."""
        stmt = (
            select(ChannelAccount)
            .where(ChannelAccount.person_id == person_id, ChannelAccount.channel == channel)
            .execution_options(populate_existing=True)
        )
        return (await self.session.scalars(stmt)).first()

    async def link(
        self, person: Person, channel: str, external_id: str, now: dt.datetime
    ) -> ChannelAccount:
        """Link the chat account to `person` unless they have another account on `channel`.

        Return the person's account on `channel` afterwards; its `external_id` is not
        `external_id` when another account holds the link, which is never moved. The chat
        account's link to someone else is replaced. Two accounts linking one person at once
        both insert with ON CONFLICT DO NOTHING: one wins, the other finds the winner's row.
        """
        held = await self.account_of(person.id, channel)
        if held is not None:
            return held
        stmt = select(ChannelAccount).where(
            ChannelAccount.channel == channel, ChannelAccount.external_id == external_id
        )
        for previous in (await self.session.scalars(stmt)).all():
            await self.session.delete(previous)
        await self.session.flush()
        await self.session.execute(
            upsert_insert(self.session, ChannelAccount)
            .values(
                person_id=person.id,
                channel=channel,
                external_id=external_id,
                reachable=True,
                linked_at=now,
                last_seen_at=now,
            )
            .on_conflict_do_nothing()
        )
        account = await self.account_of(person.id, channel)
        if account is None:  # the chat account was linked to someone else meanwhile
            raise RuntimeError(f"chat account on {channel} was linked concurrently")
        return account

    async def unlink(self, channel: str, external_id: str) -> bool:
        """Delete the chat account's link; return whether there was one."""
        stmt = select(ChannelAccount).where(
            ChannelAccount.channel == channel, ChannelAccount.external_id == external_id
        )
        account = (await self.session.scalars(stmt)).first()
        if account is None:
            return False
        await self.session.delete(account)
        return True

    async def admins(self, phones: Sequence[str]) -> list[Person]:
        """Return the school's admins: people marked is_admin or with one of `phones`."""
        stmt = (
            select(Person)
            .options(joinedload(Person.unit))
            .where(or_(Person.is_admin.is_(True), Person.phone.in_(phones)))
            .order_by(Person.id)
        )
        return list((await self.session.scalars(stmt)).all())

    async def set_reachable(self, channel: str, external_id: str, reachable: bool) -> bool:
        """Note whether the bot can write to this chat account; return False if none is linked.

        An account that becomes unreachable keeps the time it did (`unreachable_since`), so
        the unit heads are told once per time it happens.
        """
        since = (
            None
            if reachable
            else func.coalesce(ChannelAccount.unreachable_since, literal(utcnow(), UTCDateTime()))
        )
        result = await self.session.execute(
            update(ChannelAccount)
            .where(ChannelAccount.channel == channel, ChannelAccount.external_id == external_id)
            .values(reachable=reachable, unreachable_since=since)
            .returning(ChannelAccount.id)
        )
        return result.first() is not None


class ConversationRepo:
    """The state row of each chat."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_or_create(self, channel: str, chat_id: str) -> Conversation:
        """Return the chat's conversation row, adding an empty one for a new chat.

        The row is locked until the unit of work ends, so two messages of one chat are
        answered one after the other, each seeing the state the other saved, even in two
        processes (SELECT … FOR UPDATE on PostgreSQL; on SQLite every unit of work holds
        the write lock anyway). Two first messages of a new chat at once both insert the
        row with ON CONFLICT DO NOTHING: one adds it, the other waits and finds it.
        """
        key = (Conversation.channel == channel, Conversation.chat_id == chat_id)
        locked = (
            select(Conversation)
            .where(*key)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        conversation = (await self.session.scalars(locked)).first()
        if conversation is not None:
            return conversation
        await self.session.execute(
            upsert_insert(self.session, Conversation)
            .values(channel=channel, chat_id=chat_id, language=None, data={}, choices=[])
            .on_conflict_do_nothing(index_elements=["channel", "chat_id"])
        )
        return (await self.session.scalars(locked)).one()


class Repos:
    """Every repository over one session, as one unit of work sees them."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.classes = ClassRepo(session)
        self.people = PeopleRepo(session)
        self.conversations = ConversationRepo(session)
