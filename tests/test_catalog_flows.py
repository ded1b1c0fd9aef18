"""Catalog flows end to end: messages in, replies and rows out, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import (
    ClassSession,
    ClassStatus,
    Conversation,
    Form,
    Program,
    RegistrationStatus,
    TheoryLevel,
    TrainingClass,
)
from db.session import create_engine, create_sessionmaker
from handlers.callbacks import MAX_ID, search_tag
from handlers.dispatch import MAX_TEXT_LENGTH
from tests.factories import (
    NOW,
    TODAY,
    Chat,
    add_class,
    add_person,
    add_registration,
    add_session,
    add_unit,
    link,
)

ANNA = "0912000001"  # born 1980, trung cấp, in a department of Sở Nội vụ (SNV has the quota)
BINH = "0912000002"  # born 1996, no theory level, in Sở Tài chính


@dataclass(frozen=True)
class Catalog:
    """Ids of the classes the tests use, by code."""

    ids: dict[str, int]


# Upcoming, soonest first: KN-01, CNKT-01, NV-01, CD-01, TC-K45 | DVM-01, CC-01, KN-02
SOONEST_FIRST = ["KN-01", "CNKT-01", "NV-01", "CD-01", "TC-K45", "DVM-01", "CC-01", "KN-02"]


@pytest.fixture
async def catalog(sessionmaker: async_sessionmaker[AsyncSession]) -> Catalog:
    """Insert units, people, classes, quotas and registrations; link two chat accounts."""
    async with sessionmaker() as s, s.begin():
        province = await add_unit(s, "TU", "Tỉnh ủy")
        snv = await add_unit(s, "SNV", "Sở Nội vụ", province)
        snv_office = await add_unit(s, "SNV-VP", "Văn phòng Sở Nội vụ", snv)
        stc = await add_unit(s, "STC", "Sở Tài chính", province)
        anna = await add_person(
            s, ANNA, "Nguyễn Thị An", snv_office, birth_year=1980,
            theory_level=TheoryLevel.TRUNG_CAP,
        )  # fmt: skip
        binh = await add_person(s, BINH, "Trần Văn Bình", stc, birth_year=1996)
        colleague = await add_person(s, "0912000003", "Lê Văn Cường", snv)
        junior = await add_person(s, "0912000004", "Phạm Thị Dung", snv_office)
        await link(s, anna, "test", "anna")
        await link(s, binh, "test", "binh")
        classes = [
            await add_class(s, "OLD-01", "Lớp đã học xong", start=dt.date(2026, 11, 30)),
            await add_class(
                s, "HUY-01", "Bồi dưỡng kỹ năng bị huỷ", start=dt.date(2026, 12, 9),
                status=ClassStatus.CANCELLED,
            ),
            await add_class(
                s, "KN-01", "Bồi dưỡng kỹ năng lãnh đạo, quản lý cấp phòng",
                start=dt.date(2026, 12, 7), deadline=TODAY,
            ),
            await add_class(
                s, "CNKT-01", "Bồi dưỡng cập nhật kiến thức cho cán bộ diện Ban Thường vụ",
                program=Program.CAP_NHAT_KIEN_THUC, start=dt.date(2026, 12, 14),
                deadline=dt.date(2026, 11, 30),
            ),
            await add_class(
                s, "NV-01", "Bồi dưỡng nghiệp vụ công tác tổ chức", program=Program.NGHIEP_VU,
                form=Form.ONLINE, start=dt.date(2026, 12, 21),
            ),
            await add_class(
                s, "CD-01", "Chuyên đề chuyển đổi số", program=Program.CHUYEN_DE,
                form=Form.PART_TIME, start=dt.date(2027, 1, 5),
                theory_level=TheoryLevel.TRUNG_CAP,
            ),
            await add_class(
                s, "TC-K45", "Trung cấp lý luận chính trị - hành chính K45",
                program=Program.TRUNG_CAP_LLCT, start=dt.date(2027, 1, 11), days=170,
                deadline=dt.date(2026, 12, 20), capacity=60, max_age=50, quotas={snv: 2},
                location="51 Lê Hồng Phong, TP Vinh",
            ),
            await add_class(
                s, "DVM-01", "Bồi dưỡng đảng viên mới đợt 1", program=Program.DANG_VIEN_MOI,
                start=dt.date(2027, 2, 1),
            ),
            await add_class(
                s, "CC-01", "Bồi dưỡng kiến thức cho cán bộ có trình độ cao cấp",
                program=Program.CAP_NHAT_KIEN_THUC, start=dt.date(2027, 2, 10),
                theory_level=TheoryLevel.CAO_CAP,
            ),
            await add_class(
                s, "KN-02", "Bồi dưỡng kỹ năng số cho cán bộ trẻ", form=Form.ONLINE,
                start=dt.date(2027, 3, 1), max_age=40, quotas={stc: 1},
            ),
        ]  # fmt: skip
        by_code = {c.code: c for c in classes}
        # Sở Nội vụ's quota of 2 for TC-K45 is taken by people of SNV and of a unit below it.
        await add_registration(s, colleague, by_code["TC-K45"], RegistrationStatus.CONFIRMED)
        await add_registration(s, junior, by_code["TC-K45"], RegistrationStatus.PENDING_APPROVAL)
        # Cancelled registrations take no seat.
        await add_registration(s, binh, by_code["TC-K45"], RegistrationStatus.CANCELLED)
        for day in (11, 12):
            await add_session(
                s, by_code["TC-K45"], dt.datetime(2027, 1, day, 1, 30, tzinfo=dt.UTC),
                topic="Chủ nghĩa Mác - Lênin",
            )  # fmt: skip
        return Catalog({c.code: c.id for c in classes})


def codes_in(text: str) -> list[str]:
    """Return the class codes of a list reply, in the order shown."""
    return re.findall(r"(?:Mã lớp|Code) ([A-Z0-9-]+) ·", text)


async def test_upcoming_soonest_first_and_paged(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    chat = Chat(sessionmaker)
    text = await chat.say("/classes")
    assert "Các lớp sắp mở — trang 1/2 (tổng 8 lớp)" in text
    assert codes_in(text) == SOONEST_FIRST[:5]
    assert chat.data()[:5] == [f"cd:{catalog.ids[code]}" for code in SOONEST_FIRST[:5]]
    assert "cl:p=2" in chat.data()
    assert "cl:p=0" not in chat.data()
    # Past, cancelled and finished classes are not upcoming.
    assert "OLD-01" not in text
    assert "HUY-01" not in text

    text = await chat.press("cl:p=2")
    assert "trang 2/2" in text
    assert codes_in(text) == SOONEST_FIRST[5:]
    assert "cl:p=1" in chat.data()
    assert "cl:p=3" not in chat.data()


async def test_list_item_shows_dates_form_seats_and_registration(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    text = await Chat(sessionmaker).say("/classes")
    assert "1. Bồi dưỡng kỹ năng lãnh đạo, quản lý cấp phòng" in text
    assert "Mã lớp KN-01 · 07/12/2026 – 11/12/2026 · Tập trung" in text
    # The deadline is today: registration is still open, through the end of the day.
    assert "Còn 30/30 chỗ · Nhận đăng ký đến hết ngày 01/12/2026" in text
    assert "Đã hết hạn đăng ký (30/11/2026)" in text  # CNKT-01
    # TC-K45: the confirmed and the pending registration hold seats; the cancelled one not.
    assert "Còn 58/60 chỗ" in text


async def test_page_past_the_end_shows_the_last_page(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    chat = Chat(sessionmaker)
    text = await chat.press("cl:p=40")
    assert "Không còn trang sau nữa; đây là trang cuối." in text
    assert "trang 2/2" in text
    assert codes_in(text) == SOONEST_FIRST[5:]


async def test_filter_by_program_from_the_menu(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    chat = Chat(sessionmaker)
    await chat.say("/classes")
    menu = next(data for data in chat.data() if data.startswith("fp:"))
    text = await chat.press(menu)
    assert "Đồng chí chọn chương trình:" in text
    assert "Bồi dưỡng cập nhật kiến thức" in text
    text = await chat.say("Bồi dưỡng kỹ năng")  # the button's words press it
    assert codes_in(text) == ["KN-01", "KN-02"]
    assert "Chương trình: Bồi dưỡng kỹ năng" in text
    assert "cl:p=1" in chat.data()  # clear filters


async def test_filter_by_form_and_month_and_program_as_text(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    chat = Chat(sessionmaker)
    assert codes_in(await chat.say("/classes trực tuyến")) == ["NV-01", "KN-02"]
    assert codes_in(await chat.say("/classes 01/2027")) == ["CD-01", "TC-K45"]
    assert codes_in(await chat.say("/classes 2027-02")) == ["DVM-01", "CC-01"]
    assert codes_in(await chat.say("/classes ky_nang")) == ["KN-01", "KN-02"]
    assert codes_in(await chat.say("/classes ky nang online")) == ["KN-02"]
    text = await chat.press("cl:p=1;prog=cap_nhat_kien_thuc;m=2027-02")
    assert codes_in(text) == ["CC-01"]
    assert "Khai giảng: Tháng 2/2027" in text


async def test_form_and_month_menus_offer_values(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    chat = Chat(sessionmaker)
    text = await chat.press("ff:prog=ky_nang")
    assert "Trực tuyến" in text
    assert "cl:p=1;prog=ky_nang;form=online" in chat.data()
    text = await chat.press("fm:")
    assert [d for d in chat.data() if ";m=" in d or d.startswith("cl:p=1;m=")] == [
        "cl:p=1;m=2026-12",
        "cl:p=1;m=2027-01",
        "cl:p=1;m=2027-02",
        "cl:p=1;m=2027-03",
    ]
    assert "Tháng 12/2026" in text


async def test_unknown_filter_is_explained(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    text = await Chat(sessionmaker).say("/classes bơi lội")
    assert "Tôi chưa hiểu bộ lọc «boi loi»" in text
    assert codes_in(text) == SOONEST_FIRST[:5]


async def test_empty_filter_result_says_so(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    chat = Chat(sessionmaker)
    text = await chat.press("cl:p=1;prog=so_cap_llct")
    assert "Không có lớp sắp mở nào khớp với bộ lọc đã chọn." in text
    assert "cl:p=1" in chat.data()


async def test_eligible_for_me_applies_age_level_deadline_and_parent_unit_quota(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    anna = Chat(sessionmaker, user_id="anna")
    text = await anna.say("/eligible")
    # Not CNKT-01 (deadline passed), TC-K45 (SNV's quota, counted with units below, is used
    # up), CC-01 (needs cao cấp), KN-02 (47 in 2027, limit 40).
    assert codes_in(text) == ["KN-01", "NV-01", "CD-01", "DVM-01"]
    assert "Các lớp sắp mở đồng chí đủ điều kiện đăng ký — trang 1/1 (tổng 4 lớp)" in text
    assert "cl:p=1" in anna.data()  # back to all classes

    binh = Chat(sessionmaker, user_id="binh")
    # Bình has no theory level (so not CD-01) but is young enough for KN-02; STC's quota is
    # free. TC-K45's quota binds SNV only.
    assert codes_in(await binh.press("cl:p=1;e=1")) == [
        "KN-01",
        "NV-01",
        "TC-K45",
        "DVM-01",
        "KN-02",
    ]


async def test_eligible_asked_in_words_and_by_a_visitor(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    anna = Chat(sessionmaker, user_id="anna")
    assert codes_in(await anna.say("Lớp nào tôi đủ điều kiện?")) == [
        "KN-01",
        "NV-01",
        "CD-01",
        "DVM-01",
    ]
    visitor = Chat(sessionmaker, user_id="stranger")
    text = await visitor.say("/eligible")
    assert "Chỉ cán bộ có tên trong danh sách" in text
    assert codes_in(text) == SOONEST_FIRST[:5]
    assert not any("e=1" in data for data in visitor.data())


async def test_class_detail_with_quota_use_and_reasons(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    anna = Chat(sessionmaker, user_id="anna")
    await anna.press("cl:p=1;prog=trung_cap_llct")
    text = await anna.say("1")  # the number presses the first button: TC-K45
    assert "Trung cấp lý luận chính trị - hành chính K45" in text
    for line in [
        "Mã lớp: TC-K45",
        "Chương trình: Trung cấp lý luận chính trị - hành chính",
        "Hình thức: Tập trung",
        "Thời gian: từ 11/01/2027 đến 29/06/2027",
        "Lịch học:",
        "• 11/01/2027, 08:30–12:30: Chủ nghĩa Mác - Lênin",
        "Địa điểm: 51 Lê Hồng Phong, TP Vinh",
        "Số chỗ: Còn 58/60 chỗ",  # confirmed and pending hold seats
        "Đăng ký: Nhận đăng ký đến hết ngày 20/12/2026",
        "Điều kiện về tuổi: không quá 50 tuổi (tính theo năm 2027)",
        "Chỉ tiêu của Sở Nội vụ: đã dùng 2/2",
        "⛔ Đồng chí chưa đủ điều kiện đăng ký lớp này:",
        "• Sở Nội vụ đã dùng hết chỉ tiêu của lớp (2/2).",
    ]:
        assert line in text
    # Back goes to the list page the class was opened from.
    assert anna.data()[0] == "cl:p=1;prog=trung_cap_llct"


async def test_class_detail_by_code_for_eligible_and_too_old(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    anna = Chat(sessionmaker, user_id="anna")
    text = await anna.say("/class kn-01")
    assert "✅ Đồng chí đủ điều kiện đăng ký lớp này." in text
    assert "Chỉ tiêu: lớp không phân chỉ tiêu riêng cho đơn vị của đồng chí." in text
    assert "Điều kiện: không giới hạn tuổi và trình độ lý luận chính trị" in text
    assert anna.data()[0] == "cl:p=1"  # no list seen yet: Back shows the first page
    text = await anna.say("/class KN-02")
    assert "• Năm 2027 đồng chí 47 tuổi, quá độ tuổi quy định (không quá 40 tuổi)." in text
    text = await anna.say("/class CC-01")
    assert "• Lớp yêu cầu trình độ lý luận chính trị từ Cao cấp trở lên" in text
    assert "trình độ hiện tại của đồng chí: Trung cấp." in text


async def test_class_detail_for_a_visitor_and_unknown_code(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    chat = Chat(sessionmaker, user_id="stranger")
    text = await chat.press(f"cd:{catalog.ids['CNKT-01']}")
    assert "Đăng ký: Đã hết hạn đăng ký (30/11/2026)" in text
    assert "tư cách khách" in text
    assert "Chỉ tiêu" not in text
    assert "Không tìm thấy lớp có mã XYZ-9." in await chat.say("/class XYZ-9")
    assert "Đồng chí gõ /class kèm mã lớp" in await chat.say("/class")


async def test_search_ignores_case_and_diacritics(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    chat = Chat(sessionmaker)
    text = await chat.say("/search trung cap ly luan")
    assert "Kết quả tìm «trung cap ly luan» — trang 1/1 (tổng 1 lớp)" in text
    assert codes_in(text) == ["TC-K45"]
    assert codes_in(await chat.say("TRUNG CẤP Lý Luận")) == ["TC-K45"]
    # Every word must match; "lớp" is filler.
    assert codes_in(await chat.say("lớp kỹ năng")) == ["KN-01", "KN-02"]
    assert codes_in(await chat.say("ky nang so")) == ["KN-02"]
    assert codes_in(await Chat(sessionmaker, user_id="new").say("kn-02")) == ["KN-02"]


async def test_search_without_words_asks_and_takes_the_next_text(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    chat = Chat(sessionmaker)
    assert "Đồng chí muốn tìm lớp gì?" in await chat.say("/search")
    async with sessionmaker() as s:
        conversation = await s.get(Conversation, ("test", "u1"))
        assert conversation is not None
        assert (conversation.flow, conversation.step) == ("search", "search_query")
    # A question is the query now, not a question; so is a number that is no button's.
    assert "Không tìm thấy lớp nào (đang học hoặc sắp mở) khớp với «sắp mở»" in await chat.say(
        "sắp mở"
    )
    await chat.say("/search")
    assert codes_in(await chat.say("45")) == ["TC-K45"]
    await chat.say("/search")
    text = await chat.say("đảng viên")
    assert codes_in(text) == ["DVM-01"]
    async with sessionmaker() as s:
        conversation = await s.get(Conversation, ("test", "u1"))
        assert conversation is not None
        assert conversation.step is None


async def test_search_with_no_result_suggests(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    chat = Chat(sessionmaker)
    text = await chat.say("/search bơi lội")
    assert "Không tìm thấy lớp nào (đang học hoặc sắp mở) khớp với «bơi lội»." in text
    assert "Gợi ý: gõ ít từ hơn" in text
    assert "cl:p=1" in chat.data()
    # Free text that finds nothing also says what the bot can do.
    text = await chat.say("thời tiết hôm nay")
    assert "Không tìm thấy lớp nào" in text
    assert "Tôi có thể giúp đồng chí:" in text
    # Punctuation only is no query: ask for one.
    assert "Đồng chí muốn tìm lớp gì?" in await chat.say("/search ???")


async def test_search_pages_past_the_end_and_without_a_search(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    chat = Chat(sessionmaker)
    boi_duong = search_tag("boi duong")
    assert "Nút này không còn dùng được nữa" in await chat.press(f"sr:2:{boi_duong}")
    await chat.say("boi duong")
    assert f"sr:2:{boi_duong}" in chat.data()
    text = await chat.press(f"sr:9:{boi_duong}")
    assert "đây là trang cuối" in text
    assert "trang 2/2" in text


async def test_a_page_button_of_an_older_search_is_stale(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    chat = Chat(sessionmaker)
    await chat.say("boi duong")
    older_next_page = f"sr:2:{search_tag('boi duong')}"
    assert older_next_page in chat.data()
    await chat.say("dang vien")
    text = await chat.press(older_next_page)
    assert "Nút này không còn dùng được nữa" in text
    assert "dang vien" not in text


@pytest.mark.parametrize(
    "question", ["lớp nào sắp mở?", "Sắp có lớp gì?", "What classes are coming?", "upcoming"]
)
async def test_questions_about_upcoming_classes_list_them(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog, question: str
) -> None:
    assert codes_in(await Chat(sessionmaker).say(question)) == SOONEST_FIRST[:5]


async def test_start_greets_by_name_and_unit(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    anna = Chat(sessionmaker, user_id="anna")
    text = await anna.say("/start")
    assert "Kính chào đồng chí Nguyễn Thị An (Văn phòng Sở Nội vụ)!" in text
    assert "cl:p=1;e=1" in anna.data()
    text = await Chat(sessionmaker, user_id="stranger").say("/start")
    assert "tư cách khách" in text
    assert "xin chào" not in text.lower() or "Kính chào" in text
    assert "Kính chào đồng chí!" in await Chat(sessionmaker, user_id="x").say("xin chào")


async def test_help_and_unknown_input_say_what_the_bot_does(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    chat = Chat(sessionmaker)
    text = await chat.say("/help")
    assert "Tôi có thể giúp đồng chí:" in text
    assert "/classes" in text
    assert "/search" in text
    text = await chat.say("/dangky")
    assert "Xin lỗi, tôi chưa hiểu lệnh /dangky." in text
    assert "Tôi có thể giúp đồng chí:" in text
    assert "Tôi có thể giúp" in await chat.say("hướng dẫn")
    assert "Tôi có thể giúp" in await chat.say("/help@TrainingBot")


async def test_lang_switches_texts_and_is_stored(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    chat = Chat(sessionmaker)
    text = await chat.say("/lang en", "en")
    assert "Switched to English." in text
    text = await chat.say("/classes", "en")
    assert "Upcoming classes — page 1 of 2 (8 in all):" in text
    assert "Code KN-01 · 7 Dec 2026 – 11 Dec 2026 · Full-time" in text
    assert "Registration open until 1 Dec 2026" in text
    async with sessionmaker() as s:
        conversation = await s.get(Conversation, ("test", "u1"))
        assert conversation is not None
        assert conversation.language == "en"
    # The typed words of English labels press English buttons.
    assert "page 2 of 2" in await chat.say("next", "en")
    text = await chat.say("/lang", "en")
    assert "Choose a language" in text
    assert chat.data() == ["lg:vi", "lg:en"]
    assert "Đã chuyển sang tiếng Việt." in await chat.say("1")


async def test_lang_with_an_unknown_language_asks_for_a_button(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    chat = Chat(sessionmaker)
    text = await chat.say("/lang fr")
    assert "Chưa có ngôn ngữ «fr»." in text
    assert chat.data() == ["lg:vi", "lg:en"]
    text = await chat.say("tiếng Pháp")  # text where a button was expected
    assert "Đồng chí vui lòng chọn một nút bên dưới" in text
    assert chat.data() == ["lg:vi", "lg:en"]
    assert "Switched to English." in await chat.say("english", "en")


@pytest.mark.parametrize(
    "data",
    [
        "cd:999999",
        f"cd:{MAX_ID + 1}",
        "cd:99999999999999999999",
        "cd:-1",
        "cd:abc",
        "cl:p=0",
        "cl:p=abc",
        "cl:p=1;prog=bogus",
        "cl:p=1;m=2026-13",
        "cl:p=1;p=2",
        "cl:p=1;e=2",
        "cl:prog=ky_nang",
        "fp:p=1",
        "lg:fr",
        "zz",
        "",
        "cl:",
        "::::",
        "cl:p=1;prog",
    ],
)
async def test_stale_or_forged_button_data_gets_a_polite_reply(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog, data: str
) -> None:
    chat = Chat(sessionmaker)
    text = await chat.press(data)
    assert "Nút này không còn dùng được nữa" in text
    assert "Tôi có thể giúp đồng chí:" in text


async def test_a_class_deleted_after_its_button_was_shown(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    chat = Chat(sessionmaker)
    await chat.say("/classes")
    async with sessionmaker() as s, s.begin():
        training_class = await s.get(TrainingClass, catalog.ids["KN-01"])
        await s.delete(training_class)
    assert "Nút này không còn dùng được nữa" in await chat.say("1")


async def test_typed_numbers_and_words_press_buttons(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    chat = Chat(sessionmaker)
    await chat.say("/classes")
    assert "Mã lớp: CNKT-01" in await chat.say("2")
    assert "trang 1/2" in await chat.say("quay lai danh sach")
    assert "trang 2/2" in await chat.say("TRANG SAU")
    assert "Mã lớp: KN-02" in await chat.say("KN-02")  # a class button's short name
    assert "Mã lớp: CD-01" in await chat.say("/class cd-01")


async def test_number_out_of_range_keeps_the_buttons(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    chat = Chat(sessionmaker)
    await chat.say("/classes")
    count = len(chat.data())
    text = await chat.say("99")
    assert f"Không có lựa chọn số 99. Đồng chí vui lòng gõ một số từ 1 đến {count}." in text
    assert "Mã lớp: KN-01" in await chat.say("1")


async def test_number_with_no_buttons_shown(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    text = await Chat(sessionmaker, user_id="new").say("3")
    assert "Hiện không có nút nào để chọn theo số 3." in text


async def test_the_buttons_under_the_search_question_still_work(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    chat = Chat(sessionmaker)
    await chat.say("/search")
    assert chat.data()[0] == "cl:p=1"
    assert codes_in(await chat.say("1")) == SOONEST_FIRST[:5]


async def test_very_long_input_is_refused_and_loses_nothing(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    chat = Chat(sessionmaker)
    await chat.say("/search")
    text = await chat.say("kỹ năng " * 100)
    assert f"dưới {MAX_TEXT_LENGTH} ký tự" in text
    # Still waiting for the query.
    assert codes_in(await chat.say("đảng viên mới")) == ["DVM-01"]


async def test_empty_text_shows_help(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    assert "Tôi có thể giúp đồng chí:" in await Chat(sessionmaker).say("   ")


async def test_state_carries_on_after_a_restart(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog, database_url: str
) -> None:
    before = Chat(sessionmaker, user_id="anna")
    await before.say("/lang en", "en")
    await before.press("cl:p=2")
    await before.say("/search")
    # Another process: its own engine and sessions on the same database.
    engine = create_engine(database_url)
    try:
        after = Chat(create_sessionmaker(engine), user_id="anna")
        text = await after.say("đảng viên", "en")
        assert codes_in(text) == ["DVM-01"]
        assert "Classes matching “đảng viên”" in text
        text = await after.say("1", "en")
        assert "Code: DVM-01" in text
        # Back to the search results
        assert after.data()[0] == f"sr:1:{search_tag('đảng viên')}"
    finally:
        await engine.dispose()


async def test_a_pending_question_expires(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    chat = Chat(sessionmaker)
    await chat.say("/search")
    chat.now = NOW + dt.timedelta(hours=2)
    # No longer the query: a question about upcoming classes is answered as one.
    assert codes_in(await chat.say("lớp nào sắp mở")) == SOONEST_FIRST[:5]


async def test_cancel_drops_the_pending_question(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    chat = Chat(sessionmaker)
    await chat.say("/search")
    assert "Đã huỷ." in await chat.say("/cancel")
    assert codes_in(await chat.say("lớp nào sắp mở")) == SOONEST_FIRST[:5]


async def test_dispatch_records_last_seen_and_rows_stay_consistent(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    anna = Chat(sessionmaker, user_id="anna")
    await anna.say("/classes")
    async with sessionmaker() as s:
        conversation = await s.get(Conversation, ("test", "anna"))
        assert conversation is not None
        assert [choice["data"] for choice in conversation.choices] == anna.data()
        assert conversation.choices[0]["words"]  # typed words press it after a restart
        assert conversation.data["last_list"] == "cl:p=1"
        assert conversation.language == "vi"
        from db.models import ChannelAccount

        account = (
            await s.scalars(select(ChannelAccount).where(ChannelAccount.external_id == "anna"))
        ).one()
        assert account.last_seen_at == NOW


LONG_TOPIC = "Học phần I: Những vấn đề cơ bản của chủ nghĩa Mác - Lênin " * 9  # ~500 characters


@pytest.fixture
async def long_class(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Insert a six-month class with 120 sessions, topic and room as long as allowed."""
    async with sessionmaker() as s, s.begin():
        training_class = await add_class(
            s, "TC-K50", "Trung cấp lý luận chính trị - hành chính K50",
            program=Program.TRUNG_CAP_LLCT, start=dt.date(2027, 1, 11), days=170,
            location="Trường Chính trị tỉnh",
        )  # fmt: skip
        days = [training_class.start_date + dt.timedelta(days=n) for n in range(170)]
        weekdays = [day for day in days if day.weekday() < 5][:60]
        for number, day in enumerate(weekdays):
            for hour in (0, 6):  # 07:00 and 13:00 in Vietnam
                starts = dt.datetime.combine(day, dt.time(hour, 30), dt.UTC)
                s.add(
                    ClassSession(
                        class_id=training_class.id,
                        starts_at=starts,
                        ends_at=starts + dt.timedelta(hours=3),
                        topic=f"Buổi {number + 1}: {LONG_TOPIC}"[:500],
                        location="Phòng 302 " * 50,
                    )
                )


