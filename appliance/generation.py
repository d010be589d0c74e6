"""One path for generation from every caller: admit through the scheduler, accumulate, record.

Both HTTP APIs, stateful conversations and RAG answers drive a :class:`ChatRun`. ``start()``
admits the request (raising its 4xx or the 503 before any response is sent); ``stream()`` yields
the chunks as the scheduler delivers them; ``record()`` keeps the exchange in history.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from appliance.auth import Actor
from appliance.capabilities import ChatModel, ChatRequest, CompletionRequest, GenerationChunk, Usage
from appliance.core import Appliance
from appliance.errors import ApplianceError, BadRequest
from appliance.history.conversations import Exchange, record_exchange
from appliance.scheduler import Ticket

log = logging.getLogger(__name__)
T = TypeVar("T")
DISCONNECTS = (ConnectionResetError, ConnectionError)


def has_images(messages: list[dict[str, Any]]) -> bool:
    """Whether any message carries an image (OpenAI ``image_url`` parts, Ollama ``images``)."""
    for message in messages:
        if message.get("images"):
            return True
        content = message.get("content")
        if isinstance(content, list) and any(
            isinstance(part, dict) and part.get("type") in ("image_url", "input_image")
            for part in content
        ):
            return True
    return False


def refuse_remote_images(messages: list[dict[str, Any]]) -> None:
    """Images come inside the request (data URLs): the box is offline and fetches nothing."""
    for message in messages:
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            if not isinstance(part, dict) or part.get("type") != "image_url":
                continue
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if not isinstance(url, str) or not url.startswith("data:image/"):
                raise BadRequest(
                    "images must be sent as data URLs (data:image/png;base64,...): this box is "
                    "offline and fetches nothing from the internet",
                    param="messages",
                    code="image_url_not_allowed",
                )


def ollama_image_parts(text: str, images: list[str]) -> list[dict[str, Any]]:
    """Ollama's ``images`` (base64) as OpenAI content parts, which multimodal models read."""
    parts: list[dict[str, Any]] = [
        {"type": "image_url", "image_url": {"url": f"data:{_image_type(b64)};base64,{b64}"}}
        for b64 in images
    ]
    return [*parts, {"type": "text", "text": text}]


def _image_type(b64: str) -> str:
    head = b64[:16]
    if head.startswith("/9j/"):
        return "image/jpeg"
    if head.startswith("R0lGOD"):
        return "image/gif"
    if head.startswith("UklGR"):
        return "image/webp"
    return "image/png"


def refuse_images_unless_read(model: ChatModel, images: bool, param: str = "messages") -> None:
    """The same clear 400 on both APIs when a text-only model is sent images (never dropping
    them silently, which lets the model invent what it did not see)."""
    if images and "vision" not in model.info.capabilities:
        raise BadRequest(
            f"model '{model.name}' reads text only and cannot take images; choose a model "
            "that reads images",
            param=param,
            code="images_not_supported",
        )


@dataclass
class ChatRun:
    appliance: Appliance
    actor: Actor
    model: ChatModel
    request: ChatRequest | CompletionRequest
    api: str
    keep_alive: float | None = None
    conversation_id: str | None = None
    stored_before: int | None = None
    client_messages: list[dict[str, Any]] | None = None
    """What the client sent, before retrieved context was added: this is what history keeps,
    so a follow-up (which never carries that context) joins the same conversation."""
    meta: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    first_token_ms: float | None = None
    load_ms: float = 0.0
    queued_ms: float = 0.0
    ticket: Ticket | None = None

    async def start(self) -> None:
        """Admit the request; a refusal (4xx, or 503 when the line is full) raises here."""
        if self.ticket is None:
            await self.appliance.check_limits(self.actor, self.model.name)
            self.ticket = await self.appliance.scheduler.generate(
                self.model, self.request, caller=self.actor.id, keep_alive=self.keep_alive
            )

    async def begin(self, open_response: Callable[[], Awaitable[T]]) -> T:
        """Admit the request, then open the response (so refusals come before the 200)."""
        await self.start()
        try:
            return await open_response()
        except BaseException:
            self.cancel()
            raise

    def cancel(self) -> None:
        if self.ticket is not None:
            self.ticket.cancel()

    async def stream(self) -> AsyncGenerator[GenerationChunk, None]:
        await self.start()
        assert self.ticket is not None
        ticket = self.ticket
        parts: list[str] = []
        try:
            async for chunk in ticket:
                self.load_ms, self.queued_ms = ticket.load_ms, ticket.queued_ms
                if chunk.text:
                    if self.first_token_ms is None:
                        self.first_token_ms = (time.monotonic() - self.started) * 1000
                    parts.append(chunk.text)
                if chunk.tool_calls:
                    self.tool_calls.extend(chunk.tool_calls)
                if chunk.logprobs:
                    self.logprobs.extend(chunk.logprobs)
                if chunk.usage is not None:
                    self.usage = chunk.usage
                if chunk.finish_reason is not None:
                    self.finish_reason = chunk.finish_reason
                yield chunk
        finally:
            ticket.cancel()
            self.text = "".join(parts)
            self.appliance.metrics.generated(
                self.model.name, self.usage.completion_tokens, self.usage.decode_ms
            )
            spent = self.usage.prompt_tokens + self.usage.completion_tokens
            if spent:
                await self.appliance.spend(self.actor, spent)

    async def guard(
        self,
        produce: Callable[[], Awaitable[None]],
        write_error: Callable[[ApplianceError], Awaitable[None]],
    ) -> None:
        """Run a streaming response. A client that leaves gets its turn recorded as cancelled;
        a failure after the stream began becomes an error event in the API's own shape."""
        try:
            await produce()
        except DISCONNECTS:
            self.finish_reason = "cancelled"
            await self.record()
        except Exception as exc:
            if not isinstance(exc, ApplianceError):
                log.exception("model %s failed mid-stream", self.model.name)
                exc = ApplianceError(f"the model {self.model.name} failed while answering")
            with contextlib.suppress(*DISCONNECTS):
                await write_error(exc)

    async def collect(self) -> None:
        async for _ in self.stream():
            pass

    @property
    def total_ms(self) -> float:
        return (time.monotonic() - self.started) * 1000

    async def record(self) -> str:
        """Store the exchange in history; return the conversation id."""
        if self.client_messages is not None:
            messages = list(self.client_messages)
        elif isinstance(self.request, ChatRequest):
            messages = list(self.request.messages)
        else:
            messages = [{"role": "user", "content": self.request.prompt}]
        reply: dict[str, Any] = {"role": "assistant", "content": self.text}
        meta = dict(self.meta)
        if self.tool_calls:
            meta["tool_calls"] = self.tool_calls
        if self.finish_reason:
            meta["finish_reason"] = self.finish_reason
        if self.first_token_ms is not None:
            meta["first_token_ms"] = round(self.first_token_ms, 1)
        if self.load_ms:
            meta["load_ms"] = round(self.load_ms, 1)
        exchange = Exchange(
            owner=self.actor.id,
            model=self.model.name,
            api=self.api,
            messages=messages,
            reply=reply,
            prompt_tokens=self.usage.prompt_tokens,
            completion_tokens=self.usage.completion_tokens,
            prompt_ms=self.usage.prompt_ms,
            decode_ms=self.usage.decode_ms,
            total_ms=self.total_ms,
            meta=meta,
            conversation_id=self.conversation_id,
            stored_before=self.stored_before,
        )
        self.conversation_id = await self.appliance.db.write(
            lambda db: record_exchange(db, exchange)
        )
        return self.conversation_id
