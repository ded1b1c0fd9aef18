"""Broadcasts in the web admin: the list with progress, write one, preview, send, stop, report.

Everything goes through db/broadcasts.py, as the chat does (handlers/broadcast.py): the
audience is resolved and counted there, a draft is a `broadcast` row, `start` queues one
notice per reachable person once (the row is locked: a second Send finds it started) and
`stop` skips what is still queued. The web checks only what its forms offer: a unit-head
account chooses among its own units and the classes with participants in them, and any
other id is refused.

Authors. An account tied to a roster person writes as that person (`author_id`), as in
the chat: the broadcast is theirs there too, and recipients see their name and unit. An
admin account without a person writes on the school's behalf: `author_id` is None, the
message names the school, and the audit log (shown on the broadcast's page) names the
account. A broadcast written here has no progress message in a chat (`origin_channel`
None): its page shows the progress and reloads itself while it goes out (a meta refresh:
the pages run no scripts).

Attachments. A notice carries a photo or document by its platform's file id (Telegram's),
never the file, so a file uploaded here could not be sent: the web writes text only, and
a photo or document is sent from the chat (/broadcast). A chat draft continued here keeps
its attachment.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.web.classes import today_of
from bot.web.core import (
    PAGE_SIZE,
    Viewer,
    client_address,
    int_param,
    language_of,
    not_found,
    now_of,
    redirect,
    render,
    sessionmaker_of,
    settings_of,
    tr,
    viewer_of,
)
from db import audit, broadcasts, units
from db.broadcasts import Audience, AudienceKind, BroadcastError
from db.models import (
    AdminAccount,
    Broadcast,
    BroadcastStatus,
    Person,
    Program,
    TrainingClass,
    Unit,
)
from handlers.broadcast import MAX_TEXT, announcement, school_announcement
from handlers.broadcast_buttons import draft_tag
from handlers.broadcast_progress import snippet
from handlers.i18n import t
from handlers.notices import decode_reply, encode_reply

# The classes a form offers (those with participants in reach, not ended a month ago).
CLASS_CHOICES = 300
# The author's drafts listed above their broadcasts.
DRAFTS_LISTED = 20
# Refusals of Send that the form answers (the audience must be chosen again).
SEND_REFUSALS = ("no_audience", "out_of_scope")
# What a page says after an action (?done=, ?error=); any other value is ignored.
DONE = ("started", "stopped", "already_over", "dropped")
ERRORS = ("not_draft", "changed", "nobody")
# What secrets.token_urlsafe(18) gives the new-broadcast form.
FORM_KEY = re.compile(r"[A-Za-z0-9_-]{16,48}")


def _said(request: web.Request, name: str, known: Sequence[str]) -> str | None:
    """Return the ?done= or ?error= of a page if it is one the page knows how to say."""
    value = request.query.get(name)
    return value if value in known else None


@dataclass(frozen=True)
class WebAuthor:
    """Who writes from this account: a roster person or the school, and whom they reach."""

    # The roster person the broadcast is recorded as written by; None: the school.
    person_id: int | None
    # The unit whose people (and those of the units under it) are reached; None: all.
    scope_unit_id: int | None


def author_of(viewer: Viewer) -> WebAuthor | None:
    """Return the account as an author of broadcasts, or None when it may not broadcast.

    An admin account reaches the whole school; a unit head's account the head's unit and
    the units under it, while the roster still says they head it.
    """
    person = viewer.person
    if viewer.is_admin:
        return WebAuthor(person.id if person else None, None)
    if person is not None and person.is_unit_head:
        return WebAuthor(person.id, person.unit_id)
    return None


def _account_person(viewer: Viewer) -> int | None:
    return viewer.person.id if viewer.person else None


def _manages(viewer: Viewer, broadcast: Broadcast) -> bool:
    """Return whether the account may see and stop a started broadcast (db's rule)."""
    return broadcasts.manages(broadcast, _account_person(viewer), admin=viewer.is_admin)


def _owns_draft(author: WebAuthor | None, broadcast: Broadcast) -> bool:
    return author is not None and broadcast.author_id == author.person_id


async def _account(session: AsyncSession, viewer: Viewer) -> AdminAccount:
    account = await session.get(AdminAccount, viewer.account_id)
    assert account is not None
    return account


async def _audit(
    session: AsyncSession,
    request: web.Request,
    action: str,
    broadcast: Broadcast,
    details: dict[str, Any] | None = None,
) -> None:
    """Write the audit entry of a broadcast action, in the action's unit of work."""
    await audit.record(
        session,
        await _account(session, viewer_of(request)),
        action,
        "broadcast",
        broadcast.id,
        f"#{broadcast.id} {snippet(broadcast.text)}",
        now=now_of(request),
        client=client_address(request, settings_of(request).web.trusted_proxies),
        details=details,
    )


def _refuse_non_author(request: web.Request) -> web.Response:
    message = tr(request, "broadcasts.only_authors")
    return render(request, "error.html", status=403, message=message)


# ------------------------------------------------------------------------------ list


async def broadcast_list(request: web.Request) -> web.StreamResponse:
    """List the broadcasts with their progress: all for admins, their own for unit heads."""
    viewer = viewer_of(request)
    author = author_of(viewer)
    page = max(1, int_param(request.query.get("page"), 1))
    async with sessionmaker_of(request)() as session:
        if viewer.is_admin or viewer.person is not None:
            found = await broadcasts.recent(
                session,
                author_id=None if viewer.is_admin else _account_person(viewer),
                limit=PAGE_SIZE + 1,
                offset=(page - 1) * PAGE_SIZE,
            )
        else:
            found = []
        more = len(found) > PAGE_SIZE
        found = found[:PAGE_SIZE]
        drafts = (
            await broadcasts.drafts(session, author.person_id, limit=DRAFTS_LISTED)
            if author is not None and page == 1
            else []
        )
        progresses = await broadcasts.progresses(session, [b.id for b in found])
        names = await _author_names(session, [*found, *drafts])
    rows = []
    for b in found:
        progress = progresses.get(b.id, broadcasts.Progress())
        rows.append(
            {
                "broadcast": b,
                "progress": progress,
                "over": broadcasts.is_over(b.status, progress),
                "kind": _kind_of(b),
                "snippet": snippet(b.text),
            }
        )
    return render(
        request,
        "broadcasts.html",
        rows=rows,
        drafts=[{"broadcast": d, "snippet": snippet(d.text), "kind": _kind_of(d)} for d in drafts],
        names=names,
        can_write=author is not None,
        page=page,
        more=more,
        done=_said(request, "done", DONE),
    )


def _kind_of(broadcast: Broadcast) -> str:
    audience = Audience.from_json(broadcast.audience)
    return audience.kind.value if audience is not None else ""


async def _author_names(session: AsyncSession, items: list[Broadcast]) -> dict[int, str]:
    ids = sorted({b.author_id for b in items if b.author_id is not None})
    if not ids:
        return {}
    rows = await session.execute(select(Person.id, Person.full_name).where(Person.id.in_(ids)))
    return {person_id: name for person_id, name in rows.all()}


# ------------------------------------------------------------------------ the form


@dataclass
class Written:
    """What the form holds: the text, the audience chosen and the urgency, as typed."""

    text: str = ""
    kind: str = ""
    unit_ids: tuple[int, ...] = ()
    class_id: int = 0
    program: str = ""
    urgent: bool = False
    # The new-broadcast form's own key: submitting it twice makes one draft.
    form_key: str = ""

    @classmethod
    def of_draft(cls, draft: Broadcast) -> Written:
        """Return a draft's values as the form shows them."""
        audience = Audience.from_json(draft.audience)
        return cls(
            text=draft.text,
            kind=audience.kind.value if audience else "",
            unit_ids=audience.unit_ids if audience else (),
            class_id=(audience.class_id or 0) if audience else 0,
            program=audience.program.value if audience and audience.program else "",
            urgent=draft.urgent,
        )


def _text_of(value: str) -> str:
    """Return the announcement typed: line breaks kept, spaces at line ends dropped."""
    text = value.replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.rstrip() for line in text.strip().split("\n"))


