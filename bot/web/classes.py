"""Classes: the list, one class with its registrations, create, edit, close, export.

A class is checked by the same rules as a row of a classes file (db.roster's
validate_classes), so the form and the import never disagree. Editing writes the row in
one unit of work with its audit entry and nothing else: the change notice to registrants
comes from the notification engine's sweep, which compares the class with what was last
announced (`training_class.announced`). A raised capacity offers the freed seats down the
waitlist at once, as a cancellation does.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

from aiohttp import web
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.roster_cli import export_cells
from bot.tabular import xlsx_bytes
from bot.web.core import (
    PAGE_SIZE,
    admin_only,
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
from db import admin_views, audit, units
from db.catalog import ClassRepo
from db.models import (
    ClassQuota,
    ClassStatus,
    Form,
    Program,
    Registration,
    RegistrationStatus,
    TheoryLevel,
    TrainingClass,
    Unit,
)
from db.registrations import class_starts_at, lock_class, offer_free_seats, seats_taken
from db.repos import Repos
from db.roster import (
    EXPORT_COLUMNS,
    REQUIRED_COLUMNS,
    ClassRecord,
    Row,
    registrations_for_export,
    validate_classes,
)
from db.text import fold
from handlers.i18n import t
from handlers.seat_notices import notify_offers
from handlers.unit_head import PRESET_REASONS

# The form's fields: the columns of a classes file, with the optional ones it edits.
FORM_FIELDS = (*REQUIRED_COLUMNS["classes"], "requires_approval", "online_url")
# Statuses shown on a class's page, in this order.
SHOWN = (
    RegistrationStatus.PENDING_APPROVAL,
    RegistrationStatus.CONFIRMED,
    RegistrationStatus.OFFERED,
    RegistrationStatus.WAITLISTED,
    RegistrationStatus.ATTENDED,
)
# Statuses a registration may be cancelled from by staff (before the class starts).
CANCELLABLE = (
    RegistrationStatus.CONFIRMED,
    RegistrationStatus.PENDING_APPROVAL,
    RegistrationStatus.WAITLISTED,
    RegistrationStatus.OFFERED,
)


def today_of(request: web.Request) -> dt.date:
    """Return today's date in the school's time zone."""
    return now_of(request).astimezone(settings_of(request).bot.zone).date()


def choices() -> dict[str, list[str]]:
    """Return the values the form's drop-downs offer."""
    return {
        "program": [p.value for p in Program],
        "form": [f.value for f in Form],
        "required_theory_level": ["", *(level.value for level in TheoryLevel)],
    }


# ------------------------------------------------------------------------------ list


async def class_list(request: web.Request) -> web.StreamResponse:
    """List classes: admins all of them with filters, unit heads those of their units."""
    viewer = viewer_of(request)
    today = today_of(request)
    page = max(1, int_param(request.query.get("page"), 1))
    try:
        when = admin_views.When(request.query.get("when", "upcoming"))
    except ValueError:
        when = admin_views.When.UPCOMING
    status_text = request.query.get("status", "")
    status = ClassStatus(status_text) if status_text in set(ClassStatus) else None
    query = admin_views.ClassQuery(when=when, text=request.query.get("q", "")[:100], status=status)
    async with sessionmaker_of(request)() as session:
        if viewer.scope is None:
            found, total = await admin_views.classes(
                session, query, today, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE
            )
        else:
            above = (
                await units.ancestors(session, viewer.person.unit_id) if viewer.person else set()
            )
            total = await units.count_classes(session, viewer.scope, today, above=above)
            found = await units.classes(
                session,
                viewer.scope,
                today,
                above=above,
                offset=(page - 1) * PAGE_SIZE,
                limit=PAGE_SIZE,
            )
        ids = [c.id for c in found]
        taken = await ClassRepo(session).seats_taken(ids)
        counts = await units.status_counts(session, ids, viewer.scope)
    return render(
        request,
        "classes.html",
        classes=found,
        taken=taken,
        counts=counts,
        total=total,
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
        query=query,
        statuses=[s.value for s in ClassStatus],
        done=request.query.get("done"),
    )


# ---------------------------------------------------------------------------- detail


async def _waitlist_positions(session: AsyncSession, class_id: int) -> dict[int, int]:
    """Return each waitlisted registration's place in the class's queue, from 1."""
    stmt = (
        select(Registration.id)
        .where(
            Registration.class_id == class_id,
            Registration.status == RegistrationStatus.WAITLISTED,
        )
        .order_by(Registration.id)
    )
    return {rid: place for place, rid in enumerate((await session.scalars(stmt)).all(), start=1)}


