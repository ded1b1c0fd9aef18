"""Broadcasts by chat: an admin announces something to an audience; a unit head to their units.

/broadcast → the announcement (text; or a photo or document, the text as its caption) →
the audience: everyone linked, chosen units (with the units under them), a class's
participants, unit heads, a program's learners → a preview with the exact count and who
cannot be reached → send (urgent or not) or drop. `/broadcast status` lists the latest
broadcasts with their progress, `/broadcast stop [N]` stops one.

The draft is a `broadcast` row (db/broadcasts.py); its buttons carry its id and are
checked on every press: another author's draft, a unit outside a head's reach or a
preview older than the draft is refused, and a second press of Send finds the broadcast
already going out. The chat's state holds only the question asked: the text, or a
unit's or class's name typed to find it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from db import broadcasts
from db.broadcasts import Audience, AudienceKind, BroadcastError, UnitChoice
from db.models import Broadcast, BroadcastStatus, Person, Program
from handlers.broadcast_buttons import (
    KINDS,
    PROGRAMS,
    BroadcastButton,
    Do,
    data,
    draft_tag,
    kind_data,
    program_data,
)
from handlers.broadcast_progress import progress_reply, snippet
from handlers.callbacks import number_in
from handlers.catalog import BUTTON_TITLE_LENGTH, PAGE_SIZE, shorten
from handlers.help import Outcome, help_reply, stale_button
from handlers.labels import program_name
from handlers.notices import encode_reply
from handlers.state import Context, State, Step
from handlers.types import Attachment, AttachmentKind, Button, Incoming, Msg, Param, Reply
from handlers.unit_head import head_of

# Telegram's longest message is 4,096 characters; the header takes a line of it.
MAX_TEXT = 4000
UNITS_PER_PAGE = 8
# Units named in a preview; more are counted.
UNITS_NAMED = 5
# Broadcasts listed by /broadcast status.
STATUS_LIMIT = 5
# Questions the flow asks whose answer is typed, besides the text itself (State.target:
# the draft): a unit's name or code, a class's code or title.
TYPED_STEPS = (Step.BROADCAST_UNITS, Step.BROADCAST_CLASS)
KIND_LABELS = {
    AudienceKind.EVERYONE: Msg("broadcast.kind_everyone"),
    AudienceKind.UNITS: Msg("broadcast.kind_units"),
    AudienceKind.CLASS: Msg("broadcast.kind_class"),
    AudienceKind.HEADS: Msg("broadcast.kind_heads"),
    AudienceKind.PROGRAM: Msg("broadcast.kind_program"),
}


@dataclass(frozen=True)
class Author:
    """Who may broadcast, and to whom: an admin (everyone) or a unit head (their units)."""

    person: Person
    # The unit whose people (and those of the units under it) the author reaches;
    # None for admins: the whole school.
    scope_unit_id: int | None
    scope: set[int] | None

    @property
    def admin(self) -> bool:
        """Return whether the author reaches the whole school."""
        return self.scope_unit_id is None

    @property
    def unit(self) -> Param:
        """Return the name of what the author reaches."""
        return Msg("unit.whole_school") if self.admin else self.person.unit.name


@dataclass(frozen=True)
class Held:
    """A broadcast the person talking may act on, and them as its author."""

    author: Author
    broadcast: Broadcast


async def author_of(ctx: Context) -> Author | None:
    """Return the person talking as an author of broadcasts, or None if they may not."""
    head = await head_of(ctx)
    if head is None:
        return None
    scope_unit_id = None if head.scope is None else head.person.unit_id
    return Author(head.person, scope_unit_id, head.scope)


def only_authors(state: State, ctx: Context) -> Outcome:
    """Answer someone who may not broadcast."""
    return replace(state, step=None), [help_reply(ctx, (Msg("broadcast.only_authors"),))]


def announcement(person: Person, text: str, attachment: Attachment | None) -> Reply:
    """Return the message recipients get: who it is from, the text, the photo or document."""
    lines = [Msg("broadcast.header", {"name": person.full_name, "unit": person.unit.name})]
    if text:
        lines.append(Msg("broadcast.body", {"text": text}))
    return Reply(tuple(lines), attachment=attachment)


def school_announcement(school: str | None, text: str) -> Reply:
    """Return the message of an announcement on the school's behalf (no roster author).

    `school` is the school's unit name in the roster, if it has one.
    """
    sender: Param = school or Msg("broadcast.the_school")
    return Reply(
        (Msg("broadcast.header_school", {"unit": sender}), Msg("broadcast.body", {"text": text}))
    )


# Writing ---------------------------------------------------------------------------------


async def broadcast_command(
    state: State, argument: str, _incoming: Incoming, ctx: Context
) -> Outcome:
    """Run /broadcast (write one), /broadcast status or /broadcast stop [N]."""
    author = await author_of(ctx)
    if author is None:
        return only_authors(state, ctx)
    word, _, rest = argument.partition(" ")
    match word.lower():
        case "":
            return await ask_text(state, author, ctx)
        case "status":
            return await show_status(state, author, ctx)
        case "stop":
            return await stop_command(state, author, rest.strip(), ctx)
    return replace(state, step=None), [Reply((Msg("broadcast.usage"),))]


async def ask_text(state: State, author: Author, ctx: Context) -> Outcome:
    """Ask for a new announcement's text (and photo or document)."""
    lines = [Msg("broadcast.ask_text", {"limit": MAX_TEXT})]
    if not author.admin:
        lines.append(Msg("broadcast.reach", {"unit": author.unit}))
    running = await broadcasts.recent(
        ctx.repos.session,
        author_id=None if author.admin else author.person.id,
        statuses=(BroadcastStatus.SENDING,),
        limit=100,
    )
    if running:
        lines.append(Msg("broadcast.running", {"count": len(running)}))
    return replace(state, step=Step.BROADCAST_TEXT, target=None, note=None), [Reply(tuple(lines))]