def _written(form: MultiDictProxy[Any]) -> tuple[Written, set[str]]:
    """Return the posted form, and the fields holding an id that is not a number (forged)."""
    forged: set[str] = set()
    unit_ids: list[int] = []
    for value in form.getall("unit", []):
        number = int_param(str(value), -1)
        if number <= 0:
            forged.add("unit")
        elif number not in unit_ids:
            unit_ids.append(number)
    class_text = str(form.get("class_id", "")).strip()
    class_id = int_param(class_text, -1) if class_text else 0
    if class_id < 0:
        forged.add("class_id")
        class_id = 0
    written = Written(
        text=_text_of(str(form.get("text", ""))),
        kind=str(form.get("kind", "")),
        unit_ids=tuple(unit_ids),
        class_id=class_id,
        program=str(form.get("program", "")),
        urgent=bool(form.get("urgent")),
        form_key=_form_key(str(form.get("form_key", ""))),
    )
    return written, forged


def _form_key(text: str) -> str:
    """Return a well-formed form key as posted, else "" (a form without one, or forged)."""
    return text if FORM_KEY.fullmatch(text) else ""


@dataclass(frozen=True)
class Choices:
    """What the form offers an author: the units and classes in reach, the programs."""

    units: list[broadcasts.UnitChoice]
    classes: list[tuple[TrainingClass, int]]
    programs: list[str]


