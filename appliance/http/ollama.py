"""The Ollama-compatible API under /api, on the same models, scheduler and history as /v1."""

from __future__ import annotations

import contextlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from appliance.capabilities import ChatRequest, CompletionRequest, ModelInfo
from appliance.capabilities.chat import model_capabilities
from appliance.errors import BadRequest, NotFound
from appliance.generation import ChatRun, ollama_image_parts, refuse_images_unless_read
from appliance.http import sse
from appliance.http.context import add_context
from appliance.http.middleware import read_json, require
from appliance.http.ollama_schema import (
    ChatBody,
    EmbedBody,
    GenerateBody,
    LegacyEmbeddingsBody,
    ShowBody,
    keep_alive_seconds,
    response_format,
)
from appliance.http.validation import parse_body
from appliance.keys import appliance_of

routes = web.RouteTableDef()
OLLAMA_COMPATIBLE_VERSION = "0.12.0"
NS = 1_000_000
FAR_FUTURE = 253402300799.0  # 9999-12-31: what "kept loaded forever" shows as


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def tagged(name: str) -> str:
    return name if ":" in name else f"{name}:latest"


@routes.get("/api/version")
async def version(request: web.Request) -> web.Response:
    return web.json_response(
        {"version": OLLAMA_COMPATIBLE_VERSION, "appliance": appliance_of(request).version}
    )


def _details(info: ModelInfo) -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": info.family,
        "families": [info.family] if info.family else [],
        "parameter_size": info.parameters,
        "quantization_level": info.quantization,
    }


def _all_infos(request: web.Request) -> list[tuple[ModelInfo, Any]]:
    reg = appliance_of(request).registry
    out: list[tuple[ModelInfo, Any]] = [(m.info, m) for m in reg.chat.values()]
    out += [(e.info, e) for e in reg.embedders.values()]
    return out


def _modified(info: ModelInfo, fallback: float) -> str:
    file = info.details.get("file")
    if file and Path(file).exists():
        return _iso(Path(file).stat().st_mtime)
    return _iso(fallback)


@routes.get("/api/tags")
async def tags(request: web.Request) -> web.Response:
    require(request, "models.list")
    started = appliance_of(request).started_at
    models = [
        {
            "name": tagged(info.name),
            "model": tagged(info.name),
            "modified_at": _modified(info, started),
            "size": info.size_bytes,
            "digest": info.digest,
            "details": _details(info),
            "capabilities": model_capabilities(model),
        }
        for info, model in _all_infos(request)
    ]
    return web.json_response({"models": models})


@routes.get("/api/ps")
async def ps(request: web.Request) -> web.Response:
    require(request, "models.list")
    appliance = appliance_of(request)
    infos = {info.name: info for info, _ in _all_infos(request)}
    models = []
    for loaded in appliance.scheduler.loaded():
        info = infos.get(loaded.name)
        if info is None:
            continue
        models.append(
            {
                "name": tagged(info.name),
                "model": tagged(info.name),
                "size": info.size_bytes,
                "digest": info.digest,
                "details": _details(info),
                "expires_at": _iso(min(loaded.expires_at, FAR_FUTURE)),
                "size_vram": 0,
                "context_length": info.context_length,
                "slots": loaded.slots,
                "slots_busy": loaded.slots_busy,
                "queued": loaded.queued,
                "devices": list(loaded.devices),
            }
        )
    return web.json_response({"models": models})


@routes.post("/api/show")
async def show(request: web.Request) -> web.Response:
    require(request, "models.list")
    body = parse_body(ShowBody, await read_json(request))
    reg = appliance_of(request).registry
    model: Any = reg.chat.find(body.model) or reg.embedders.find(body.model)
    if model is None:
        raise NotFound(f"model '{body.model}' not found")
    info: ModelInfo = model.info
    arch = info.family or "unknown"
    return web.json_response(
        {
            "license": str(info.details.get("license", "")),
            "modelfile": f"FROM {info.name}\n",
            "parameters": "",
            "template": getattr(model, "template", ""),
            "details": _details(info),
            "model_info": {
                "general.architecture": arch,
                "general.parameter_count": info.parameters,
                f"{arch}.context_length": info.context_length,
                f"{arch}.block_count": info.details.get("layers", 0),
                f"{arch}.embedding_length": info.details.get("dimensions", 0),
            },
            "capabilities": model_capabilities(model),
            "modified_at": _modified(info, appliance_of(request).started_at),
        }
    )


