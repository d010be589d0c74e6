"""What clients send, accepted as they send it: nulls for optional fields on both APIs, bare and
``:latest`` names; and the refusals they must get before any stream (images for a text-only
model, stream_options without a stream)."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.registry import Registered
from tests.fixtures import ClientFactory

HI = [{"role": "user", "content": "hi"}]
NULLS_V1 = {
    "temperature": None,
    "top_p": None,
    "n": None,
    "logprobs": None,
    "presence_penalty": None,
    "frequency_penalty": None,
    "stop": None,
    "seed": None,
    "max_tokens": None,
    "tools": None,
    "tool_choice": None,
    "response_format": None,
}
NULL_OPTIONS = {
    "temperature": None,
    "top_k": None,
    "top_p": None,
    "num_predict": None,
    "repeat_penalty": None,
    "seed": None,
    "stop": None,
    "num_ctx": None,
}


async def test_nulls_mean_not_set_on_both_apis(make_client: ClientFactory) -> None:
    client = await make_client()
    v1 = await client.post(
        "/v1/chat/completions", json={"model": "echo", "messages": HI, **NULLS_V1}
    )
    assert v1.status == 200, await v1.text()
    body = await v1.json()
    assert body["choices"][0]["message"]["annotations"] == []
    for path, extra in (
        ("/api/chat", {"messages": HI}),
        ("/api/generate", {"prompt": "hi"}),
        ("/api/embed", {"model": "echo-embed", "input": "hi"}),
    ):
        sent = {
            "model": "echo",
            "stream": False,
            "options": NULL_OPTIONS,
            "keep_alive": None,
            "format": None,
            **extra,
        }
        response = await client.post(path, json=sent)
        assert response.status == 200, (path, await response.text())
    embeddings = await client.post(
        "/v1/embeddings",
        json={
            "model": "echo-embed",
            "input": "hi",
            "dimensions": None,
            "encoding_format": None,
            "user": None,
        },
    )
    assert embeddings.status == 200


async def test_refusals_before_the_stream(make_client: ClientFactory) -> None:
    client = await make_client()
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    cases: list[tuple[str, dict[str, Any], str]] = [
        (
            "/v1/chat/completions",
            {
                "model": "echo",
                "stream": True,
                "messages": [{"role": "user", "content": [{"type": "text", "text": "?"}, image]}],
            },
            "reads text only",
        ),
        (
            "/api/chat",
            {"model": "echo", "messages": [{"role": "user", "content": "?", "images": ["aGk="]}]},
            "reads text only",
        ),
        ("/api/generate", {"model": "echo", "prompt": "?", "images": ["aGk="]}, "reads text only"),
        (
            "/v1/chat/completions",
            {"model": "echo", "messages": HI, "stream_options": {"include_usage": True}},
            "stream_options",
        ),
    ]
    for path, body, words in cases:
        response = await client.post(path, json=body)
        assert response.status == 400, (path, await response.text())
        assert "json" in response.headers["Content-Type"]
        assert words in await response.text()


async def test_models_say_what_they_are_for(make_client: ClientFactory) -> None:
    client = await make_client()
    listed = {
        m["id"]: m["capabilities"] for m in (await (await client.get("/v1/models")).json())["data"]
    }
    assert listed["echo"] == ["completion"] and listed["echo-embed"] == ["embedding"]
    tags = {
        m["name"]: m["capabilities"]
        for m in (await (await client.get("/api/tags")).json())["models"]
    }
    assert tags["echo:latest"] == ["completion"] and tags["echo-embed:latest"] == ["embedding"]


@pytest.mark.parametrize(
    ("asked", "means"),
    [
        ("smollm2", "smollm2:360m"),
        ("smollm2:latest", "smollm2:360m"),
        ("smollm2:135m", "smollm2:135m"),
        ("qwen", "qwen:0.5b"),
        ("smollm2:1b", None),
        ("nope", None),
    ],
)
def test_a_bare_name_means_the_preferred_tagged_model(asked: str, means: str | None) -> None:
    models: Registered[str] = Registered("chat model")
    for name in ("smollm2:135m", "smollm2:360m", "qwen:0.5b"):
        models.add(name, name, "test")
    models.prefer = lambda names: "smollm2:360m" if "smollm2:360m" in names else names[0]
    assert models.resolve(asked) == means
    assert (asked in models) is (means is not None)
