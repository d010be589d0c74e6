"""OpenAI's Responses API (``POST /v1/responses``), which newer SDKs and agents use and Ollama
serves since 0.13: text and multi-turn input, ``instructions``, streaming events, function tools,
``previous_response_id`` on the box's server-side history, and ``store``.

A response runs as a chat (one :class:`~appliance.generation.ChatRun`, so it is admitted,
limited and recorded like any other); stored responses keep the whole conversation so far, and
a follow-up naming one continues the same conversation in history.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from aiohttp import web
from pydantic import Field

from appliance.auth import Actor
from appliance.capabilities import ChatRequest
from appliance.capabilities.chat import SamplingOptions
from appliance.errors import BadRequest, NotFound
from appliance.generation import ChatRun, has_images, refuse_images_unless_read
from appliance.http import sse
from appliance.http.middleware import read_json, require
from appliance.http.validation import Body, parse_body
from appliance.keys import appliance_of

routes = web.RouteTableDef()


class ResponsesBody(Body):
    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    stream: bool = False
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool = True
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, ge=0, le=1)
    max_output_tokens: int | None = Field(default=None, ge=1)
    previous_response_id: str | None = None
    store: bool = True
    metadata: dict[str, str] | None = None
    text: dict[str, Any] | None = None


def _text_of(content: Any, index: int) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadRequest(f"input[{index}].content must be text or a list of parts", param="input")
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind in ("input_image", "image_url"):
            parts.append({"type": "input_image"})
        else:
            raise BadRequest(
                f"input[{index}] has a {kind!r} part this box does not read", param="input"
            )
    return parts


def input_messages(value: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Responses input items as chat messages (calls and their outputs included)."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise BadRequest(
                    f"input[{i}].role must be user, assistant, system or developer", param="input"
                )
            messages.append({"role": role, "content": _text_of(item.get("content", ""), i)})
        elif kind == "function_call":
            call = {
                "id": str(item.get("call_id", "")),
                "type": "function",
                "function": {"name": item.get("name", ""), "arguments": item.get("arguments", "")},
            }
            last = messages[-1] if messages else None
            if last and last["role"] == "assistant" and last.get("tool_calls"):
                last["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output", "")
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": str(item.get("call_id", "")),
                    "content": output if isinstance(output, str) else json.dumps(output),
                }
            )
        else:
            raise BadRequest(f"input[{i}] is a {kind!r} item this box does not take", param="input")
    return messages


def chat_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Responses function tools (flat) in the chat shape the models take."""
    if not tools:
        return None
    out = []
    for i, tool in enumerate(tools):
        if tool.get("type") != "function":
            raise BadRequest(
                f"tools[{i}] is a {tool.get('type')!r} tool; this box runs only function tools "
                "(nothing leaves the building)",
                param="tools",
            )
        function = {k: tool[k] for k in ("name", "description", "parameters") if k in tool}
        out.append({"type": "function", "function": function})
    return out


def chat_tool_choice(choice: str | dict[str, Any] | None) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function" and "name" in choice:
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice


def echoed_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "name": t.get("name", ""),
            "description": t.get("description"),
            "parameters": t.get("parameters") or {"type": "object", "properties": {}},
            "strict": bool(t.get("strict", False)),
        }
        for t in tools or []
    ]


def response_format(text: dict[str, Any] | None) -> dict[str, Any] | None:
    """``text.format`` (Responses) as the chat ``response_format``."""
    fmt = (text or {}).get("format")
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    if fmt["type"] == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": fmt.get("name", "format"), "schema": fmt.get("schema")},
        }
    raise BadRequest("text.format.type must be text, json_object or json_schema", param="text")


async def _previous(appliance: Any, actor: Actor, response_id: str) -> dict[str, Any]:
    rows = await appliance.db.read(
        lambda db: list(db.table("responses").rows_where("id = ?", [response_id]))
    )
    if not rows or (rows[0]["owner"] != actor.id and not actor.is_admin):
        raise NotFound(f"no stored response {response_id!r}", param="previous_response_id")
    return dict(rows[0])