async def _choices(session: AsyncSession, request: web.Request, author: WebAuthor) -> Choices:
    scope = await broadcasts.scope_of(session, author.scope_unit_id)
    unit_choices = await broadcasts.units_in(session, scope)
    classes, _ = await broadcasts.class_choices(
        session, scope, today_of(request), limit=CLASS_CHOICES
    )
    return Choices(unit_choices, classes, [program.value for program in Program])


def _problems(
    written: Written, choices: Choices, forged: set[str]
) -> tuple[Audience | None, list[str]]:
    """Return the audience the form names, or what is wrong with the form (message keys)."""
    problems: list[str] = []
    if not written.text:
        problems.append("broadcasts.problem_empty")
    elif len(written.text) > MAX_TEXT:
        problems.append("broadcasts.problem_too_long")
    audience: Audience | None = None
    match written.kind:
        case AudienceKind.EVERYONE | AudienceKind.HEADS:
            audience = Audience(AudienceKind(written.kind))
        case AudienceKind.UNITS:
            reachable = {unit.id for unit in choices.units}
            if "unit" in forged or not set(written.unit_ids) <= reachable:
                problems.append("broadcasts.problem_not_your_unit")
            elif not written.unit_ids:
                problems.append("broadcasts.problem_no_unit")
            else:
                audience = Audience(AudienceKind.UNITS, unit_ids=written.unit_ids)
        case AudienceKind.CLASS:
            offered = {training_class.id for training_class, _ in choices.classes}
            if "class_id" in forged or (written.class_id and written.class_id not in offered):
                problems.append("broadcasts.problem_not_your_class")
            elif not written.class_id:
                problems.append("broadcasts.problem_no_class")
            else:
                audience = Audience(AudienceKind.CLASS, class_id=written.class_id)
        case AudienceKind.PROGRAM:
            if written.program not in choices.programs:
                problems.append("broadcasts.problem_no_program")
            else:
                audience = Audience(AudienceKind.PROGRAM, program=Program(written.program))
        case _:
            problems.append("broadcasts.problem_no_audience")
    return (None if problems else audience), problems


