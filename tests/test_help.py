"""Help lists what the person talking may do: visitors, learners and unit heads differ."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import Chat, add_person, add_unit, link


async def test_help_names_the_commands_each_person_may_use(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "SNV", "Sở Nội vụ")
        learner = await add_person(session, "0912000101", "Lê Đức Khoa", unit)
        head = await add_person(session, "0912000126", "Đỗ Xuân Long", unit)
        head.is_unit_head = True
        await link(session, learner, "test", "learner")
        await link(session, head, "test", "head")
    visitor_help = await Chat(sessionmaker, "visitor").say("/help")
    learner_help = await Chat(sessionmaker, "learner").say("/help")
    head_help = await Chat(sessionmaker, "head").say("/help")
    assert "/my" not in visitor_help
    assert "/logout" not in visitor_help
    assert "• /my — " in learner_help
    assert "• /logout — " in learner_help
    assert "/unit" not in learner_help
    assert "• /unit — " in head_help