def _stats(run: ChatRun) -> dict[str, Any]:
    usage = run.usage
    return {
        "total_duration": int(run.total_ms * NS),
        "load_duration": int(run.load_ms * NS),
        "prompt_eval_count": usage.prompt_tokens,
        "prompt_eval_duration": int(usage.prompt_ms * NS),
        "eval_count": usage.completion_tokens,
        "eval_duration": int(usage.decode_ms * NS),
    }


async def _load_only(
    request: web.Request, model: Any, keep_alive: float | None, kind: str, name: str
) -> web.Response:
    """An empty prompt loads the model (or unloads it with keep_alive 0)."""
    appliance = appliance_of(request)
    base: dict[str, Any] = {"model": name, "created_at": _now(), "done": True}
    if keep_alive == 0:
        appliance.scheduler.unload(model.backend.name)
        reason = "unload"
    else:
        await appliance.scheduler.load(model.backend, keep_alive)
        reason = "load"
    if kind == "chat":
        base["message"] = {"role": "assistant", "content": ""}
    else:
        base["response"] = ""
    return web.json_response({**base, "done_reason": reason})


async def _answer(
    request: web.Request, run: ChatRun, name: str, stream: bool, field: str
) -> web.StreamResponse:
    """Stream NDJSON or answer once; ``field`` is "message" (chat) or "response" (generate)."""

    def piece(text: str) -> dict[str, Any]:
        value: Any = {"role": "assistant", "content": text} if field == "message" else text
        return {"model": name, "created_at": _now(), field: value, "done": False}

    def final(text: str) -> dict[str, Any]:
        last = piece(text)
        if run.tool_calls and field == "message":
            last["message"]["tool_calls"] = [
                {
                    "function": {
                        "name": c["function"]["name"],
                        "arguments": json.loads(c["function"]["arguments"] or "{}"),
                    }
                }
                for c in run.tool_calls
            ]
        reason = run.finish_reason if run.finish_reason in ("stop", "length") else "stop"
        last.update(done=True, done_reason=reason, **_stats(run))
        if run.logprobs:
            last["logprobs"] = [
                {"token": lp["token"], "logprob": lp["logprob"], "bytes": lp["bytes"]}
                for lp in run.logprobs
            ]
        return last

    if not stream:
        await run.collect()
        await run.record()
        return web.json_response(final(run.text))
    response = await run.begin(lambda: sse.open_stream(request, "application/x-ndjson"))

    async def produce() -> None:
        async with contextlib.aclosing(run.stream()) as pieces:
            async for chunk in pieces:
                if chunk.text:
                    await sse.send_line(response, piece(chunk.text))
        await run.record()  # before the last line: a reply the client has whole is in history
        await sse.send_line(response, final(""))
        await response.write_eof()

    await run.guard(produce, lambda exc: sse.send_line(response, {"error": exc.message}))
    return response


def _ollama_messages(body: ChatBody) -> list[dict[str, Any]]:
    out = []
    for m in body.messages:
        item: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.images:  # only a model that reads images gets here (refused before otherwise)
            item["content"] = ollama_image_parts(m.content or "", m.images)
        if m.tool_calls:
            item["tool_calls"] = [
                {
                    "id": f"call_{i}",
                    "type": "function",
                    "function": {
                        "name": c.get("function", {}).get("name", ""),
                        "arguments": json.dumps(c.get("function", {}).get("arguments", {})),
                    },
                }
                for i, c in enumerate(m.tool_calls)
            ]
        out.append(item)
    return out


