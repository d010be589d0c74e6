"""The embedding capability. Like chat models, embedders are driven from a worker thread."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from appliance.capabilities.chat import ModelInfo


@dataclass
class EmbeddingResult:
    vectors: list[list[float]]
    prompt_tokens: int


class Embedder(ABC):
    info: ModelInfo

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def dimensions(self) -> int:
        return int(self.info.details.get("dimensions", 0))

    def load(self) -> None:  # noqa: B027 - optional override
        """Load weights; called in the worker thread."""

    def unload(self) -> None:  # noqa: B027 - optional override
        """Free weights; called in the worker thread."""

    @property
    def loaded(self) -> bool:
        return True

    @abstractmethod
    def embed(self, texts: list[str]) -> EmbeddingResult:
        """Return one normalized vector per text."""
