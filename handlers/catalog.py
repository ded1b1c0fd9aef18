"""The class catalog: upcoming classes page by page, filter menus, and one class's detail."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from db import registrations as regs
from db.models import (
    LIVE_REGISTRATION_STATUSES,
    ClassSession,
    Form,
    Person,
    Program,
    RegistrationStatus,
    TrainingClass,
)
from db.rules import Reason, age_limit, refusal_reasons
from handlers.callbacks import (
    Action,
    ListQuery,
    Menu,
    class_data,
    list_data,
    menu_data,
)
from handlers.help import Outcome, help_reply, stale_button
from handlers.labels import (
    form_name,
    level_name,
    month_name,
    program_name,
    refusal_text,
    registration_text,
    seats_text,
    status_name,
)
from handlers.registration import register_button
from handlers.state import Context, State
from handlers.types import Button, Msg, Param, Reply

PAGE_SIZE = 5
MAX_MONTHS = 12
# A schedule this long is listed whole; a longer one by its size and next few sessions.
SCHEDULE_IN_FULL = 10
NEXT_SESSIONS = 5
# A session's topic and place together, as shown.
ABOUT_LENGTH = 80
BUTTON_TITLE_LENGTH = 32


@dataclass(frozen=True)
class Page:
    """Which page to show of a list of `total` items."""

    number: int
    pages: int
    total: int
    past_end: bool

    @property
    def offset(self) -> int:
        """Return the index of the page's first item."""
        return (self.number - 1) * PAGE_SIZE


def paginate(requested: int, total: int) -> Page:
    """Return the page to show: the requested one, or the last one if it is past the end."""
    pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
    number = min(max(requested, 1), pages)
    return Page(number=number, pages=pages, total=total, past_end=requested > pages)


def class_button(training_class: TrainingClass) -> Button:
    """Return the button that opens a class: its code, then the start of its title."""
    title = shorten(training_class.title, BUTTON_TITLE_LENGTH)
    return Button(
        Msg("catalog.class_button", {"code": training_class.code, "title": title}),
        class_data(training_class.id),
    )


async def page_of_classes(
    classes: Sequence[TrainingClass], ctx: Context
) -> tuple[list[Msg], list[tuple[Button, ...]]]:
    """Return the lines describing `classes` and one button per class, numbered alike."""
    taken = await ctx.repos.classes.seats_taken([c.id for c in classes])
    lines = [
        Msg(
            "catalog.item",
            {
                "number": number,
                "title": training_class.title,
                "code": training_class.code,
                "start": training_class.start_date,
                "end": training_class.end_date,
                "form": form_name(training_class.form),
                "seats": seats_text(training_class, taken.get(training_class.id, 0)),
                "registration": registration_text(training_class, ctx.today),
            },
        )
        for number, training_class in enumerate(classes, start=1)
    ]
    return lines, [(class_button(training_class),) for training_class in classes]


def page_buttons(page: Page, data_of_page: dict[int, str]) -> list[tuple[Button, ...]]:
    """Return the Previous/Next row, if there is anywhere to go."""
    row = []
    if page.number > 1:
        row.append(Button(Msg("nav.previous"), data_of_page[page.number - 1]))
    if page.number < page.pages:
        row.append(Button(Msg("nav.next"), data_of_page[page.number + 1]))
    return [tuple(row)] if row else []


@dataclass(frozen=True)
class Standing:
    """A person's registrations as eligibility needs them."""

    # Class id → status of the person's live registration for it.
    registered: dict[int, RegistrationStatus]
    # Classes in which the person holds a seat, for date clashes.
    held: list[TrainingClass]


async def standing_of(person: Person, ctx: Context) -> Standing:
    """Return the person's live registrations and the classes they hold seats in."""
    session = ctx.repos.session
    live = await regs.registrations_of(session, person.id, statuses=LIVE_REGISTRATION_STATUSES)
    return Standing(
        {r.class_id: r.status for r in live}, await regs.held_classes(session, person.id)
    )


