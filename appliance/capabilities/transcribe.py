"""The transcription capability (speech to text), driven from a worker thread."""

from __future__ import annotations

import threading
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from appliance.capabilities.chat import LoadableModel


@dataclass(frozen=True)
class TranscriptionRequest:
    audio: bytes
    """16 kHz mono float32 PCM, little-endian."""
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    translate: bool = False
    word_timestamps: bool = False
    on_progress: Callable[[float], None] | None = None
    """Called from the worker thread with the fraction of the audio done (for jobs)."""


@dataclass
class Segment:
    start: float
    end: float
    text: str
    words: list[dict[str, float | str]] = field(default_factory=list)


@dataclass
class Transcription:
    text: str
    language: str
    duration: float
    segments: list[Segment]


class Transcriber(LoadableModel):
    @abstractmethod
    def transcribe(self, request: TranscriptionRequest, cancel: threading.Event) -> Transcription:
        """Transcribe (or translate to English) the audio."""
