"""Folding Vietnamese text for search and matching."""

from __future__ import annotations

import pytest

from db.text import fold


@pytest.mark.parametrize(
    ("raw", "folded"),
    [
        ("Trung cấp lý luận chính trị", "trung cap ly luan chinh tri"),
        ("ĐẢNG VIÊN MỚI", "dang vien moi"),
        ("Bồi dưỡng  kỹ\tnăng\n", "boi duong ky nang"),
        ("  Đặng Xuân Nam ", "dang xuan nam"),
        ("TC-K45", "tc-k45"),
        ("", ""),
        # Decomposed input (as some keyboards send it) folds the same as composed.
        ("Tie\u0302\u0301ng Vie\u0323\u0302t", "tieng viet"),
    ],
)
def test_fold(raw: str, folded: str) -> None:
    assert fold(raw) == folded


def test_fold_is_idempotent() -> None:
    once = fold("Lớp nào sắp mở?")
    assert fold(once) == once == "lop nao sap mo?"