def _form_page(
    request: web.Request,
    written: Written,
    choices: Choices,
    *,
    draft: Broadcast | None,
    problems: Sequence[str] = (),
    attachment: bool = False,
    status: int = 200,
) -> web.Response:
    return render(
        request,
        "broadcast_form.html",
        status=status,
        written=written,
        choices=choices,
        draft=draft,
        problems=list(problems),
        attachment=attachment,
        kinds=[kind.value for kind in AudienceKind],
        max_text=MAX_TEXT,
    )


async def _message(
    session: AsyncSession, author: WebAuthor, text: str, keep_from: Broadcast | None
) -> dict[str, Any]:
    """Return the message recipients get, as the chat builds it (a photo or file kept)."""
    if author.person_id is None:
        return encode_reply(school_announcement(await units.school_name(session), text))
    person = await units.person(session, author.person_id)
    assert person is not None  # the account's person, read on this request
    attachment = decode_reply(keep_from.message).attachment if keep_from else None
    return encode_reply(announcement(person, text, attachment))


async def broadcast_new(request: web.Request) -> web.StreamResponse:
    """Show the form for a new broadcast: text, audience, urgency."""
    author = author_of(viewer_of(request))
    if author is None:
        return _refuse_non_author(request)
    async with sessionmaker_of(request)() as session:
        choices = await _choices(session, request, author)
    return _form_page(request, Written(form_key=secrets.token_urlsafe(18)), choices, draft=None)


async def broadcast_create(request: web.Request) -> web.StreamResponse:
    """Keep the form as a draft and go to its preview, or show the form with what is wrong."""
    author = author_of(viewer_of(request))
    if author is None:
        return _refuse_non_author(request)
    written, forged = _written(await request.post())
    async with sessionmaker_of(request)() as session, session.begin():
        choices = await _choices(session, request, author)
        audience, problems = _problems(written, choices, forged)
        if audience is None:
            return _form_page(request, written, choices, draft=None, problems=problems, status=422)
        draft = await _draft_of_form(session, request, author, written, audience)
        if draft is None:  # the form made it before, as written: a double submit
            made = await broadcasts.made_by_form(session, written.form_key)
            raise redirect(f"/broadcasts/{made}")
        await broadcasts.edit_draft(
            session, draft.id, author.person_id, audience=audience, urgent=written.urgent
        )
        await _audit(
            session,
            request,
            "broadcast.draft",
            draft,
            {"audience": audience.as_json(), "urgent": written.urgent},
        )
    raise redirect(f"/broadcasts/{draft.id}")


async def _draft_of_form(
    session: AsyncSession,
    request: web.Request,
    author: WebAuthor,
    written: Written,
    audience: Audience,
) -> Broadcast | None:
    """Add the form's draft; None when this form already made one holding what was written.

    A form submitted again as it was (a double click, even two requests at once) is the
    draft it made. One changed since (Back, then edited) makes a new draft without the
    key, so nothing typed is lost.
    """
    form_key: str | None = written.form_key or None
    for _ in range(2):
        if form_key is not None:
            made_id = await broadcasts.made_by_form(session, form_key)
            made = await broadcasts.get(session, made_id) if made_id is not None else None
            if made is not None:
                if (made.text, made.audience, bool(made.urgent)) == (
                    written.text,
                    audience.as_json(),
                    written.urgent,
                ):
                    return None
                form_key = None
        try:
            return await broadcasts.create_draft(
                session,
                author_id=author.person_id,
                scope_unit_id=author.scope_unit_id,
                text=written.text,
                message=await _message(session, author, written.text, None),
                form_key=form_key,
                now=now_of(request),
            )
        except BroadcastError:
            continue  # made by another request at this moment: look at it again
    raise AssertionError("a draft without a form key is always added")


