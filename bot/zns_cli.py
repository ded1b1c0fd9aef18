"""`trainingbot zns status` and `trainingbot zns set-token`: ZNS spend and quota, and a new
authorization when Zalo refused the stored refresh token."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import sys
from typing import Any, TextIO

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import Settings


class ZnsCommandError(Exception):
    """A failure to report as one sentence."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def show(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    out: TextIO,
    *,
    live: bool = False,
) -> int:
    """Print ZNS's state; with `live`, ask Zalo for the day's quota first."""
    from bot.zns_status import status_lines, zns_status

    if live and settings.zns.enabled:
        await _ask_quota(sessionmaker, settings, out)
    async with sessionmaker() as session:
        state = await zns_status(session, settings, _now())
    for line in status_lines(state, settings.bot.zone):
        print(line, file=out)
    return 0


async def _ask_quota(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, out: TextIO
) -> None:
    """Ask Zalo for today's quota and record it (as a sent message's answer would)."""
    from bot.channels.zns import ZnsChannel, api_of
    from bot.channels.zns_api import Accepted, ZnsError
    from bot.channels.zns_tokens import TokenUnavailable

    channel = ZnsChannel(api_of(settings.zns), sessionmaker, settings)
    await channel.initialize()
    try:
        quota = await channel.api.quota(await channel.tokens.access_token())
        async with sessionmaker() as session, session.begin():
            await channel.accepted(session, Accepted("", quota), _now())
    except (ZnsError, TokenUnavailable) as exc:
        print(f"zns: Zalo's quota could not be read now ({exc})", file=out)
    finally:
        await channel.shutdown()


async def set_token(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    token: str,
    out: TextIO,
) -> int:
    """Store a refresh token from a new authorization; check it with Zalo at once."""
    from bot.channels.zns import ZnsChannel, api_of
    from bot.channels.zns_tokens import TokenUnavailable
    from db import zns

    section = settings.zns
    if section.app_id is None:
        raise ZnsCommandError("set [zns] app_id (the OA's app) first")
    token = token.strip()
    if not token or any(char.isspace() for char in token):
        raise ZnsCommandError("a refresh token is one word, as Zalo gives it")
    configured = section.refresh_token.get_secret_value() if section.refresh_token else None
    async with sessionmaker() as session, session.begin():
        await zns.set_refresh_token(
            session, section.app_id, token, configured=configured, now=_now()
        )
    if not section.enabled:
        print("refresh token stored; [zns] is off, so it was not checked with Zalo", file=out)
        return 0
    # The check is a refresh: the token given is used, its successor stored.
    channel = ZnsChannel(api_of(section), sessionmaker, settings)
    await channel.initialize()
    try:
        await channel.tokens.access_token()
    except TokenUnavailable as exc:
        raise ZnsCommandError(f"Zalo did not accept it: {exc.reason}") from None
    finally:
        await channel.shutdown()
    print("refresh token accepted by Zalo; the new tokens are stored and ZNS goes on", file=out)
    return 0


def read_token(stdin: TextIO, *, from_stdin: bool) -> str:
    """Read the token from standard input, or ask for it without echo."""
    if from_stdin:
        return stdin.readline().strip()
    return getpass.getpass("refresh token (not shown): ").strip()


async def zns_command(settings: Settings, args: argparse.Namespace) -> int:
    """Run `trainingbot zns status` or `trainingbot zns set-token`."""
    from bot.cli import CommandError, open_database

    async with open_database(settings) as sessionmaker:
        try:
            if args.zns_command == "status":
                return await show(sessionmaker, settings, sys.stdout, live=args.live)
            token = read_token(sys.stdin, from_stdin=args.token_stdin)
            return await set_token(sessionmaker, settings, token, sys.stdout)
        except ZnsCommandError as exc:
            raise CommandError(str(exc)) from None


def add_zns_commands(commands: Any) -> None:
    """Add `trainingbot zns …` to the parser."""
    parser = commands.add_parser(
        "zns", help="ZNS (Zalo OA template messages): spend, quota, tokens"
    )
    actions = parser.add_subparsers(dest="zns_command", required=True, metavar="ACTION")
    status = actions.add_parser("status", help="ZNS spend today and this month, quota, tokens")
    status.add_argument("--live", action="store_true", help="ask Zalo for today's quota first")
    status.set_defaults(handler=zns_command)
    token = actions.add_parser(
        "set-token", help="store the refresh token of a new authorization of the app for the OA"
    )
    token.add_argument(
        "--token-stdin", action="store_true", help="read the token from standard input"
    )
    token.set_defaults(handler=zns_command)