def schedule_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("• ")]


async def test_a_long_schedule_shows_its_size_and_the_next_sessions(
    sessionmaker: async_sessionmaker[AsyncSession], long_class: None
) -> None:
    text = await Chat(sessionmaker).say("/class TC-K50")
    assert "Lịch học: 120 buổi, từ 11/01/2027 đến 02/04/2027\nCác buổi sắp tới:\n" in text
    lines = schedule_lines(text)
    assert len(lines) == 6
    assert lines[0].startswith("• 11/01/2027, 07:30–10:30: Buổi 1: Học phần I: Những vấn đề")
    assert lines[1].startswith("• 11/01/2027, 13:30–16:30: Buổi 1: ")
    assert lines[4].startswith("• 13/01/2027, 07:30–10:30: Buổi 3: ")
    assert lines[5] == "• … và 115 buổi học khác"
    # Topic and room are cut short; the whole detail fits in one Telegram message.
    assert all(len(line) <= 120 for line in lines)
    assert lines[0].endswith("…")
    assert len(text) < 4096
    english = await Chat(sessionmaker).say("/class TC-K50", "en")
    assert "Schedule: 120 sessions, 11 Jan 2027 to 2 Apr 2027\nNext sessions:\n" in english


async def test_a_class_under_way_shows_the_sessions_still_to_come(
    sessionmaker: async_sessionmaker[AsyncSession], long_class: None
) -> None:
    # 12:00 on Wednesday 13 Jan 2027 in Vietnam: the morning session is over.
    during = Chat(sessionmaker, now=dt.datetime(2027, 1, 13, 5, 0, tzinfo=dt.UTC))
    lines = schedule_lines(await during.say("/class TC-K50"))
    assert lines[0].startswith("• 13/01/2027, 13:30–16:30: Buổi 3: ")
    assert lines[5] == "• … và 110 buổi học khác"
    # A session in progress still counts as to come.
    in_class = Chat(sessionmaker, now=dt.datetime(2027, 1, 13, 7, 0, tzinfo=dt.UTC))
    assert schedule_lines(await in_class.say("/class TC-K50"))[0].startswith("• 13/01/2027, 13:30")
    after = Chat(sessionmaker, now=dt.datetime(2027, 5, 1, tzinfo=dt.UTC))
    text = await after.say("/class TC-K50")
    assert "Lịch học: 120 buổi, từ 11/01/2027 đến 02/04/2027\nCác buổi học đều đã diễn ra." in text
    assert schedule_lines(text) == []