async def _quota_rows(
    session: AsyncSession, training_class: TrainingClass, scope: set[int] | None
) -> list[dict[str, Any]]:
    """Return the class's quotas (those of the scope's units) with their use."""
    stmt = (
        select(ClassQuota.unit_id, ClassQuota.seats, Unit.code, Unit.name)
        .join(Unit, Unit.id == ClassQuota.unit_id)
        .where(ClassQuota.class_id == training_class.id)
        .order_by(Unit.name)
    )
    rows = []
    repo = ClassRepo(session)
    for unit_id, seats, code, name in await session.execute(stmt):
        if scope is not None and unit_id not in scope:
            continue
        use = (await repo.quota_use(unit_id, [training_class.id])).get(training_class.id)
        rows.append(
            {
                "unit_id": unit_id,
                "code": code,
                "name": name,
                "seats": seats,
                "used": use.used if use else 0,
            }
        )
    return rows


async def class_detail(request: web.Request) -> web.StreamResponse:
    """Show a class: its facts, seats and quotas, and its registrations by status."""
    viewer = viewer_of(request)
    class_id = int_param(request.match_info["class_id"], -1)
    settings = settings_of(request)
    async with sessionmaker_of(request)() as session:
        training_class = await session.get(TrainingClass, class_id)
        if training_class is None:
            raise not_found(request)
        live = await units.registrations(session, viewer.scope, class_id)
        if (
            viewer.scope is not None
            and not live
            and not await _concerns(session, viewer, training_class)
        ):
            raise not_found(request)
        ended = await admin_views.ended_registrations(session, viewer.scope, class_id)
        positions = await _waitlist_positions(session, class_id)
        taken = await seats_taken(session, class_id)
        quotas = await _quota_rows(session, training_class, viewer.scope)
        sessions = await ClassRepo(session).schedule(class_id)
        started = now_of(request) >= await class_starts_at(
            session, training_class, settings.bot.zone
        )
        binding = None
        if viewer.scope is not None and viewer.person is not None:
            binding = (await ClassRepo(session).quota_use(viewer.person.unit_id, [class_id])).get(
                class_id
            )
    groups = {status: [r for r in live if r.status == status] for status in SHOWN}
    return render(
        request,
        "class_detail.html",
        training_class=training_class,
        groups=groups,
        ended=ended,
        positions=positions,
        taken=taken,
        quotas=quotas,
        binding=binding,
        sessions=sessions,
        started=started,
        cancellable=CANCELLABLE,
        reject_reasons=[t(reason, language_of(request)) for reason in PRESET_REASONS],
        done=request.query.get("done"),
        error=request.query.get("error"),
    )


async def _concerns(session: AsyncSession, viewer: Any, training_class: TrainingClass) -> bool:
    """Return whether a unit head's units have to do with the class (quota, or open to all)."""
    quota_units = set(
        (
            await session.scalars(
                select(ClassQuota.unit_id).where(ClassQuota.class_id == training_class.id)
            )
        ).all()
    )
    if not quota_units:
        return True
    above = await units.ancestors(session, viewer.person.unit_id) if viewer.person else set()
    return bool(quota_units & (viewer.scope | above))


# ------------------------------------------------------------------------ the form


def _form_values(training_class: TrainingClass | None, quotas: str = "") -> dict[str, str]:
    """Return a class's values as the form shows them (empty for a new class)."""
    if training_class is None:
        return {field: "" for field in FORM_FIELDS} | {"program": "", "form": ""}
    c = training_class
    return {
        "code": c.code,
        "title": c.title,
        "program": c.program.value,
        "form": c.form.value,
        "location": c.location,
        "start_date": c.start_date.isoformat(),
        "end_date": c.end_date.isoformat(),
        "registration_deadline": c.registration_deadline.isoformat(),
        "capacity": str(c.capacity),
        "max_age": str(c.max_age or ""),
        "required_theory_level": c.required_theory_level.value if c.required_theory_level else "",
        "unit_quotas": quotas,
        "requires_approval": "true" if c.requires_approval else "",
        "online_url": c.online_url or "",
    }


async def _quota_text(session: AsyncSession, class_id: int) -> str:
    """Return a class's quotas as a classes file writes them: UNIT:SEATS;UNIT:SEATS."""
    rows = await session.execute(
        select(Unit.code, ClassQuota.seats)
        .join(Unit, Unit.id == ClassQuota.unit_id)
        .where(ClassQuota.class_id == class_id)
        .order_by(Unit.code)
    )
    return ";".join(f"{code}:{seats}" for code, seats in rows)


def _field_of(message: str) -> str:
    """Return the form field a validation message is about (it starts with the column)."""
    for field in sorted(FORM_FIELDS, key=len, reverse=True):
        if message.startswith(field):
            return field
    return ""


