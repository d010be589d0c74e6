"""The embedding capability. Like chat models, embedders are driven from a worker thread."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

from appliance.capabilities.chat import LoadableModel


@dataclass
class EmbeddingResult:
    vectors: list[list[float]]
    prompt_tokens: int


class Embedder(LoadableModel):
    @property
    def dimensions(self) -> int:
        return int(self.info.details.get("dimensions", 0))

    @abstractmethod
    def embed(self, texts: list[str]) -> EmbeddingResult:
        """Return one normalized vector per text."""
