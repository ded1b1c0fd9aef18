"""The engine never shows bound values in an error: a roster batch's names stay out of logs."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import Person
from tests.factories import add_unit


async def test_a_failed_statement_hides_its_parameters(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session:
        unit = await add_unit(session, "YTH", "Yên Thành")
        session.add_all(
            # The second row breaks the unique phone; the first's name must not be shown.
            Person(phone="0912000100", full_name=name, unit_id=unit.id)
            for name in ("Bí Mật Một", "Bí Mật Hai")
        )
        with pytest.raises(DBAPIError) as caught:
            await session.flush()
    text = str(caught.value)
    assert "SQL parameters hidden" in text
    assert "Bí Mật" not in text
