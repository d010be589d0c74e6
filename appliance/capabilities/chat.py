"""The chat/completion capability.

A :class:`ChatModel` is synchronous: the scheduler calls it from the model's own worker thread, so
an implementation never needs to care about the event loop. Generation is an iterator of
:class:`GenerationChunk`; the implementation must check ``cancel`` between tokens and stop promptly
when it is set.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelInfo:
    """What a client may learn about a model (``/v1/models``, ``/api/show``)."""

    name: str
    family: str = ""
    parameters: str = ""
    quantization: str = ""
    context_length: int = 0
    size_bytes: int = 0
    digest: str = ""
    owned_by: str = "appliance"
    capabilities: tuple[str, ...] = ("chat", "completion")
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SamplingOptions:
    max_tokens: int | None = None
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0
    n_ctx: int | None = None


@dataclass(frozen=True)
class ChatRequest:
    messages: list[dict[str, Any]]
    sampling: SamplingOptions = SamplingOptions()
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None


@dataclass(frozen=True)
class CompletionRequest:
    prompt: str
    sampling: SamplingOptions = SamplingOptions()
    suffix: str | None = None
    echo: bool = False
    response_format: dict[str, Any] | None = None


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_ms: float = 0.0
    decode_ms: float = 0.0
    load_ms: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class GenerationChunk:
    """A piece of output. The last chunk of a generation carries ``finish_reason`` and ``usage``."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    tool_calls: list[dict[str, Any]] | None = None
    logprobs: list[dict[str, Any]] | None = None


class LoadableModel(ABC):
    """What the scheduler needs of any model: a name, and loading on its worker thread."""

    info: ModelInfo

    @property
    def name(self) -> str:
        return self.info.name

    def load(self) -> None:  # noqa: B027 - optional override
        """Load weights. Called in the worker thread before the first request."""

    def unload(self) -> None:  # noqa: B027 - optional override
        """Free weights. Called in the worker thread after the keep-alive expires."""

    @property
    def loaded(self) -> bool:
        return True


class ChatModel(LoadableModel):
    """A model that chats and completes text. Subclasses are registered by plugins."""

    @property
    def backend(self) -> ChatModel:
        """The model whose worker thread runs this one (a preset runs on its base model's)."""
        return self

    @abstractmethod
    def chat(self, request: ChatRequest, cancel: threading.Event) -> Iterator[GenerationChunk]:
        """Generate a reply to ``request.messages``."""

    def complete(
        self, request: CompletionRequest, cancel: threading.Event
    ) -> Iterator[GenerationChunk]:
        """Continue ``request.prompt`` as raw text; models that cannot raise ``BadRequest``."""
        from appliance.errors import BadRequest

        raise BadRequest(f"model '{self.name}' does not support text completion")

    def count_tokens(self, text: str) -> int:
        """Approximate token count; engines override with their tokenizer."""
        return max(1, len(text) // 4)
