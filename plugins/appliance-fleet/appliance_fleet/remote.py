"""Models served by a peer, driven on the event loop (chat) or the worker thread (embeddings):
the asking box's whole pipeline (both API shapes, limits, history) stays its own; only the
generation happens on the peer, streamed through as it arrives."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import aiohttp
import numpy as np
import soundfile

from appliance import (
    ApplianceError,
    AsyncChatModel,
    ChatRequest,
    Embedder,
    EmbeddingResult,
    GenerationChunk,
    GenerationRequest,
    ModelInfo,
    Overloaded,
    Segment,
    Transcriber,
    Transcription,
    TranscriptionRequest,
    Usage,
)
from appliance_fleet.auth import HEADER, sign

if TYPE_CHECKING:
    from appliance_fleet.peers import Fleet, Peer

CONNECT_S, READ_S = 5.0, 30.0


def _body(request: GenerationRequest, name: str) -> tuple[str, dict[str, Any]]:
    sampling = {k: v for k, v in asdict(request.sampling).items() if v not in (None, (), 0, False)}
    body: dict[str, Any] = {
        "model": name,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": request.sampling.temperature,
        "top_p": request.sampling.top_p,
        "top_k": request.sampling.top_k,
        "min_p": request.sampling.min_p,
        "repeat_penalty": request.sampling.repeat_penalty,
    }
    for key in ("max_tokens", "seed", "presence_penalty", "frequency_penalty"):
        if key in sampling:
            body[key] = sampling[key]
    if request.sampling.logit_bias:
        body["logit_bias"] = {str(t): b for t, b in request.sampling.logit_bias}
    if request.sampling.stop:
        body["stop"] = list(request.sampling.stop)
    if isinstance(request, ChatRequest):
        body["messages"] = request.messages
        for key in ("response_format", "tools", "tool_choice"):
            if getattr(request, key) is not None:
                body[key] = getattr(request, key)
        return "/v1/chat/completions", body
    body["prompt"] = request.prompt
    return "/v1/completions", body


def peer_error(status: int, text: str, peer: Peer) -> ApplianceError:
    try:
        message = json.loads(text)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = text[:300] or f"status {status}"
    if status >= 500:
        return Overloaded(f"the peer {peer.name} could not answer: {message}", retry_after=5)
    return ApplianceError(message, status=status)


class PeerChatModel(AsyncChatModel):
    calls_tools = True

    def __init__(self, name: str, fleet: Fleet) -> None:
        self.info = ModelInfo(name=name, family="peer", parameters="", context_length=0)
        self.fleet = fleet

    @property
    def owned_by(self) -> str:
        return ",".join(p.name for p in self.fleet.serving(self.name)) or "fleet"

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        peer = self.fleet.pick(self.name)
        path, body = _body(request, self.name)
        headers = {HEADER: sign(self.fleet.key, self.fleet.box_id, "POST", path)}
        timeout = aiohttp.ClientTimeout(sock_connect=CONNECT_S, sock_read=READ_S)
        finish, usage = None, None
        try:
            async with self.fleet.session.post(
                peer.url + path, json=body, headers=headers, timeout=timeout, ssl=peer.ssl
            ) as response:
                if response.status >= 400:
                    raise peer_error(response.status, await response.text(), peer)
                async for line in response.content:
                    if not line.startswith(b"data: {"):
                        continue
                    data = json.loads(line[6:])
                    if "error" in data:
                        raise ApplianceError(str(data["error"].get("message", data["error"])))
                    if data.get("usage"):
                        u = data["usage"]
                        usage = Usage(u.get("prompt_tokens", 0), u.get("completion_tokens", 0))
                    for choice in data.get("choices") or []:
                        delta = choice.get("delta") or {}
                        text = delta.get("content") if "delta" in choice else choice.get("text")
                        calls = [
                            {k: v for k, v in c.items() if k != "index"}
                            for c in delta.get("tool_calls") or []
                        ]
                        if text or calls:
                            yield GenerationChunk(text=text or "", tool_calls=calls or None)
                        finish = choice.get("finish_reason") or finish
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.fleet.failed(peer)
            raise Overloaded(
                f"the peer {peer.name} serving {self.name} did not answer ({type(exc).__name__})",
                retry_after=5,
            ) from None
        peer.note_answer()
        yield GenerationChunk(finish_reason=finish or "stop", usage=usage or Usage())


def post_to_peer(
    fleet: Fleet, model: str, path: str, body: bytes, content_type: str, timeout: float = READ_S
) -> dict[str, Any]:
    """One signed request to the least-loaded peer serving ``model`` (from a worker thread,
    through the fleet's session on the event loop, so the peer's certificate stays pinned): its
    JSON answer, its 4xx as ours, 503 when it does not answer."""
    peer = fleet.pick(model)
    call = _post(fleet, peer, path, body, content_type, aiohttp.ClientTimeout(timeout, CONNECT_S))
    return asyncio.run_coroutine_threadsafe(call, fleet.loop).result(timeout + CONNECT_S)


async def _post(
    fleet: Fleet, peer: Peer, path: str, body: bytes, content_type: str, limits: Any
) -> dict[str, Any]:
    headers = {"Content-Type": content_type, HEADER: sign(fleet.key, fleet.box_id, "POST", path)}
    try:
        async with fleet.session.post(
            peer.url + path, data=body, headers=headers, timeout=limits, ssl=peer.ssl
        ) as response:
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        fleet.failed(peer)
        raise Overloaded(
            f"the peer {peer.name} did not answer ({type(exc).__name__})", retry_after=5
        ) from None
    if response.status >= 400:
        raise peer_error(response.status, text, peer)
    peer.note_answer()
    return dict(json.loads(text))


class PeerEmbedder(Embedder):
    coalesce = False

    def __init__(self, name: str, fleet: Fleet) -> None:
        self.info = ModelInfo(
            name=name, family="peer", parameters="", context_length=0, capabilities=("embedding",)
        )
        self.fleet = fleet

    def embed(self, texts: list[str]) -> EmbeddingResult:
        body = json.dumps({"model": self.name, "input": texts}).encode()
        data = post_to_peer(self.fleet, self.name, "/v1/embeddings", body, "application/json")
        vectors = [item["embedding"] for item in sorted(data["data"], key=lambda d: d["index"])]
        return EmbeddingResult(vectors=vectors, prompt_tokens=data["usage"]["prompt_tokens"])


def _multipart(fields: dict[str, str], audio: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="audio.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n".encode()
        + audio
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class PeerTranscriber(Transcriber):
    """Whisper on a peer: the samples travel as a 16 kHz WAV; segments come back."""

    def __init__(self, name: str, fleet: Fleet) -> None:
        self.info = ModelInfo(
            name=name,
            family="peer",
            parameters="",
            context_length=0,
            capabilities=("transcription",),
        )
        self.fleet = fleet

    def transcribe(self, request: TranscriptionRequest, cancel: threading.Event) -> Transcription:
        wav = io.BytesIO()
        soundfile.write(wav, np.frombuffer(request.audio, dtype=np.float32), 16000, format="WAV")
        path = "/v1/audio/translations" if request.translate else "/v1/audio/transcriptions"
        fields = {"model": self.name, "response_format": "verbose_json"}
        if request.language:
            fields["language"] = request.language
        if request.prompt:
            fields["prompt"] = request.prompt
        body, content_type = _multipart(fields, wav.getvalue())
        data = post_to_peer(self.fleet, self.name, path, body, content_type, timeout=600)
        segments = [Segment(s["start"], s["end"], s["text"]) for s in data.get("segments", [])]
        return Transcription(data["text"], data.get("language", ""), data["duration"], segments)
