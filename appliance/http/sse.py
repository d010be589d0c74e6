"""The two stream encodings, written once: server-sent events as OpenAI streams them
(``data: {json}\\n\\n`` ... ``data: [DONE]``) and Ollama's NDJSON (one object per line). Every
stream carries the request's ``X-Request-Id``."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from appliance.keys import request_id_of


async def open_stream(
    request: web.Request, content_type: str = "text/event-stream"
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": content_type,
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    response.headers["X-Request-Id"] = request_id_of(request)
    await response.prepare(request)
    return response


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


async def send_event(response: web.StreamResponse, obj: Any) -> None:
    await response.write(b"data: " + dumps(obj) + b"\n\n")


async def send_named_event(response: web.StreamResponse, name: str, obj: Any) -> None:
    """An event with its name (the Responses API's ``event: response.output_text.delta``)."""
    await response.write(b"event: " + name.encode() + b"\ndata: " + dumps(obj) + b"\n\n")


async def send_done(response: web.StreamResponse) -> None:
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()


async def send_line(response: web.StreamResponse, obj: Any) -> None:
    """One NDJSON line (Ollama's streams)."""
    await response.write(dumps(obj) + b"\n")