async def refusals_by_class(
    person: Person, classes: Sequence[TrainingClass], ctx: Context
) -> dict[int, list[Reason]]:
    """Return why `person` may not register, per class (an empty list: eligible)."""
    quotas = await ctx.repos.classes.quota_use(person.unit_id, [c.id for c in classes])
    standing = await standing_of(person, ctx)
    return {
        c.id: refusal_reasons(
            person,
            c,
            ctx.today,
            quotas.get(c.id),
            registered=standing.registered.get(c.id),
            held=standing.held,
        )
        for c in classes
    }


def _filter_lines(query: ListQuery) -> list[Msg]:
    lines = []
    if query.program:
        lines.append(Msg("catalog.filter_program", {"program": program_name(query.program)}))
    if query.form:
        lines.append(Msg("catalog.filter_form", {"form": form_name(query.form)}))
    if query.month:
        lines.append(Msg("catalog.filter_month", {"month": month_name(query.month)}))
    return lines


def _filter_buttons(query: ListQuery, ctx: Context) -> list[tuple[Button, ...]]:
    first_page = replace(query, page=1)
    menus = tuple(
        Button(Msg(label), menu_data(menu, first_page))
        for menu, label in (
            (Menu.PROGRAM, "catalog.by_program"),
            (Menu.FORM, "catalog.by_form"),
            (Menu.MONTH, "catalog.by_month"),
        )
    )
    others = []
    if ctx.person is not None:
        if query.eligible:
            others.append(
                Button(Msg("catalog.all_classes"), list_data(replace(first_page, eligible=False)))
            )
        else:
            others.append(
                Button(Msg("catalog.only_eligible"), list_data(replace(first_page, eligible=True)))
            )
    if query.program or query.form or query.month:
        others.append(Button(Msg("catalog.clear_filters"), list_data(ListQuery())))
    others.append(Button(Msg("menu.search"), Action.ASK_SEARCH.value))
    return [menus, tuple(others)]


async def show_list(
    state: State, query: ListQuery, ctx: Context, before: Sequence[Msg] = ()
) -> Outcome:
    """Show a page of upcoming classes, soonest first, with filter and page buttons."""
    notes = list(before)
    if query.eligible and ctx.person is None:
        notes.append(Msg("catalog.eligible_needs_roster"))
        query = replace(query, eligible=False)
    repo = ctx.repos.classes
    if query.eligible and ctx.person is not None:
        candidates = await repo.upcoming(ctx.today, query.filters)
        refusals = await refusals_by_class(ctx.person, candidates, ctx)
        eligible = [c for c in candidates if not refusals[c.id]]
        page = paginate(query.page, len(eligible))
        classes = eligible[page.offset : page.offset + PAGE_SIZE]
    else:
        page = paginate(query.page, await repo.count_upcoming(ctx.today, query.filters))
        classes = await repo.upcoming(ctx.today, query.filters, offset=page.offset, limit=PAGE_SIZE)
    query = replace(query, page=page.number)
    state = replace(state, step=None, last_list=list_data(query))
    if not classes:
        return state, [_empty_list(query, notes, ctx)]
    if page.past_end:
        notes.append(Msg("catalog.past_end"))
    title_key = "catalog.title_eligible" if query.eligible else "catalog.title"
    title = Msg(title_key, {"page": page.number, "pages": page.pages, "total": page.total})
    lines, class_rows = await page_of_classes(classes, ctx)
    pages = {n: list_data(replace(query, page=n)) for n in (page.number - 1, page.number + 1)}
    buttons = [*class_rows, *page_buttons(page, pages), *_filter_buttons(query, ctx)]
    reply = Reply(lines=(*notes, title, *_filter_lines(query), *lines), buttons=tuple(buttons))
    return state, [reply]


