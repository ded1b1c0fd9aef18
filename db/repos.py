"""Repositories grouped per session: what the flows read and write. None of them commits."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from db.catalog import ClassRepo
from db.models import ChannelAccount, Conversation, Person


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


class ConversationRepo:
    """The state row of each chat."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_or_create(self, channel: str, chat_id: str) -> Conversation:
        """Return the chat's conversation row, adding an empty one for a new chat."""
        conversation = await self.session.get(Conversation, (channel, chat_id))
        if conversation is None:
            conversation = Conversation(
                channel=channel, chat_id=chat_id, data={}, choices=[], language=None
            )
            self.session.add(conversation)
        return conversation


class Repos:
    """Every repository over one session, as one unit of work sees them."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.classes = ClassRepo(session)
        self.people = PeopleRepo(session)
        self.conversations = ConversationRepo(session)
