"""Server-side history, and a stateful chat where the client sends only its new message."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import Field

from appliance.auth import Actor
from appliance.capabilities import ChatRequest
from appliance.capabilities.chat import SamplingOptions
from appliance.core import Appliance
from appliance.errors import BadRequest, Forbidden, NotFound
from appliance.generation import ChatRun
from appliance.history.conversations import (
    delete_conversation,
    get_conversation,
    list_conversations,
)
from appliance.http.middleware import read_json, require
from appliance.http.openai import respond_chat
from appliance.http.openai_schema import ChatMessageIn, SamplingFields
from appliance.http.validation import parse_body
from appliance.keys import appliance_of

routes = web.RouteTableDef()


def _int_query(request: web.Request, name: str, default: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"'{name}' must be an integer", param=name) from None
    if not 0 <= value <= high:
        raise BadRequest(f"'{name}' must be between 0 and {high}", param=name)
    return value


@routes.get("/appliance/conversations")
async def index(request: web.Request) -> web.Response:
    actor = require(request, "conversations.own")
    appliance = appliance_of(request)
    owner = None if actor.is_admin and request.query.get("all") == "1" else actor.id
    limit = _int_query(request, "limit", 50, 500)
    offset = _int_query(request, "offset", 0, 10**9)
    query = request.query.get("q") or None
    rows = await appliance.db.read(
        lambda db: list_conversations(db, owner, limit=limit, offset=offset, query=query)
    )
    return web.json_response({"conversations": rows})


async def _owned(appliance: Appliance, actor: Actor, conv_id: str) -> dict[str, Any]:
    conv = await appliance.db.read(lambda db: get_conversation(db, conv_id))
    if conv is None:
        raise NotFound(f"conversation {conv_id!r} not found")
    if conv["owner"] != actor.id and not actor.is_admin:
        raise Forbidden("this conversation belongs to someone else")
    return conv


@routes.get("/appliance/conversations/{id}")
async def show(request: web.Request) -> web.Response:
    actor = require(request, "conversations.own")
    conv = await _owned(appliance_of(request), actor, request.match_info["id"])
    return web.json_response(conv)


@routes.delete("/appliance/conversations/{id}")
async def delete(request: web.Request) -> web.Response:
    actor = require(request, "conversations.own")
    appliance = appliance_of(request)
    conv_id = request.match_info["id"]
    await _owned(appliance, actor, conv_id)
    await appliance.db.write(lambda db: delete_conversation(db, conv_id))
    return web.json_response({"id": conv_id, "deleted": True})


class NewMessage(SamplingFields):
    model: str = ""
    message: ChatMessageIn | None = None
    content: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)


@routes.post("/appliance/conversations/{id}/messages")
async def add_message(request: web.Request) -> web.StreamResponse:
    """Continue a stored conversation: the server supplies the history."""
    actor = require(request, "conversations.own")
    appliance = appliance_of(request)
    conv = await _owned(appliance, actor, request.match_info["id"])
    body = parse_body(NewMessage, await read_json(request))
    if body.message is None and body.content is None:
        raise BadRequest("send 'content' (text) or 'message' (an OpenAI message)", param="content")
    new = (
        body.message.model_dump(exclude_none=True)
        if body.message
        else {"role": "user", "content": body.content}
    )
    history = [{"role": m["role"], "content": m["content"]} for m in conv["messages"]]
    model = appliance.registry.chat.get(body.model or conv["model"])
    sampling = SamplingOptions(
        max_tokens=body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=body.stop_tuple(),
    )
    chat_request = ChatRequest(messages=[*history, new], sampling=sampling)
    run = ChatRun(
        appliance,
        actor,
        model,
        chat_request,
        api="appliance",
        conversation_id=conv["id"],
        stored_before=len(history),
    )
    return await respond_chat(request, run, stream=body.stream)
