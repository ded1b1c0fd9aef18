"""What a channel offers the delivery engine: send one notice, and failures in neutral words.

A channel maps its platform's answers onto these errors (Telegram: 429 → Throttled, a
refused bot token → ChannelDown, 403 → Unreachable, 5xx and network errors →
TemporaryFailure, any other refusal → PermanentFailure; Zalo's quota refusals →
QuotaExhausted); the engine decides what each
means for the outbox row, the same way for every channel.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol, runtime_checkable

from handlers.types import Reply


class DeliveryError(Exception):
    """A notice was not delivered; `reason` is short and holds no personal data."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Throttled(DeliveryError):
    """The platform asked to wait `retry_after` seconds before sending more."""

    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class ChannelDown(Throttled):
    """The channel cannot send anything now (its bot token refused): wait, fail nothing.

    Handled as a 429 for the whole channel: notices wait `retry_after` without counting
    an attempt, until the operator fixes the channel.
    """


class Unreachable(DeliveryError):
    """The person cannot be reached on this account (blocked the bot, chat gone)."""


class TemporaryFailure(DeliveryError):
    """A server error, a timeout or a network failure: worth trying again later."""


class PermanentFailure(DeliveryError):
    """The platform refused the message for good (bad request, quota used up)."""


class QuotaExhausted(PermanentFailure):
    """The platform's message quota (a plan's monthly allowance) is used up.

    Sending more on the channel fails until the quota renews, so the engine pauses the
    channel and tells the admins once instead of retrying each notice.
    """


class Held(DeliveryError):
    """The channel cannot send now (its quota of the day is used up, its credentials must
    be renewed): the notice waits until `until`, no attempt counted, and is not failed."""

    def __init__(self, reason: str, until: dt.datetime) -> None:
        super().__init__(reason)
        self.until = until


class Sender(Protocol):
    """A channel's way of delivering a notice to one of its accounts."""

    @property
    def channel(self) -> str:
        """Return the channel's name as stored on accounts ("telegram", "zalo")."""
        ...

    async def send_notice(self, external_id: str, reply: Reply, language: str) -> str | None:
        """Send `reply` rendered in `language` to the account; raise a DeliveryError.

        Return the platform's id of the (last) message sent, where messages have one.
        """
        ...


@runtime_checkable
class Editor(Protocol):
    """A sender that can also change a message it sent (Telegram can; Zalo and the console not)."""

    async def edit_notice(
        self, external_id: str, message_id: str, reply: Reply, language: str
    ) -> None:
        """Make message `message_id` show `reply`; raise a DeliveryError.

        PermanentFailure means the message cannot be edited any more (deleted, too old).
        """
        ...


async def show(
    sender: Sender, external_id: str, message_id: str | None, reply: Reply, language: str
) -> str | None:
    """Show `reply` in message `message_id` if the sender edits, else in a new message.

    An edit refused for good (the message was deleted, or is too old) falls back to a new
    message. Return the id of the message that shows the reply (None: the channel has no
    message ids).
    """
    if message_id is not None and isinstance(sender, Editor):
        try:
            await sender.edit_notice(external_id, message_id, reply, language)
            return message_id
        except PermanentFailure:
            pass
    return await sender.send_notice(external_id, reply, language)