@routes.post("/api/chat")
async def chat(request: web.Request) -> web.StreamResponse:
    actor = require(request, "models.use")
    appliance = appliance_of(request)
    raw = await read_json(request)
    body = parse_body(ChatBody, raw)
    model = appliance.registry.chat.get(body.model)
    keep_alive = keep_alive_seconds(body.keep_alive)
    if not body.messages:
        return await _load_only(request, model, keep_alive, "chat", body.model)
    refuse_images_unless_read(model, any(m.images for m in body.messages), "images")
    sent = _ollama_messages(body)
    messages, citations = await add_context(appliance, raw, sent)
    chat_request = ChatRequest(
        messages=messages,
        sampling=body.options.sampling(body.logprobs, body.top_logprobs),
        response_format=response_format(body.format),
        tools=body.tools,
    )
    run = ChatRun(
        appliance,
        actor,
        model,
        chat_request,
        api="ollama",
        keep_alive=keep_alive,
        client_messages=sent,
    )
    if citations:
        run.meta["citations"] = citations
    return await _answer(request, run, body.model, body.stream, "message")


@routes.post("/api/generate")
async def generate(request: web.Request) -> web.StreamResponse:
    actor = require(request, "models.use")
    appliance = appliance_of(request)
    body = parse_body(GenerateBody, await read_json(request))
    model = appliance.registry.chat.get(body.model)
    keep_alive = keep_alive_seconds(body.keep_alive)
    refuse_images_unless_read(model, bool(body.images), "images")
    if not body.prompt and not body.suffix:
        return await _load_only(request, model, keep_alive, "generate", body.model)
    sampling = body.options.sampling(body.logprobs, body.top_logprobs)
    fmt = response_format(body.format)
    work: ChatRequest | CompletionRequest
    if body.raw or body.suffix:
        work = CompletionRequest(
            prompt=body.prompt, sampling=sampling, suffix=body.suffix, response_format=fmt
        )
    else:
        messages: list[dict[str, Any]] = (
            [{"role": "system", "content": body.system}] if body.system else []
        )
        content: Any = ollama_image_parts(body.prompt, body.images) if body.images else body.prompt
        messages.append({"role": "user", "content": content})
        work = ChatRequest(messages=messages, sampling=sampling, response_format=fmt)
    run = ChatRun(appliance, actor, model, work, api="ollama", keep_alive=keep_alive)
    return await _answer(request, run, body.model, body.stream, "response")


async def _embed(
    request: web.Request, name: str, texts: list[str], keep_alive: float | None
) -> tuple[list[list[float]], int, float, str]:
    appliance = appliance_of(request)
    actor = require(request, "models.use")
    embedder = appliance.registry.embedders.get(name)
    if not texts or any(not t for t in texts):
        raise BadRequest("input must be non-empty text", param="input")
    started = time.monotonic()
    result = await appliance.embed_for(actor, embedder, texts, keep_alive)
    return result.vectors, result.prompt_tokens, (time.monotonic() - started) * 1000, name


@routes.post("/api/embed")
async def embed(request: web.Request) -> web.Response:
    require(request, "models.use")
    body = parse_body(EmbedBody, await read_json(request))
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    vectors, tokens, ms, name = await _embed(
        request, body.model, texts, keep_alive_seconds(body.keep_alive)
    )
    if body.dimensions:
        vectors = [v[: body.dimensions] for v in vectors]
    return web.json_response(
        {
            "model": name,
            "embeddings": vectors,
            "total_duration": int(ms * NS),
            "load_duration": 0,
            "prompt_eval_count": tokens,
        }
    )


@routes.post("/api/embeddings")
async def embeddings_legacy(request: web.Request) -> web.Response:
    require(request, "models.use")
    body = parse_body(LegacyEmbeddingsBody, await read_json(request))
    vectors, _, _, _ = await _embed(
        request, body.model, [body.prompt], keep_alive_seconds(body.keep_alive)
    )
    return web.json_response({"embedding": vectors[0]})


MANAGED_HERE = (
    "models on this box are managed by IT: `appliance models fetch|import|remove` on the box, "
    "or GET /appliance/models; the Ollama model registry is not used here"
)


@routes.post("/api/pull")
@routes.post("/api/push")
@routes.post("/api/create")
@routes.post("/api/copy")
@routes.delete("/api/delete")
async def managed_elsewhere(request: web.Request) -> web.Response:
    require(request, "models.use")
    raise BadRequest(MANAGED_HERE, code="not_supported")
