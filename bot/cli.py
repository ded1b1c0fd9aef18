"""The `trainingbot` command line: one entry point for every command."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

from pydantic import SecretStr, ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import ConfigError, DatabaseSettings, Settings, load_settings
from bot.zns_cli import add_zns_commands
from db import migrate
from db.roster import KINDS
from db.session import create_engine, create_sessionmaker

log = logging.getLogger("trainingbot")

DEMO_DATABASE_URL = "sqlite+aiosqlite:///var/demo.db"
DEFAULT_DEMO_DATA = Path("../shared/data/demo")

Command = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]


class CommandError(Exception):
    """A failure to report to the user as one sentence, without a traceback."""


@asynccontextmanager
async def open_database(
    settings: Settings, *, migrated: bool = True
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Yield a session factory for the configured database, checking it is migrated."""
    engine = create_engine(settings.database.url.get_secret_value())
    try:
        try:
            current, head = await migrate.current(engine)
        except (OSError, DBAPIError) as exc:
            message = f"cannot open the database: {exc.__class__.__name__}: {exc}"
            raise CommandError(message) from None
        if migrated and current != head:
            raise CommandError("the database is not up to date: run `trainingbot db upgrade` first")
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


async def db_migrate(settings: Settings, args: argparse.Namespace) -> int:
    """Migrate the database up or down to the given revision."""
    move = migrate.upgrade if args.db_command == "upgrade" else migrate.downgrade
    async with open_database(settings, migrated=False) as sessionmaker:
        engine = sessionmaker.kw["bind"]
        await move(engine, args.revision)
        current, _head = await migrate.current(engine)
    print(f"database at revision {current or 'base (empty)'}")
    return 0


async def db_current(settings: Settings, _args: argparse.Namespace) -> int:
    """Print the database's revision and whether it is the newest."""
    async with open_database(settings, migrated=False) as sessionmaker:
        current, head = await migrate.current(sessionmaker.kw["bind"])
    state = "up to date" if current == head else f"behind: newest is {head}"
    print(f"database at revision {current or 'base (empty)'} ({state})")
    return 0 if current == head else 1


async def import_file(settings: Settings, args: argparse.Namespace) -> int:
    """Import units, people, classes or class schedules from a CSV or XLSX file."""
    from bot.roster_cli import import_command

    async with open_database(settings) as sessionmaker:
        return await import_command(
            sessionmaker, args.kind, Path(args.file), sys.stdout, zone=settings.bot.zone
        )


async def export_registrations(settings: Settings, args: argparse.Namespace) -> int:
    """Export registrations as CSV (to stdout by default) or XLSX."""
    from bot.roster_cli import export_command

    async with open_database(settings) as sessionmaker:
        return await export_command(
            sessionmaker,
            class_code=args.class_code,
            file_format=args.format,
            output=Path(args.output) if args.output else None,
            stdout=sys.stdout,
            zone=settings.bot.zone,
        )


async def _chat(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, args: argparse.Namespace
) -> int:
    """Chat in the terminal as `--as` in `--lang`."""
    from bot.channels.console import run_console

    return await run_console(
        sessionmaker,
        settings,
        as_phone=args.as_phone,
        language=args.lang,
        stdin=sys.stdin,
        stdout=sys.stdout,
    )


async def console(settings: Settings, args: argparse.Namespace) -> int:
    """Chat with the bot in the terminal."""
    async with open_database(settings) as sessionmaker:
        return await _chat(sessionmaker, settings, args)


async def demo(settings: Settings, args: argparse.Namespace) -> int:
    """Set up the demo database with the demo roster, dates shifted to today, and chat."""
    from bot.roster_cli import load_demo
    from db.roster import RosterError

    data = Path(args.data)
    if not (data / "people.csv").exists():
        raise CommandError(
            f"no demo roster in {data} (expected units.csv, people.csv, classes.csv)"
        )
    try:
        database = DatabaseSettings(url=SecretStr(args.database))
    except ValidationError as exc:
        message = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise CommandError(f"--database {message}") from None
    settings = settings.model_copy(update={"database": database})
    today = dt.datetime.now(settings.bot.zone).date()
    async with open_database(settings, migrated=False) as sessionmaker:
        await migrate.upgrade(sessionmaker.kw["bind"])
        try:
            summary = await load_demo(sessionmaker, data, today=today)
        except RosterError as exc:
            raise CommandError(str(exc)) from None
        print(summary)
        if args.no_console:
            return 0
        return await _chat(sessionmaker, settings, args)


