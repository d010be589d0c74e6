"""Image capabilities, driven from a worker thread: a classifier scores an image, a describer
puts it into words. The moderation plugin chains them; any plugin may register either."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field

from appliance.capabilities.chat import LoadableModel


@dataclass(frozen=True)
class ImageInput:
    """One decoded image: RGB pixels as PNG bytes (the same for every stage), its size, and
    where it came from (a file name, or a path of a folder being checked)."""

    png: bytes
    width: int
    height: int
    source: str = ""


@dataclass
class ImageScores:
    """Scores in 0..1 by label (``{"nsfw": 0.93, "sfw": 0.07}``), and the model that gave them."""

    model: str
    scores: dict[str, float] = field(default_factory=dict)


class ImageClassifier(LoadableModel):
    @abstractmethod
    def classify(self, images: list[ImageInput]) -> list[ImageScores]:
        """Score each image (one result per image, in order)."""


class ImageDescriber(LoadableModel):
    @abstractmethod
    def describe(self, image: ImageInput, prompt: str, max_tokens: int = 256) -> str:
        """Describe the image in words, answering ``prompt``."""
