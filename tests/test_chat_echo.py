"""The chat path end to end with the echo model: API shapes, streaming, history."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from typing import Any

from aiohttp.test_utils import TestClient

from tests.fixtures import ClientFactory


async def read_sse(response: Any) -> list[Any]:
    events = []
    async for raw in response.content:
        line = raw.decode().strip()
        if not line:
            continue
        assert line.startswith("data: ")
        payload = line[len("data: ") :]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "echo", "messages": [{"role": "user", "content": text}], **extra}


async def test_chat_completion(client: TestClient) -> None:  # type: ignore[type-arg]
    response = await client.post("/v1/chat/completions", json=ask("one two three"))
    assert response.status == 200
    body = await response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "one two three",
        "refusal": None,
        "annotations": [],  # as OpenAI's messages carry them
    }
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 3
    assert response.headers["X-Conversation-Id"]


async def test_max_tokens_finishes_with_length(client: TestClient) -> None:  # type: ignore[type-arg]
    body = await (
        await client.post("/v1/chat/completions", json=ask("a b c d", max_tokens=2))
    ).json()
    assert body["choices"][0]["message"]["content"] == "a b"
    assert body["choices"][0]["finish_reason"] == "length"


async def test_stream_has_one_id_role_first_one_finish_and_done(client: TestClient) -> None:  # type: ignore[type-arg]
    response = await client.post(
        "/v1/chat/completions",
        json=ask("alpha beta gamma", stream=True, stream_options={"include_usage": True}),
    )
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = await read_sse(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert [f for f in finishes if f] == ["stop"]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "alpha beta gamma"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 3


async def test_history_records_and_joins_follow_ups(client: TestClient) -> None:  # type: ignore[type-arg]
    first = await client.post("/v1/chat/completions", json=ask("remember apples"))
    conv_id = first.headers["X-Conversation-Id"]
    reply = (await first.json())["choices"][0]["message"]
    follow = {
        "model": "echo",
        "messages": [
            {"role": "user", "content": "remember apples"},
            {"role": "assistant", "content": reply["content"]},
            {"role": "user", "content": "and pears"},
        ],
    }
    second = await client.post("/v1/chat/completions", json=follow)
    assert second.headers["X-Conversation-Id"] == conv_id
    conv = await (await client.get(f"/appliance/conversations/{conv_id}")).json()
    assert [m["content"] for m in conv["messages"]] == [
        "remember apples",
        "remember apples",
        "and pears",
        "and pears",
    ]
    assert conv["messages"][-1]["model"] == "echo"
    assert conv["messages"][-1]["completion_tokens"] == 2
    listed = await (await client.get("/appliance/conversations", params={"q": "pears"})).json()
    assert [c["id"] for c in listed["conversations"]] == [conv_id]


async def test_stateful_conversation_sends_only_the_new_message(client: TestClient) -> None:  # type: ignore[type-arg]
    first = await client.post("/v1/chat/completions", json=ask("hello box"))
    conv_id = first.headers["X-Conversation-Id"]
    response = await client.post(
        f"/appliance/conversations/{conv_id}/messages", json={"content": "next words"}
    )
    assert response.status == 200
    assert (await response.json())["choices"][0]["message"]["content"] == "next words"
    conv = await (await client.get(f"/appliance/conversations/{conv_id}")).json()
    assert len(conv["messages"]) == 4
    bad = await client.post(f"/appliance/conversations/{conv_id}/messages", json={})
    assert bad.status == 400


async def test_concurrent_continuations_keep_every_message(client: TestClient) -> None:  # type: ignore[type-arg]
    first = await client.post("/v1/chat/completions", json=ask("hello box"))
    conv_id = first.headers["X-Conversation-Id"]
    words = ["alpha one", "bravo two", "charlie three", "delta four"]
    replies = await asyncio.gather(
        *(
            client.post(f"/appliance/conversations/{conv_id}/messages", json={"content": w})
            for w in words
        )
    )
    assert all(r.status == 200 for r in replies)
    conv = await (await client.get(f"/appliance/conversations/{conv_id}")).json()
    messages = [(m["role"], m["content"]) for m in conv["messages"]]
    assert len(messages) == 2 + 2 * len(words)
    for word in words:
        turn = messages.index(("user", word))
        assert messages[turn + 1] == ("assistant", word)


async def test_delete_conversation(client: TestClient) -> None:  # type: ignore[type-arg]
    first = await client.post("/v1/chat/completions", json=ask("forget me"))
    conv_id = first.headers["X-Conversation-Id"]
    assert (await client.delete(f"/appliance/conversations/{conv_id}")).status == 200
    assert (await client.get(f"/appliance/conversations/{conv_id}")).status == 404


async def test_models_and_embeddings(client: TestClient) -> None:  # type: ignore[type-arg]
    models = await (await client.get("/v1/models")).json()
    assert {"echo", "echo-embed"} <= {m["id"] for m in models["data"]}
    floats = await (
        await client.post("/v1/embeddings", json={"model": "echo-embed", "input": ["a", "b"]})
    ).json()
    assert len(floats["data"]) == 2
    b64 = await (
        await client.post(
            "/v1/embeddings",
            json={"model": "echo-embed", "input": "a", "encoding_format": "base64"},
        )
    ).json()
    decoded = struct.unpack("<8f", base64.b64decode(b64["data"][0]["embedding"]))
    assert all(
        abs(x - y) < 1e-6 for x, y in zip(decoded, floats["data"][0]["embedding"], strict=True)
    )
    empty = await client.post("/v1/embeddings", json={"model": "echo-embed", "input": ""})
    assert empty.status == 400


async def test_completions(client: TestClient) -> None:  # type: ignore[type-arg]
    body = await (
        await client.post(
            "/v1/completions", json={"model": "echo", "prompt": "x y z", "max_tokens": 5}
        )
    ).json()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == "x y z"


async def test_user_cannot_read_anothers_conversation(make_client: ClientFactory) -> None:
    from tests.fixtures import bearer, new_token

    client = await make_client(host="0.0.0.0")
    alice, bob = new_token(client, "user"), new_token(client, "user")
    first = await client.post("/v1/chat/completions", json=ask("secret"), headers=bearer(alice))
    conv_id = first.headers["X-Conversation-Id"]
    assert (
        await client.get(f"/appliance/conversations/{conv_id}", headers=bearer(bob))
    ).status == 403
    mine = await (await client.get("/appliance/conversations", headers=bearer(bob))).json()
    assert mine["conversations"] == []


class FixedContext:
    """A prompt_context plugin that always supplies one chunk."""

    from appliance import hookimpl as _hookimpl

    @_hookimpl
    def prompt_context(self, appliance: Any, request: dict[str, Any]) -> Any:
        from appliance.capabilities.retrieve import ContextChunk

        if not request.get("rag"):
            return None
        return [ContextChunk(id="7", text="Visitors park in bay 12.", source="/kb/parking.md")]


async def test_context_is_cited_but_not_stored_and_follow_ups_join(
    make_client: ClientFactory,
) -> None:
    client = await make_client(extra_plugins=(("ctx", FixedContext()),))
    first = await client.post("/v1/chat/completions", json=ask("where to park", rag="kb"))
    body = await first.json()
    assert body["citations"] == [
        {"index": 1, "id": "7", "source": "/kb/parking.md", "score": 0.0, "location": {}}
    ]
    conv_id = first.headers["X-Conversation-Id"]
    conv = await (await client.get(f"/appliance/conversations/{conv_id}")).json()
    assert [m["role"] for m in conv["messages"]] == ["user", "assistant"]
    assert "bay 12" not in conv["messages"][0]["content"]
    assert "parking.md" in conv["messages"][1]["meta"]
    follow = {
        "model": "echo",
        "rag": "kb",
        "messages": [
            {"role": "user", "content": "where to park"},
            {"role": "assistant", "content": body["choices"][0]["message"]["content"]},
            {"role": "user", "content": "and bikes"},
        ],
    }
    second = await client.post("/v1/chat/completions", json=follow)
    assert second.headers["X-Conversation-Id"] == conv_id
    ollama = await client.post("/api/chat", json={**follow, "stream": False})
    assert ollama.status == 200
