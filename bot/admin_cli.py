"""`trainingbot admin …`: web admin accounts, made and changed from the command line.

The password is asked twice without echo at a terminal; a script pipes it in on standard
input (`--password-stdin`, or whenever standard input is not a terminal). It is never an
argument, which other users of the machine could read in the process list.
"""

from __future__ import annotations

import datetime as dt
import getpass
from typing import TextIO

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.web.passwords import hash_in_thread, password_problem
from db import accounts
from db.models import AccountRole
from db.phone import normalize_phone
from db.repos import PeopleRepo


class AdminCommandError(Exception):
    """A problem with the command's input, worded for the person typing it."""


def read_password(stdin: TextIO, *, from_stdin: bool) -> str:
    """Return a new password: from standard input, or asked twice at the terminal."""
    if from_stdin or not stdin.isatty():
        password = stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("New password: ")
        if getpass.getpass("Repeat it: ") != password:
            raise AdminCommandError("the two passwords differ; nothing changed")
    problem = password_problem(password)
    if problem is not None:
        raise AdminCommandError(f"{problem}; nothing changed")
    return password


async def create_user(
    sessionmaker: async_sessionmaker[AsyncSession],
    username: str,
    role: str,
    person_phone: str | None,
    password: str,
    out: TextIO,
) -> int:
    """Add a web admin account; a unit head's is tied to their roster person."""
    try:
        name = accounts.check_username(username)
    except accounts.AccountError as exc:
        raise AdminCommandError(str(exc)) from None
    password_hash = await hash_in_thread(password)
    async with sessionmaker() as session, session.begin():
        person = None
        if person_phone is not None:
            phone = normalize_phone(person_phone)
            person = await PeopleRepo(session).by_phone(phone) if phone else None
            if person is None:
                raise AdminCommandError(f"no roster person with phone {person_phone!r}")
        try:
            account = await accounts.add_account(
                session, name, password_hash, AccountRole(role), person
            )
        except accounts.AccountError as exc:
            raise AdminCommandError(str(exc)) from None
        scope = "every unit" if account.role == AccountRole.ADMIN else "their unit and below"
        who = f" as {person.full_name} ({person.unit.name})" if person else ""
    print(f"account {name!r} created: {role}{who}, sees {scope}", file=out)
    return 0


async def set_password(
    sessionmaker: async_sessionmaker[AsyncSession], username: str, password: str, out: TextIO
) -> int:
    """Change an account's password; its sessions end and its lock-out is lifted."""
    password_hash = await hash_in_thread(password)
    async with sessionmaker() as session, session.begin():
        account = await accounts.account_by_name(session, username)
        if account is None:
            raise AdminCommandError(f"no account named {username!r}")
        await accounts.set_password(session, account, password_hash, dt.datetime.now(dt.UTC))
    print(f"password of {account.username!r} changed; its sessions are closed", file=out)
    return 0


async def list_users(sessionmaker: async_sessionmaker[AsyncSession], out: TextIO) -> int:
    """Print every account: name, role, person, last login."""
    async with sessionmaker() as session:
        found = await accounts.accounts(session)
    if not found:
        print("no accounts yet: trainingbot admin create-user NAME", file=out)
    for account in found:
        person = account.person
        who = f"{person.full_name} ({person.unit.name})" if person else "-"
        last = (
            account.last_login_at.strftime("%Y-%m-%d %H:%M UTC")
            if account.last_login_at
            else "never"
        )
        state = "" if account.active else "  (disabled)"
        print(
            f"{account.username:<24} {account.role.value:<10} {who:<40} last login: {last}{state}",
            file=out,
        )
    return 0
