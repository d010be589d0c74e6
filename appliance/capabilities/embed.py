"""The embedding capability. Embedders run on their own worker thread; the scheduler hands one
``embed`` call the texts of every request waiting at that moment (``coalesce = True``)."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field

from appliance.capabilities.chat import LoadableModel


@dataclass
class EmbeddingResult:
    vectors: list[list[float]]
    prompt_tokens: int
    token_counts: list[int] = field(default_factory=list)
    """Tokens of each text (lets the scheduler split one call made for several requests)."""


class Embedder(LoadableModel):
    coalesce = True
    """Whether concurrent requests may share one ``embed`` call (their texts concatenated)."""

    @property
    def dimensions(self) -> int:
        return int(self.info.details.get("dimensions", 0))

    @abstractmethod
    def embed(self, texts: list[str]) -> EmbeddingResult:
        """Return one normalized vector per text."""
