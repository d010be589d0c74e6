"""Text moderation (OpenAI's ``/v1/moderations``), answered by a plugin's policy machinery."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
"""OpenAI's categories, every one of which a result names."""


@dataclass
class ModerationResult:
    flagged: bool
    category_scores: dict[str, float] = field(default_factory=dict)
    categories: dict[str, bool] = field(default_factory=dict)


class TextModerator(ABC):
    """Registered in ``appliance.registry.moderators`` (the moderation plugin does)."""

    @property
    @abstractmethod
    def model(self) -> str:
        """The name answers carry as ``model``."""

    @abstractmethod
    async def moderate(self, texts: list[str], caller: str) -> list[ModerationResult]:
        """One result per text, in order; every result covers :data:`CATEGORIES`."""
