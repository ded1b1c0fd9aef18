"""Unit and class codes: ASCII only, so a class is found by its code in any case on both DBs."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.catalog import ClassRepo
from db.text import CODE_CHARACTERS, is_code
from tests.factories import add_class

START = dt.date(2027, 3, 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("TC-K45", True),
        ("cnkt_2027.01/a", True),
        ("", False),
        ("ĐT-01", False),
        ("K 1", False),
        ("YTH:8", False),
        ("A;B", False),
        ("K1\x00", False),
    ],
)
def test_is_code(text: str, expected: bool) -> None:
    assert is_code(text) is expected
    assert CODE_CHARACTERS == "ASCII letters, digits and - _ . /"


async def test_a_class_is_found_by_its_code_in_any_case(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        k45 = await add_class(session, "TC-K45", "Trung cấp", start=START)
        repo = ClassRepo(session)
        for asked in ("TC-K45", "tc-k45", "Tc-K45"):
            assert await repo.by_code(asked) is k45
        assert await repo.by_code("TC-K4") is None


async def test_a_code_stored_before_the_ascii_rule_is_found_as_written(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """SQLite's lower() leaves Đ as it is: such a code is matched exactly, on both DBs."""
    async with sessionmaker() as session, session.begin():
        old = await add_class(session, "ĐT-01", "Đào tạo", start=START)
        repo = ClassRepo(session)
        assert await repo.by_code("ĐT-01") is old
        assert await repo.by_code("đt-01") is None


async def test_the_code_written_as_asked_wins_over_another_case(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        upper = await add_class(session, "K1", "Lớp một", start=START)
        lower = await add_class(session, "k1", "Lớp một (cũ)", start=START)
        repo = ClassRepo(session)
        assert await repo.by_code("K1") is upper
        assert await repo.by_code("k1") is lower