def _text_of(incoming: Incoming) -> str:
    """Return the announcement typed: line breaks kept, blank lines at the ends dropped."""
    text = (incoming.text or "").replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.rstrip() for line in text.strip().split("\n"))


async def answer_text(state: State, incoming: Incoming, ctx: Context) -> Outcome:
    """Take the announcement (or its new text, when rewriting a draft); ask for the audience."""
    author = await author_of(ctx)
    if author is None:
        return only_authors(state, ctx)
    text = _text_of(incoming)
    if not text and incoming.attachment is None:
        return state, [Reply((Msg("broadcast.empty"),))]
    if len(text) > MAX_TEXT:
        too_long = Msg("broadcast.too_long", {"length": len(text), "limit": MAX_TEXT})
        return state, [Reply((too_long,))]
    reply = announcement(author.person, text, incoming.attachment)
    session = ctx.repos.session
    if state.target is not None:
        try:
            draft = await broadcasts.edit_draft(
                session, state.target, author.person.id, text=text, message=encode_reply(reply)
            )
        except BroadcastError as refusal:
            return await _refused(replace(state, step=None), refusal, state.target, author, ctx)
    else:
        draft = await broadcasts.create_draft(
            session,
            author_id=author.person.id,
            scope_unit_id=author.scope_unit_id,
            text=text,
            message=encode_reply(reply),
            origin_channel=incoming.channel,
            origin_chat_id=incoming.chat_id,
            now=ctx.now,
        )
    state = replace(state, step=None, target=None, note=None)
    if Audience.from_json(draft.audience) is not None:
        return await preview(state, draft.id, ctx, (Msg("broadcast.rewritten"),), shown=reply)
    return state, [reply, _audience_question(draft.id, author, (Msg("broadcast.above"),))]


async def rewrite(state: State, broadcast_id: int, ctx: Context) -> Outcome:
    """Ask for a draft's new text."""
    author = await author_of(ctx)
    if author is None:
        return only_authors(state, ctx)
    try:
        await broadcasts.draft_of(ctx.repos.session, broadcast_id, author.person.id)
    except BroadcastError as refusal:
        return await _refused(state, refusal, broadcast_id, author, ctx)
    ask = Msg("broadcast.ask_rewrite", {"number": broadcast_id, "limit": MAX_TEXT})
    rows = (
        (Button(Msg("broadcast.back_to_preview"), data(Do.PREVIEW, broadcast_id)),),
        (Button(Msg("broadcast.drop_button"), data(Do.DROP, broadcast_id)),),
    )
    state = replace(state, step=Step.BROADCAST_TEXT, target=broadcast_id, note=None)
    return state, [Reply((ask,), rows)]


async def drop(state: State, broadcast_id: int, ctx: Context) -> Outcome:
    """Drop a draft: nothing is sent."""
    author = await author_of(ctx)
    if author is None:
        return only_authors(state, ctx)
    try:
        await broadcasts.cancel_draft(ctx.repos.session, broadcast_id, author.person.id)
    except BroadcastError as refusal:
        return await _refused(state, refusal, broadcast_id, author, ctx)
    dropped = Msg("broadcast.dropped", {"number": broadcast_id})
    return replace(state, step=None), [help_reply(ctx, (dropped,))]


