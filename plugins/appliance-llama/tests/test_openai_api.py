"""The OpenAI API on the real default models, through the ``openai`` package and raw HTTP,
every response and stream chunk validated against the OpenAI spec."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest
from aiohttp.test_utils import TestClient
from openai import AsyncOpenAI

from tests.openapi import validate_openai

CHAT = "smollm2:135m"
EMBED = "all-minilm:l6-v2"

pytestmark = pytest.mark.model
QUESTION = [{"role": "user", "content": "Which city is the capital of France?"}]


async def sse_events(response: Any) -> list[Any]:
    events = []
    async for raw in response.content:
        line = raw.decode().strip()
        if line:
            assert line.startswith("data: "), line
            payload = line[6:]
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


async def test_models_are_listed(openai_client: AsyncOpenAI, llama_client: TestClient) -> None:  # type: ignore[type-arg]
    ids = [m.id async for m in openai_client.models.list()]
    assert CHAT in ids and EMBED in ids
    raw = await (await llama_client.get("/v1/models")).json()
    validate_openai("ListModelsResponse", raw)


async def test_chat_answers_from_the_real_model(openai_client: AsyncOpenAI) -> None:
    reply = await openai_client.chat.completions.create(
        model=CHAT,
        messages=QUESTION,
        temperature=0,
        max_tokens=30,  # type: ignore[arg-type]
    )
    assert "Paris" in (reply.choices[0].message.content or "")
    assert reply.usage is not None and reply.usage.prompt_tokens > 5
    assert 0 < reply.usage.completion_tokens <= 30


async def test_raw_chat_and_stream_validate_and_agree(llama_client: TestClient) -> None:  # type: ignore[type-arg]
    body = {"model": CHAT, "messages": QUESTION, "temperature": 0, "max_tokens": 24, "seed": 7}
    whole = await (await llama_client.post("/v1/chat/completions", json=body)).json()
    validate_openai("CreateChatCompletionResponse", whole)
    response = await llama_client.post(
        "/v1/chat/completions",
        json={**body, "stream": True, "stream_options": {"include_usage": True}},
    )
    events = await sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    for chunk in chunks:
        validate_openai("CreateChatCompletionStreamResponse", chunk)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert len([f for f in finishes if f]) == 1
    streamed = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
    )
    assert streamed == whole["choices"][0]["message"]["content"]
    assert chunks[-1]["usage"]["completion_tokens"] == whole["usage"]["completion_tokens"]


async def test_sdk_stream(openai_client: AsyncOpenAI) -> None:
    stream = await openai_client.chat.completions.create(
        model=CHAT,
        messages=QUESTION,
        temperature=0,
        max_tokens=20,
        stream=True,  # type: ignore[arg-type]
    )
    text = ""
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
    assert "Paris" in text


async def test_sdk_stream_helper(openai_client: AsyncOpenAI) -> None:
    async with openai_client.chat.completions.stream(
        model=CHAT,
        messages=QUESTION,
        temperature=0,
        max_tokens=16,  # type: ignore[arg-type]
    ) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].message.content


async def test_completions(openai_client: AsyncOpenAI, llama_client: TestClient) -> None:  # type: ignore[type-arg]
    done = await openai_client.completions.create(
        model=CHAT, prompt="The capital of France is", max_tokens=8, temperature=0
    )
    assert done.choices[0].text
    raw = await (
        await llama_client.post(
            "/v1/completions",
            json={"model": CHAT, "prompt": "One, two,", "max_tokens": 5, "temperature": 0},
        )
    ).json()
    validate_openai("CreateCompletionResponse", raw)
    stream = await openai_client.completions.create(
        model=CHAT, prompt="One, two,", max_tokens=5, temperature=0, stream=True
    )
    streamed = "".join([c.choices[0].text async for c in stream if c.choices])
    assert streamed == raw["choices"][0]["text"]


async def test_embeddings_float_and_base64(
    openai_client: AsyncOpenAI,
    llama_client: TestClient,  # type: ignore[type-arg]
) -> None:
    texts = ["The cat sits on the mat.", "A cat is sitting on a mat.", "Stock prices fell today."]
    result = await openai_client.embeddings.create(model=EMBED, input=texts)  # base64 by default
    vectors = [d.embedding for d in result.data]
    assert all(len(v) == 384 for v in vectors)

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2]) + 0.2
    floats = await openai_client.embeddings.create(
        model=EMBED, input=texts[0], encoding_format="float"
    )
    assert abs(cos(floats.data[0].embedding, vectors[0]) - 1) < 1e-4
    raw = await (
        await llama_client.post("/v1/embeddings", json={"model": EMBED, "input": texts})
    ).json()
    validate_openai("CreateEmbeddingResponse", raw)


async def test_errors_map_to_sdk_exceptions(openai_client: AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        await openai_client.chat.completions.create(model="no-such-model", messages=QUESTION)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError):
        await openai_client.chat.completions.create(model=CHAT, messages=QUESTION, n=2)  # type: ignore[arg-type]
    # Every model takes tools now (by a grammar where its template has none); a malformed tool
    # is still refused, before anything runs.
    with pytest.raises(openai.BadRequestError, match="tools"):
        await openai_client.chat.completions.create(
            model=CHAT,
            messages=QUESTION,  # type: ignore[arg-type]
            tools=[{"type": "function", "function": {"parameters": {}}}],  # type: ignore[typeddict-item]
        )


async def test_context_overflow_says_how_many_tokens(llama_client: TestClient) -> None:  # type: ignore[type-arg]
    long = " ".join(["word"] * 3000)
    response = await llama_client.post(
        "/v1/chat/completions",
        json={"model": CHAT, "messages": [{"role": "user", "content": long}]},
    )
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "context_length_exceeded"
    assert "1024" in error["message"] and "tokens" in error["message"]


async def test_json_object_and_schema_formats(openai_client: AsyncOpenAI) -> None:
    reply = await openai_client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "Give a JSON object with a name and an age."}],
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=60,
    )
    assert isinstance(json.loads(reply.choices[0].message.content or ""), dict)
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 24},
            "population_millions": {"type": "integer"},
        },
        "required": ["city", "population_millions"],
    }
    reply = await openai_client.chat.completions.create(
        model=CHAT,
        messages=QUESTION,  # type: ignore[arg-type]
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema}},
        temperature=0,
        max_tokens=60,
    )
    data = json.loads(reply.choices[0].message.content or "")
    jsonschema.validate(data, schema)


async def test_logprobs_and_stop(llama_client: TestClient) -> None:  # type: ignore[type-arg]
    body = {
        "model": CHAT,
        "messages": QUESTION,
        "temperature": 0,
        "max_tokens": 8,
        "logprobs": True,
        "top_logprobs": 2,
    }
    whole = await (await llama_client.post("/v1/chat/completions", json=body)).json()
    validate_openai("CreateChatCompletionResponse", whole)
    content = whole["choices"][0]["logprobs"]["content"]
    assert len(content) == whole["usage"]["completion_tokens"]
    assert all(item["logprob"] <= 0 and len(item["top_logprobs"]) == 2 for item in content)
    assert content[0]["top_logprobs"][0]["logprob"] >= content[0]["top_logprobs"][1]["logprob"]
    text = whole["choices"][0]["message"]["content"]
    word = text.split()[1]
    stopped = await (
        await llama_client.post(
            "/v1/chat/completions",
            json={"model": CHAT, "messages": QUESTION, "temperature": 0, "stop": [word]},
        )
    ).json()
    assert word not in stopped["choices"][0]["message"]["content"]
    assert stopped["choices"][0]["finish_reason"] == "stop"


async def test_history_keeps_counts_and_timings(llama_client: TestClient) -> None:  # type: ignore[type-arg]
    response = await llama_client.post(
        "/v1/chat/completions",
        json={"model": CHAT, "messages": QUESTION, "temperature": 0, "max_tokens": 10},
    )
    conv = await (
        await llama_client.get(f"/appliance/conversations/{response.headers['X-Conversation-Id']}")
    ).json()
    reply = conv["messages"][-1]
    assert reply["role"] == "assistant" and reply["model"] == CHAT
    assert reply["prompt_tokens"] > 5 and 0 < reply["completion_tokens"] <= 10
    assert reply["prompt_ms"] > 0 and reply["decode_ms"] >= 0 and reply["total_ms"] > 0


def test_calibration_on_the_real_model(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from appliance.cli.main import cli

    models_dir = Path(__file__).resolve().parents[3] / ".cache" / "models"
    result = CliRunner().invoke(
        cli,
        [
            "detect",
            "--calibrate",
            "--json",
            "--home",
            str(tmp_path),
            "--models-dir",
            str(models_dir),
        ],
        env={"APPLIANCE_LOAD_PLUGINS": "llama", "APPLIANCE_N_THREADS": "2"},
    )
    assert result.exit_code == 0, result.output
    calibration = json.loads(result.output)["calibration"]
    assert calibration["model"] == CHAT and calibration["measured_tps"] > 1
    assert 0 < calibration["efficiency"] < 5
    assert (tmp_path / "calibration.json").is_file()