class ResponseBuilder:
    """The Response object, and the stream of events that builds it."""

    def __init__(self, body: ResponsesBody, model: str) -> None:
        self.body = body
        self.id = "resp_" + secrets.token_hex(16)
        self.message_id = "msg_" + secrets.token_hex(16)
        self.created_at = int(time.time())
        self.model = model
        self.sequence = 0
        self.output: list[dict[str, Any]] = []

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    def message(self, text: str, status: str = "completed") -> dict[str, Any]:
        content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
        return {
            "type": "message",
            "id": self.message_id,
            "status": status,
            "role": "assistant",
            "content": content if status == "completed" else [],
        }

    def function_call(self, call: dict[str, Any], status: str = "completed") -> dict[str, Any]:
        return {
            "type": "function_call",
            "id": "fc_" + call["id"].removeprefix("call_"),
            "call_id": call["id"],
            "name": call["function"]["name"],
            "arguments": call["function"]["arguments"] if status == "completed" else "",
            "status": status,
        }

    def response(self, run: ChatRun | None, status: str = "completed") -> dict[str, Any]:
        body = self.body
        incomplete = run is not None and run.finish_reason == "length"
        if incomplete:
            status = "incomplete"
        text = "".join(
            c["text"] for item in self.output if item["type"] == "message" for c in item["content"]
        )
        usage = None
        if run is not None and status != "in_progress":
            usage = {
                "input_tokens": run.usage.prompt_tokens,
                "input_tokens_details": {
                    "cached_tokens": run.usage.cached_tokens,
                    "cache_write_tokens": 0,
                },
                "output_tokens": run.usage.completion_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": run.usage.total_tokens,
            }
        response = {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "completed_at": int(time.time()) if status in ("completed", "incomplete") else None,
            "status": status,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "instructions": body.instructions,
            "model": self.model,
            "output": self.output if status != "in_progress" else [],
            "output_text": text,
            "parallel_tool_calls": body.parallel_tool_calls,
            "previous_response_id": body.previous_response_id,
            "tools": echoed_tools(body.tools),
            "tool_choice": body.tool_choice or "auto",
            "temperature": body.temperature,
            "top_p": body.top_p,
            "max_output_tokens": body.max_output_tokens,
            "metadata": body.metadata or {},
            "store": body.store,
            "text": body.text or {"format": {"type": "text"}},
            "truncation": "disabled",
            "usage": usage,
        }
        if usage is None:
            del response["usage"]  # the spec has no null usage; in-progress responses omit it
        return response


@routes.post("/v1/responses")
async def create_response(request: web.Request) -> web.StreamResponse:
    actor = require(request, "models.use")
    appliance = appliance_of(request)
    body = parse_body(ResponsesBody, await read_json(request))
    model = appliance.registry.chat.get(body.model)
    earlier: list[dict[str, Any]] = []
    conversation_id = None
    if body.previous_response_id:
        previous = await _previous(appliance, actor, body.previous_response_id)
        earlier = json.loads(previous["messages"])
        conversation_id = previous["conversation_id"] or None
    sent = input_messages(body.input)
    refuse_images_unless_read(model, has_images(sent), "input")
    instructions = [{"role": "system", "content": body.instructions}] if body.instructions else []
    chat_request = ChatRequest(
        messages=[*instructions, *earlier, *sent],
        sampling=SamplingOptions(
            max_tokens=body.max_output_tokens, temperature=body.temperature, top_p=body.top_p
        ),
        response_format=response_format(body.text),
        tools=chat_tools(body.tools),
        tool_choice=chat_tool_choice(body.tool_choice),
        parallel_tool_calls=body.parallel_tool_calls,
    )
    run = ChatRun(
        appliance,
        actor,
        model,
        chat_request,
        api="responses",
        conversation_id=conversation_id,
        stored_before=len(earlier) if conversation_id else None,
        client_messages=[*earlier, *sent],
    )
    builder = ResponseBuilder(body, model.name)
    if body.stream:
        return await _stream(request, run, builder, [*earlier, *sent])
    await run.collect()
    _collect_output(builder, run)
    await _finish(run, builder, [*earlier, *sent])
    return web.json_response(builder.response(run))