async def _own_draft(session: AsyncSession, request: web.Request, author: WebAuthor) -> Broadcast:
    """Return the author's draft, locked; else go to its page (sent or dropped) or 404."""
    broadcast_id = int_param(request.match_info["broadcast_id"], -1)
    try:
        return await broadcasts.draft_of(session, broadcast_id, author.person_id)
    except BroadcastError as refusal:
        if refusal.why == "not_draft":
            raise redirect(f"/broadcasts/{broadcast_id}?error=not_draft") from None
        raise not_found(request) from None


async def broadcast_edit(request: web.Request) -> web.StreamResponse:
    """Show the form of one of the author's drafts."""
    author = author_of(viewer_of(request))
    if author is None:
        return _refuse_non_author(request)
    broadcast_id = int_param(request.match_info["broadcast_id"], -1)
    async with sessionmaker_of(request)() as session:
        draft = await broadcasts.get(session, broadcast_id)
        if draft is None or not _owns_draft(author, draft):
            raise not_found(request)
        if draft.status != BroadcastStatus.DRAFT:
            raise redirect(f"/broadcasts/{broadcast_id}?error=not_draft")
        choices = await _choices(session, request, author)
    attachment = decode_reply(draft.message).attachment is not None
    error = _said(request, "error", SEND_REFUSALS)
    problems = [f"broadcasts.problem_{error}"] if error else []
    return _form_page(
        request,
        Written.of_draft(draft),
        choices,
        draft=draft,
        problems=problems,
        attachment=attachment,
    )


async def broadcast_update(request: web.Request) -> web.StreamResponse:
    """Save a draft's new text, audience or urgency; go to its preview."""
    author = author_of(viewer_of(request))
    if author is None:
        return _refuse_non_author(request)
    written, forged = _written(await request.post())
    async with sessionmaker_of(request)() as session, session.begin():
        draft = await _own_draft(session, request, author)
        choices = await _choices(session, request, author)
        audience, problems = _problems(written, choices, forged)
        if audience is None:
            attachment = decode_reply(draft.message).attachment is not None
            return _form_page(
                request,
                written,
                choices,
                draft=draft,
                problems=problems,
                attachment=attachment,
                status=422,
            )
        before = Written.of_draft(draft)
        await broadcasts.edit_draft(
            session,
            draft.id,
            author.person_id,
            text=written.text,
            message=await _message(session, author, written.text, draft),
            audience=audience,
            urgent=written.urgent,
        )
        if before != Written.of_draft(draft):
            await _audit(
                session,
                request,
                "broadcast.edit",
                draft,
                {"audience": audience.as_json(), "urgent": written.urgent},
            )
    raise redirect(f"/broadcasts/{draft.id}")


# -------------------------------------------------------------- preview, page, report


async def _audience_words(
    session: AsyncSession, request: web.Request, audience: Audience
) -> dict[str, Any]:
    """Return what names the audience on a page: its kind, and the units, class or program."""
    words: dict[str, Any] = {"kind": audience.kind.value, "names": []}
    if audience.kind == AudienceKind.UNITS:
        chosen = set(audience.unit_ids)
        words["names"] = [
            unit.name for unit in await broadcasts.units_in(session, None) if unit.id in chosen
        ]
    elif audience.kind == AudienceKind.CLASS and audience.class_id is not None:
        training_class = await session.get(TrainingClass, audience.class_id)
        if training_class is not None:
            words["names"] = [f"{training_class.code} {training_class.title}"]
    elif audience.kind == AudienceKind.PROGRAM and audience.program is not None:
        words["names"] = [tr(request, f"program.{audience.program.value}")]
    return words


async def _reach_name(session: AsyncSession, scope_unit_id: int | None) -> str | None:
    if scope_unit_id is None:
        return None
    unit = await session.get(Unit, scope_unit_id)
    return unit.name if unit is not None else None


