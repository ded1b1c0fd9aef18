"""Pure parts of the catalog flows: button data, typed choices, rules, phrases."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from db.models import ClassStatus, Form, Person, Program, TheoryLevel, TrainingClass
from db.rules import QuotaUse, Refusal, refusal_reasons, registration_open, seats_left
from handlers.callbacks import (
    Action,
    ListQuery,
    Menu,
    SearchPage,
    SetLanguage,
    ShowClass,
    ShowList,
    ShowMenu,
    decode,
    list_data,
    menu_data,
)
from handlers.choices import Choice, OutOfRange, choices_of, pick, render_numbered
from handlers.phrases import Intent, intent_of, list_filters, search_words
from handlers.types import MAX_CALLBACK_BYTES, Button, Msg, Reply

LONGEST = ListQuery(
    page=9999,
    program=Program.CAP_NHAT_KIEN_THUC,
    form=Form.PART_TIME,
    month=dt.date(2026, 12, 1),
    eligible=True,
)


@pytest.mark.parametrize(
    "query",
    [ListQuery(), ListQuery(page=3, form=Form.ONLINE), ListQuery(eligible=True), LONGEST],
)
def test_list_data_round_trips(query: ListQuery) -> None:
    assert decode(list_data(query)) == ShowList(query)
    menu_query = ListQuery(
        program=query.program, form=query.form, month=query.month, eligible=query.eligible
    )
    assert decode(menu_data(Menu.MONTH, query)) == ShowMenu(Menu.MONTH, menu_query)


def test_the_longest_button_data_fits_telegram() -> None:
    data = list_data(LONGEST)
    assert data == "cl:p=9999;prog=cap_nhat_kien_thuc;form=part_time;m=2026-12;e=1"
    assert len(data.encode()) <= MAX_CALLBACK_BYTES
    Button(Msg("nav.next"), data)  # would raise if too long


def test_simple_data_decodes() -> None:
    assert decode("cd:42") == ShowClass(42)
    assert decode("sr:3:0a1b2c3d") == SearchPage(3, "0a1b2c3d")
    assert decode("sr:3") is None  # a page button from before searches were fingerprinted
    assert decode("lg:en") == SetLanguage("en")
    assert decode("hp") == Action.HELP


def test_decoding_random_garbage_never_raises() -> None:
    rng = random.Random(20261201)
    alphabet = "cdlprsfgm:=;-_0123456789eé\x00 "
    for _ in range(3000):
        data = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        decoded = decode(data)
        assert decoded is None or isinstance(
            decoded, ShowList | ShowMenu | ShowClass | SearchPage | SetLanguage | Action
        )


CHOICES = (
    Choice("cl:p=2", ("trang sau",)),
    Choice("cd:7", ("kn 01", "kn 01 boi duong ky nang")),
)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("1", CHOICES[0]),
        (" 2 ", CHOICES[1]),
        ("2.", CHOICES[1]),
        ("#1", CHOICES[0]),
        ("Trang sau", CHOICES[0]),
        ("TRANG SAU »", CHOICES[0]),
        ("kn-01", CHOICES[1]),
        ("0", OutOfRange(0, 2)),
        ("3", OutOfRange(3, 2)),
        ("trang", None),
        ("???", None),
    ],
)
def test_pick_by_number_or_words(typed: str, expected: Choice | OutOfRange | None) -> None:
    assert pick(typed, CHOICES) == expected


def test_buttons_are_numbered_across_replies_and_matched_by_their_label() -> None:
    replies = [
        Reply((Msg("menu.search"),), ((Button(Msg("nav.previous"), "a"),),)),
        Reply(
            (Msg("menu.search"),), ((Button(Msg("nav.next"), "b"), Button(Msg("lang.en"), "c")),)
        ),
    ]
    assert render_numbered(replies, "vi") == [
        "Tìm lớp\n\n  1. « Trang trước",
        "Tìm lớp\n\n  2. Trang sau »\n  3. English",
    ]
    choices = choices_of(replies, "vi")
    assert pick("trang trước", choices) == choices[0]
    assert pick("3", choices) == choices[2]


def _class(**changes: object) -> TrainingClass:
    values: dict[str, object] = {
        "code": "X",
        "title": "X",
        "program": Program.KY_NANG,
        "form": Form.FULL_TIME,
        "start_date": dt.date(2027, 1, 10),
        "end_date": dt.date(2027, 1, 14),
        "registration_deadline": dt.date(2026, 12, 20),
        "capacity": 30,
        "max_age": None,
        "required_theory_level": None,
        "status": ClassStatus.OPEN,
    }
    values.update(changes)
    return TrainingClass(**values)


def _person(birth_year: int | None = 1980, level: TheoryLevel | None = None) -> Person:
    return Person(phone="0912000001", full_name="A", unit_id=1, birth_year=birth_year,
                  theory_level=level)  # fmt: skip


def test_registration_is_open_through_the_deadline_day() -> None:
    training_class = _class()
    assert registration_open(training_class, dt.date(2026, 12, 20))
    assert not registration_open(training_class, dt.date(2026, 12, 21))
    assert not registration_open(_class(status=ClassStatus.CLOSED), dt.date(2026, 12, 1))


def test_refusal_reasons() -> None:
    today = dt.date(2026, 12, 1)
    assert refusal_reasons(_person(), _class(), today, None) == []
    assert refusal_reasons(_person(), _class(max_age=0), today, None) == []  # 0: no limit
    # Age counts by the class's start year: 1980 → 47 in 2027.
    assert refusal_reasons(_person(), _class(max_age=47), today, None) == []
    (too_old,) = refusal_reasons(_person(), _class(max_age=46), today, None)
    assert too_old.refusal == Refusal.TOO_OLD
    assert too_old.facts == {"age": 47, "max_age": 46, "year": 2027}
    (unknown,) = refusal_reasons(_person(birth_year=None), _class(max_age=46), today, None)
    assert unknown.refusal == Refusal.AGE_UNKNOWN
    required = _class(required_theory_level=TheoryLevel.TRUNG_CAP)
    assert refusal_reasons(_person(level=TheoryLevel.CAO_CAP), required, today, None) == []
    (low,) = refusal_reasons(_person(level=TheoryLevel.SO_CAP), required, today, None)
    assert low.facts == {"required": "trung_cap", "have": "so_cap"}
    full = QuotaUse(unit_id=1, unit_name="Sở Nội vụ", seats=2, used=2)
    (quota,) = refusal_reasons(_person(), _class(), today, full)
    assert quota.refusal == Refusal.QUOTA_USED_UP
    assert refusal_reasons(_person(), _class(), today, QuotaUse(1, "S", 2, 1)) == []
    late = refusal_reasons(_person(), _class(), dt.date(2026, 12, 21), full)
    assert [r.refusal for r in late] == [Refusal.DEADLINE_PASSED, Refusal.QUOTA_USED_UP]


def test_seats_left_is_never_negative() -> None:
    assert (seats_left(30, 12), seats_left(30, 31)) == (18, 0)


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("Lớp nào sắp mở?", Intent.UPCOMING),
        ("sắp có lớp gì", Intent.UPCOMING),
        ("what classes are coming", Intent.UPCOMING),
        ("Tôi đủ điều kiện học lớp nào?", Intent.ELIGIBLE),
        ("giúp tôi với", Intent.HELP),
        ("Xin chào!", Intent.GREETING),
        ("trung cấp lý luận", None),
        ("chào mừng", None),
    ],
)
def test_intents(text: str, intent: Intent | None) -> None:
    assert intent_of(text) == intent


def test_search_words_drop_filler_unless_nothing_else() -> None:
    assert search_words("Lớp  Kỹ năng") == ["ky", "nang"]
    assert search_words("lớp") == ["lop"]
    assert search_words("?!") == []


@pytest.mark.parametrize(
    ("text", "query", "rest"),
    [
        ("", ListQuery(), ""),
        ("ky_nang", ListQuery(program=Program.KY_NANG), ""),
        ("Bồi dưỡng kỹ năng trực tuyến", ListQuery(program=Program.KY_NANG, form=Form.ONLINE), ""),
        ("không tập trung", ListQuery(form=Form.PART_TIME), ""),
        ("12/2026 du dieu kien", ListQuery(month=dt.date(2026, 12, 1), eligible=True), ""),
        (
            "trung cấp 2027-01",
            ListQuery(program=Program.TRUNG_CAP_LLCT, month=dt.date(2027, 1, 1)),
            "",
        ),
        ("skills xyz", ListQuery(program=Program.KY_NANG), "xyz"),
        ("13/2026", ListQuery(), "13 2026"),
    ],
)
def test_list_filters(text: str, query: ListQuery, rest: str) -> None:
    assert list_filters(text) == (query, rest)
