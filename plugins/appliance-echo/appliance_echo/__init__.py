"""An echo chat model and a hash embedder, for tests and for a box with no model yet."""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable, Iterator

from appliance import (
    ChatModel,
    ChatRequest,
    CompletionRequest,
    Embedder,
    EmbeddingResult,
    GenerationChunk,
    HardwareProfile,
    ModelInfo,
    Usage,
    hookimpl,
    message_text,
)


class EchoModel(ChatModel):
    info = ModelInfo(name="echo", family="echo", parameters="0", context_length=4096)

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def _words(
        self,
        text: str,
        prompt_tokens: int,
        max_tokens: int | None,
        stop: tuple[str, ...],
        cancel: threading.Event,
    ) -> Iterator[GenerationChunk]:
        for s in stop:
            if s in text:
                text = text[: text.index(s)]
        words = text.split()
        finish = "stop"
        produced = 0
        for i, word in enumerate(words):
            if cancel.is_set():
                finish = "cancelled"
                break
            if max_tokens is not None and produced >= max_tokens:
                finish = "length"
                break
            if self.delay_s:
                time.sleep(self.delay_s)
            yield GenerationChunk(text=word if i == 0 else " " + word)
            produced += 1
        yield GenerationChunk(
            finish_reason=finish,
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=produced),
        )

    def chat(self, request: ChatRequest, cancel: threading.Event) -> Iterator[GenerationChunk]:
        last_user = next(
            (m for m in reversed(request.messages) if m.get("role") == "user"), {"content": ""}
        )
        prompt_tokens = sum(
            self.count_tokens(message_text(m.get("content"))) for m in request.messages
        )
        return self._words(
            message_text(last_user.get("content")),
            prompt_tokens,
            request.sampling.max_tokens,
            request.sampling.stop,
            cancel,
        )

    def complete(
        self, request: CompletionRequest, cancel: threading.Event
    ) -> Iterator[GenerationChunk]:
        return self._words(
            request.prompt,
            self.count_tokens(request.prompt),
            request.sampling.max_tokens,
            request.sampling.stop,
            cancel,
        )


class HashEmbedder(Embedder):
    info = ModelInfo(
        name="echo-embed", family="echo", capabilities=("embedding",), details={"dimensions": 8}
    )

    def embed(self, texts: list[str]) -> EmbeddingResult:
        vectors = []
        for text in texts:
            digest = hashlib.sha256(text.encode()).digest()
            raw = [b / 255.0 - 0.5 for b in digest[:8]]
            norm = math.sqrt(sum(v * v for v in raw)) or 1.0
            vectors.append([v / norm for v in raw])
        return EmbeddingResult(vectors=vectors, prompt_tokens=sum(len(t.split()) for t in texts))


@hookimpl
def register_chat_models(register: Callable[[ChatModel], None], profile: HardwareProfile) -> None:
    register(EchoModel())


@hookimpl
def register_embedders(register: Callable[[Embedder], None], profile: HardwareProfile) -> None:
    register(HashEmbedder())