async def test_a_short_schedule_is_shown_whole(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as s, s.begin():
        training_class = await add_class(s, "KN-09", "Kỹ năng", start=dt.date(2027, 1, 11))
        for day in range(11, 16):
            for hour in (0, 6):
                starts = dt.datetime(2027, 1, day, hour, 30, tzinfo=dt.UTC)
                await add_session(s, training_class, starts, hours=3)
    # Even once some sessions are over, a short schedule is listed in full.
    chat = Chat(sessionmaker, now=dt.datetime(2027, 1, 13, 5, 0, tzinfo=dt.UTC))
    text = await chat.say("/class KN-09")
    assert "Lịch học:\n• 11/01/2027, 07:30–10:30\n• 11/01/2027, 13:30–16:30\n" in text
    assert len(schedule_lines(text)) == 10


async def test_control_characters_and_lone_surrogates_are_dropped(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    chat = Chat(sessionmaker)
    assert "Mã lớp: KN-01" in await chat.say("/class KN\x00-01")
    assert "Mã lớp: KN-01" in await chat.say("/class KN-01\ud800")
    assert codes_in(await chat.say("trung\x07 cap\x1b ly luan")) == ["TC-K45"]
    assert "Nút này không còn dùng được nữa" in await chat.press("cd:\x00")


async def test_long_numbers_are_searched_not_pressed(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    chat = Chat(sessionmaker)
    await chat.say("/classes")
    text = await chat.say("2027")
    assert "Không tìm thấy lớp nào (đang học hoặc sắp mở) khớp với «2027»." in text
    await chat.say("/classes")
    assert "Không có lựa chọn số 45" in await chat.say("45")


async def test_dispatch_refuses_a_naive_clock(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    chat = Chat(sessionmaker, now=dt.datetime(2026, 11, 25, 9, 0))
    with pytest.raises(ValueError, match="aware"):
        await chat.say("/classes")


async def test_detail_says_when_a_class_is_cancelled_or_closed(
    sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog
) -> None:
    chat = Chat(sessionmaker, user_id="anna")
    text = await chat.say("/class HUY-01")
    assert "Đăng ký: Lớp đã huỷ" in text
    async with sessionmaker() as s, s.begin():
        training_class = await s.get(TrainingClass, catalog.ids["NV-01"])
        assert training_class is not None
        training_class.status = ClassStatus.CLOSED
    assert "Đăng ký: Đã ngừng nhận đăng ký" in await chat.say("/class NV-01")
