"""Transcription on whisper.cpp for every Whisper model in the store."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from appliance import (
    Appliance,
    BadRequest,
    HardwareProfile,
    ModelInfo,
    Segment,
    Transcriber,
    Transcription,
    TranscriptionRequest,
    hookimpl,
)

RATE = 16000
_SENTENCE_END = re.compile(r"[.?!]$")


class WhisperTranscriber(Transcriber):
    def __init__(
        self, info: ModelInfo, path_for_load: Callable[[], Path], n_threads: int, english_only: bool
    ) -> None:
        self.info = info
        self._path_for_load = path_for_load
        self.n_threads = n_threads
        self.english_only = english_only
        self.model: Any = None

    @property
    def loaded(self) -> bool:
        return self.model is not None

    def load(self) -> None:
        from pywhispercpp.model import Model

        self.model = Model(
            str(self._path_for_load()),
            n_threads=self.n_threads,
            print_realtime=False,
            print_progress=False,
            print_timestamps=False,
        )

    def unload(self) -> None:
        self.model = None

    def transcribe(self, request: TranscriptionRequest, cancel: threading.Event) -> Transcription:
        audio = np.frombuffer(request.audio, dtype=np.float32)
        if request.translate and self.english_only:
            raise BadRequest(
                f"{self.name} is English-only; translation needs a multilingual "
                "Whisper (e.g. whisper:base)",
                param="model",
            )
        language = request.language or ("en" if self.english_only else "auto")
        params: dict[str, Any] = {
            "language": language,
            "translate": request.translate,
            "temperature": request.temperature,
            "initial_prompt": request.prompt or "",
        }
        if request.word_timestamps:
            params.update(token_timestamps=True, max_len=1, split_on_word=True)
        duration = max(len(audio) / RATE, 1e-6)
        on_progress = request.on_progress

        def segment_done(segment: Any) -> None:
            if on_progress is not None:
                on_progress(segment.t1 / 100.0 / duration)

        raw = self.model.transcribe(
            audio, abort_callback=cancel.is_set, new_segment_callback=segment_done, **params
        )
        pieces = [(s.t0 / 100.0, s.t1 / 100.0, s.text) for s in raw]
        if request.word_timestamps:
            segments = self._sentences(pieces)
        else:
            segments = [Segment(start, end, text) for start, end, text in pieces]
        text = " ".join(s.text.strip() for s in segments).strip()
        return Transcription(
            text=text,
            language=language if language != "auto" else "",
            duration=len(audio) / RATE,
            segments=segments,
        )

    @staticmethod
    def _sentences(words: list[tuple[float, float, str]]) -> list[Segment]:
        """Group word-level pieces into sentence segments that carry their words."""
        segments: list[Segment] = []
        current: list[tuple[float, float, str]] = []
        for word in words:
            if not word[2].strip():
                continue
            current.append(word)
            if _SENTENCE_END.search(word[2].strip()):
                segments.append(_segment(current))
                current = []
        if current:
            segments.append(_segment(current))
        return segments


def _segment(words: list[tuple[float, float, str]]) -> Segment:
    return Segment(
        start=words[0][0],
        end=words[-1][1],
        text=" ".join(w[2].strip() for w in words),
        words=[{"word": w[2].strip(), "start": w[0], "end": w[1]} for w in words],
    )


@hookimpl
def register_transcribers(
    register: Callable[[Transcriber], None], profile: HardwareProfile, appliance: Appliance
) -> None:
    for stored in appliance.store.installed():
        model = stored.model
        if model.kind != "transcribe":
            continue
        info = ModelInfo(
            name=model.id,
            family="whisper",
            parameters=model.parameters,
            quantization=stored.quant.name,
            size_bytes=stored.quant.size,
            digest=stored.sha256,
            owned_by="appliance-whisper",
            capabilities=("transcription",),
            details={"license": model.license, "file": str(stored.path)},
        )
        register(
            WhisperTranscriber(
                info,
                lambda s=stored: appliance.store.verified_path(s.model, s.quant),
                appliance.settings.n_threads,
                english_only=model.id.endswith(".en"),
            )
        )
