"""The Ollama API on the real default models, through the ``ollama`` package and raw HTTP, with
every response and stream line validated against the Ollama spec."""

from __future__ import annotations

import json
from typing import Any

import ollama
import pytest
from aiohttp.test_utils import TestClient

from tests.openapi import validate_ollama

pytestmark = pytest.mark.model
CHAT = "smollm2:135m"
EMBED = "all-minilm:l6-v2"
QUESTION = [{"role": "user", "content": "Which city is the capital of France?"}]


@pytest.fixture
def client(llama_client: TestClient) -> ollama.AsyncClient:  # type: ignore[type-arg]
    return ollama.AsyncClient(host=str(llama_client.make_url("")).rstrip("/"))


async def ndjson(response: Any) -> list[dict[str, Any]]:
    lines = []
    async for raw in response.content:
        assert raw.strip(), "NDJSON streams carry no blank lines"
        assert raw.endswith(b"\n")
        lines.append(json.loads(raw))
    return lines


async def test_list_show_ps(client: ollama.AsyncClient, llama_client: TestClient) -> None:  # type: ignore[type-arg]
    listed = await client.list()
    names = [m.model for m in listed.models]
    assert CHAT in names and f"{EMBED}" in names
    validate_ollama("ListResponse", await (await llama_client.get("/api/tags")).json())
    shown = await client.show(CHAT)
    assert shown.modelinfo is not None and shown.details is not None
    raw_show = await (await llama_client.post("/api/show", json={"name": CHAT})).json()
    validate_ollama("ShowResponse", raw_show)
    assert "completion" in raw_show["capabilities"]
    await client.generate(model=CHAT, prompt="")  # loads it
    running = await client.ps()
    assert CHAT in [m.model for m in running.models]
    validate_ollama("PsResponse", await (await llama_client.get("/api/ps")).json())
    version = await (await llama_client.get("/api/version")).json()
    validate_ollama("VersionResponse", version)
    assert version["version"].count(".") == 2


async def test_chat_stream_and_not(client: ollama.AsyncClient, llama_client: TestClient) -> None:  # type: ignore[type-arg]
    whole = await client.chat(model=CHAT, messages=QUESTION, options={"temperature": 0})
    assert "Paris" in whole.message.content
    assert whole.done and whole.eval_count and whole.total_duration
    parts = [
        p
        async for p in await client.chat(
            model=CHAT, messages=QUESTION, options={"temperature": 0}, stream=True
        )
    ]
    assert "".join(p.message.content for p in parts) == whole.message.content
    assert [p.done for p in parts].count(True) == 1 and parts[-1].done
    body = {"model": CHAT, "messages": QUESTION, "options": {"temperature": 0, "num_predict": 4}}
    lines = await ndjson(await llama_client.post("/api/chat", json=body))
    for line in lines[:-1]:
        validate_ollama("ChatStreamEvent", line)
        assert line["done"] is False and line["message"]["role"] == "assistant"
    validate_ollama("ChatResponse", lines[-1])
    assert lines[-1]["done_reason"] == "length" and lines[-1]["eval_count"] == 4
    single = await (await llama_client.post("/api/chat", json={**body, "stream": False})).json()
    validate_ollama("ChatResponse", single)


async def test_generate_stream_and_not(
    client: ollama.AsyncClient,
    llama_client: TestClient,  # type: ignore[type-arg]
) -> None:
    whole = await client.generate(
        model=f"{CHAT}", prompt="Name the capital of France.", options={"temperature": 0}
    )
    assert "Paris" in whole.response
    raw = await client.generate(
        model=CHAT,
        prompt="One, two, three,",
        raw=True,
        options={"temperature": 0, "num_predict": 6},
    )
    assert raw.response and raw.eval_count == 6
    body = {
        "model": CHAT,
        "prompt": "Count: 1, 2,",
        "raw": True,
        "options": {"temperature": 0, "num_predict": 5},
    }
    lines = await ndjson(await llama_client.post("/api/generate", json=body))
    for line in lines[:-1]:
        validate_ollama("GenerateStreamEvent", line)
    validate_ollama("GenerateResponse", lines[-1])
    final = await (await llama_client.post("/api/generate", json={**body, "stream": False})).json()
    validate_ollama("GenerateResponse", final)
    assert final["response"] == "".join(line["response"] for line in lines)
    assert final["prompt_eval_duration"] > 0


async def test_format_json_and_schema(client: ollama.AsyncClient) -> None:
    reply = await client.chat(
        model=CHAT,
        messages=[{"role": "user", "content": "Describe a cat as JSON."}],
        format="json",
        options={"temperature": 0, "num_predict": 60},
    )
    assert isinstance(json.loads(reply.message.content), dict)
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "maxLength": 20}},
        "required": ["answer"],
    }
    reply = await client.generate(
        model=CHAT,
        prompt="Name the capital of France.",
        format=schema,
        options={"temperature": 0, "num_predict": 40},
    )
    assert set(json.loads(reply.response)) == {"answer"}


async def test_embed(client: ollama.AsyncClient, llama_client: TestClient) -> None:  # type: ignore[type-arg]
    result = await client.embed(model=EMBED, input=["hello there", "general kenobi"])
    assert len(result.embeddings) == 2 and len(result.embeddings[0]) == 384
    raw = await (await llama_client.post("/api/embed", json={"model": EMBED, "input": "x"})).json()
    validate_ollama("EmbedResponse", raw)
    legacy = await (
        await llama_client.post("/api/embeddings", json={"model": EMBED, "prompt": "hello there"})
    ).json()
    assert (
        abs(sum(a * b for a, b in zip(legacy["embedding"], result.embeddings[0], strict=True)) - 1)
        < 1e-4
    )


async def test_same_text_through_both_apis_at_temperature_zero(
    llama_client: TestClient,  # type: ignore[type-arg]
) -> None:
    ollama_reply = await (
        await llama_client.post(
            "/api/chat",
            json={
                "model": CHAT,
                "messages": QUESTION,
                "stream": False,
                "options": {"temperature": 0, "num_predict": 24, "repeat_penalty": 1.0},
            },
        )
    ).json()
    openai_reply = await (
        await llama_client.post(
            "/v1/chat/completions",
            json={"model": CHAT, "messages": QUESTION, "temperature": 0, "max_tokens": 24},
        )
    ).json()
    assert ollama_reply["message"]["content"] == openai_reply["choices"][0]["message"]["content"]


async def test_unknown_model_and_keep_alive_zero(
    client: ollama.AsyncClient,
    llama_client: TestClient,  # type: ignore[type-arg]
) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        await client.chat(model="nope:7b", messages=QUESTION)
    assert info.value.status_code == 404
    loaded = await (await llama_client.post("/api/generate", json={"model": CHAT})).json()
    assert loaded["done_reason"] == "load"
    unloaded = await (
        await llama_client.post("/api/generate", json={"model": CHAT, "keep_alive": 0})
    ).json()
    assert unloaded["done_reason"] == "unload"
