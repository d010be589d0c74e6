"""The OpenAI-compatible API under /v1."""

from __future__ import annotations

import array
import base64
import contextlib
import secrets
import sys
import time
from typing import Any

from aiohttp import web

from appliance.capabilities import ChatRequest, CompletionRequest
from appliance.capabilities.chat import model_capabilities
from appliance.errors import BadRequest, NotFound
from appliance.generation import (
    ChatRun,
    has_images,
    refuse_images_unless_read,
    refuse_remote_images,
)
from appliance.http import sse
from appliance.http.context import add_context
from appliance.http.middleware import read_json, require
from appliance.http.openai_schema import ChatCompletionBody, CompletionBody, EmbeddingBody
from appliance.http.validation import parse_body
from appliance.keys import appliance_of

routes = web.RouteTableDef()


def _model_entry(name: str, owner: str, created: int, model: Any) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": created,
        "owned_by": owner,
        "capabilities": model_capabilities(model),
    }


def all_models(request: web.Request) -> list[dict[str, Any]]:
    appliance = appliance_of(request)
    created = int(appliance.started_at)
    reg = appliance.registry
    entries: list[dict[str, Any]] = []
    for group in (reg.chat, reg.embedders, reg.transcribers):
        for name in group.names():
            model = group.get(name)
            owner = getattr(model, "owned_by", None) or group.owner(name) or ""
            entries.append(_model_entry(name, owner, created, model))
    return entries


@routes.get("/v1/models")
async def list_models(request: web.Request) -> web.Response:
    require(request, "models.list")
    return web.json_response({"object": "list", "data": all_models(request)})


@routes.get("/v1/models/{model:.+}")
async def get_model(request: web.Request) -> web.Response:
    require(request, "models.list")
    wanted = request.match_info["model"]
    for entry in all_models(request):
        if entry["id"] == wanted:
            return web.json_response(entry)
    raise NotFound(f"model '{wanted}' not found", param="model", code="model_not_found")


def _logprobs_block(items: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    if not items:
        return None
    return {"content": items, "refusal": None}


def _usage(run: ChatRun) -> dict[str, Any]:
    return {
        "prompt_tokens": run.usage.prompt_tokens,
        "completion_tokens": run.usage.completion_tokens,
        "total_tokens": run.usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": run.usage.cached_tokens},
    }


@routes.post("/v1/chat/completions")
async def chat_completions(request: web.Request) -> web.StreamResponse:
    actor = require(request, "models.use")
    appliance = appliance_of(request)
    raw = await read_json(request)
    body = parse_body(ChatCompletionBody, raw)
    model = appliance.registry.chat.get(body.model)
    sent = [m.model_dump(exclude_none=True) for m in body.messages]
    refuse_images_unless_read(model, has_images(sent))
    refuse_remote_images(sent)
    messages, citations = await add_context(appliance, raw, sent)
    chat_request = ChatRequest(
        messages=messages,
        sampling=body.sampling(),
        response_format=body.response_format,
        tools=body.tools,
        tool_choice=body.tool_choice,
        parallel_tool_calls=body.parallel_tool_calls,
    )
    run = ChatRun(appliance, actor, model, chat_request, api="openai", client_messages=sent)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return await respond_chat(
        request, run, stream=body.stream, include_usage=include_usage, citations=citations
    )


async def respond_chat(
    request: web.Request,
    run: ChatRun,
    *,
    stream: bool,
    include_usage: bool = False,
    citations: list[dict[str, Any]] | None = None,
) -> web.StreamResponse:
    """Answer a chat in OpenAI's shape, streamed or whole, and record it in history."""
    citations = citations or []
    if citations:
        run.meta["citations"] = citations
    completion_id = "chatcmpl-" + secrets.token_hex(12)
    created = int(time.time())
    if stream:
        return await _stream_chat(request, run, completion_id, created, include_usage, citations)
    await run.collect()
    conversation_id = await run.record()
    message: dict[str, Any] = {
        "role": "assistant",
        "content": run.text,
        "refusal": None,
        "annotations": [],
    }
    finish = run.finish_reason or "stop"
    if run.tool_calls:
        message["tool_calls"] = run.tool_calls
        message["content"] = run.text or None
        finish = "tool_calls"
    result: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": run.model.name,
        "system_fingerprint": f"appliance-{run.appliance.version}",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": _logprobs_block(run.logprobs),
                "finish_reason": finish,
            }
        ],
        "usage": _usage(run),
    }
    if citations:
        result["citations"] = citations
    response = web.json_response(result)
    response.headers["X-Conversation-Id"] = conversation_id
    return response


