"""Retrieval: document loaders feed collections; a retriever returns scored chunks."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class LoadedSection:
    """A structural piece of a document (a page, a heading's body, a row block)."""

    text: str
    title: str = ""
    location: dict[str, str | int] = field(default_factory=dict)


class DocumentLoader(ABC):
    """Turns a file into sections. ``suffixes`` says which files it reads (".pdf", ...)."""

    name: str
    suffixes: tuple[str, ...]

    @abstractmethod
    def load(self, path: Path) -> Iterable[LoadedSection]:
        """Read the file; raise ``ValueError`` with a reason when it cannot be parsed."""


@dataclass(frozen=True)
class ContextChunk:
    """A piece of context for a prompt, with where it came from."""

    id: str
    text: str
    source: str
    score: float = 0.0
    location: dict[str, str | int] = field(default_factory=dict)


class Retriever(ABC):
    @abstractmethod
    async def retrieve(self, collection: str, query: str, top_k: int) -> list[ContextChunk]:
        """Return the best chunks for ``query``, best first."""
