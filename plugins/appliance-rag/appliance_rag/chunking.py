"""Chunks by structure: a section's paragraphs are packed up to ``size`` characters, with the
last ``overlap`` characters carried into the next chunk; each chunk keeps its title and location.

1,000 / 150 was measured with bench/rag.py (hybrid recall@5 0.983 against 0.966 at 500 and 0.914
at 1,500 characters).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from appliance import LoadedSection

CHUNK_SIZE = 1000
CHUNK_OVERLAP = 150


@dataclass(frozen=True)
class Chunk:
    text: str
    title: str
    location: dict[str, str | int] = field(default_factory=dict)


def _pieces(text: str, size: int) -> list[str]:
    pieces = []
    for paragraph in (p.strip() for p in text.split("\n\n")):
        while len(paragraph) > size:
            cut = paragraph.rfind(" ", 0, size)
            cut = cut if cut > size // 2 else size
            pieces.append(paragraph[:cut].strip())
            paragraph = paragraph[cut:].strip()
        if paragraph:
            pieces.append(paragraph)
    return pieces


def chunk_sections(
    sections: Iterable[LoadedSection], size: int | None = None, overlap: int | None = None
) -> list[Chunk]:
    size = size or CHUNK_SIZE
    overlap = CHUNK_OVERLAP if overlap is None else overlap
    chunks: list[Chunk] = []
    for section in sections:
        current = ""
        for piece in _pieces(section.text, size):
            if current and len(current) + len(piece) + 2 > size:
                chunks.append(Chunk(current, section.title, dict(section.location)))
                tail = current[-overlap:]
                tail = tail[tail.find(" ") + 1 :] if " " in tail else tail
                current = (tail + "\n\n" + piece) if overlap else piece
            else:
                current = f"{current}\n\n{piece}" if current else piece
        if current.strip():
            chunks.append(Chunk(current, section.title, dict(section.location)))
    return chunks