# Choosing the audience -------------------------------------------------------------------


def _audience_question(broadcast_id: int, author: Author, before: Sequence[Msg] = ()) -> Reply:
    """Return the question who should get the draft, one button per kind of audience."""
    rows: list[tuple[Button, ...]] = [
        (Button(KIND_LABELS[kind], kind_data(broadcast_id, kind)),) for kind in KINDS
    ]
    rows.append(
        (
            Button(Msg("broadcast.rewrite_button"), data(Do.REWRITE, broadcast_id)),
            Button(Msg("broadcast.drop_button"), data(Do.DROP, broadcast_id)),
        )
    )
    question = Msg("broadcast.choose_audience", {"number": broadcast_id, "unit": author.unit})
    return Reply((*before, question), tuple(rows))


async def _draft(state: State, broadcast_id: int, ctx: Context) -> Held | Outcome:
    """Return the author's draft, locked; or the answer why it is not one."""
    author = await author_of(ctx)
    if author is None:
        return only_authors(state, ctx)
    try:
        draft = await broadcasts.draft_of(ctx.repos.session, broadcast_id, author.person.id)
    except BroadcastError as refusal:
        return await _refused(state, refusal, broadcast_id, author, ctx)
    return Held(author, draft)


async def choose_audience(
    state: State, broadcast_id: int, ctx: Context, before: Sequence[Msg] = ()
) -> Outcome:
    """Ask again who should get the draft."""
    found = await _draft(state, broadcast_id, ctx)
    if not isinstance(found, Held):
        return found
    author = found.author
    return replace(state, step=None), [_audience_question(broadcast_id, author, before)]


async def pick_kind(state: State, broadcast_id: int, number: int, ctx: Context) -> Outcome:
    """Take the kind of audience: set it, or ask which units, class or program."""
    kind = KINDS[number - 1]
    found = await _draft(state, broadcast_id, ctx)
    if not isinstance(found, Held):
        return found
    author, draft = found.author, found.broadcast
    match kind:
        case AudienceKind.UNITS:
            current = Audience.from_json(draft.audience)
            if current is None or current.kind != AudienceKind.UNITS:
                await _set_audience(author, broadcast_id, Audience(AudienceKind.UNITS), ctx)
            return await show_units(state, broadcast_id, 1, ctx)
        case AudienceKind.CLASS:
            return await show_classes(state, broadcast_id, 1, ctx)
        case AudienceKind.PROGRAM:
            return _programs(state, broadcast_id)
    await _set_audience(author, broadcast_id, Audience(kind), ctx)
    return await preview(state, broadcast_id, ctx)


async def _set_audience(
    author: Author, broadcast_id: int, audience: Audience, ctx: Context
) -> None:
    await broadcasts.edit_draft(
        ctx.repos.session, broadcast_id, author.person.id, audience=audience
    )


