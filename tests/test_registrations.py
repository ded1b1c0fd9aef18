"""Seats, waitlist, offers and approvals at the database level, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import registrations as regs
from db.models import ClassStatus, Person, Registration, RegistrationStatus, TrainingClass, Unit
from db.rules import Refusal
from handlers.types import DEFAULT_ZONE
from tests.factories import NOW, TODAY, add_class, add_person, add_session, add_unit

S = RegistrationStatus
WINDOW = dt.timedelta(hours=24)
START = TODAY + dt.timedelta(days=20)


async def _people(session: AsyncSession, unit: Unit, count: int, first: int = 0) -> list[Person]:
    return [
        await add_person(session, f"0912{first + n:06d}", f"Người {first + n}", unit)
        for n in range(count)
    ]


async def _register(
    sm: async_sessionmaker[AsyncSession], person: Person, klass: TrainingClass, **kw: object
) -> regs.Registered | regs.Refused | None:
    async with sm() as session, session.begin():
        fresh = await session.get(Person, person.id)
        assert fresh is not None
        return await regs.register(
            session, fresh, klass.id, today=TODAY, now=NOW, zone=DEFAULT_ZONE, **kw
        )


async def _statuses(sm: async_sessionmaker[AsyncSession], klass: TrainingClass) -> list[S]:
    async with sm() as session:
        rows = await session.scalars(
            select(Registration.status)
            .where(Registration.class_id == klass.id)
            .order_by(Registration.id)
        )
        return list(rows)


async def _cancel(
    sm: async_sessionmaker[AsyncSession], registration_id: int, person: Person, now: dt.datetime
) -> regs.Changed:
    async with sm() as session, session.begin():
        return await regs.cancel(
            session, registration_id, person.id, now=now, zone=DEFAULT_ZONE, window=WINDOW
        )


async def test_seats_then_waitlist_with_positions(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "U", "Sở Nội vụ")
        klass = await add_class(session, "K", "Lớp", start=START, capacity=2)
        people = await _people(session, unit, 4)
    results = [await _register(sessionmaker, p, klass) for p in people]
    assert all(isinstance(r, regs.Registered) for r in results)
    registered = [r for r in results if isinstance(r, regs.Registered)]
    assert [r.registration.status for r in registered] == [
        S.CONFIRMED,
        S.CONFIRMED,
        S.WAITLISTED,
        S.WAITLISTED,
    ]
    assert [r.position for r in registered] == [None, None, 1, 2]


async def test_approval_class_gives_a_pending_seat_but_a_nomination_is_the_approval(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "U", "Sở Nội vụ")
        klass = await add_class(session, "K", "Lớp", start=START, capacity=5)
        klass.requires_approval = True
        learner, nominee, head = await _people(session, unit, 3)
    pending = await _register(sessionmaker, learner, klass)
    nominated = await _register(sessionmaker, nominee, klass, registered_by=head)
    assert isinstance(pending, regs.Registered)
    assert pending.registration.status == S.PENDING_APPROVAL
    assert isinstance(nominated, regs.Registered)
    assert nominated.registration.status == S.CONFIRMED
    assert nominated.registration.registered_by_id == head.id


async def test_refusals_already_registered_clash_closed_and_quota(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "U", "Sở Nội vụ")
        other_unit = await add_unit(session, "V", "Huyện Yên Thành")
        first = await add_class(session, "K1", "Lớp một", start=START, days=5)
        overlapping = await add_class(session, "K2", "Lớp hai", start=START + dt.timedelta(days=4))
        later = await add_class(session, "K3", "Lớp ba", start=START + dt.timedelta(days=5))
        closed = await add_class(session, "K4", "Lớp bốn", start=START, status=ClassStatus.CLOSED)
        quota = await add_class(
            session, "K5", "Lớp năm", start=START + dt.timedelta(days=40), quotas={other_unit: 1}
        )
        (anna,) = await _people(session, unit, 1)
        ba, binh = await _people(session, other_unit, 2, first=10)
    assert isinstance(await _register(sessionmaker, anna, first), regs.Registered)
    again = await _register(sessionmaker, anna, first)
    assert isinstance(again, regs.Refused)
    assert [r.refusal for r in again.reasons] == [Refusal.ALREADY_REGISTERED]
    clash = await _register(sessionmaker, anna, overlapping)
    assert isinstance(clash, regs.Refused)
    assert [r.refusal for r in clash.reasons] == [Refusal.DATES_CLASH]
    assert clash.reasons[0].facts["code"] == "K1"
    # The day after the first class ends is free.
    assert isinstance(await _register(sessionmaker, anna, later), regs.Registered)
    shut = await _register(sessionmaker, anna, closed)
    assert isinstance(shut, regs.Refused)
    assert Refusal.REGISTRATION_CLOSED in [r.refusal for r in shut.reasons]
    assert isinstance(await _register(sessionmaker, ba, quota), regs.Registered)
    full = await _register(sessionmaker, binh, quota)
    assert isinstance(full, regs.Refused)
    assert [r.refusal for r in full.reasons] == [Refusal.QUOTA_USED_UP]


async def test_deadline_is_open_through_its_day(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "U", "Sở Nội vụ")
        today = await add_class(session, "K1", "Hạn hôm nay", start=START, deadline=TODAY)
        yesterday = await add_class(
            session,
            "K2",
            "Hạn hôm qua",
            start=START + dt.timedelta(days=30),
            deadline=TODAY - dt.timedelta(days=1),
        )
        (anna,) = await _people(session, unit, 1)
    assert isinstance(await _register(sessionmaker, anna, today), regs.Registered)
    late = await _register(sessionmaker, anna, yesterday)
    assert isinstance(late, regs.Refused)
    assert [r.refusal for r in late.reasons] == [Refusal.DEADLINE_PASSED]


async def test_a_cancelled_seat_is_offered_to_the_first_on_the_waitlist(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "U", "Sở Nội vụ")
        klass = await add_class(session, "K", "Lớp", start=START, capacity=1)
        people = await _people(session, unit, 3)
    results = [await _register(sessionmaker, p, klass) for p in people]
    seat = results[0]
    assert isinstance(seat, regs.Registered)
    changed = await _cancel(sessionmaker, seat.registration.id, people[0], NOW)
    assert changed.registration.status == S.CANCELLED
    assert [o.person_id for o in changed.offers] == [people[1].id]
    assert changed.offers[0].offer_expires_at == NOW + WINDOW
    assert await _statuses(sessionmaker, klass) == [S.CANCELLED, S.OFFERED, S.WAITLISTED]


async def test_the_offer_window_is_shorter_close_to_the_start(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    starts_at = NOW + dt.timedelta(hours=10)
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "U", "Sở Nội vụ")
        klass = await add_class(session, "K", "Lớp", start=TODAY, capacity=1, deadline=TODAY)
        await add_session(session, klass, starts_at)
        people = await _people(session, unit, 2)
    first = await _register(sessionmaker, people[0], klass)
    await _register(sessionmaker, people[1], klass)
    assert isinstance(first, regs.Registered)
    changed = await _cancel(sessionmaker, first.registration.id, people[0], NOW)
    assert changed.offers[0].offer_expires_at == NOW + dt.timedelta(hours=5)


async def test_no_offer_and_no_cancel_once_the_class_started(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    starts_at = NOW + dt.timedelta(hours=1)
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "U", "Sở Nội vụ")
        klass = await add_class(session, "K", "Lớp", start=TODAY, capacity=1, deadline=TODAY)
        await add_session(session, klass, starts_at)
        people = await _people(session, unit, 2)
    first = await _register(sessionmaker, people[0], klass)
    second = await _register(sessionmaker, people[1], klass)
    assert isinstance(first, regs.Registered)
    assert isinstance(second, regs.Registered)
    with pytest.raises(regs.NotAllowed, match="started"):
        await _cancel(sessionmaker, first.registration.id, people[0], starts_at)
    # The waitlisted person leaves before the start: no offer is made after it either.
    async with sessionmaker() as session, session.begin():
        klass_row = await regs.lock_class(session, klass.id)
        assert klass_row is not None
        offers = await regs.offer_free_seats(
            session, klass_row, now=starts_at, zone=DEFAULT_ZONE, window=WINDOW
        )
    assert offers == []


async def test_quota_applies_to_promotions(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session, session.begin():
        full_unit = await add_unit(session, "U", "Sở Nội vụ")
        other = await add_unit(session, "V", "Huyện")
        klass = await add_class(session, "K", "Lớp", start=START, capacity=2, quotas={full_unit: 1})
        a, b = await _people(session, full_unit, 2)
        (c,) = await _people(session, other, 1, first=10)
    seat_a = await _register(sessionmaker, a, klass)
    await _register(sessionmaker, c, klass)
    assert isinstance(seat_a, regs.Registered)
    # b is refused while a holds the unit's only quota seat; c holds the other seat.
    assert isinstance(await _register(sessionmaker, b, klass), regs.Refused)
    async with sessionmaker() as session, session.begin():
        # b got on the waitlist before the quota was set (an import may add one late).
        session.add(Registration(person_id=b.id, class_id=klass.id, status=S.WAITLISTED))
        (d,) = await _people(session, other, 1, first=11)
        session.add(Registration(person_id=d.id, class_id=klass.id, status=S.WAITLISTED))
    # a leaves: b is first in line and its unit's quota is now free, so b is offered.
    changed = await _cancel(sessionmaker, seat_a.registration.id, a, NOW)
    assert [o.person_id for o in changed.offers] == [b.id]


async def test_quota_used_up_passes_over_to_the_next_in_line(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        full_unit = await add_unit(session, "U", "Sở Nội vụ")
        other = await add_unit(session, "V", "Huyện")
        klass = await add_class(session, "K", "Lớp", start=START, capacity=2, quotas={full_unit: 1})
        a, b = await _people(session, full_unit, 2)
        c, d = await _people(session, other, 2, first=10)
    await _register(sessionmaker, a, klass)
    seat_c = await _register(sessionmaker, c, klass)
    assert isinstance(seat_c, regs.Registered)
    async with sessionmaker() as session, session.begin():
        session.add(Registration(person_id=b.id, class_id=klass.id, status=S.WAITLISTED))
        await session.flush()
        session.add(Registration(person_id=d.id, class_id=klass.id, status=S.WAITLISTED))
    changed = await _cancel(sessionmaker, seat_c.registration.id, c, NOW)
    # b's unit still holds its one quota seat through a: b keeps its place, d is offered.
    assert [o.person_id for o in changed.offers] == [d.id]


async def test_offers_lapse_and_pass_on_accept_and_decline(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "U", "Sở Nội vụ")
        klass = await add_class(session, "K", "Lớp", start=START, capacity=1)
        people = await _people(session, unit, 5)
    results = [await _register(sessionmaker, p, klass) for p in people]
    ids = [r.registration.id for r in results if isinstance(r, regs.Registered)]
    changed = await _cancel(sessionmaker, ids[0], people[0], NOW)
    assert [o.id for o in changed.offers] == [ids[1]]

    later = NOW + WINDOW
    async with sessionmaker() as session, session.begin():
        assert (
            await regs.expire_offers(
                session, now=later - dt.timedelta(seconds=1), zone=DEFAULT_ZONE, window=WINDOW
            )
            == []
        )
        lapsed = await regs.expire_offers(session, now=later, zone=DEFAULT_ZONE, window=WINDOW)
    assert [(x.registration.id, x.registration.reason) for x in lapsed] == [
        (ids[1], regs.OFFER_EXPIRED)
    ]
    assert [o.id for o in lapsed[0].offers] == [ids[2]]

    async with sessionmaker() as session, session.begin():
        declined = await regs.decline_offer(
            session, ids[2], people[2].id, now=later, zone=DEFAULT_ZONE, window=WINDOW
        )
    assert [o.id for o in declined.offers] == [ids[3]]

    async with sessionmaker() as session, session.begin():
        with pytest.raises(regs.NotAllowed, match="not_found"):
            await regs.accept_offer(
                session, ids[3], people[4].id, now=later, zone=DEFAULT_ZONE, window=WINDOW
            )
        accepted = await regs.accept_offer(
            session, ids[3], people[3].id, now=later, zone=DEFAULT_ZONE, window=WINDOW
        )
    assert accepted.registration.status == S.CONFIRMED
    async with sessionmaker() as session, session.begin():
        with pytest.raises(regs.NotAllowed, match="no_offer"):  # a double tap
            await regs.accept_offer(
                session, ids[3], people[3].id, now=later, zone=DEFAULT_ZONE, window=WINDOW
            )
    assert await _statuses(sessionmaker, klass) == [
        S.CANCELLED,
        S.CANCELLED,
        S.CANCELLED,
        S.CONFIRMED,
        S.WAITLISTED,
    ]


async def test_accepting_a_lapsed_offer_passes_it_on(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "U", "Sở Nội vụ")
        klass = await add_class(session, "K", "Lớp", start=START, capacity=1)
        klass.requires_approval = True
        people = await _people(session, unit, 3)
    results = [await _register(sessionmaker, p, klass) for p in people]
    ids = [r.registration.id for r in results if isinstance(r, regs.Registered)]
    await _cancel(sessionmaker, ids[0], people[0], NOW)
    async with sessionmaker() as session, session.begin():
        late = await regs.accept_offer(
            session, ids[1], people[1].id, now=NOW + WINDOW, zone=DEFAULT_ZONE, window=WINDOW
        )
    assert (late.registration.status, late.registration.reason) == (S.CANCELLED, regs.OFFER_EXPIRED)
    assert [o.id for o in late.offers] == [ids[2]]
    async with sessionmaker() as session, session.begin():
        taken = await regs.accept_offer(
            session, ids[2], people[2].id, now=NOW + WINDOW, zone=DEFAULT_ZONE, window=WINDOW
        )
    # The class requires approval: an accepted offer waits for the unit head, seat held.
    assert taken.registration.status == S.PENDING_APPROVAL


async def test_unit_heads_decide_only_within_their_units(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        province = await add_unit(session, "P", "Tỉnh")
        district = await add_unit(session, "D", "Huyện", parent=province)
        commune = await add_unit(session, "C", "Xã", parent=district)
        elsewhere = await add_unit(session, "E", "Huyện khác", parent=province)
        klass = await add_class(session, "K", "Lớp", start=START, capacity=2)
        klass.requires_approval = True
        (head,) = await _people(session, district, 1)
        (a,) = await _people(session, commune, 1, first=10)
        (b,) = await _people(session, elsewhere, 1, first=20)
        (c,) = await _people(session, commune, 1, first=30)
        assert await regs.units_under(session, district.id) == {district.id, commune.id}
        scope = await regs.units_under(session, district.id)
    ra, rb, rc = [await _register(sessionmaker, p, klass) for p in (a, b, c)]
    assert isinstance(ra, regs.Registered)
    assert isinstance(rb, regs.Registered)
    assert isinstance(rc, regs.Registered)
    assert rc.registration.status == S.WAITLISTED

    async def decide(registration_id: int, approve: bool) -> regs.Changed:
        async with sessionmaker() as session, session.begin():
            return await regs.decide(
                session,
                registration_id,
                head,
                approve=approve,
                reason="Không bố trí được",
                scope=scope,
                now=NOW,
                zone=DEFAULT_ZONE,
                window=WINDOW,
            )

    with pytest.raises(regs.NotAllowed, match="not_your_unit"):
        await decide(rb.registration.id, True)
    rejected = await decide(ra.registration.id, False)
    assert (rejected.registration.status, rejected.registration.reason) == (
        S.REJECTED,
        "Không bố trí được",
    )
    assert rejected.registration.decided_by_id == head.id
    assert [o.person_id for o in rejected.offers] == [c.id]
    with pytest.raises(regs.NotAllowed, match="not_pending"):  # a double tap
        await decide(ra.registration.id, True)
    async with sessionmaker() as session, session.begin():
        approved = await regs.decide(
            session,
            rb.registration.id,
            head,
            approve=True,
            reason=None,
            scope=None,
            now=NOW,
            zone=DEFAULT_ZONE,
            window=WINDOW,
        )
    assert approved.registration.status == S.CONFIRMED


async def test_offers_skip_a_clash_and_accepting_refuses_one(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """A waitlisted person who took a class on the same days is not offered, nor can accept."""
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "U", "Sở Nội vụ")
        full = await add_class(session, "K1", "Lớp đầy", start=START, capacity=1)
        overlapping = await add_class(
            session, "K2", "Cùng ngày", start=START + dt.timedelta(days=1)
        )
        holder, anna, binh = await _people(session, unit, 3)
    seat = await _register(sessionmaker, holder, full)
    await _register(sessionmaker, anna, full)  # waitlisted first
    await _register(sessionmaker, binh, full)  # waitlisted second
    assert isinstance(seat, regs.Registered)
    assert isinstance(await _register(sessionmaker, anna, overlapping), regs.Registered)
    changed = await _cancel(sessionmaker, seat.registration.id, holder, NOW)
    # Anna holds K2 on the same days: she keeps her place, Binh is offered the seat.
    assert [o.person_id for o in changed.offers] == [binh.id]

    # An offer made before the clash arose cannot be accepted while it lasts.
    async with sessionmaker() as session, session.begin():
        other = await add_class(
            session, "K3", "Lớp khác", start=START + dt.timedelta(days=40), capacity=1
        )
        cuong, dung = await _people(session, unit, 2, first=20)
    first = await _register(sessionmaker, cuong, other)
    waiting = await _register(sessionmaker, dung, other)
    assert isinstance(first, regs.Registered)
    assert isinstance(waiting, regs.Registered)
    offered = await _cancel(sessionmaker, first.registration.id, cuong, NOW)
    assert [o.person_id for o in offered.offers] == [dung.id]
    async with sessionmaker() as session, session.begin():
        # Registering is refused while the offer holds a seat; a re-import moving K4's
        # dates onto K3's can still make a clash.
        same_days = await add_class(session, "K4", "Trùng K3", start=START + dt.timedelta(days=41))
        session.add(Registration(person_id=dung.id, class_id=same_days.id, status=S.CONFIRMED))
    async with sessionmaker() as session, session.begin():
        with pytest.raises(regs.NotAllowed, match="dates_clash"):
            await regs.accept_offer(
                session, waiting.registration.id, dung.id, now=NOW, zone=DEFAULT_ZONE, window=WINDOW
            )


async def test_a_cancelled_class_offers_nothing(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "U", "Sở Nội vụ")
        klass = await add_class(session, "K", "Lớp", start=START, capacity=1)
        holder, waiting = await _people(session, unit, 2)
    seat = await _register(sessionmaker, holder, klass)
    await _register(sessionmaker, waiting, klass)
    assert isinstance(seat, regs.Registered)
    async with sessionmaker() as session, session.begin():
        row = await session.get(TrainingClass, klass.id)
        assert row is not None
        row.status = ClassStatus.CANCELLED
    changed = await _cancel(sessionmaker, seat.registration.id, holder, NOW)
    assert changed.offers == []


async def test_registering_after_the_first_session_began_is_refused(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """A deadline on the first day would otherwise waitlist people on a list that cannot move."""
    starts_at = NOW - dt.timedelta(hours=1)
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "U", "Sở Nội vụ")
        klass = await add_class(session, "K", "Lớp", start=TODAY, deadline=TODAY, capacity=5)
        await add_session(session, klass, starts_at)
        (anna,) = await _people(session, unit, 1)
    async with sessionmaker() as session, session.begin():
        fresh = await session.get(Person, anna.id)
        assert fresh is not None
        late = await regs.register(
            session, fresh, klass.id, today=TODAY, now=NOW, zone=DEFAULT_ZONE
        )
        early = await regs.check(
            session, fresh, klass, TODAY, now=starts_at - dt.timedelta(minutes=1), zone=DEFAULT_ZONE
        )
    assert isinstance(late, regs.Refused)
    assert [r.refusal for r in late.reasons] == [Refusal.STARTED]
    assert early == []