def _empty_list(query: ListQuery, notes: list[Msg], ctx: Context) -> Reply:
    if query.eligible:
        empty = Msg("catalog.empty_eligible")
    elif query.filtered:
        empty = Msg("catalog.empty_filtered")
    else:
        empty = Msg("catalog.empty")
    lines = (*notes, empty, *_filter_lines(query))
    if not query.filtered:
        return help_reply(ctx, lines)
    return Reply(lines=lines, buttons=tuple(_filter_buttons(query, ctx)))


async def show_menu(state: State, menu: Menu, query: ListQuery, ctx: Context) -> Outcome:
    """Offer the values of one filter; each button shows the list filtered by it."""
    base = replace(query, page=1)
    rows: list[tuple[Button, ...]]
    if menu == Menu.PROGRAM:
        prompt = Msg("catalog.choose_program")
        rows = [(Button(program_name(p), list_data(replace(base, program=p))),) for p in Program]
        rows.append((Button(Msg("catalog.any_program"), list_data(replace(base, program=None))),))
    elif menu == Menu.FORM:
        prompt = Msg("catalog.choose_form")
        rows = [tuple(Button(form_name(f), list_data(replace(base, form=f))) for f in Form)]
        rows.append((Button(Msg("catalog.any_form"), list_data(replace(base, form=None))),))
    else:
        prompt = Msg("catalog.choose_month")
        months = await ctx.repos.classes.upcoming_months(
            ctx.today, replace(base, month=None).filters
        )
        if not months:
            prompt = Msg("catalog.no_months")
        buttons = [
            Button(month_name(m), list_data(replace(base, month=m))) for m in months[:MAX_MONTHS]
        ]
        rows = [tuple(buttons[i : i + 3]) for i in range(0, len(buttons), 3)]
        rows.append((Button(Msg("catalog.any_month"), list_data(replace(base, month=None))),))
    rows.append((Button(Msg("nav.back_to_list"), list_data(base)),))
    return replace(state, step=None), [Reply(lines=(prompt,), buttons=tuple(rows))]


async def show_class(state: State, class_id: int, ctx: Context) -> Outcome:
    """Show one class in full, with a Back button to the list it was opened from."""
    training_class = await ctx.repos.classes.by_id(class_id)
    if training_class is None:
        return stale_button(state, ctx)
    return replace(state, step=None), [await _detail(training_class, state, ctx)]


async def show_class_by_code(state: State, code: str, ctx: Context) -> Outcome:
    """Show the class with this code, or say there is none."""
    if not code:
        return state, [help_reply(ctx, (Msg("class.ask_code"),))]
    training_class = await ctx.repos.classes.by_code(code)
    if training_class is None:
        return state, [help_reply(ctx, (Msg("class.not_found", {"code": code}),))]
    return replace(state, step=None), [await _detail(training_class, state, ctx)]


async def _detail(training_class: TrainingClass, state: State, ctx: Context) -> Reply:
    repo = ctx.repos.classes
    taken = (await repo.seats_taken([training_class.id])).get(training_class.id, 0)
    lines = [
        Msg("detail.title", {"title": training_class.title}),
        Msg("detail.code", {"code": training_class.code}),
        Msg("detail.program", {"program": program_name(training_class.program)}),
        Msg("detail.form", {"form": form_name(training_class.form)}),
        Msg("detail.dates", {"start": training_class.start_date, "end": training_class.end_date}),
    ]
    lines += await _schedule(training_class, ctx)
    if training_class.location:
        lines.append(Msg("detail.location", {"location": training_class.location}))
    lines.append(Msg("detail.seats", {"seats": seats_text(training_class, taken)}))
    lines.append(
        Msg("detail.registration", {"registration": registration_text(training_class, ctx.today)})
    )
    lines += _requirements(training_class)
    if ctx.person is not None:
        lines += await _for_person(ctx.person, training_class, ctx)
    else:
        lines.append(Msg("detail.visitor"))
    back = state.last_list or list_data(ListQuery())
    register = await register_button(training_class, ctx)
    buttons = (
        (Button(Msg("nav.back_to_list"), back),),
        *([(register,)] if register else []),
        (Button(Msg("menu.search"), Action.ASK_SEARCH.value),),
    )
    return Reply(lines=tuple(lines), buttons=buttons)