def _online_url_problem(value: str) -> str | None:
    if value and not value.startswith(("https://", "http://")):
        return "online_url must start with https:// or http://"
    if len(value) > 500:
        return "online_url is longer than 500 characters"
    return None


async def _validate(
    session: AsyncSession, values: dict[str, str]
) -> tuple[ClassRecord | None, dict[str, list[str]]]:
    """Check the form as a classes file row; return the record or the problems by field."""
    unit_codes = set((await session.scalars(select(Unit.code))).all())
    row_values = {k: v for k, v in values.items() if k != "online_url"}
    records, errors = validate_classes([Row(1, row_values)], unit_codes)
    problems: dict[str, list[str]] = {}
    for error in errors:
        problems.setdefault(_field_of(error.message), []).append(error.message)
    if (url_problem := _online_url_problem(values.get("online_url", ""))) is not None:
        problems.setdefault("online_url", []).append(url_problem)
    if problems or not records:
        return None, problems
    return records[0], problems


async def _posted_values(request: web.Request) -> dict[str, str]:
    form = await request.post()
    values = {field: str(form.get(field, "")).strip() for field in FORM_FIELDS}
    # An unticked box sends nothing: that is "no", not "keep as it was".
    values["requires_approval"] = "true" if values["requires_approval"] else "false"
    return values


def _form_page(
    request: web.Request,
    values: dict[str, str],
    problems: dict[str, list[str]],
    training_class: TrainingClass | None,
    status: int = 200,
) -> web.Response:
    return render(
        request,
        "class_form.html",
        status=status,
        values=values,
        problems=problems,
        training_class=training_class,
        choices=choices(),
    )


@admin_only
async def class_new(request: web.Request) -> web.StreamResponse:
    """Show the form for a new class."""
    return _form_page(request, _form_values(None), {}, None)


async def _replace_quotas(
    session: AsyncSession, class_id: int, quotas: tuple[tuple[str, int], ...]
) -> None:
    await session.execute(delete(ClassQuota).where(ClassQuota.class_id == class_id))
    if quotas:
        ids = {code: unit_id for code, unit_id in await session.execute(select(Unit.code, Unit.id))}
        for code, seats in quotas:
            session.add(ClassQuota(class_id=class_id, unit_id=ids[code], seats=seats))
    await session.flush()


def _apply(training_class: TrainingClass, record: ClassRecord, online_url: str) -> None:
    training_class.title = record.title
    training_class.search_text = fold(f"{record.code} {record.title}")
    training_class.program = record.program
    training_class.form = record.form
    training_class.location = record.location
    training_class.start_date = record.start_date
    training_class.end_date = record.end_date
    training_class.registration_deadline = record.registration_deadline
    training_class.capacity = record.capacity
    training_class.max_age = record.max_age
    training_class.required_theory_level = record.required_theory_level
    training_class.requires_approval = bool(record.requires_approval)
    training_class.online_url = online_url or None


def _snapshot(training_class: TrainingClass, quotas: str) -> dict[str, Any]:
    values = _form_values(training_class, quotas)
    values.pop("code")
    return values


@admin_only
async def class_create(request: web.Request) -> web.StreamResponse:
    """Create a class from the form, or show the form again with what is wrong."""
    viewer = viewer_of(request)
    values = await _posted_values(request)
    now = now_of(request)
    try:
        async with sessionmaker_of(request)() as session, session.begin():
            record, problems = await _validate(session, values)
            if record is not None and await ClassRepo(session).by_code(record.code) is not None:
                problems = {"code": [tr(request, "class.code_taken", code=record.code)]}
                record = None
            if record is None:
                return _form_page(request, values, problems, None, status=422)
            training_class = TrainingClass(code=record.code, status=ClassStatus.OPEN)
            _apply(training_class, record, values["online_url"])
            session.add(training_class)
            await session.flush()
            await _replace_quotas(session, training_class.id, record.quotas)
            await audit.record(
                session,
                await _account(session, viewer.account_id),
                "class.create",
                "class",
                training_class.id,
                f"{record.code} {record.title}",
                now=now,
                client=client_address(request, settings_of(request).web.trusted_proxies),
                details={"values": _snapshot(training_class, values["unit_quotas"])},
            )
    except IntegrityError:
        # Created by someone else between the check and the insert.
        problems = {"code": [tr(request, "class.code_taken", code=values["code"])]}
        return _form_page(request, values, problems, None, status=422)
    raise redirect(f"/classes/{training_class.id}?done=created")


async def _account(session: AsyncSession, account_id: int) -> Any:
    from db.models import AdminAccount

    account = await session.get(AdminAccount, account_id)
    assert account is not None
    return account