def _collect_output(builder: ResponseBuilder, run: ChatRun) -> None:
    if run.text or not run.tool_calls:
        builder.output.append(builder.message(run.text))
    builder.output += [builder.function_call(call) for call in run.tool_calls]


async def _finish(run: ChatRun, builder: ResponseBuilder, messages: list[dict[str, Any]]) -> None:
    """Record the exchange in history and, with ``store``, the response for follow-ups."""
    conversation_id = await run.record()
    if not builder.body.store:
        return
    reply: dict[str, Any] = {"role": "assistant", "content": run.text}
    if run.tool_calls:
        reply["tool_calls"] = run.tool_calls
    row = {
        "id": builder.id,
        "owner": run.actor.id,
        "model": run.model.name,
        "conversation_id": conversation_id,
        "messages": json.dumps([*messages, reply]),
        "response": json.dumps(builder.response(run)),
        "created_at": time.time(),
    }
    await run.appliance.db.write(lambda db: db.table("responses").insert(row))


async def _stream(
    request: web.Request, run: ChatRun, builder: ResponseBuilder, messages: list[dict[str, Any]]
) -> web.StreamResponse:
    response = await run.begin(lambda: sse.open_stream(request))

    async def send(kind: str, **fields: Any) -> None:
        await sse.send_named_event(response, kind, builder.event(kind, **fields))

    async def produce() -> None:
        await send("response.created", response=builder.response(None, "in_progress"))
        await send("response.in_progress", response=builder.response(None, "in_progress"))
        text_started = False
        ids = {"item_id": builder.message_id, "output_index": 0, "content_index": 0}
        empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        async for piece in run.stream():
            if not piece.text:
                continue
            if not text_started:
                text_started = True
                await send(
                    "response.output_item.added",
                    output_index=0,
                    item=builder.message("", "in_progress"),
                )
                await send("response.content_part.added", **ids, part=empty)
            await send("response.output_text.delta", **ids, delta=piece.text, logprobs=[])
        if text_started or not run.tool_calls:
            if not text_started:
                await send(
                    "response.output_item.added",
                    output_index=0,
                    item=builder.message("", "in_progress"),
                )
                await send("response.content_part.added", **ids, part=empty)
            item = builder.message(run.text)
            builder.output.append(item)
            await send("response.output_text.done", **ids, text=run.text, logprobs=[])
            await send("response.content_part.done", **ids, part=item["content"][0])
            await send("response.output_item.done", output_index=0, item=item)
        for call in run.tool_calls:
            index = len(builder.output)
            item = builder.function_call(call)
            await send(
                "response.output_item.added",
                output_index=index,
                item=builder.function_call(call, "in_progress"),
            )
            await send(
                "response.function_call_arguments.delta",
                item_id=item["id"],
                output_index=index,
                delta=item["arguments"],
            )
            await send(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                name=item["name"],
                arguments=item["arguments"],
            )
            builder.output.append(item)
            await send("response.output_item.done", output_index=index, item=item)
        await _finish(run, builder, messages)
        await send("response.completed", response=builder.response(run))
        await response.write_eof()

    async def write_error(exc: Any) -> None:
        await send("error", code=exc.code or exc.error_type, message=exc.message, param=exc.param)

    await run.guard(produce, write_error)
    return response


@routes.get("/v1/responses/{id}")
async def get_response(request: web.Request) -> web.Response:
    actor = require(request, "models.use")
    row = await _previous(appliance_of(request), actor, request.match_info["id"])
    return web.json_response(json.loads(row["response"]))


@routes.delete("/v1/responses/{id}")
async def delete_response(request: web.Request) -> web.Response:
    actor = require(request, "models.use")
    appliance = appliance_of(request)
    response_id = request.match_info["id"]
    await _previous(appliance, actor, response_id)
    await appliance.db.write(lambda db: db.table("responses").delete(response_id))
    return web.json_response({"id": response_id, "object": "response", "deleted": True})