def _pages(total: int, size: int) -> int:
    return max((total + size - 1) // size, 1)


def _unit_button(unit: UnitChoice, chosen: bool, action: str) -> Button:
    """Return a unit's button, ticked when it is chosen (itself or a unit above it)."""
    name = shorten(("↳ " if unit.depth else "") + unit.name, BUTTON_TITLE_LENGTH)
    label = (
        Msg("broadcast.unit_on", {"name": name})
        if chosen
        else Msg("broadcast.unit_off", {"name": name})
    )
    return Button(label, action)


async def show_units(
    state: State, broadcast_id: int, requested: int, ctx: Context, before: Sequence[Msg] = ()
) -> Outcome:
    """Show a page of the units the author reaches, each one chosen or not; page 0: matches.

    Page 0 lists the units matching the name typed last (State.note).
    """
    found = await _draft(state, broadcast_id, ctx)
    if not isinstance(found, Held):
        return found
    author, draft = found.author, found.broadcast
    audience = Audience.from_json(draft.audience) or Audience(AudienceKind.UNITS)
    chosen = set(audience.unit_ids) if audience.kind == AudienceKind.UNITS else set()
    units = await broadcasts.units_in(ctx.repos.session, author.scope)
    typed = state.note if state.step == Step.BROADCAST_UNITS else None
    lines = list(before)
    if requested == 0 and typed:
        shown = broadcasts.matching_units(units, typed)[:UNITS_PER_PAGE]
        page, pages = 0, 1
        lines.append(Msg("broadcast.units_found", {"text": typed, "count": len(shown)}))
    else:
        pages = _pages(len(units), UNITS_PER_PAGE)
        page = min(max(requested, 1), pages)
        shown = units[(page - 1) * UNITS_PER_PAGE : page * UNITS_PER_PAGE]
        lines.append(Msg("broadcast.units_title", {"page": page, "pages": pages}))
    lines.append(_chosen_line(units, chosen))
    covered = _covered(units, chosen)
    rows: list[tuple[Button, ...]] = [
        (_unit_button(unit, unit.id in covered, data(Do.TOGGLE_UNIT, broadcast_id, unit.id, page)),)
        for unit in shown
    ]
    nav = []
    if page > 1:
        nav.append(Button(Msg("nav.previous"), data(Do.UNITS, broadcast_id, page - 1)))
    if 0 < page < pages:
        nav.append(Button(Msg("nav.next"), data(Do.UNITS, broadcast_id, page + 1)))
    if page == 0:
        nav.append(Button(Msg("broadcast.all_units"), data(Do.UNITS, broadcast_id, 1)))
    if nav:
        rows.append(tuple(nav))
    done = Button(
        Msg("broadcast.units_done", {"count": len(chosen)}), data(Do.PREVIEW, broadcast_id)
    )
    rows.append((done,))
    rows.append((Button(Msg("broadcast.back_to_audience"), data(Do.AUDIENCE, broadcast_id)),))
    state = replace(state, step=Step.BROADCAST_UNITS, target=broadcast_id, note=typed)
    return state, [Reply(tuple(lines), tuple(rows))]


def _covered(units: Sequence[UnitChoice], chosen: set[int]) -> set[int]:
    """Return the units chosen and every unit under one that is."""
    parent = {unit.id: unit.parent_id for unit in units}
    covered = set()
    for unit in units:
        seen: set[int] = set()
        current: int | None = unit.id
        while current is not None and current not in seen:
            if current in chosen:
                covered.add(unit.id)
                break
            seen.add(current)
            current = parent.get(current)
    return covered


def _chosen_line(units: Sequence[UnitChoice], chosen: set[int]) -> Msg:
    names = [unit.name for unit in units if unit.id in chosen]
    if not names:
        return Msg("broadcast.units_none_chosen")
    if len(names) > UNITS_NAMED:
        more = len(names) - UNITS_NAMED
        return Msg(
            "broadcast.units_chosen_more", {"units": ", ".join(names[:UNITS_NAMED]), "count": more}
        )
    return Msg("broadcast.units_chosen", {"units": ", ".join(names)})


async def toggle_unit(
    state: State, broadcast_id: int, unit_id: int, page: int, ctx: Context
) -> Outcome:
    """Choose a unit (with the units under it) or drop it; show the same page again."""
    found = await _draft(state, broadcast_id, ctx)
    if not isinstance(found, Held):
        return found
    author, draft = found.author, found.broadcast
    units = await broadcasts.units_in(ctx.repos.session, author.scope)
    by_id = {unit.id: unit for unit in units}
    unit = by_id.get(unit_id)
    if unit is None:
        # Not a unit the author reaches (a forged button, or one removed since).
        refused = Msg("broadcast.not_your_unit")
        return await show_units(state, broadcast_id, page, ctx, (refused,))
    audience = Audience.from_json(draft.audience)
    chosen = list(audience.unit_ids) if audience and audience.kind == AudienceKind.UNITS else []
    before: list[Msg] = []
    if unit_id in chosen:
        chosen.remove(unit_id)
    elif unit_id in _covered(units, set(chosen)):
        parent = next(by_id[u].name for u in chosen if unit_id in _covered(units, {u}))
        before.append(Msg("broadcast.unit_included", {"name": unit.name, "parent": parent}))
    else:
        chosen.append(unit_id)
    await _set_audience(author, broadcast_id, Audience(AudienceKind.UNITS, tuple(chosen)), ctx)
    return await show_units(state, broadcast_id, page, ctx, before)


async def show_classes(
    state: State, broadcast_id: int, requested: int, ctx: Context, typed: str = ""
) -> Outcome:
    """Show a page of the classes with participants the author reaches; typed text filters."""
    found = await _draft(state, broadcast_id, ctx)
    if not isinstance(found, Held):
        return found
    author = found.author
    session = ctx.repos.session
    _, total = await broadcasts.class_choices(session, author.scope, ctx.today, text=typed, limit=0)
    pages = _pages(total, PAGE_SIZE)
    page = min(max(requested, 1), pages)
    classes, _ = await broadcasts.class_choices(
        session,
        author.scope,
        ctx.today,
        text=typed,
        offset=(page - 1) * PAGE_SIZE,
        limit=PAGE_SIZE,
    )
    back = (Button(Msg("broadcast.back_to_audience"), data(Do.AUDIENCE, broadcast_id)),)
    state = replace(state, step=Step.BROADCAST_CLASS, target=broadcast_id, note=None)
    if not classes:
        none = Msg("broadcast.classes_none_found", {"text": typed}) if typed else None
        return state, [Reply((none or Msg("broadcast.classes_none"),), (back,))]
    lines = [Msg("broadcast.classes_title", {"page": page, "pages": pages})]
    rows: list[tuple[Button, ...]] = []
    for number, (training_class, participants) in enumerate(classes, start=1):
        lines.append(
            Msg(
                "broadcast.class_item",
                {
                    "number": number,
                    "code": training_class.code,
                    "title": training_class.title,
                    "start": training_class.start_date,
                    "end": training_class.end_date,
                    "count": participants,
                },
            )
        )
        label = Msg(
            "catalog.class_button",
            {
                "code": training_class.code,
                "title": shorten(training_class.title, BUTTON_TITLE_LENGTH),
            },
        )
        rows.append((Button(label, data(Do.CLASS, broadcast_id, training_class.id)),))
    nav = []
    if page > 1 and not typed:
        nav.append(Button(Msg("nav.previous"), data(Do.CLASSES, broadcast_id, page - 1)))
    if page < pages and not typed:
        nav.append(Button(Msg("nav.next"), data(Do.CLASSES, broadcast_id, page + 1)))
    if nav:
        rows.append(tuple(nav))
    rows.append(back)
    return state, [Reply(tuple(lines), tuple(rows))]


async def pick_class(state: State, broadcast_id: int, class_id: int, ctx: Context) -> Outcome:
    """Send the draft to a class's participants (those the author reaches)."""
    found = await _draft(state, broadcast_id, ctx)
    if not isinstance(found, Held):
        return found
    author = found.author
    if await ctx.repos.classes.by_id(class_id) is None:
        return stale_button(state, ctx)
    await _set_audience(author, broadcast_id, Audience(AudienceKind.CLASS, class_id=class_id), ctx)
    return await preview(state, broadcast_id, ctx)


def _programs(state: State, broadcast_id: int) -> Outcome:
    rows: list[tuple[Button, ...]] = [
        (Button(program_name(program), program_data(broadcast_id, program)),)
        for program in PROGRAMS
    ]
    rows.append((Button(Msg("broadcast.back_to_audience"), data(Do.AUDIENCE, broadcast_id)),))
    return replace(state, step=None), [Reply((Msg("broadcast.programs_title"),), tuple(rows))]


async def pick_program(state: State, broadcast_id: int, number: int, ctx: Context) -> Outcome:
    """Send the draft to the learners of a program's current and upcoming classes."""
    found = await _draft(state, broadcast_id, ctx)
    if not isinstance(found, Held):
        return found
    author = found.author
    program: Program = PROGRAMS[number - 1]
    await _set_audience(author, broadcast_id, Audience(AudienceKind.PROGRAM, program=program), ctx)
    return await preview(state, broadcast_id, ctx)


async def answer_typed(state: State, incoming: Incoming, ctx: Context) -> Outcome:
    """Take a unit's or a class's name typed while choosing them."""
    broadcast_id = state.target
    if broadcast_id is None:
        return stale_button(state, ctx)
    typed = (incoming.text or "").strip()
    if state.step == Step.BROADCAST_UNITS:
        return await show_units(replace(state, note=typed), broadcast_id, 0, ctx)
    return await show_classes(state, broadcast_id, 1, ctx, typed)


# Preview and send ----------------------------------------------------------------------


async def describe(audience: Audience, author: Author, ctx: Context) -> list[Msg]:
    """Return who the audience is, in words."""
    session = ctx.repos.session
    lines: list[Msg] = []
    match audience.kind:
        case AudienceKind.EVERYONE if author.admin:
            return [Msg("broadcast.to_everyone")]
        case AudienceKind.EVERYONE:
            return [Msg("broadcast.to_everyone_in", {"unit": author.unit})]
        case AudienceKind.HEADS if author.admin:
            return [Msg("broadcast.to_heads")]
        case AudienceKind.HEADS:
            return [Msg("broadcast.to_heads_in", {"unit": author.unit})]
        case AudienceKind.UNITS:
            units = await broadcasts.units_in(session, author.scope)
            names = [unit.name for unit in units if unit.id in audience.unit_ids]
            named = ", ".join(names[:UNITS_NAMED])
            if len(names) > UNITS_NAMED:
                more = len(names) - UNITS_NAMED
                lines.append(Msg("broadcast.to_units_more", {"units": named, "count": more}))
            else:
                lines.append(Msg("broadcast.to_units", {"units": named}))
        case AudienceKind.CLASS:
            training_class = await ctx.repos.classes.by_id(audience.class_id or 0)
            code, title = (
                (training_class.code, training_class.title) if training_class else ("?", "")
            )
            lines.append(Msg("broadcast.to_class", {"code": code, "title": title}))
        case AudienceKind.PROGRAM:
            assert audience.program is not None
            lines.append(Msg("broadcast.to_program", {"program": program_name(audience.program)}))
    if not author.admin:
        lines.append(Msg("broadcast.within", {"unit": author.unit}))
    return lines


async def preview(
    state: State,
    broadcast_id: int,
    ctx: Context,
    before: Sequence[Msg] = (),
    *,
    shown: Reply | None = None,
) -> Outcome:
    """Show the draft's audience with its exact count, and Send, Urgent, Change, Drop.

    `shown` is the announcement itself, shown first (after a rewrite).
    """
    found = await _draft(state, broadcast_id, ctx)
    if not isinstance(found, Held):
        return found
    author, draft = found.author, found.broadcast
    audience = Audience.from_json(draft.audience)
    if audience is None:
        return replace(state, step=None), [_audience_question(broadcast_id, author, before)]
    if not audience.complete:
        return await show_units(
            state, broadcast_id, 1, ctx, (*before, Msg("broadcast.choose_a_unit"))
        )
    count = await broadcasts.count_audience(
        ctx.repos.session,
        audience,
        scope=author.scope,
        today=ctx.today,
        zns_kinds=ctx.settings.zns_kinds,
    )
    lines = [
        *before,
        Msg("broadcast.preview_title", {"number": broadcast_id, "snippet": snippet(draft.text)}),
        *await describe(audience, author, ctx),
    ]
    if count.total == 0:
        lines.append(Msg("broadcast.count_nobody"))
    elif count.by_zns:
        lines.append(
            Msg(
                "zns.broadcast_count",
                {
                    "total": count.total,
                    "reachable": count.reachable,
                    "by_zns": count.by_zns,
                    "never_linked": count.never_linked,
                    "unreachable": count.unreachable,
                },
            )
        )
        lines.append(Msg("zns.broadcast_note"))
    else:
        lines.append(
            Msg(
                "broadcast.count",
                {
                    "total": count.total,
                    "reachable": count.reachable,
                    "never_linked": count.never_linked,
                    "unreachable": count.unreachable,
                },
            )
        )
    attachment = _attachment_line(draft)
    if attachment is not None:
        lines.append(attachment)
    lines.append(Msg("broadcast.urgent") if draft.urgent else Msg("broadcast.normal"))
    rows: list[tuple[Button, ...]] = []
    if count.recipients:
        tag = draft_tag(draft.audience, draft.urgent, draft.message)
        send = Msg("broadcast.send_button", {"count": count.recipients})
        rows.append((Button(send, data(Do.SEND, broadcast_id, tag)),))
    else:
        lines.append(Msg("broadcast.nobody"))
    urgency = Msg("broadcast.normal_button") if draft.urgent else Msg("broadcast.urgent_button")
    rows.append((Button(urgency, data(Do.URGENT, broadcast_id)),))
    rows.append(
        (
            Button(Msg("broadcast.change_audience"), data(Do.AUDIENCE, broadcast_id)),
            Button(Msg("broadcast.rewrite_button"), data(Do.REWRITE, broadcast_id)),
        )
    )
    rows.append((Button(Msg("broadcast.drop_button"), data(Do.DROP, broadcast_id)),))
    replies = [shown] if shown is not None else []
    return replace(state, step=None, note=None), [*replies, Reply(tuple(lines), tuple(rows))]


def _attachment_line(draft: Broadcast) -> Msg | None:
    attachment = draft.message.get("attachment") if isinstance(draft.message, dict) else None
    if not isinstance(attachment, dict):
        return None
    if attachment.get("kind") == AttachmentKind.PHOTO.value:
        return Msg("broadcast.with_photo")
    return Msg("broadcast.with_document", {"name": str(attachment.get("filename") or "")})


async def toggle_urgent(state: State, broadcast_id: int, ctx: Context) -> Outcome:
    """Mark the draft urgent (sent in quiet hours too) or not."""
    found = await _draft(state, broadcast_id, ctx)
    if not isinstance(found, Held):
        return found
    author, draft = found.author, found.broadcast
    await broadcasts.edit_draft(
        ctx.repos.session, broadcast_id, author.person.id, urgent=not draft.urgent
    )
    return await preview(state, broadcast_id, ctx)


async def send(state: State, broadcast_id: int, tag: int, ctx: Context) -> Outcome:
    """Send the draft as previewed: its notices are queued; a second press sends nothing."""
    found = await _draft(state, broadcast_id, ctx)
    if not isinstance(found, Held):
        return found
    author, draft = found.author, found.broadcast
    if draft_tag(draft.audience, draft.urgent, draft.message) != tag:
        return await preview(state, broadcast_id, ctx, (Msg("broadcast.changed"),))
    try:
        started = await broadcasts.start(
            ctx.repos.session,
            broadcast_id,
            author_id=author.person.id,
            scope_unit_id=author.scope_unit_id,
            now=ctx.now,
            today=ctx.today,
            zns_kinds=ctx.settings.zns_kinds,
        )
    except BroadcastError as refusal:
        return await _refused(state, refusal, broadcast_id, author, ctx)
    line = Msg("broadcast.started", {"number": broadcast_id, "count": started.recipients})
    rows = (
        (
            Button(Msg("broadcast.progress_button"), data(Do.PROGRESS, broadcast_id)),
            Button(Msg("broadcast.stop_button"), data(Do.STOP, broadcast_id)),
        ),
    )
    return replace(state, step=None), [Reply((line,), rows)]


# Progress and stopping -------------------------------------------------------------------


async def _managed(state: State, broadcast_id: int, ctx: Context) -> Held | Outcome:
    """Return a started broadcast the person may see and stop, or the answer why not."""
    author = await author_of(ctx)
    if author is None:
        return only_authors(state, ctx)
    broadcast = await broadcasts.get(ctx.repos.session, broadcast_id)
    if broadcast is None:
        return replace(state, step=None), [
            Reply((Msg("broadcast.not_found", {"number": broadcast_id}),))
        ]
    if not broadcasts.manages(broadcast, author.person.id, admin=author.admin):
        return replace(state, step=None), [
            Reply((Msg("broadcast.not_yours", {"number": broadcast_id}),))
        ]
    if broadcast.status == BroadcastStatus.DRAFT:
        return await preview(state, broadcast_id, ctx)
    if broadcast.status == BroadcastStatus.CANCELLED:
        dropped = Msg("broadcast.already_dropped", {"number": broadcast_id})
        return replace(state, step=None), [help_reply(ctx, (dropped,))]
    return Held(author, broadcast)


async def _progress_of(broadcast: Broadcast, ctx: Context) -> Reply:
    progress = await broadcasts.progress(ctx.repos.session, broadcast.id)
    assert progress is not None
    return progress_reply(broadcast.id, broadcast.text, broadcast.status, progress)


async def show_progress(
    state: State, broadcast_id: int, ctx: Context, before: Sequence[Msg] = ()
) -> Outcome:
    """Show how far a broadcast has gone: sent, left, failed; Stop while it goes out."""
    found = await _managed(state, broadcast_id, ctx)
    if not isinstance(found, Held):
        return found
    broadcast = found.broadcast
    view = await _progress_of(broadcast, ctx)
    return replace(state, step=None), [replace(view, lines=(*before, *view.lines))]


async def stop(state: State, broadcast_id: int, ctx: Context) -> Outcome:
    """Stop a broadcast going out: what is not yet sent is not sent."""
    found = await _managed(state, broadcast_id, ctx)
    if not isinstance(found, Held):
        return found
    author = found.author
    try:
        skipped = await broadcasts.stop(
            ctx.repos.session, broadcast_id, by_id=author.person.id, now=ctx.now
        )
    except BroadcastError:
        finished = Msg("broadcast.already_finished", {"number": broadcast_id})
        return await show_progress(state, broadcast_id, ctx, (finished,))
    stopped = Msg("broadcast.stopped", {"number": broadcast_id, "count": skipped})
    return await show_progress(state, broadcast_id, ctx, (stopped,))


async def stop_command(state: State, author: Author, argument: str, ctx: Context) -> Outcome:
    """Run /broadcast stop N, or /broadcast stop: the one going out, or a choice of them."""
    state = replace(state, step=None)
    if argument:
        number = number_in(argument.lstrip("#"))
        if number is None:
            return state, [Reply((Msg("broadcast.usage"),))]
        return await stop(state, number, ctx)
    running = await broadcasts.recent(
        ctx.repos.session,
        author_id=None if author.admin else author.person.id,
        statuses=(BroadcastStatus.SENDING,),
        limit=STATUS_LIMIT,
    )
    if not running:
        return state, [Reply((Msg("broadcast.none_running"),))]
    if len(running) == 1:
        return await stop(state, running[0].id, ctx)
    lines = [Msg("broadcast.choose_stop", {"count": len(running)})]
    rows = []
    for broadcast in running:
        params: dict[str, Param] = {"number": broadcast.id, "snippet": snippet(broadcast.text)}
        rows.append((Button(Msg("broadcast.stop_number", params), data(Do.STOP, broadcast.id)),))
    return state, [Reply(tuple(lines), tuple(rows))]


async def show_status(state: State, author: Author, ctx: Context) -> Outcome:
    """List the latest broadcasts (all for admins, their own for heads) with their progress."""
    latest = await broadcasts.recent(
        ctx.repos.session,
        author_id=None if author.admin else author.person.id,
        limit=STATUS_LIMIT,
    )
    state = replace(state, step=None)
    if not latest:
        return state, [Reply((Msg("broadcast.status_none"),))]
    counts = await broadcasts.progresses(ctx.repos.session, [b.id for b in latest])
    lines = [Msg("broadcast.status_title")]
    rows = []
    for broadcast in latest:
        view = progress_reply(broadcast.id, broadcast.text, broadcast.status, counts[broadcast.id])
        lines.extend(view.lines)
        if view.buttons:
            params: dict[str, Param] = {"number": broadcast.id, "snippet": snippet(broadcast.text)}
            rows.append(
                (Button(Msg("broadcast.stop_number", params), data(Do.STOP, broadcast.id)),)
            )
    return state, [Reply(tuple(lines), tuple(rows))]


# Refusals and routing --------------------------------------------------------------------


async def _refused(
    state: State, refusal: BroadcastError, broadcast_id: int, author: Author, ctx: Context
) -> Outcome:
    """Answer a press that does not apply to the draft any more, saying why."""
    state = replace(state, step=None)
    number: dict[str, Param] = {"number": broadcast_id}
    match refusal.why:
        case "not_yours":
            return state, [Reply((Msg("broadcast.not_yours", number),))]
        case "not_draft":
            broadcast = await broadcasts.get(ctx.repos.session, broadcast_id)
            if broadcast is not None and broadcast.status in broadcasts.STARTED:
                already = Msg("broadcast.already_started", number)
                return await show_progress(state, broadcast_id, ctx, (already,))
            return state, [help_reply(ctx, (Msg("broadcast.already_dropped", number),))]
        case "no_audience":
            return state, [
                _audience_question(broadcast_id, author, (Msg("broadcast.choose_first"),))
            ]
        case "out_of_scope":
            return state, [
                _audience_question(broadcast_id, author, (Msg("broadcast.out_of_scope"),))
            ]
        case "nobody":
            return await preview(state, broadcast_id, ctx)
    return stale_button(state, ctx)


async def press_broadcast(state: State, button: BroadcastButton, ctx: Context) -> Outcome:
    """Do what a broadcast button asks for."""
    broadcast_id, args = button.broadcast_id, button.args
    match button.do:
        case Do.AUDIENCE:
            return await choose_audience(state, broadcast_id, ctx)
        case Do.KIND:
            return await pick_kind(state, broadcast_id, args[0], ctx)
        case Do.UNITS:
            return await show_units(state, broadcast_id, args[0], ctx)
        case Do.TOGGLE_UNIT:
            return await toggle_unit(state, broadcast_id, args[0], args[1], ctx)
        case Do.CLASSES:
            return await show_classes(state, broadcast_id, args[0], ctx)
        case Do.CLASS:
            return await pick_class(state, broadcast_id, args[0], ctx)
        case Do.PROGRAM:
            return await pick_program(state, broadcast_id, args[0], ctx)
        case Do.PREVIEW:
            return await preview(state, broadcast_id, ctx)
        case Do.URGENT:
            return await toggle_urgent(state, broadcast_id, ctx)
        case Do.REWRITE:
            return await rewrite(state, broadcast_id, ctx)
        case Do.DROP:
            return await drop(state, broadcast_id, ctx)
        case Do.SEND:
            return await send(state, broadcast_id, args[0], ctx)
        case Do.PROGRESS:
            return await show_progress(state, broadcast_id, ctx)
        case Do.STOP:
            return await stop(state, broadcast_id, ctx)