async def run(settings: Settings, _args: argparse.Namespace) -> int:
    """Start the configured chat channels and jobs."""
    telegram = settings.telegram
    if telegram.token is None and settings.zalo.token is None and not settings.zns.kinds:
        raise CommandError(
            "no chat channel is configured: set [telegram] token or [zalo] token in "
            "config.toml (or TRAININGBOT_TELEGRAM_TOKEN / TRAININGBOT_ZALO_TOKEN), or turn "
            "[zns] on with a template for notices by ZNS alone; `make demo` chats offline in "
            "the terminal without one"
        )
    from bot.channels.telegram import startup_failure
    from bot.channels.zalo import startup_failure as zalo_startup_failure
    from bot.service import run_service
    from bot.web.app import ListenError

    # Our own loggers at INFO; httpx and httpcore stay at WARNING: their lines carry the
    # request URL, which holds the bot token.
    for name in ("bot", "handlers", "jobs"):
        logging.getLogger(name).setLevel(logging.INFO)
    async with open_database(settings) as sessionmaker:
        # The loops retry their own failures; what gets here failed the start-up: getMe,
        # the webhook's port, setWebhook. One sentence each, never the token.
        try:
            return await run_service(sessionmaker, settings)
        except ListenError as exc:
            raise CommandError(str(exc)) from None
        except Exception as exc:
            sentence = zalo_startup_failure(exc, settings) or startup_failure(exc, telegram)
            if sentence is None:
                raise
            raise CommandError(sentence) from None


async def jobs_command(settings: Settings, args: argparse.Namespace) -> int:
    """Run the due jobs and drain the outbox once, or show the queue and the jobs."""
    from bot.jobs_cli import run_once, show_status

    for name in ("bot", "handlers", "jobs"):
        logging.getLogger(name).setLevel(logging.INFO)
    async with open_database(settings) as sessionmaker:
        if args.jobs_command == "run-once":
            return await run_once(sessionmaker, settings, sys.stdout)
        return await show_status(sessionmaker, settings, sys.stdout)


async def web_command(settings: Settings, _args: argparse.Namespace) -> int:
    """Serve the web admin alone (no chat channel needed) until SIGTERM/SIGINT."""
    from bot.web.app import ListenError, run_web
    from bot.web_probes import configured_probes

    logging.getLogger("bot").setLevel(logging.INFO)
    async with (
        open_database(settings) as sessionmaker,
        configured_probes(settings, sessionmaker) as probes,
    ):
        try:
            return await run_web(sessionmaker, settings, probes)
        except ListenError as exc:
            raise CommandError(str(exc)) from None


async def admin_command(settings: Settings, args: argparse.Namespace) -> int:
    """Create web admin accounts, change their passwords, list them."""
    from bot.admin_cli import AdminCommandError, create_user, list_users, read_password
    from bot.admin_cli import set_password as change_password

    async with open_database(settings) as sessionmaker:
        try:
            if args.admin_command == "list-users":
                return await list_users(sessionmaker, sys.stdout)
            password = read_password(sys.stdin, from_stdin=args.password_stdin)
            if args.admin_command == "create-user":
                return await create_user(
                    sessionmaker, args.username, args.role, args.person, password, sys.stdout
                )
            return await change_password(sessionmaker, args.username, password, sys.stdout)
        except AdminCommandError as exc:
            raise CommandError(str(exc)) from None