async def _stream_chat(
    request: web.Request,
    run: ChatRun,
    completion_id: str,
    created: int,
    include_usage: bool,
    citations: list[dict[str, Any]],
) -> web.StreamResponse:
    response = await run.begin(lambda: sse.open_stream(request))
    base: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": run.model.name,
        "system_fingerprint": f"appliance-{run.appliance.version}",
    }
    if include_usage:
        base["usage"] = None

    def chunk(delta: dict[str, Any], finish: str | None = None, logprobs: Any = None) -> Any:
        choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        return {**base, "choices": [choice]}

    async def produce() -> None:
        first = chunk({"role": "assistant", "content": ""})
        if citations:
            first["citations"] = citations
        await sse.send_event(response, first)
        tool_index = 0
        async with contextlib.aclosing(run.stream()) as pieces:
            async for piece in pieces:
                if piece.text:
                    await sse.send_event(
                        response,
                        chunk({"content": piece.text}, logprobs=_logprobs_block(piece.logprobs)),
                    )
                for call in piece.tool_calls or []:
                    await sse.send_event(
                        response, chunk({"tool_calls": [{"index": tool_index, **call}]})
                    )
                    tool_index += 1
        finish = "tool_calls" if run.tool_calls else (run.finish_reason or "stop")
        await sse.send_event(response, chunk({}, finish))
        if include_usage:
            await sse.send_event(response, {**base, "choices": [], "usage": _usage(run)})
        await run.record()
        await sse.send_done(response)

    await run.guard(produce, lambda exc: sse.send_event(response, {"error": exc.as_dict()}))
    return response


@routes.post("/v1/completions")
async def completions(request: web.Request) -> web.StreamResponse:
    actor = require(request, "models.use")
    appliance = appliance_of(request)
    body = parse_body(CompletionBody, await read_json(request))
    model = appliance.registry.chat.get(body.model)
    completion_request = CompletionRequest(
        prompt=body.prompt_text(), sampling=body.sampling(), suffix=body.suffix, echo=body.echo
    )
    run = ChatRun(appliance, actor, model, completion_request, api="openai")
    completion_id = "cmpl-" + secrets.token_hex(12)
    base = {
        "id": completion_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model.name,
    }

    def choice(text: str, finish: str | None) -> dict[str, Any]:
        return {
            **base,
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
        }

    if not body.stream:
        await run.collect()
        await run.record()
        text = (body.prompt_text() + run.text) if body.echo else run.text
        return web.json_response(
            {**choice(text, run.finish_reason or "stop"), "usage": _usage(run)}
        )
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    response = await run.begin(lambda: sse.open_stream(request))

    async def produce() -> None:
        if body.echo:
            await sse.send_event(response, choice(body.prompt_text(), None))
        async with contextlib.aclosing(run.stream()) as pieces:
            async for piece in pieces:
                if piece.text:
                    await sse.send_event(response, choice(piece.text, None))
        await sse.send_event(response, choice("", run.finish_reason or "stop"))
        if include_usage:
            await sse.send_event(response, {**base, "choices": [], "usage": _usage(run)})
        await run.record()
        await sse.send_done(response)

    await run.guard(produce, lambda exc: sse.send_event(response, {"error": exc.as_dict()}))
    return response


def _base64_floats(vector: list[float]) -> str:
    values = array.array("f", vector)
    if sys.byteorder != "little":
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode()


@routes.post("/v1/embeddings")
async def embeddings(request: web.Request) -> web.Response:
    actor = require(request, "models.use")
    appliance = appliance_of(request)
    body = parse_body(EmbeddingBody, await read_json(request))
    try:
        texts = body.texts()
    except ValueError as exc:
        raise BadRequest(str(exc), param="input") from None
    if not texts or any(not t for t in texts):
        raise BadRequest("'input' must be non-empty text", param="input")
    embedder = appliance.registry.embedders.get(body.model)
    result = await appliance.embed_for(actor, embedder, texts)
    data = []
    for index, vector in enumerate(result.vectors):
        if body.dimensions is not None:
            vector = vector[: body.dimensions]
        encoded: Any = _base64_floats(vector) if body.encoding_format == "base64" else vector
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    usage = {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}
    return web.json_response(
        {"object": "list", "data": data, "model": embedder.name, "usage": usage}
    )
