"""The neutral language between channels and flows: what came in, what goes out."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Union
from zoneinfo import ZoneInfo

MAX_CALLBACK_BYTES = 64
DEFAULT_ZONE = ZoneInfo("Asia/Ho_Chi_Minh")

# A parameter of a message: plain values, a date (formatted per language at the edge) or
# another message (translated at the edge, e.g. a program's name).
Param = Union[str, int, dt.date, "Msg", None]


@dataclass(frozen=True)
class Msg:
    """A message key from the catalogs with its parameters, translated at the channel edge."""

    key: str
    params: dict[str, Param] = field(default_factory=dict)


@dataclass(frozen=True)
class Button:
    """A choice shown to the user; `data` comes back in `Incoming.button` when pressed."""

    label: Msg
    data: str

    def __post_init__(self) -> None:
        if len(self.data.encode()) > MAX_CALLBACK_BYTES:
            raise ValueError(f"callback data over {MAX_CALLBACK_BYTES} bytes: {self.data!r}")


@dataclass(frozen=True)
class Document:
    """A file sent with a reply, such as a calendar entry (.ics)."""

    filename: str
    content: bytes
    mime_type: str


class AttachmentKind(StrEnum):
    PHOTO = "photo"
    DOCUMENT = "document"


@dataclass(frozen=True)
class Attachment:
    """A photo or document a user sent, kept by its platform and sent again by its id.

    `file_id` means something only on `channel` (Telegram's file_id belongs to the bot);
    another channel cannot send it and says so instead (handlers.attachments.carried).
    """

    kind: AttachmentKind
    channel: str
    file_id: str
    filename: str | None = None
    mime_type: str | None = None


@dataclass(frozen=True)
class Reply:
    """One message to send: lines of text, rows of buttons, and what else it carries.

    `ask_contact` asks the user to share their phone number (Telegram shows a contact
    button; channels without one say how to type it). `document` is a file to attach;
    `attachment` a photo or document already on the platform, sent with the text.
    """

    lines: tuple[Msg, ...]
    buttons: tuple[tuple[Button, ...], ...] = ()
    ask_contact: bool = False
    document: Document | None = None
    attachment: Attachment | None = None


@dataclass(frozen=True)
class Incoming:
    """One thing a user did in a chat, as every channel reports it.

    Exactly one of `text`, `button` or `contact_phone` is set; a photo or document sent
    comes as `attachment` with its caption as `text`. `user_id` is the platform's id of
    the sender, `chat_id` the conversation it happened in. `links_by_code` comes from a
    channel that cannot prove a phone number (Zalo): a typed phone number starts linking
    by a one-time code there, instead of asking for a shared contact.
    """

    channel: str
    chat_id: str
    user_id: str
    text: str | None = None
    button: str | None = None
    contact_phone: str | None = None
    contact_user_id: str | None = None
    language_hint: str | None = None
    links_by_code: bool = False
    attachment: Attachment | None = None


@dataclass(frozen=True)
class ChatSettings:
    """What the flows need of the configuration: the school's zone and language, admins, offers."""

    zone: ZoneInfo = DEFAULT_ZONE
    default_language: str = "vi"
    # Roster phones (0XXXXXXXXX) of the school's admins, besides people marked is_admin.
    admins: tuple[str, ...] = ()
    # How long a freed seat is held for the next person on the waitlist.
    offer_window: dt.timedelta = dt.timedelta(hours=24)
    # Outbox kinds that go by ZNS to people without a reachable chat ([zns] templates on).
    zns_kinds: frozenset[str] = frozenset()