@admin_only
async def class_edit(request: web.Request) -> web.StreamResponse:
    """Show the form to edit a class."""
    class_id = int_param(request.match_info["class_id"], -1)
    async with sessionmaker_of(request)() as session:
        training_class = await session.get(TrainingClass, class_id)
        if training_class is None:
            raise not_found(request)
        quotas = await _quota_text(session, class_id)
    return _form_page(request, _form_values(training_class, quotas), {}, training_class)


@admin_only
async def class_update(request: web.Request) -> web.StreamResponse:
    """Save an edited class in one unit of work with its audit entry.

    The capacity may not go below the seats already held. A raised capacity offers the
    new seats down the waitlist and tells those offered.
    """
    viewer = viewer_of(request)
    class_id = int_param(request.match_info["class_id"], -1)
    values = await _posted_values(request)
    now = now_of(request)
    settings = settings_of(request)
    async with sessionmaker_of(request)() as session, session.begin():
        training_class = await lock_class(session, class_id)
        if training_class is None:
            raise not_found(request)
        # The code names the class: it is not changed here (files refer to it).
        values["code"] = training_class.code
        record, problems = await _validate(session, values)
        held = await seats_taken(session, class_id)
        if record is not None and record.capacity < held:
            problems = {"capacity": [tr(request, "class.capacity_below_held", held=held)]}
            record = None
        if record is None:
            return _form_page(request, values, problems, training_class, status=422)
        before = _snapshot(training_class, await _quota_text(session, class_id))
        grew = record.capacity > training_class.capacity
        _apply(training_class, record, values["online_url"])
        await _replace_quotas(session, class_id, record.quotas)
        after = _snapshot(training_class, await _quota_text(session, class_id))
        changed = {key: [before[key], after[key]] for key in after if before[key] != after[key]}
        if grew:
            offers = await offer_free_seats(
                session,
                training_class,
                now=now,
                zone=settings.bot.zone,
                window=settings.chat.offer_window,
            )
            await notify_offers(Repos(session), offers, now=now, zone=settings.bot.zone)
        if changed:
            await audit.record(
                session,
                await _account(session, viewer.account_id),
                "class.edit",
                "class",
                class_id,
                f"{training_class.code} {training_class.title}",
                now=now,
                client=client_address(request, settings.web.trusted_proxies),
                details={"changed": changed},
            )
    raise redirect(f"/classes/{class_id}?done={'saved' if changed else 'unchanged'}")


async def _set_status(
    request: web.Request, status: ClassStatus, action: str, done: str
) -> web.StreamResponse:
    viewer = viewer_of(request)
    class_id = int_param(request.match_info["class_id"], -1)
    now = now_of(request)
    settings = settings_of(request)
    async with sessionmaker_of(request)() as session, session.begin():
        training_class = await lock_class(session, class_id)
        if training_class is None:
            raise not_found(request)
        if training_class.status == ClassStatus.CANCELLED:
            raise redirect(f"/classes/{class_id}?error=cancelled")
        if training_class.status == status:
            raise redirect(f"/classes/{class_id}?done=unchanged")
        training_class.status = status
        await audit.record(
            session,
            await _account(session, viewer.account_id),
            action,
            "class",
            class_id,
            f"{training_class.code} {training_class.title}",
            now=now,
            client=client_address(request, settings.web.trusted_proxies),
        )
    raise redirect(f"/classes/{class_id}?done={done}")


@admin_only
async def class_close(request: web.Request) -> web.StreamResponse:
    """Close a class's registration (the class still takes place)."""
    return await _set_status(request, ClassStatus.CLOSED, "class.close", "closed")


@admin_only
async def class_reopen(request: web.Request) -> web.StreamResponse:
    """Open a closed class's registration again."""
    return await _set_status(request, ClassStatus.OPEN, "class.reopen", "reopened")


# ---------------------------------------------------------------------------- export


async def class_export(request: web.Request) -> web.StreamResponse:
    """Download a class's registrations as XLSX (a unit head: their units' only)."""
    viewer = viewer_of(request)
    class_id = int_param(request.match_info["class_id"], -1)
    zone = settings_of(request).bot.zone
    async with sessionmaker_of(request)() as session:
        training_class = await session.get(TrainingClass, class_id)
        if training_class is None:
            raise not_found(request)
        rows = await registrations_for_export(session, training_class.code)
        if viewer.scope is not None:
            codes = set(
                (
                    await session.scalars(
                        select(Unit.code).where(Unit.id.in_(sorted(viewer.scope)))
                    )
                ).all()
            )
            rows = [row for row in rows if row.unit_code in codes]
            if not rows and not await _concerns(session, viewer, training_class):
                raise not_found(request)
    content = xlsx_bytes(EXPORT_COLUMNS, [export_cells(row, zone) for row in rows])
    filename = f"{training_class.code.replace('/', '-')}-registrations.xlsx"
    return web.Response(
        body=content,
        content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}"},
    )