async def _schedule(training_class: TrainingClass, ctx: Context) -> list[Msg]:
    """Return the schedule: whole when short, else its size and the next few sessions.

    A long class has 100+ sessions; listing them would bury the detail and overrun a
    chat message (Telegram: 4096 characters).
    """
    sessions = await ctx.repos.classes.schedule(training_class.id)
    if not sessions:
        return []
    if len(sessions) <= SCHEDULE_IN_FULL:
        return [Msg("detail.schedule"), *(_session_line(s, ctx) for s in sessions)]
    span: dict[str, Param] = {
        "count": len(sessions),
        "first": sessions[0].starts_at.astimezone(ctx.zone).date(),
        "last": sessions[-1].starts_at.astimezone(ctx.zone).date(),
    }
    lines = [Msg("detail.schedule_summary", span)]
    upcoming = [s for s in sessions if s.ends_at > ctx.now]
    if not upcoming:
        lines.append(Msg("detail.schedule_done"))
        return lines
    lines.append(Msg("detail.schedule_next"))
    lines += [_session_line(s, ctx) for s in upcoming[:NEXT_SESSIONS]]
    if len(upcoming) > NEXT_SESSIONS:
        lines.append(Msg("detail.more_sessions", {"count": len(upcoming) - NEXT_SESSIONS}))
    return lines


def _session_line(session: ClassSession, ctx: Context) -> Msg:
    """Return one session as a line: date, local times, topic and place (shortened)."""
    starts = session.starts_at.astimezone(ctx.zone)
    ends = session.ends_at.astimezone(ctx.zone)
    about = " — ".join(part for part in (session.topic, session.location or "") if part)
    times: dict[str, Param] = {
        "date": starts.date(),
        "start": f"{starts:%H:%M}",
        "end": f"{ends:%H:%M}",
    }
    if not about:
        return Msg("detail.session", times)
    return Msg("detail.session_about", {**times, "about": shorten(about, ABOUT_LENGTH)})


def shorten(text: str, limit: int) -> str:
    """Return `text` cut to at most `limit` characters, ending in … when cut."""
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + "…"


def _requirements(training_class: TrainingClass) -> list[Msg]:
    lines = []
    max_age = age_limit(training_class)
    if max_age is not None:
        lines.append(
            Msg(
                "detail.requirement_age",
                {"max_age": max_age, "year": training_class.start_date.year},
            )
        )
    if training_class.required_theory_level is not None:
        level = level_name(training_class.required_theory_level.value)
        lines.append(Msg("detail.requirement_level", {"level": level}))
    if not lines:
        lines.append(Msg("detail.requirements_none"))
    if training_class.requires_approval:
        lines.append(Msg("detail.requires_approval"))
    return lines


async def _for_person(person: Person, training_class: TrainingClass, ctx: Context) -> list[Msg]:
    quota = (await ctx.repos.classes.quota_use(person.unit_id, [training_class.id])).get(
        training_class.id
    )
    lines = []
    if quota is None:
        lines.append(Msg("detail.no_quota"))
    else:
        lines.append(
            Msg(
                "detail.quota",
                {"unit": quota.unit_name, "used": quota.used, "seats": quota.seats},
            )
        )
    standing = await standing_of(person, ctx)
    status = standing.registered.get(training_class.id)
    if status is not None:
        lines.append(Msg("detail.registered", {"status": status_name(status)}))
        return lines
    reasons = refusal_reasons(person, training_class, ctx.today, quota, held=standing.held)
    if not reasons:
        lines.append(Msg("detail.eligible"))
    else:
        lines.append(Msg("detail.not_eligible"))
        lines += [refusal_text(reason) for reason in reasons]
    return lines