def add_web_commands(commands: Any) -> None:
    """Add `trainingbot web` and `trainingbot admin …` to the parser."""
    commands.add_parser(
        "web", help="serve the web admin alone (trainingbot run serves it too)"
    ).set_defaults(handler=web_command)
    admin = commands.add_parser("admin", help="web admin accounts")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    create = admin_commands.add_parser("create-user", help="make a web admin account")
    create.add_argument("username")
    create.add_argument(
        "--role",
        choices=["admin", "unit_head"],
        default="admin",
        help="admin: every unit; unit_head: the person's unit and the units under it",
    )
    create.add_argument(
        "--person", metavar="PHONE", help="the roster person the account acts as (unit heads)"
    )
    password = admin_commands.add_parser("set-password", help="change an account's password")
    password.add_argument("username")
    for sub in (create, password):
        sub.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password from standard input (for scripts)",
        )
        sub.set_defaults(handler=admin_command)
    admin_commands.add_parser("list-users", help="list the accounts").set_defaults(
        handler=admin_command
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for every command."""
    parser = argparse.ArgumentParser(
        prog="trainingbot",
        description="Training classes assistant for the provincial Political School.",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $TRAININGBOT_CONFIG, else ./config.toml if present)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    database = commands.add_parser("db", help="database migrations")
    db_commands = database.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = db_commands.add_parser("upgrade", help="migrate to the newest schema")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(handler=db_migrate)
    downgrade = db_commands.add_parser("downgrade", help="migrate down (base empties it)")
    downgrade.add_argument("revision")
    downgrade.set_defaults(handler=db_migrate)
    db_commands.add_parser("current", help="show the schema revision").set_defaults(
        handler=db_current
    )

    importer = commands.add_parser(
        "import", help="import units, people, classes or class schedules (sessions)"
    )
    importer.add_argument("kind", choices=KINDS)
    importer.add_argument("file", help="a .csv or .xlsx file")
    importer.set_defaults(handler=import_file)

    exporter = commands.add_parser("export", help="export registrations")
    exporter.add_argument("what", choices=["registrations"])
    exporter.add_argument("--class", dest="class_code", metavar="CODE", help="one class only")
    exporter.add_argument("--format", choices=["csv", "xlsx"], default="csv")
    exporter.add_argument("-o", "--output", metavar="FILE", help="write to FILE (xlsx needs one)")
    exporter.set_defaults(handler=export_registrations)

    chat = commands.add_parser("console", help="chat with the bot in the terminal")
    chat.add_argument("--as", dest="as_phone", metavar="PHONE", help="as this roster person")
    chat.add_argument("--lang", choices=["vi", "en"], help="language (default from config)")
    chat.set_defaults(handler=console)

    demo_parser = commands.add_parser("demo", help="load the demo roster and chat")
    demo_parser.add_argument("--data", default=str(DEFAULT_DEMO_DATA), metavar="DIR")
    demo_parser.add_argument("--database", default=DEMO_DATABASE_URL, metavar="URL")
    demo_parser.add_argument("--as", dest="as_phone", metavar="PHONE")
    demo_parser.add_argument("--lang", choices=["vi", "en"])
    demo_parser.add_argument("--no-console", action="store_true", help="set up only")
    demo_parser.set_defaults(handler=demo)

    commands.add_parser("run", help="start the service").set_defaults(handler=run)

    jobs = commands.add_parser("jobs", help="the periodic jobs and the outbox")
    jobs_commands = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    jobs_commands.add_parser(
        "run-once", help="run every due job, send every notice due now, then exit"
    ).set_defaults(handler=jobs_command)
    jobs_commands.add_parser(
        "status", help="show queued/sent/failed notices and the jobs' next runs"
    ).set_defaults(handler=jobs_command)
    add_web_commands(commands)
    add_zns_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None, stderr: TextIO | None = None) -> int:
    """Run one command and return its exit status."""
    stderr = stderr or sys.stderr
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = load_settings(args.config)
        handler: Command = args.handler
        return asyncio.run(handler(settings, args))
    except (ConfigError, CommandError) as exc:
        print(f"trainingbot: {exc}", file=stderr)
        return 2
    except DBAPIError as exc:
        # The driver's own words (locked, refused, constraint); never the SQL's parameters.
        print(f"trainingbot: database error: {exc.orig}", file=stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
