"""Texts cut to a platform's length limit, at line boundaries where possible.

Telegram counts a message's length in UTF-16 code units; Zalo does not say how it
counts, so it is measured the same way (never fewer than the characters a person sees).
"""

from __future__ import annotations


def text_length(text: str) -> int:
    """Return the length of `text` in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def _cut_line(line: str, limit: int) -> list[str]:
    """Cut one over-long line into pieces within `limit`, at a space where there is one."""
    pieces = []
    while text_length(line) > limit:
        end = limit
        while text_length(line[:end]) > limit:  # characters outside the BMP count twice
            end -= 1
        space = line.rfind(" ", 0, end)
        cut = space if space > end // 2 else end
        pieces.append(line[:cut].rstrip())
        line = line[cut:].lstrip()
    pieces.append(line)
    return pieces


def split_text(text: str, limit: int) -> list[str]:
    """Split `text` into messages within `limit`, at line boundaries where possible."""
    chunks: list[str] = []
    current = ""
    for line in text.split("\n"):
        for piece in _cut_line(line, limit):
            candidate = f"{current}\n{piece}" if current else piece
            if text_length(candidate) <= limit:
                current = candidate
                continue
            if current.strip():
                chunks.append(current.strip("\n"))
            current = piece
    if current.strip():
        chunks.append(current.strip("\n"))
    return chunks
