"""Password hashing with argon2id (RFC 9106), off the event loop.

Hashing costs tens of milliseconds of CPU on purpose; it runs in a worker thread so that
the service's other work (the chat, deliveries) goes on meanwhile.
"""

from __future__ import annotations

import asyncio
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 10
MAX_LENGTH = 1024


@cache
def _hasher() -> PasswordHasher:
    # argon2-cffi's defaults are RFC 9106's low-memory profile: argon2id, t=3, 64 MiB, p=4.
    return PasswordHasher()


@cache
def _dummy_hash() -> str:
    return _hasher().hash("no such account: the same work as a real check")


def password_problem(password: str) -> str | None:
    """Return why `password` may not be used, or None."""
    if len(password) < MIN_LENGTH:
        return f"a password has at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"a password has at most {MAX_LENGTH} characters"
    if not password.strip():
        return "a password cannot be only spaces"
    return None


def hash_password(password: str) -> str:
    """Return the argon2id hash of `password` (with its salt and parameters)."""
    return _hasher().hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Return whether `password` matches `stored`; with no stored hash, do the same work."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _hasher().verify(stored or _dummy_hash(), password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def hash_in_thread(password: str) -> str:
    """Return `hash_password(password)`, computed in a worker thread."""
    return await asyncio.to_thread(hash_password, password)


async def verify_in_thread(stored: str | None, password: str) -> bool:
    """Return `verify_password(stored, password)`, computed in a worker thread."""
    return await asyncio.to_thread(verify_password, stored, password)
