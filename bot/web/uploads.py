"""Uploading a roster, class list or schedule: preview the changes, then apply them once.

The file is read and checked exactly as `trainingbot import` does (bot/tabular.py,
db/roster.py). It is kept in the database between the preview and the apply, so any
process can apply it; the preview is the real import in a transaction that is rolled
back, so its counts are the ones the apply will give unless the roster changes between.
Applying locks the upload's row and marks it applied in the import's own unit of work: a
second submit (a double click, the back button) finds it applied and changes nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.tabular import TableError, read_table_data
from bot.web.classes import today_of
from bot.web.core import (
    admin_only,
    client_address,
    int_param,
    not_found,
    now_of,
    redirect,
    render,
    sessionmaker_of,
    settings_of,
    tr,
    viewer_of,
)
from db import audit
from db.models import AdminAccount, WebUpload
from db.roster import KINDS, ImportResult, Kind, import_rows, missing_columns, unknown_columns

# Uploads are kept this long (the audit log keeps what they did).
KEEP_UPLOADS = dt.timedelta(days=30)


def _rows(upload: WebUpload) -> tuple[list[Any], list[str]]:
    """Return the rows of an upload and the columns the import ignores; raise TableError."""
    kind: Kind = upload.kind  # type: ignore[assignment]
    table = read_table_data(upload.filename, upload.content)
    missing = missing_columns(kind, table.columns)
    if missing:
        raise TableError(
            f"{table.name}: missing column(s) {', '.join(missing)}; a {kind} file has "
            f"columns {','.join(missing_columns(kind, ()))}"
        )
    return list(table.rows), unknown_columns(kind, table.columns)


def _result_data(result: ImportResult) -> dict[str, Any]:
    return {
        "kind": result.kind,
        "rows": result.rows,
        "added": result.added,
        "updated": result.updated,
        "unchanged": result.unchanged,
        "removed": result.removed,
        "warnings": list(result.warnings),
        "errors": [[error.line, error.message] for error in result.errors],
    }


async def _import(
    session: AsyncSession, request: web.Request, upload: WebUpload, rows: list[Any]
) -> ImportResult:
    settings = settings_of(request)
    kind: Kind = upload.kind  # type: ignore[assignment]
    return await import_rows(session, kind, rows, today=today_of(request), zone=settings.bot.zone)


@admin_only
async def upload_form(request: web.Request) -> web.StreamResponse:
    """Show the upload form and this account's recent uploads."""
    return await _form(request)


async def _form(request: web.Request, error: str | None = None, status: int = 200) -> web.Response:
    viewer = viewer_of(request)
    async with sessionmaker_of(request)() as session:
        recent = (
            await session.scalars(
                select(WebUpload)
                .where(WebUpload.account_id == viewer.account_id)
                .order_by(WebUpload.id.desc())
                .limit(10)
            )
        ).all()
    return render(
        request,
        "upload.html",
        status=status,
        kinds=KINDS,
        recent=recent,
        error=error,
        max_mb=settings_of(request).web.max_upload_mb,
    )


@admin_only
async def upload(request: web.Request) -> web.StreamResponse:
    """Keep an uploaded file for its preview; refuse what cannot be read as a table."""
    viewer = viewer_of(request)
    form = await request.post()
    kind = str(form.get("kind", ""))
    file = form.get("file")
    if kind not in KINDS:
        return await _form(request, tr(request, "upload.choose_kind"), 422)
    if not isinstance(file, web.FileField) or not file.filename:
        return await _form(request, tr(request, "upload.choose_file"), 422)
    content = file.file.read()
    item = WebUpload(
        account_id=viewer.account_id,
        kind=kind,
        filename=file.filename[-255:],
        content=content,
        created_at=now_of(request),
    )
    try:
        _rows(item)
    except TableError as exc:
        return await _form(request, str(exc), 422)
    async with sessionmaker_of(request)() as session, session.begin():
        await session.execute(
            delete(WebUpload).where(WebUpload.created_at < now_of(request) - KEEP_UPLOADS)
        )
        session.add(item)
        await session.flush()
        upload_id = item.id
    raise redirect(f"/uploads/{upload_id}")


async def _own_upload(
    session: AsyncSession, request: web.Request, *, lock: bool = False
) -> WebUpload:
    upload_id = int_param(request.match_info["upload_id"], -1)
    stmt = select(WebUpload).where(
        WebUpload.id == upload_id, WebUpload.account_id == viewer_of(request).account_id
    )
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    found = (await session.scalars(stmt)).first()
    if found is None:
        raise not_found(request)
    return found


@admin_only
async def preview(request: web.Request) -> web.StreamResponse:
    """Show what applying an upload would change (or what it changed, once applied)."""
    async with sessionmaker_of(request)() as session:
        item = await _own_upload(session, request)
    if item.applied_at is not None:
        return render(
            request,
            "upload_preview.html",
            upload=item,
            result=item.result,
            ignored=[],
            done=request.query.get("done"),
        )
    rows, ignored = _rows(item)
    async with sessionmaker_of(request)() as session:
        transaction = await session.begin()
        try:
            result = await _import(session, request, item, rows)
        finally:
            # A preview writes nothing.
            await transaction.rollback()
    return render(
        request,
        "upload_preview.html",
        upload=item,
        result=_result_data(result),
        ignored=ignored,
        done=request.query.get("done"),
    )


@admin_only
async def apply(request: web.Request) -> web.StreamResponse:
    """Import an upload, once: a second submit finds it applied and changes nothing."""
    viewer = viewer_of(request)
    now = now_of(request)
    try:
        async with sessionmaker_of(request)() as session, session.begin():
            item = await _own_upload(session, request, lock=True)
            if item.applied_at is not None:
                raise redirect(f"/uploads/{item.id}?done=already")
            rows, _ignored = _rows(item)
            result = await _import(session, request, item, rows)
            if result.errors:
                # The roster changed since the preview; raising rolls back: nothing written.
                raise redirect(f"/uploads/{item.id}")
            item.applied_at = now
            item.result = _result_data(result)
            account = await session.get(AdminAccount, viewer.account_id)
            assert account is not None
            await audit.record(
                session,
                account,
                f"import.{item.kind}",
                "upload",
                item.id,
                item.filename,
                now=now,
                client=client_address(request, settings_of(request).web.trusted_proxies),
                details={
                    key: item.result[key]
                    for key in ("rows", "added", "updated", "unchanged", "removed")
                },
            )
    except IntegrityError:
        # Another import changed the roster under this one; nothing was written.
        raise redirect(f"/uploads/{request.match_info['upload_id']}?done=conflict") from None
    raise redirect(f"/uploads/{item.id}?done=applied")
