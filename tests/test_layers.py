"""The layers hold: bot (channels, config, CLI) -> handlers (flows) -> db, and only
bot/channels/* speaks to a chat platform's library."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLATFORM_LIBRARIES = {"telegram", "zalo_bot", "aiogram"}


def imported_modules(path: Path) -> set[str]:
    """Return the top-level names of every module `path` imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def sources(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("db", {"bot", "handlers", "jobs", *PLATFORM_LIBRARIES}),
        ("handlers", {"bot", "jobs", *PLATFORM_LIBRARIES}),
        ("jobs", {"bot", *PLATFORM_LIBRARIES}),
    ],
)
def test_lower_layers_do_not_import_upper_ones(folder: str, forbidden: set[str]) -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(imported_modules(path) & forbidden)
        for path in sources(folder)
        if imported_modules(path) & forbidden
    }
    assert offenders == {}


def test_only_channels_import_platform_libraries() -> None:
    offenders = [
        str(path.relative_to(REPO))
        for path in sources("bot")
        if "channels" not in path.parts and imported_modules(path) & PLATFORM_LIBRARIES
    ]
    assert offenders == []


def test_the_check_sees_imports() -> None:
    assert {"bot", "db"} <= imported_modules(REPO / "bot" / "cli.py")