def _recipients_see(request: web.Request, message: dict[str, Any]) -> tuple[str, str | None]:
    """Return the announcement as recipients read it, and its attachment's kind, if any."""
    reply = decode_reply(message)
    language = language_of(request)
    shown = "\n".join(t(line, language) for line in reply.lines)
    return shown, reply.attachment.kind.value if reply.attachment else None


async def broadcast_page(request: web.Request) -> web.StreamResponse:
    """Show a draft's preview, or a started broadcast's progress and, at the end, its report."""
    viewer = viewer_of(request)
    author = author_of(viewer)
    broadcast_id = int_param(request.match_info["broadcast_id"], -1)
    async with sessionmaker_of(request)() as session:
        broadcast = await broadcasts.get(session, broadcast_id)
        if broadcast is None:
            raise not_found(request)
        if broadcast.status in (BroadcastStatus.DRAFT, BroadcastStatus.CANCELLED):
            if not _owns_draft(author, broadcast):
                raise not_found(request)
            assert author is not None
            if broadcast.status == BroadcastStatus.DRAFT:
                return await _preview(session, request, author, broadcast)
            return await _started(session, request, broadcast)
        if not _manages(viewer, broadcast):
            raise not_found(request)
        return await _started(session, request, broadcast)


async def _preview(
    session: AsyncSession, request: web.Request, author: WebAuthor, draft: Broadcast
) -> web.StreamResponse:
    """Show what recipients will read, to whom with the exact count, urgency, Send."""
    audience = Audience.from_json(draft.audience)
    if audience is None or not audience.complete:
        raise redirect(f"/broadcasts/{draft.id}/edit")
    scope = await broadcasts.scope_of(session, author.scope_unit_id)
    count = await broadcasts.count_audience(
        session,
        audience,
        scope=scope,
        today=today_of(request),
        zns_kinds=settings_of(request).zns.kinds,
    )
    shown, attachment = _recipients_see(request, draft.message)
    return render(
        request,
        "broadcast_preview.html",
        draft=draft,
        shown=shown,
        attachment=attachment,
        audience=await _audience_words(session, request, audience),
        reach=await _reach_name(session, author.scope_unit_id),
        count=count,
        tag=draft_tag(draft.audience, draft.urgent, draft.message),
        quiet_hours=settings_of(request).notifications.quiet_hours,
        error=_said(request, "error", ERRORS),
    )


async def _started(
    session: AsyncSession, request: web.Request, broadcast: Broadcast
) -> web.StreamResponse:
    """Show a broadcast's progress (reloading while it goes out) or its final report."""
    progress = await broadcasts.progress(session, broadcast.id) or broadcasts.Progress()
    over = broadcasts.is_over(broadcast.status, progress)
    audience = Audience.from_json(broadcast.audience)
    names = await _author_names(session, [broadcast])
    stopper = await _author_names_of(session, broadcast.stopped_by_id)
    history = await audit.of_target(session, "broadcast", broadcast.id)
    shown, attachment = _recipients_see(request, broadcast.message)
    seconds = settings_of(request).broadcast.progress_seconds
    started = broadcast.status != BroadcastStatus.CANCELLED
    return render(
        request,
        "broadcast.html",
        broadcast=broadcast,
        progress=progress,
        over=over,
        started=started,
        refresh=max(1, math.ceil(seconds)) if started and not over else None,
        audience=(await _audience_words(session, request, audience) if audience else None),
        reach=await _reach_name(session, broadcast.scope_unit_id),
        author=names.get(broadcast.author_id or 0),
        stopper=stopper,
        history=history,
        shown=shown,
        attachment=attachment,
        done=_said(request, "done", DONE),
        error=_said(request, "error", ERRORS),
    )


async def _author_names_of(session: AsyncSession, person_id: int | None) -> str | None:
    if person_id is None:
        return None
    return await session.scalar(select(Person.full_name).where(Person.id == person_id))


# ------------------------------------------------------------------------ actions


