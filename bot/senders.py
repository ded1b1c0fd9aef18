"""What a channel offers the delivery engine: send one notice, and failures in neutral words.

A channel maps its platform's answers onto these errors (Telegram: 429 → Throttled, a
refused bot token → ChannelDown, 403 → Unreachable, 5xx and network errors →
TemporaryFailure, any other refusal → PermanentFailure); the engine decides what each
means for the outbox row, the same way for every channel.
"""

from __future__ import annotations

from typing import Protocol

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


class Sender(Protocol):
    """A channel's way of delivering a notice to one of its accounts."""

    @property
    def channel(self) -> str:
        """Return the channel's name as stored on accounts ("telegram", "zalo")."""
        ...

    async def send_notice(self, external_id: str, reply: Reply, language: str) -> None:
        """Send `reply` rendered in `language` to the account; raise a DeliveryError."""
        ...
