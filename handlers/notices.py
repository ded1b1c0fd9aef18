"""Notices: messages to someone other than the person talking, queued in the outbox.

A flow that must tell another person something (the learner whose registration a unit
head approved, the next person on a waitlist, the admins) writes an outbox row in its own
unit of work, so the notice is sent if and only if the change is committed. The delivery
side turns the row back into a Reply and renders it in the recipient's language.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import update

from db.leases import lease_free
from db.models import OutboxMessage, OutboxStatus
from db.repos import Repos
from db.session import upsert_insert
from handlers.types import Attachment, AttachmentKind, Button, Msg, Param, Reply


def _encode_param(value: Param) -> Any:
    if isinstance(value, Msg):
        return {"msg": encode_msg(value)}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    return value


def _decode_param(value: Any) -> Param:
    if isinstance(value, dict):
        if "msg" in value:
            return decode_msg(value["msg"])
        if "date" in value:
            return dt.date.fromisoformat(str(value["date"]))
        raise ValueError(f"unknown parameter {value!r}")
    if value is None or isinstance(value, str | int):
        return value
    raise ValueError(f"unknown parameter {value!r}")


def encode_msg(msg: Msg) -> dict[str, Any]:
    """Return `msg` as JSON-ready data."""
    return {"key": msg.key, "params": {k: _encode_param(v) for k, v in msg.params.items()}}


def decode_msg(data: dict[str, Any]) -> Msg:
    """Return the Msg that `encode_msg` encoded."""
    params = data.get("params") or {}
    return Msg(str(data["key"]), {str(k): _decode_param(v) for k, v in params.items()})


def encode_attachment(attachment: Attachment) -> dict[str, Any]:
    """Return an attachment (a platform's file id, not the file) as JSON-ready data."""
    return {
        "kind": attachment.kind.value,
        "channel": attachment.channel,
        "file_id": attachment.file_id,
        "filename": attachment.filename,
        "mime_type": attachment.mime_type,
    }


def decode_attachment(data: dict[str, Any]) -> Attachment:
    """Return the Attachment that `encode_attachment` encoded."""
    filename, mime_type = data.get("filename"), data.get("mime_type")
    return Attachment(
        kind=AttachmentKind(data["kind"]),
        channel=str(data["channel"]),
        file_id=str(data["file_id"]),
        filename=str(filename) if filename is not None else None,
        mime_type=str(mime_type) if mime_type is not None else None,
    )


def encode_reply(reply: Reply) -> dict[str, Any]:
    """Return a reply as JSON-ready data.

    A notice carries a photo or document by its platform's id (`attachment`), never the
    file itself: a `document` (bytes, such as a calendar file) is refused.
    """
    if reply.document is not None:
        raise ValueError("a notice cannot carry a document's bytes; attach it by file id")
    data: dict[str, Any] = {
        "lines": [encode_msg(line) for line in reply.lines],
        "buttons": [
            [{"label": encode_msg(b.label), "data": b.data} for b in row] for row in reply.buttons
        ],
    }
    if reply.attachment is not None:
        data["attachment"] = encode_attachment(reply.attachment)
    return data


def decode_reply(data: dict[str, Any]) -> Reply:
    """Return the Reply that `encode_reply` encoded."""
    attachment = data.get("attachment")
    return Reply(
        lines=tuple(decode_msg(line) for line in data.get("lines", [])),
        buttons=tuple(
            tuple(Button(decode_msg(b["label"]), str(b["data"])) for b in row)
            for row in data.get("buttons", [])
        ),
        attachment=decode_attachment(attachment) if attachment else None,
    )


async def notify(
    repos: Repos,
    person_id: int,
    kind: str,
    key: str,
    reply: Reply,
    *,
    due_at: dt.datetime,
    urgent: bool = False,
    expires_at: dt.datetime | None = None,
    group_key: str | None = None,
) -> bool:
    """Queue `reply` for `person_id`; return False if a notice with this `key` exists.

    `kind` names what the notice is about (e.g. "registration.offered") for delivery
    reports; `key` makes it idempotent (e.g. "offer:41:2026-12-01T08:00"). An `urgent`
    notice goes out in quiet hours too; one not sent by `expires_at` is skipped. Queuing
    a notice of a `group_key` skips the group's older notices still queued (a reminder
    supersedes the earlier one that did not go out).
    """
    session = repos.session
    inserted = await session.scalar(
        upsert_insert(session, OutboxMessage)
        .values(
            idempotency_key=key,
            person_id=person_id,
            channel=None,
            kind=kind,
            payload={"reply": encode_reply(reply)},
            due_at=due_at,
            urgent=urgent,
            expires_at=expires_at,
            group_key=group_key,
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(OutboxMessage.id)
    )
    if inserted is not None and group_key is not None:
        await session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.group_key == group_key,
                OutboxMessage.status == OutboxStatus.QUEUED,
                OutboxMessage.id != inserted,
                # One being sent right now is left to finish.
                lease_free(OutboxMessage, due_at),
            )
            .values(status=OutboxStatus.SKIPPED, last_error="superseded", lease_until=None)
        )
    return inserted is not None