async def broadcast_urgent(request: web.Request) -> web.StreamResponse:
    """Mark a draft urgent (sent in quiet hours too) or not, as the form says."""
    author = author_of(viewer_of(request))
    if author is None:
        return _refuse_non_author(request)
    urgent = str((await request.post()).get("urgent", "")) == "1"
    async with sessionmaker_of(request)() as session, session.begin():
        draft = await _own_draft(session, request, author)
        if draft.urgent != urgent:
            await broadcasts.edit_draft(session, draft.id, author.person_id, urgent=urgent)
            await _audit(session, request, "broadcast.urgent", draft, {"urgent": urgent})
    raise redirect(f"/broadcasts/{draft.id}")


async def broadcast_send(request: web.Request) -> web.StreamResponse:
    """Send a draft as previewed; a second submit (or another tab's) starts nothing more."""
    author = author_of(viewer_of(request))
    if author is None:
        return _refuse_non_author(request)
    broadcast_id = int_param(request.match_info["broadcast_id"], -1)
    tag = int_param(str((await request.post()).get("tag", "")), -1)
    async with sessionmaker_of(request)() as session, session.begin():
        draft = await _own_draft(session, request, author)
        if draft_tag(draft.audience, draft.urgent, draft.message) != tag:
            # Changed in another tab (or the chat) since this preview was shown.
            raise redirect(f"/broadcasts/{broadcast_id}?error=changed")
        try:
            started = await broadcasts.start(
                session,
                broadcast_id,
                author_id=author.person_id,
                scope_unit_id=author.scope_unit_id,
                now=now_of(request),
                today=today_of(request),
                zns_kinds=settings_of(request).zns.kinds,
            )
        except BroadcastError as refusal:
            if refusal.why in SEND_REFUSALS:
                raise redirect(f"/broadcasts/{broadcast_id}/edit?error={refusal.why}") from None
            raise redirect(f"/broadcasts/{broadcast_id}?error={refusal.why}") from None
        await _audit(
            session,
            request,
            "broadcast.send",
            started,
            {
                "audience": started.audience,
                "urgent": started.urgent,
                "recipients": started.recipients,
                "never_linked": started.never_linked,
                "unreachable": started.unreachable,
            },
        )
    raise redirect(f"/broadcasts/{broadcast_id}?done=started")


async def broadcast_drop(request: web.Request) -> web.StreamResponse:
    """Drop a draft: nothing is sent."""
    author = author_of(viewer_of(request))
    if author is None:
        return _refuse_non_author(request)
    async with sessionmaker_of(request)() as session, session.begin():
        draft = await _own_draft(session, request, author)
        await broadcasts.cancel_draft(session, draft.id, author.person_id)
        await _audit(session, request, "broadcast.drop", draft)
    raise redirect("/broadcasts?done=dropped")


async def broadcast_stop(request: web.Request) -> web.StreamResponse:
    """Stop a broadcast going out: what is not yet sent is not sent. Again: nothing more."""
    viewer = viewer_of(request)
    broadcast_id = int_param(request.match_info["broadcast_id"], -1)
    async with sessionmaker_of(request)() as session, session.begin():
        broadcast = await broadcasts.get(session, broadcast_id)
        if broadcast is None or broadcast.status in (
            BroadcastStatus.DRAFT,
            BroadcastStatus.CANCELLED,
        ):
            raise not_found(request)
        if not _manages(viewer, broadcast):
            raise not_found(request)
        try:
            skipped = await broadcasts.stop(
                session, broadcast_id, by_id=_account_person(viewer), now=now_of(request)
            )
        except BroadcastError:
            raise redirect(f"/broadcasts/{broadcast_id}?done=already_over") from None
        await _audit(session, request, "broadcast.stop", broadcast, {"not_sent": skipped})
    raise redirect(f"/broadcasts/{broadcast_id}?done=stopped")
