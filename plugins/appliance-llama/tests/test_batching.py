"""Many people at once on the real model: batched answers match lone ones, cancellation, JSON
beside free text, a long prompt arriving mid-stream, a full line, a full KV pool, /api/ps."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp.test_utils import TestClient

from .conftest import CHAT, batched_client

pytestmark = pytest.mark.model
PROMPTS = [
    "Which city is the capital of France?",
    "Name three colours.",
    "What is two plus two?",
    "Write a haiku about the sea.",
]
Client = TestClient  # type: ignore[type-arg]


async def chat(client: Any, content: str, max_tokens: int = 48, **extra: Any) -> str:
    body = {
        "model": CHAT,
        "messages": [{"role": "user", "content": content}],
        "temperature": 0,
        "max_tokens": max_tokens,
        **extra,
    }
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status == 200, await response.text()
    return str((await response.json())["choices"][0]["message"]["content"])


async def complete(client: Any, prompt: str) -> str:
    body = {"model": CHAT, "prompt": prompt, "temperature": 0, "max_tokens": 40}
    response = await client.post("/v1/completions", json=body)
    assert response.status == 200, await response.text()
    return str((await response.json())["choices"][0]["text"])


def check_like_alone(alone: list[str], together: list[str]) -> int:
    """Each batched answer begins exactly as its lone answer and holds no other request's text;
    return how many are identical."""
    for index, (lone, batched) in enumerate(zip(alone, together, strict=True)):
        start = min(24, len(lone))
        assert batched[:start] == lone[:start], (lone, batched)
        for other, text in enumerate(alone):
            if other != index and len(text) >= 24 and text[:24] not in lone:
                assert text[:24] not in batched, (batched, text)
    return sum(a == b for a, b in zip(alone, together, strict=True))


async def busy_slots_seen(client: Any, stop: asyncio.Event) -> int:
    most = 0
    while not stop.is_set():
        ps = await (await client.get("/api/ps")).json()
        for model in ps["models"]:
            most = max(most, model["slots_busy"])
        await asyncio.sleep(0.01)
    return most


async def test_four_concurrent_requests_answer_as_each_does_alone(
    aiohttp_client: Any, home: Path
) -> None:
    client = await batched_client(aiohttp_client, home)
    alone = [await chat(client, p) for p in PROMPTS]
    stop = asyncio.Event()
    watcher = asyncio.create_task(busy_slots_seen(client, stop))
    together = await asyncio.gather(*(chat(client, p) for p in PROMPTS))
    stop.set()
    assert await watcher >= 3, "the four requests were not decoded together"
    identical = check_like_alone(alone, list(together))
    print(f"chat: {identical}/4 batched answers identical to lone ones")
    assert identical >= 2

    starts = [
        "The capital of France is",
        "The chemical symbol for gold is",
        "def add(a, b):",
        "The largest planet in the solar system is",
    ]
    alone = [await complete(client, p) for p in starts]
    together = await asyncio.gather(*(complete(client, p) for p in starts))
    identical = check_like_alone(alone, list(together))
    print(f"completions: {identical}/4 batched answers identical to lone ones")
    assert identical >= 2


async def stream_text(client: Any, content: str, max_tokens: int = 64) -> str:
    body = {
        "model": CHAT,
        "messages": [{"role": "user", "content": content}],
        "temperature": 0,
        "max_tokens": max_tokens,
        "stream": True,
    }
    parts = []
    async with client.post("/v1/chat/completions", json=body) as response:
        assert response.status == 200
        async for raw in response.content:
            line = raw.decode().strip()
            if line.startswith("data: {"):
                event = json.loads(line[6:])
                if event["choices"]:
                    parts.append(event["choices"][0]["delta"].get("content") or "")
    return "".join(parts)


async def test_cancelling_one_of_four_streams_leaves_the_others_complete(
    aiohttp_client: Any, home: Path
) -> None:
    client = await batched_client(aiohttp_client, home)
    alone = [await stream_text(client, p) for p in PROMPTS[1:]]
    body = {
        "model": CHAT,
        "messages": [{"role": "user", "content": "Tell a very long story about a dragon."}],
        "temperature": 0,
        "max_tokens": 900,
        "stream": True,
    }
    leaving = await client.post("/v1/chat/completions", json=body)
    others = [asyncio.create_task(stream_text(client, p)) for p in PROMPTS[1:]]
    async for raw in leaving.content:
        if b'"content":"' in raw and b'"content":""' not in raw:
            break
    leaving.close()
    finished = await asyncio.gather(*others)
    check_like_alone(alone, list(finished))
    assert all(text for text in finished)
    for _ in range(100):
        ps = await (await client.get("/api/ps")).json()
        if ps["models"][0]["slots_busy"] == 0:
            break
        await asyncio.sleep(0.05)
    assert ps["models"][0]["slots_busy"] == 0, "the cancelled sequence kept its slot"


async def test_json_schema_request_batched_beside_free_text(
    aiohttp_client: Any, home: Path
) -> None:
    client = await batched_client(aiohttp_client, home)
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "place", "schema": schema}}
    results = await asyncio.gather(
        chat(client, PROMPTS[1], 64),
        chat(
            client,
            "Give the capital of France and its population as JSON.",
            96,
            response_format=response_format,
        ),
        chat(client, PROMPTS[2], 64),
        chat(client, PROMPTS[3], 64),
    )
    data = json.loads(results[1])
    jsonschema.validate(data, schema)
    assert all("{" not in text for text in (results[0], results[3]))


async def test_a_long_prompt_arriving_keeps_the_streams_flowing(
    aiohttp_client: Any, home: Path
) -> None:
    client = await batched_client(aiohttp_client, home, chat_ctx=2048)
    gaps: list[list[float]] = [[] for _ in range(3)]
    arrived = asyncio.Event()
    during: list[float] = []

    async def reader(index: int) -> None:
        body = {
            "model": CHAT,
            "messages": [{"role": "user", "content": f"Tell a long story number {index}."}],
            "temperature": 0,
            "max_tokens": 160,
            "stream": True,
        }
        last = None
        async with client.post("/v1/chat/completions", json=body) as response:
            async for raw in response.content:
                if not raw.startswith(b"data: {"):
                    continue
                now = time.monotonic()
                if last is not None:
                    gaps[index].append(now - last)
                    if arrived.is_set():
                        during.append(now - last)
                last = now

    readers = [asyncio.create_task(reader(i)) for i in range(3)]
    await asyncio.sleep(1.5)
    long_prompt = "Summarise the following notes. " + "The meeting covered budgets. " * 250
    arrived.set()
    answer = await chat(client, long_prompt, 8)
    await asyncio.gather(*readers)
    assert answer
    typical = statistics.median([g for series in gaps for g in series])
    worst = max(during)
    print(
        f"token gaps: median {typical * 1000:.0f} ms, worst while a ~1,800-token prompt "
        f"was read {worst * 1000:.0f} ms"
    )
    # Chunked prefill: the 1,800-token prompt is read in slices between decode steps, so no
    # reader waits for all of it (reading it whole takes several seconds on this machine).
    assert worst < max(20 * typical, 1.5)


async def test_full_line_is_503_before_any_stream(aiohttp_client: Any, home: Path) -> None:
    client = await batched_client(aiohttp_client, home, parallel=1, queue_size=1)
    body = {
        "model": CHAT,
        "messages": [{"role": "user", "content": "Tell a long story."}],
        "temperature": 0,
        "max_tokens": 64,
        "stream": True,
    }
    responses = await asyncio.gather(
        *(client.post("/v1/chat/completions", json=body) for _ in range(4)),
        client.post("/api/chat", json={**body, "stream": True}),
    )
    statuses = sorted(r.status for r in responses)
    assert statuses == [200, 200, 503, 503, 503], statuses  # one slot, one place in line
    for response in responses:
        if response.status == 503:
            assert response.headers["Retry-After"]
            assert "text/event-stream" not in response.headers.get("Content-Type", "")
        else:
            text = await response.text()
            assert "queue_full" not in text


async def test_a_full_kv_pool_fails_one_sequence_clearly_and_spares_the_other(
    aiohttp_client: Any, home: Path
) -> None:
    client = await batched_client(aiohttp_client, home, chat_ctx=256, parallel=2)
    body = {
        "model": CHAT,
        "prompt": "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,",
        "raw": True,
        "stream": False,
        "options": {"temperature": 0, "num_ctx": 512, "num_predict": 450, "repeat_penalty": 1},
    }
    alone = await (await client.post("/api/generate", json=body)).json()
    assert alone["eval_count"] > 300, "the model must keep counting for this test"
    first, second = await asyncio.gather(
        client.post("/api/generate", json=body), client.post("/api/generate", json=body)
    )
    outcomes = sorted([first, second], key=lambda r: r.status)
    survivor, victim = outcomes
    assert survivor.status == 200
    assert (await survivor.json())["response"] == alone["response"]
    assert victim.status == 503
    assert "context memory is full" in (await victim.json())["error"]
    bad = await client.post(
        "/api/generate", json={**body, "options": {"num_ctx": 100_000}, "prompt": "hi"}
    )
    assert bad.status == 400 and "trained context" in (await bad.json())["error"]


async def test_logit_bias_is_applied_per_sequence(aiohttp_client: Any, home: Path) -> None:
    client = await batched_client(aiohttp_client, home)
    free, forced = await asyncio.gather(
        chat(client, PROMPTS[0], 6),
        chat(client, PROMPTS[0], 6, logit_bias={"1337": 100}),
    )
    assert free.startswith("The capital")
    assert forced != free and len(set(forced.split())) <= 1 and forced
    bad = await client.post(
        "/v1/chat/completions",
        json={
            "model": CHAT,
            "messages": [{"role": "user", "content": "hi"}],
            "logit_bias": {"99999999": 5},
        },
    )
    assert bad.status == 400 and "logit_bias" in (await bad.json())["error"]["message"]


async def test_hostile_text_is_a_400_before_any_stream(aiohttp_client: Any, home: Path) -> None:
    client = await batched_client(aiohttp_client, home)
    empty = await client.post(
        "/v1/completions", json={"model": CHAT, "prompt": "", "max_tokens": 4, "stream": True}
    )
    assert empty.status == 400  # this model adds no BOS token, so nothing would be read
    assert "prompt is empty" in (await empty.json())["error"]["message"]
    raw = (
        b'{"model": "smollm2:135m", "stream": true, '
        b'"messages": [{"role": "user", "content": "\\ud800"}]}'
    )
    lone = await client.post(
        "/v1/chat/completions", data=raw, headers={"Content-Type": "application/json"}
    )
    assert lone.status == 400 and "surrogate" in (await lone.json())["error"]["message"]
    over = await client.post(
        "/v1/chat/completions",
        json={
            "model": CHAT,
            "stream": True,
            "messages": [{"role": "user", "content": "word " * 3000}],
        },
    )
    assert over.status == 400
    assert (await over.json())["error"]["code"] == "context_length_exceeded"
