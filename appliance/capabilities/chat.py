"""The chat/completion capability.

A model declares how the scheduler drives it (``driving``):

- ``"serial"`` (:class:`ChatModel`): one request at a time on the model's own worker thread.
  Generation is an iterator of :class:`GenerationChunk`; the implementation checks ``cancel``
  between tokens and stops promptly when it is set.
- ``"batched"`` (:class:`BatchedChatModel`): the scheduler admits, steps and retires sequences;
  each :meth:`~BatchedChatModel.step` is one engine call over every active sequence.
- ``"async"`` (:class:`AsyncChatModel`): runs on the event loop (a model served by a peer box).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from appliance.errors import BadRequest, Overloaded

Driving = Literal["serial", "batched", "async"]


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
    logit_bias: tuple[tuple[int, float], ...] = ()
    """(token id, bias) pairs added to the logits; -100 bans a token, 100 forces it."""


@dataclass(frozen=True)
class ChatRequest:
    messages: list[dict[str, Any]]
    sampling: SamplingOptions = SamplingOptions()
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool = True


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
    cached_tokens: int = 0
    """Prompt tokens found in the model's cache, not read again (OpenAI's ``cached_tokens``)."""
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

    @property
    def devices(self) -> tuple[str, ...]:
        """Where the loaded model runs (``cpu``, ``cuda0``, ``rpc:HOST:PORT``); () if unknown."""
        return ()


GenerationRequest = ChatRequest | CompletionRequest


class ChatModel(LoadableModel):
    """A model that chats and completes text. Subclasses are registered by plugins."""

    driving: ClassVar[Driving] = "serial"
    calls_tools: ClassVar[bool] = False
    """Whether the model answers requests with ``tools`` (by its template or by a grammar)."""

    @property
    def backend(self) -> ChatModel:
        """The model whose worker runs this one (a preset runs on its base model's)."""
        return self

    def route(self, request: GenerationRequest) -> tuple[ChatModel, GenerationRequest]:
        """The model that really generates, and the request it gets (a preset adds its system
        prompt and options here, then runs on its base model's slots)."""
        return self, request

    @abstractmethod
    def chat(self, request: ChatRequest, cancel: threading.Event) -> Iterator[GenerationChunk]:
        """Generate a reply to ``request.messages``."""

    def complete(
        self, request: CompletionRequest, cancel: threading.Event
    ) -> Iterator[GenerationChunk]:
        """Continue ``request.prompt`` as raw text; models that cannot raise ``BadRequest``."""
        raise BadRequest(f"model '{self.name}' does not support text completion")

    def count_tokens(self, text: str) -> int:
        """Approximate token count; engines override with their tokenizer."""
        return max(1, len(text) // 4)


class BatchedChatModel(ChatModel):
    """A model the scheduler drives step by step, many sequences in one engine call.

    All methods run on the model's own worker thread, except ``prepare`` where
    ``prepares_while_stepping`` says so, and ``interrupt``. A *sequence* is whatever object the
    engine uses for one request; the scheduler only holds on to it.
    """

    driving: ClassVar[Driving] = "batched"
    prepares_while_stepping: ClassVar[bool] = False
    """True when ``prepare`` may run on another thread while the loaded model steps (it only
    reads what loading set up): the scheduler then prepares new requests beside the running
    step, so nobody's next token waits for a template, and the model is not unloaded meanwhile."""

    def interrupt(self, sequence: Any) -> bool:
        """``sequence`` was just prepared and could take a free slot, but a step is running.
        Called from another thread: end that step early where this serves the newcomer (the
        interrupted step produces nothing and loses nothing; its sequences carry on in the next
        one). Return whether the step was interrupted. By default steps run to their end."""
        return False

    @property
    @abstractmethod
    def slots(self) -> int:
        """How many sequences may decode at once."""

    @abstractmethod
    def prepare(self, request: GenerationRequest) -> Any:
        """Validate and tokenize; return a new sequence. Raise ``BadRequest`` to refuse it
        (this happens before any response starts)."""

    @abstractmethod
    def admit(self, sequence: Any) -> bool:
        """Give the sequence a free slot (reusing the longest cached prefix); False: wait."""

    @abstractmethod
    def step(self, sequences: Sequence[Any]) -> list[tuple[Any, GenerationChunk | Exception]]:
        """One engine call over every admitted sequence; return what each produced. A chunk
        with ``finish_reason`` ends its sequence; so does an exception (its error, in-stream)."""

    @abstractmethod
    def release(self, sequence: Any, cancelled: bool) -> None:
        """Free the sequence's slot (and, when cancelled, its cached cells)."""

    def chat(self, request: ChatRequest, cancel: threading.Event) -> Iterator[GenerationChunk]:
        """Drive one sequence alone (without a scheduler)."""
        return self._alone(request, cancel)

    def complete(
        self, request: CompletionRequest, cancel: threading.Event
    ) -> Iterator[GenerationChunk]:
        return self._alone(request, cancel)

    def _alone(
        self, request: GenerationRequest, cancel: threading.Event
    ) -> Iterator[GenerationChunk]:
        if not self.loaded:
            self.load()
        sequence = self.prepare(request)
        if not self.admit(sequence):
            raise Overloaded(f"model '{self.name}' has no free slot")
        finished = False
        try:
            while not finished and not cancel.is_set():
                for _, chunk in self.step([sequence]):
                    if isinstance(chunk, Exception):
                        raise chunk
                    finished = finished or chunk.finish_reason is not None
                    yield chunk
        finally:
            self.release(sequence, cancelled=not finished)


class AsyncChatModel(ChatModel):
    """A model that generates on the event loop (for example one served by a peer box)."""

    driving: ClassVar[Driving] = "async"

    @abstractmethod
    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """Yield the reply; raise ``ApplianceError`` subclasses for clear failures."""

    def chat(self, request: ChatRequest, cancel: threading.Event) -> Iterator[GenerationChunk]:
        raise BadRequest(f"model '{self.name}' runs on the event loop; use the scheduler")


def model_capabilities(model: LoadableModel) -> list[str]:
    """What a model is for, in Ollama's words (``/api/show``, ``/api/tags``, ``/v1/models``), so
    a chat front end does not offer an embedder or Whisper as a chat model."""
    found = model.info.capabilities
    out: list[str] = []
    if "chat" in found or "completion" in found:
        out.append("completion")
        if getattr(model.backend if isinstance(model, ChatModel) else model, "calls_tools", False):
            out.append("tools")
    out += [c for c in found if c not in ("chat", "completion")]
    return out
