"""Notices: messages to someone other than the person talking, queued in the outbox.

A flow that must tell another person something (the learner whose registration a unit
head approved, the next person on a waitlist, the admins) writes an outbox row in its own
unit of work, so the notice is sent if and only if the change is committed. The delivery
side turns the row back into a Reply and renders it in the recipient's language.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from db.models import OutboxMessage
from db.repos import Repos
from db.session import upsert_insert
from handlers.types import Button, Msg, Param, Reply


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


def encode_reply(reply: Reply) -> dict[str, Any]:
    """Return a reply (without a document) as JSON-ready data."""
    if reply.document is not None:
        raise ValueError("a notice cannot carry a document")
    return {
        "lines": [encode_msg(line) for line in reply.lines],
        "buttons": [
            [{"label": encode_msg(b.label), "data": b.data} for b in row] for row in reply.buttons
        ],
    }


def decode_reply(data: dict[str, Any]) -> Reply:
    """Return the Reply that `encode_reply` encoded."""
    return Reply(
        lines=tuple(decode_msg(line) for line in data.get("lines", [])),
        buttons=tuple(
            tuple(Button(decode_msg(b["label"]), str(b["data"])) for b in row)
            for row in data.get("buttons", [])
        ),
    )


async def notify(
    repos: Repos,
    person_id: int,
    kind: str,
    key: str,
    reply: Reply,
    *,
    due_at: dt.datetime,
) -> None:
    """Queue `reply` for `person_id`; a second notice with the same `key` is dropped.

    `kind` names what the notice is about (e.g. "registration.offered") for delivery
    reports; `key` makes it idempotent (e.g. "offer:41:2026-12-01T08:00").
    """
    await repos.session.execute(
        upsert_insert(repos.session, OutboxMessage)
        .values(
            idempotency_key=key,
            person_id=person_id,
            channel=None,
            kind=kind,
            payload={"reply": encode_reply(reply)},
            due_at=due_at,
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
    )
